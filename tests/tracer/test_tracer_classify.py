"""The failure classifier on recorded vendor responses and on exceptions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import tracer
from tracer import Classification, ClassificationRule, ConfigurationError, classify
from tracer.semconv import FailureCategory

DATA = Path(__file__).parent / "data" / "classify"
CASES = sorted(DATA.glob("*.json"))


def test_there_are_recorded_cases_for_every_vendor() -> None:
    vendors = {json.loads(p.read_text())["vendor"] for p in CASES}
    assert {"stripe", "salesforce", "netsuite", None} <= vendors


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_response(path: Path) -> None:
    case = json.loads(path.read_text())
    body = case["body"]
    # recorded bodies arrive as bytes on the wire
    raw = json.dumps(body).encode() if isinstance(body, dict | list) else body
    result = classify(status_code=case["status"], headers=case["headers"], body=raw, vendor=case["vendor"])
    expect = case["expect"]
    assert (result.category.value if result.category else None) == expect["category"], result.evidence
    assert result.code == expect["code"]
    assert result.retryable is expect["retryable"]
    if "retry_after" in expect:
        assert result.retry_after == expect["retry_after"]
    assert result.evidence
    assert result.status_code == case["status"]


def test_vendor_is_recognized_from_the_body_shape() -> None:
    body = {"o:errorDetails": [{"detail": "x", "o:errorCode": "INVALID_KEY_OR_REF"}], "status": 400}
    result = classify(status_code=400, body=body)
    assert result.vendor == "netsuite"
    assert result.category is FailureCategory.MASTER_DATA
    assert result.evidence == "netsuite code INVALID_KEY_OR_REF"


def test_retry_after_http_date() -> None:
    now = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
    assert tracer.parse_retry_after("Thu, 03 Dec 2026 10:00:30 GMT", now=now) == 30.0
    assert tracer.parse_retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now=now) == 0.0
    assert tracer.parse_retry_after("soon") is None
    assert tracer.parse_retry_after("1.5") == 1.5


@pytest.mark.parametrize(
    ("exception", "evidence"),
    [
        (TimeoutError("read timed out"), "exception TimeoutError"),
        (ConnectionRefusedError(111, "refused"), "exception ConnectionError"),
        (TimeoutError("timed out"), "exception TimeoutError"),
        (httpx.ReadTimeout("timed out"), "exception httpx.TimeoutException"),
        (httpx.ConnectError("refused"), "exception httpx.NetworkError"),
        (httpx.RemoteProtocolError("peer closed"), "exception httpx.RemoteProtocolError"),
        (requests.Timeout("timed out"), "exception requests.Timeout"),
        (requests.ConnectionError("refused"), "exception requests.ConnectionError"),
    ],
)
def test_transport_exceptions_are_transient(exception: BaseException, evidence: str) -> None:
    result = classify(exception=exception)
    assert result.category is FailureCategory.TRANSIENT
    assert result.retryable
    assert result.evidence == evidence


def test_http_status_errors_are_classified_by_their_response() -> None:
    request = httpx.Request("POST", "https://api.stripe.com/v1/invoices")
    response = httpx.Response(
        429,
        headers={"retry-after": "7", "content-type": "application/json"},
        json={"error": {"type": "invalid_request_error", "code": "rate_limit"}},
        request=request,
    )
    error = httpx.HTTPStatusError("429", request=request, response=response)
    result = classify(exception=error, vendor="stripe")
    assert (result.category, result.code, result.retry_after) == (
        FailureCategory.RATE_LIMITED,
        "rate_limit",
        7.0,
    )

    resp = requests.Response()
    resp.status_code = 401
    resp._content = b'[{"message": "Session expired", "errorCode": "INVALID_SESSION_ID"}]'
    result = classify(exception=requests.HTTPError(response=resp))
    assert (result.category, result.code, result.vendor) == (
        FailureCategory.AUTH,
        "INVALID_SESSION_ID",
        "salesforce",
    )


def test_wrapped_exceptions_are_followed() -> None:
    class AdapterError(Exception):
        pass

    try:
        try:
            raise httpx.ReadTimeout("slow")
        except httpx.ReadTimeout as inner:
            raise AdapterError("posting failed") from inner
    except AdapterError as outer:
        result = classify(exception=outer)
    assert result.category is FailureCategory.TRANSIENT
    assert result.evidence == "exception httpx.TimeoutException"


def test_unknown_is_never_guessed() -> None:
    assert classify(exception=ValueError("boom")).category is FailureCategory.UNKNOWN
    assert classify(exception=ValueError("boom")).evidence == "exception ValueError not recognized"
    assert classify(status_code=418).category is FailureCategory.UNKNOWN
    assert classify().category is FailureCategory.UNKNOWN
    unknown_code = classify(
        status_code=400, body={"error": {"type": "x", "code": "brand_new_code"}}, vendor="stripe"
    )
    assert unknown_code.category is FailureCategory.MAPPING  # decided by the 400, not by the unknown code
    assert unknown_code.evidence == "http 400"


def test_user_rules_come_first() -> None:
    rules = [
        ClassificationRule(
            FailureCategory.MASTER_DATA, vendor="netsuite", message=r"cost cent(er|re)", name="cc"
        ),
        ClassificationRule(FailureCategory.BUSINESS_RULE, status=409, code={"invoice_locked"}),
        ClassificationRule(FailureCategory.TRANSIENT, exception="KeyError", retryable=False),
        ClassificationRule(FailureCategory.DUPLICATE, status=range(500, 600), code="DUP"),
    ]
    netsuite = {"o:errorDetails": [{"detail": "Cost Center DE-1 inactive", "o:errorCode": "USER_ERROR"}]}
    result = classify(status_code=400, body=netsuite, vendor="netsuite", rules=rules)
    assert (result.category, result.evidence) == (FailureCategory.MASTER_DATA, "rule 'cc'")
    locked = classify(status_code=409, body={"error": {"type": "x", "code": "invoice_locked"}}, rules=rules)
    assert locked.category is FailureCategory.BUSINESS_RULE
    assert locked.evidence.startswith("rule status=409")
    key_error = classify(exception=KeyError("x"), rules=rules)
    assert (key_error.category, key_error.retryable) == (FailureCategory.TRANSIENT, False)
    # conditions are ANDed: a 502 without the code is not matched by the last rule
    assert classify(status_code=502, rules=rules).category is FailureCategory.TRANSIENT


def test_configured_rules_apply_to_business_spans(captured: Any) -> None:
    tracer.shutdown()
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer.configure(
        "t",
        span_exporter=exporter,
        set_global=False,
        classification_rules=[ClassificationRule("out_of_order", exception="LookupError")],
    )
    with pytest.raises(LookupError), tracer.business_span("erp.payment.apply"):
        raise LookupError("invoice not posted yet")
    tracer.force_flush()
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["biz.error.category"] == "out_of_order"


def test_invalid_rules_are_rejected_with_every_problem() -> None:
    with pytest.raises(ConfigurationError) as raised:
        ClassificationRule("weather", message="(unclosed")
    message = str(raised.value)
    assert "category: must be one of" in message and "'weather'" in message
    assert "message: invalid regex '(unclosed'" in message
    with pytest.raises(ConfigurationError, match="at least one of"):
        ClassificationRule(FailureCategory.AUTH)


def test_classification_result_shape() -> None:
    result = classify(status_code=503, headers=[("Retry-After", "4")])
    assert result == Classification(
        category=FailureCategory.TRANSIENT,
        code=None,
        retry_after=4.0,
        retryable=True,
        evidence="http 503 + Retry-After",
        vendor=None,
        status_code=503,
        message=None,
    )
    assert result.is_failure
    assert not classify(status_code=204).is_failure
