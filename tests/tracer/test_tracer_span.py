"""Business spans: attributes, outcome, failures, payloads, correlation."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tracer
from tests.tracer.conftest import Captured
from tracer import semconv as sc
from tracer.semconv import CorrelationSource, FailureCategory, Outcome, PayloadKind


def test_before_configure_everything_is_a_safe_noop() -> None:
    with tracer.business_span("billing.invoice.create", amount="not a number") as span:
        assert not span.is_recording
        span.record_payload(PayloadKind.SOURCE, {"email": "a@b.example"})
        span.fail(FailureCategory.MAPPING, code="x")
        span.update(object_id="in_1")
        assert tracer.current_business_span() is span
        # correlation still works without an SDK: the id is minted and in the baggage
        assert tracer.current_correlation_id() == span.correlation_id
    assert tracer.current_business_span() is None
    assert tracer.force_flush() is False


def test_attributes_follow_the_conventions(captured: Captured) -> None:
    with tracer.business_span(
        "billing.invoice.create",
        process="quote_to_cash",
        vendor="stripe",
        object_id="in_123",
        object_refs=["crm:opportunity/006Dn00000A1b2C"],
        amount=Decimal("120.00"),
        currency="eur",
        legal_entity="ACME-DE",
        region="EMEA",
        idempotency_key="q2c-42-invoice",
        attempt=2,
        event_id="evt_1",
        event_sequence=7,
        event_occurred_at=dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC),
        correlation_id="corr-42",
        attributes={"custom.key": "v"},
    ):
        pass
    span = captured.one("billing.invoice.create")
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        sc.BIZ_STAGE: "billing.invoice.create",
        sc.BIZ_CORRELATION_ID: "corr-42",
        sc.BIZ_CORRELATION_SOURCE: "argument",
        sc.BIZ_PROCESS: "quote_to_cash",
        sc.BIZ_SYSTEM: "billing",
        sc.BIZ_SYSTEM_VENDOR: "stripe",
        sc.BIZ_OBJECT_TYPE: "invoice",
        sc.BIZ_OBJECT_ID: "in_123",
        sc.BIZ_OBJECT_REFS: ("crm:opportunity/006Dn00000A1b2C",),
        sc.BIZ_AMOUNT: 120.0,
        sc.BIZ_CURRENCY: "EUR",
        sc.BIZ_LEGAL_ENTITY: "ACME-DE",
        sc.BIZ_REGION: "EMEA",
        sc.BIZ_IDEMPOTENCY_KEY: "q2c-42-invoice",
        sc.BIZ_ATTEMPT: 2,
        sc.BIZ_EVENT_ID: "evt_1",
        sc.BIZ_EVENT_SEQUENCE: 7,
        sc.BIZ_EVENT_OCCURRED_AT: "2026-12-03T10:00:00.000Z",
        sc.BIZ_OUTCOME: "ok",
        "custom.key": "v",
    }
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    ("given", "expected"),
    [(Decimal("120.50"), 120.5), (120, 120.0), ("99.99", 99.99), (12.5, 12.5), ("1_000.5", 1000.5)],
)
def test_amount_accepts_decimal_int_str_float(captured: Captured, given: Any, expected: float) -> None:
    with tracer.business_span("billing.invoice.create", amount=given):
        pass
    assert captured.attrs()[sc.BIZ_AMOUNT] == expected


@pytest.mark.parametrize("bad", ["twelve", float("nan"), True, object(), "infinity"])
def test_invalid_values_are_left_out_never_raised(captured: Captured, bad: Any) -> None:
    with tracer.business_span(
        "billing.invoice.create",
        amount=bad,
        attempt=bad,
        currency=bad,
        event_occurred_at=bad,
        event_sequence=bad,
    ) as span:
        assert span.is_recording
    attrs = captured.attrs()
    for key in (
        sc.BIZ_AMOUNT,
        sc.BIZ_ATTEMPT,
        sc.BIZ_CURRENCY,
        sc.BIZ_EVENT_OCCURRED_AT,
        sc.BIZ_EVENT_SEQUENCE,
    ):
        assert key not in attrs
    assert attrs[sc.BIZ_OUTCOME] == "ok"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1733220000, "2024-12-03T10:00:00.000Z"),
        (1733219000123, "2024-12-03T09:43:20.123Z"),  # epoch milliseconds (Salesforce commitTimestamp)
        ("2024-12-03T11:00:00+01:00", "2024-12-03T10:00:00.000Z"),
        ("2024-12-03T10:00:00Z", "2024-12-03T10:00:00.000Z"),
        (dt.datetime(2024, 12, 3, 10, 0), "2024-12-03T10:00:00.000Z"),  # naive = UTC
    ],
)
def test_occurred_at_is_rfc3339_utc(captured: Captured, given: Any, expected: str) -> None:
    with tracer.business_span("billing.invoice.create", event_occurred_at=given):
        pass
    assert captured.attrs()[sc.BIZ_EVENT_OCCURRED_AT] == expected


def test_system_and_object_type_can_be_overridden_and_odd_stages_still_trace(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create", system="provisioning", object_type="order"):
        pass
    with tracer.business_span("Weird Stage Name"):
        pass
    spans = {s.name: dict(s.attributes or {}) for s in captured.spans()}
    assert spans["billing.invoice.create"][sc.BIZ_SYSTEM] == "provisioning"
    assert spans["billing.invoice.create"][sc.BIZ_OBJECT_TYPE] == "order"
    assert sc.BIZ_SYSTEM not in spans["Weird Stage Name"]


class StripeError(Exception):
    def __init__(self, message: str, http_status: int, json_body: dict[str, Any]) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.json_body = json_body


def test_exception_is_reraised_untouched_and_recorded(captured: Captured) -> None:
    error = StripeError(
        "No such customer: cus_x (contact jane.doe@example.com)",
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such customer",
            }
        },
    )
    with (
        pytest.raises(StripeError) as raised,
        tracer.business_span("billing.invoice.create", vendor="stripe"),
    ):
        raise error
    assert raised.value is error
    assert raised.value.__traceback__ is not None
    span = captured.one()
    attrs = dict(span.attributes or {})
    assert attrs[sc.BIZ_OUTCOME] == "failed"
    assert attrs[sc.BIZ_ERROR_CATEGORY] == "master_data"
    assert attrs[sc.BIZ_ERROR_CODE] == "resource_missing"
    assert attrs["error.type"] == "StripeError"
    assert span.status.status_code is StatusCode.ERROR
    exception_event = next(e for e in span.events if e.name == "exception")
    assert "jane.doe@example.com" not in str(exception_event.attributes)
    assert "jane.doe@example.com" not in (span.status.description or "")


def test_unknown_exception_stays_unknown(captured: Captured) -> None:
    with pytest.raises(KeyError), tracer.business_span("erp.invoice.post"):
        raise KeyError("line")
    attrs = captured.attrs()
    assert attrs[sc.BIZ_ERROR_CATEGORY] == "unknown"
    assert attrs["error.type"] == "KeyError"


def test_explicit_category_wins_over_exception_classification(captured: Captured) -> None:
    with pytest.raises(TimeoutError), tracer.business_span("erp.invoice.post") as span:
        span.fail(FailureCategory.MASTER_DATA, code="MISSING_COST_CENTER", message="cost center DE-1 missing")
        raise TimeoutError
    attrs = captured.attrs()
    assert attrs[sc.BIZ_ERROR_CATEGORY] == "master_data"
    assert attrs[sc.BIZ_ERROR_CODE] == "MISSING_COST_CENTER"
    assert attrs["error.type"] == "TimeoutError"


def test_fail_without_raising(captured: Captured) -> None:
    with tracer.business_span("erp.invoice.post") as span:
        span.fail("business_rule", code="PERIOD_CLOSED", message="period closed", error_type="NetSuiteError")
    span_data = captured.one()
    attrs = dict(span_data.attributes or {})
    assert attrs[sc.BIZ_OUTCOME] == "failed"
    assert attrs[sc.BIZ_ERROR_CATEGORY] == "business_rule"
    assert attrs[sc.BIZ_ERROR_CODE] == "PERIOD_CLOSED"
    assert attrs["error.type"] == "NetSuiteError"
    assert attrs[sc.BIZ_ERROR_RETRYABLE] is False
    assert span_data.status.status_code is StatusCode.ERROR
    assert span_data.status.description == "period closed"


def test_invalid_category_becomes_unknown(captured: Captured) -> None:
    with tracer.business_span("erp.invoice.post") as span:
        span.fail("cosmic_rays")
    assert captured.attrs()[sc.BIZ_ERROR_CATEGORY] == "unknown"


@pytest.mark.parametrize("outcome", [Outcome.SKIPPED_DUPLICATE, Outcome.COMPENSATED, Outcome.PARKED])
def test_set_outcome(captured: Captured, outcome: Outcome) -> None:
    with tracer.business_span("billing.invoice.create") as span:
        span.set_outcome(outcome)
    span_data = captured.one()
    assert dict(span_data.attributes or {})[sc.BIZ_OUTCOME] == outcome.value
    assert span_data.status.status_code is StatusCode.UNSET


def test_retrying_outcome_survives_an_exception_but_ok_does_not(captured: Captured) -> None:
    with pytest.raises(ConnectionError), tracer.business_span("billing.invoice.create", attempt=1) as span:
        span.set_outcome(Outcome.RETRYING)
        raise ConnectionError
    with pytest.raises(ConnectionError), tracer.business_span("billing.invoice.create", attempt=2) as span:
        span.set_outcome(Outcome.OK)
        raise ConnectionError
    outcomes = {dict(s.attributes or {})[sc.BIZ_ATTEMPT]: s for s in captured.spans()}
    assert dict(outcomes[1].attributes or {})[sc.BIZ_OUTCOME] == "retrying"
    assert dict(outcomes[2].attributes or {})[sc.BIZ_OUTCOME] == "failed"
    assert all(s.status.status_code is StatusCode.ERROR for s in outcomes.values())


def test_classify_response_records_failures_only(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create", vendor="stripe") as span:
        ok = span.classify_response(200, {}, {"id": "in_1"})
        assert ok.category is None
    with tracer.business_span("billing.customer.upsert", vendor="stripe") as span:
        result = span.classify_response(
            429, {"Retry-After": "3"}, {"error": {"type": "x", "code": "rate_limit"}}
        )
        assert result.category is FailureCategory.RATE_LIMITED
    spans = {s.name: dict(s.attributes or {}) for s in captured.spans()}
    assert spans["billing.invoice.create"][sc.BIZ_OUTCOME] == "ok"
    assert spans["billing.invoice.create"]["http.response.status_code"] == 200
    failed = spans["billing.customer.upsert"]
    assert failed[sc.BIZ_OUTCOME] == "failed"
    assert failed[sc.BIZ_ERROR_CATEGORY] == "rate_limited"
    assert failed[sc.BIZ_ERROR_RETRY_AFTER] == 3.0
    assert failed[sc.BIZ_ERROR_RETRYABLE] is True
    assert failed["http.response.status_code"] == 429


def test_payload_and_transform_events(captured: Captured) -> None:
    with tracer.business_span("middleware.order.validate") as span:
        span.record_payload(
            PayloadKind.SOURCE, {"Id": "801x", "BillingEmail__c": "ap@acme.example"}, system="crm"
        )
        span.record_transform(PayloadKind.SOURCE, PayloadKind.CANONICAL, mapping="crm_to_canonical@v3")
        span.record_payload(PayloadKind.CANONICAL, '{"order": "801x", "total": "960.50"}')
    events = captured.one().events
    assert [e.name for e in events] == [sc.EVENT_PAYLOAD, sc.EVENT_TRANSFORM, sc.EVENT_PAYLOAD]
    source = dict(events[0].attributes or {})
    assert source[sc.PAYLOAD_KIND] == "source"
    assert source[sc.PAYLOAD_SYSTEM] == "crm"
    assert source[sc.PAYLOAD_BODY] == '{"Id":"801x","BillingEmail__c":"[REDACTED]"}'
    assert source[sc.PAYLOAD_REDACTED_FIELDS] == ("BillingEmail__c",)
    assert source[sc.PAYLOAD_TRUNCATED] is False
    assert dict(events[1].attributes or {}) == {
        sc.TRANSFORM_FROM: "source",
        sc.TRANSFORM_TO: "canonical",
        sc.TRANSFORM_MAPPING: "crm_to_canonical@v3",
    }
    canonical = dict(events[2].attributes or {})
    assert canonical[sc.PAYLOAD_SYSTEM] == "middleware"
    assert canonical[sc.PAYLOAD_BODY] == '{"order":"801x","total":"960.50"}'


def test_update_sets_late_attributes(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create", object_refs=["crm:order/801x"]) as span:
        span.update(object_id="in_9", object_refs=["billing:customer/cus_1"], amount=10, currency="usd")
    attrs = captured.attrs()
    assert attrs[sc.BIZ_OBJECT_ID] == "in_9"
    assert attrs[sc.BIZ_OBJECT_REFS] == ("crm:order/801x", "billing:customer/cus_1")
    assert attrs[sc.BIZ_AMOUNT] == 10.0
    assert attrs[sc.BIZ_CURRENCY] == "USD"


def test_correlation_comes_from_baggage_and_nesting_keeps_it(captured: Captured) -> None:
    with tracer.correlation("corr-1", process="renewal") as cid:
        assert cid == "corr-1"
        with tracer.business_span("billing.subscription.update") as outer:
            with tracer.business_span("erp.invoice.post") as inner:
                assert tracer.current_business_span() is inner
            assert tracer.current_business_span() is outer
    spans = {s.name: s for s in captured.spans()}
    for span in spans.values():
        attrs = dict(span.attributes or {})
        assert attrs[sc.BIZ_CORRELATION_ID] == "corr-1"
        assert attrs[sc.BIZ_CORRELATION_SOURCE] == "baggage"
        assert attrs[sc.BIZ_PROCESS] == "renewal"
    inner_span, outer_span = spans["erp.invoice.post"], spans["billing.subscription.update"]
    assert inner_span.parent is not None and outer_span.context is not None
    assert inner_span.parent.span_id == outer_span.context.span_id


def test_a_root_span_mints_and_publishes_its_correlation(captured: Captured) -> None:
    assert tracer.current_correlation_id() is None
    with tracer.business_span("crm.order.approve", process="quote_to_cash") as span:
        assert span.correlation_source is CorrelationSource.MINTED
        assert tracer.current_correlation_id() == span.correlation_id
        assert tracer.current_process() == "quote_to_cash"
        headers = tracer.inject_http_headers()
    assert tracer.current_correlation_id() is None
    assert f"biz.correlation_id={span.correlation_id}" in headers["baggage"]
    assert "traceparent" in headers


def test_invalid_correlation_id_is_not_believed(captured: Captured) -> None:
    with tracer.business_span("crm.order.approve", correlation_id="bad id with spaces\n") as span:
        assert span.correlation_source is CorrelationSource.MINTED
    with tracer.correlation("x" * 500) as cid:
        assert len(cid) == 36


def test_ref_index_reassociates_by_object_reference(captured: Captured) -> None:
    with (
        tracer.correlation("corr-77", process="quote_to_cash"),
        tracer.business_span("billing.invoice.create", object_refs=["crm:order/801x"]) as span,
    ):
        span.update(object_id="in_77")
    # later, no baggage: a step on the same invoice finds the transaction again
    with tracer.business_span("billing.payment.succeed", object_refs=["billing:invoice/in_77"]) as later:
        pass
    assert later.correlation_id == "corr-77"
    assert later.correlation_source is CorrelationSource.REF_INDEX
    assert captured.attrs("billing.payment.succeed")[sc.BIZ_PROCESS] == "quote_to_cash"
    match = tracer.ref_index().lookup(["crm:order/801x"])
    assert match is not None and match.correlation_id == "corr-77"


def test_tracer_failures_never_reach_adapter_code(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracer._state import state

    class Exploding:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer bug")

    monkeypatch.setattr(state, "tracer", Exploding())
    with tracer.business_span("billing.invoice.create") as span:
        span.fail(FailureCategory.MAPPING)
        span.record_payload("source", {"a": 1})
        result = "business result"
    assert result == "business result"
    with pytest.raises(ValueError, match="business"), tracer.business_span("billing.invoice.create"):
        raise ValueError("business")


def test_stage_decorator_sync_and_async(captured: Captured) -> None:
    @tracer.stage("erp.invoice.post", vendor="netsuite", kind=SpanKind.CLIENT)
    def post(number: str) -> str:
        current = tracer.current_business_span()
        assert current is not None
        current.update(object_id=number)
        return f"posted {number}"

    @tracer.stage("erp.payment.apply")
    async def apply(amount: int) -> int:
        if amount < 0:
            raise ValueError("negative")
        return amount

    assert post("INV-1") == "posted INV-1"
    assert post.__name__ == "post"
    assert asyncio.run(apply(5)) == 5
    with pytest.raises(ValueError):
        asyncio.run(apply(-1))
    spans = captured.spans()
    assert [s.name for s in spans] == ["erp.invoice.post", "erp.payment.apply", "erp.payment.apply"]
    assert spans[0].kind is SpanKind.CLIENT
    assert dict(spans[0].attributes or {})[sc.BIZ_OBJECT_ID] == "INV-1"
    assert dict(spans[2].attributes or {})[sc.BIZ_OUTCOME] == "failed"


def test_async_context_manager(captured: Captured) -> None:
    async def handler() -> str:
        async with tracer.business_span("billing.payment.succeed") as span:
            await asyncio.sleep(0)
            return span.correlation_id

    cid = asyncio.run(handler())
    assert captured.attrs()[sc.BIZ_CORRELATION_ID] == cid


def test_other_instrumentation_nests_under_business_spans(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create") as span:
        assert trace.get_current_span() is span.span
