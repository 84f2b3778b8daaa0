"""httpx and requests hooks: client spans with business attributes and classification."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode

import tracer
from tests.tracer._servers import serve
from tests.tracer.conftest import Captured
from tracer import semconv as sc


def _api(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
    if path.startswith("/limited"):
        return 429, {"retry-after": "9"}, {"error": {"type": "invalid_request_error", "code": "rate_limit"}}
    if path.startswith("/missing"):
        return 404, {}, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
    return (
        200,
        {},
        {
            "seen_traceparent": headers.get("traceparent", headers.get("Traceparent")),
            "seen_baggage": headers.get("baggage", headers.get("Baggage")),
        },
    )


def _clients(captured: Captured) -> list[Any]:
    return [s for s in captured.spans() if s.kind is SpanKind.CLIENT]


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_client_span_carries_business_attributes(captured: Captured, library: str) -> None:
    with (
        serve(_api) as url,
        tracer.business_span(
            "billing.invoice.create",
            process="quote_to_cash",
            vendor="stripe",
            object_id="in_1",
            legal_entity="ACME-DE",
        ) as span,
    ):
        target = f"{url}/v1/invoices?api_key=sk_live_abc&limit=3&email=jane@acme.example"
        if library == "httpx":
            with tracer.instrument_httpx(httpx.Client()) as client:
                seen = client.get(target).json()
        else:
            seen = tracer.instrument_requests(requests.Session()).get(target, timeout=5).json()
    (client_span,) = _clients(captured)
    attrs = dict(client_span.attributes or {})
    port = int(url.rsplit(":", 1)[1])
    assert client_span.name == "GET 127.0.0.1"
    assert attrs["http.request.method"] == "GET"
    assert attrs["url.full"] == f"{url}/v1/invoices?api_key=REDACTED&limit=3&email=[REDACTED:email]"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == port
    assert attrs["http.response.status_code"] == 200
    assert attrs[sc.BIZ_CORRELATION_ID] == span.correlation_id
    assert attrs[sc.BIZ_SYSTEM_VENDOR] == "stripe" and attrs[sc.BIZ_LEGAL_ENTITY] == "ACME-DE"
    assert sc.BIZ_STAGE not in attrs and sc.BIZ_OUTCOME not in attrs
    assert client_span.parent.span_id == span.span.get_span_context().span_id
    assert seen["seen_traceparent"].split("-")[2] == format(client_span.context.span_id, "016x")
    assert f"biz.correlation_id={span.correlation_id}" in seen["seen_baggage"]


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_failed_responses_are_classified_on_the_client_span(captured: Captured, library: str) -> None:
    with serve(_api) as url, tracer.business_span("billing.invoice.create", vendor="stripe"):
        if library == "httpx":
            with tracer.instrument_httpx(httpx.Client()) as client:
                limited = client.post(f"{url}/limited", json={})
                missing = client.get(f"{url}/missing")
        else:
            session = tracer.instrument_requests(requests.Session())
            limited = session.post(f"{url}/limited", json={}, timeout=5)
            missing = session.get(f"{url}/missing", timeout=5)
        # the adapter still reads the body the hook looked at
        assert limited.json()["error"]["code"] == "rate_limit"
        assert missing.status_code == 404
    spans = _clients(captured)
    by_path = {dict(s.attributes or {})["url.full"].rsplit("/", 1)[1]: s for s in spans}
    limited_attrs = dict(by_path["limited"].attributes or {})
    assert limited_attrs[sc.BIZ_ERROR_CATEGORY] == "rate_limited"
    assert limited_attrs[sc.BIZ_ERROR_RETRY_AFTER] == 9.0
    assert limited_attrs[sc.BIZ_ERROR_CODE] == "rate_limit"
    assert limited_attrs["error.type"] == "429"
    assert by_path["limited"].status.status_code is StatusCode.ERROR
    missing_attrs = dict(by_path["missing"].attributes or {})
    assert missing_attrs[sc.BIZ_ERROR_CATEGORY] == "master_data"
    business = next(s for s in captured.spans() if s.kind is SpanKind.INTERNAL)
    assert dict(business.attributes or {})[sc.BIZ_OUTCOME] == "ok"  # a retried call is not the step's failure


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_transport_errors_are_transient_and_reraised(captured: Captured, library: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1/invoices"
    error: type[Exception] = httpx.ConnectError if library == "httpx" else requests.ConnectionError
    with pytest.raises(error), tracer.business_span("erp.invoice.post"):
        if library == "httpx":
            with tracer.instrument_httpx(httpx.Client()) as client:
                client.get(url)
        else:
            tracer.instrument_requests(requests.Session()).get(url, timeout=5)
    (client_span,) = _clients(captured)
    assert dict(client_span.attributes or {})[sc.BIZ_ERROR_CATEGORY] == "transient"
    business = next(s for s in captured.spans() if s.kind is SpanKind.INTERNAL)
    assert dict(business.attributes or {})[sc.BIZ_ERROR_CATEGORY] == "transient"


def test_async_httpx(captured: Captured) -> None:
    async def call(url: str) -> int:
        async with tracer.instrument_httpx(httpx.AsyncClient()) as client:
            response = await client.get(f"{url}/limited")
            return response.status_code

    with serve(_api) as url:
        assert asyncio.run(call(url)) == 429
    (client_span,) = _clients(captured)
    assert dict(client_span.attributes or {})[sc.BIZ_ERROR_CATEGORY] == "rate_limited"


def test_instrumenting_twice_wraps_once(captured: Captured) -> None:
    client = tracer.instrument_httpx(tracer.instrument_httpx(httpx.Client()))
    session = tracer.instrument_requests(tracer.instrument_requests(requests.Session()))
    with serve(_api) as url:
        client.get(url)
        session.get(url, timeout=5)
    client.close()
    assert len(_clients(captured)) == 2


def test_sanitize_url() -> None:
    assert tracer.sanitize_url("https://user:pw@api.example.com:8443/a?token=x&b=1#frag") == (
        "https://api.example.com:8443/a?token=REDACTED&b=1"
    )
    assert tracer.sanitize_url("https://api.example.com/customers/jane@acme.example") == (
        "https://api.example.com/customers/[REDACTED:email]"
    )
