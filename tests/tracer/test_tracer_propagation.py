"""One correlation id across CRM → middleware → billing → queue → ERP and
billing's webhook, over real loopback HTTP hops and a real queue."""

from __future__ import annotations

import http.client
import json
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from opentelemetry.trace import SpanKind

import tracer
from tests.tracer._servers import serve
from tests.tracer.conftest import Captured
from tracer import semconv as sc
from tracer.vendors import stripe


def _post_plain(url: str, payload: dict[str, Any]) -> int:
    """A webhook delivery as a vendor does it: no trace headers of ours."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    conn.request("POST", parts.path, body=json.dumps(payload), headers={"content-type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_correlation_survives_every_hop(captured: Captured) -> None:
    messages: queue.Queue[tuple[dict[str, str], dict[str, Any]]] = queue.Queue()
    webhooks: list[dict[str, Any]] = []

    def billing(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        with (
            tracer.extract_http_context(headers),
            tracer.business_span("billing.invoice.create", vendor="stripe", kind=SpanKind.SERVER) as span,
        ):
            span.update(object_id="in_1PzQk2", amount="120.00", currency="eur")
            invoice = {"id": "in_1PzQk2", "object": "invoice", "currency": "eur", "amount_due": 12000}
            messages.put((tracer.inject_message_headers({}), invoice))
            # what Stripe will echo back later in its invoice.paid webhook
            invoice["metadata"] = dict(tracer.inject_webhook_metadata())
            webhooks.append(invoice)
            return 200, {}, invoice

    def middleware(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if path == "/webhooks/stripe":
            event = json.loads(body)
            mapped = stripe.map_event(event)
            assert mapped is not None
            remote = tracer.extract_webhook_context(event, refs=mapped.all_refs)
            with tracer.business_span(**mapped.span_arguments(), links=[remote], kind=SpanKind.SERVER):
                return 200, {}, {"received": True}
        with tracer.extract_http_context(headers), tracer.business_span("middleware.order.validate") as span:
            client = tracer.instrument_httpx(httpx.Client(timeout=5))
            with client:
                response = client.post(f"{billing_url}/v1/invoices", json=json.loads(body))
            span.update(object_refs=[f"billing:invoice/{response.json()['id']}"])
            return 200, {}, response.json()

    def consume() -> None:
        headers, invoice = messages.get(timeout=5)
        remote = tracer.extract_message_context(headers)
        with tracer.business_span(
            "erp.invoice.post",
            vendor="netsuite",
            object_refs=[f"billing:invoice/{invoice['id']}"],
            links=[remote],
            kind=SpanKind.CONSUMER,
        ):
            pass

    with serve(billing) as billing_url, serve(middleware) as middleware_url:
        consumer = threading.Thread(target=consume)
        consumer.start()
        session = tracer.instrument_requests(requests.Session())
        with tracer.business_span(
            "crm.order.approve", process="quote_to_cash", object_id="801Dn00000C3d4E"
        ) as crm:
            response = session.post(f"{middleware_url}/orders", json={"order": "801Dn00000C3d4E"}, timeout=5)
            assert response.status_code == 200
        consumer.join(5)
        assert not consumer.is_alive()

        # billing's webhooks: one echoes our metadata, one (another delivery path) has none
        paid = {
            "id": "evt_1",
            "type": "invoice.paid",
            "created": 1733220100,
            "livemode": False,
            "data": {"object": {**webhooks[0], "amount_paid": 12000, "payment_intent": "pi_1"}},
        }
        assert _post_plain(f"{middleware_url}/webhooks/stripe", paid) == 200
        bare = {
            "id": "evt_2",
            "type": "invoice.payment_failed",
            "created": 1733220200,
            "data": {
                "object": {"id": "in_1PzQk2", "object": "invoice", "currency": "eur", "amount_due": 12000}
            },
        }
        assert _post_plain(f"{middleware_url}/webhooks/stripe", bare) == 200

    spans = captured.spans()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    cid = crm.correlation_id
    business = [s for s in spans if sc.BIZ_STAGE in (s.attributes or {})]
    assert {s.name for s in business} == {
        "crm.order.approve",
        "middleware.order.validate",
        "billing.invoice.create",
        "erp.invoice.post",
        "billing.payment.succeed",
        "billing.payment.fail",
    }
    for span in business:
        attrs = dict(span.attributes or {})
        assert attrs[sc.BIZ_CORRELATION_ID] == cid, span.name
        assert attrs[sc.BIZ_PROCESS] == "quote_to_cash", span.name

    # synchronous hops: one trace, each server span under the caller's client span
    crm_span = by_name["crm.order.approve"][0]
    trace_id = crm_span.context.trace_id
    sync = ["crm.order.approve", "middleware.order.validate", "billing.invoice.create"]
    assert all(by_name[name][0].context.trace_id == trace_id for name in sync)
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(clients) == 2
    for client in clients:
        assert client.context.trace_id == trace_id
        assert dict(client.attributes or {})[sc.BIZ_CORRELATION_ID] == cid
    middleware_span = by_name["middleware.order.validate"][0]
    requests_client = next(c for c in clients if c.parent.span_id == crm_span.context.span_id)
    assert middleware_span.parent.span_id == requests_client.context.span_id
    assert middleware_span.parent.is_remote

    # asynchronous hops: own trace, linked to the producer
    billing_span = by_name["billing.invoice.create"][0]
    erp = by_name["erp.invoice.post"][0]
    assert erp.context.trace_id != trace_id
    assert [link.context.span_id for link in erp.links] == [billing_span.context.span_id]
    assert dict(erp.links[0].attributes or {}) == {sc.BIZ_LINK_HOP: "message"}
    assert dict(erp.attributes or {})[sc.BIZ_CORRELATION_SOURCE] == "link"

    webhook = by_name["billing.payment.succeed"][0]
    assert [link.context.span_id for link in webhook.links] == [billing_span.context.span_id]
    assert dict(webhook.links[0].attributes or {}) == {sc.BIZ_LINK_HOP: "webhook"}
    bare_webhook = by_name["billing.payment.fail"][0]
    assert bare_webhook.links == ()
    assert dict(bare_webhook.attributes or {})[sc.BIZ_CORRELATION_SOURCE] == "ref_index"


def test_message_headers_in_kafka_shape(captured: Captured) -> None:
    with (
        tracer.correlation("corr-kafka", process="payment_update"),
        tracer.business_span("billing.payment.succeed"),
    ):
        kafka_headers: list[tuple[str, bytes]] = [("traceparent", b"stale"), ("x-app", b"1")]
        tracer.inject_message_headers(kafka_headers)
        bytes_dict: dict[str, Any] = {"x-app": b"1"}
        tracer.inject_message_headers(bytes_dict)
    assert [k for k, _ in kafka_headers].count("traceparent") == 1
    assert isinstance(bytes_dict["baggage"], bytes)
    for carrier in (kafka_headers, bytes_dict):
        remote = tracer.extract_message_context(carrier)
        assert remote.correlation_id == "corr-kafka"
        assert remote.process == "payment_update"
        assert remote.span_context is not None


def test_extraction_never_raises_and_ignores_hostile_baggage() -> None:
    hostile = {"baggage": "biz.correlation_id=" + "a" * 5000, "traceparent": "garbage"}
    remote = tracer.extract_http_context(hostile)
    assert remote.correlation_id is None and remote.span_context is None and not remote
    assert tracer.extract_http_context(object()).correlation_id is None
    assert tracer.extract_message_context([("x",)]).correlation_id is None
    assert tracer.extract_webhook_context(None).correlation_id is None
    assert (
        tracer.extract_webhook_context(
            {"data": {"object": {"revtrace_correlation_id": "bad id"}}}
        ).correlation_id
        is None
    )


def test_webhook_metadata_fits_vendor_limits(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create", process="quote_to_cash") as span:
        metadata = tracer.inject_webhook_metadata({"order": "801x"})
    assert metadata["order"] == "801x"
    assert metadata[sc.WEBHOOK_METADATA_CORRELATION_ID] == span.correlation_id
    assert metadata[sc.WEBHOOK_METADATA_PROCESS] == "quote_to_cash"
    for key, value in metadata.items():
        assert len(key) <= 40 and len(value) <= 500 and value.isascii()
