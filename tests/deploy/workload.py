"""A small quote-to-cash workload with known answers, as real OTLP.

Spans are made by the OpenTelemetry SDK (one tracer provider per system, each
with its own ``service.name``) with explicit start and end times relative to a
``now``, and encoded with the SDK's OTLP encoder; sync-engine metrics are
OTLP/JSON. Both go to a collector's ``/v1/traces`` and ``/v1/metrics``.

The transactions (every one has a correlation id, a legal entity and a stage path):

========  ======  ================================================================
id        entity  what happens
========  ======  ================================================================
q2c-ok-1  US01    order → customer → invoice → ERP post 120 s later (within SLA)
q2c-ok-2  DE01    the same, posted 3000 s later (an invoice-posting SLA breach)
q2c-stuck US01    invoice created, ERP posting fails: master_data (cost center)
q2c-retry US01    ERP posting 503 (transient), retried, posted on attempt 2
pay-1     US01    payment succeeded in billing, applied in ERP 30 s later
cust-dup  DE01    one idempotency key, two billing customers (a duplicate)
========  ======  ================================================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from sync_engine import METRIC_BREAKER_STATE, METRIC_DLQ_SIZE, METRIC_QUEUE_DEPTH, METRIC_RETRIES
from tracer import semconv as sc
from tracer.semconv import FailureCategory, Outcome, Stage

VENDORS = {"crm": "salesforce", "billing": "stripe", "erp": "netsuite", "middleware": "mulesoft"}


@dataclass(frozen=True)
class Step:
    """One business span, ``at`` seconds before ``now``."""

    stage: str
    at: float
    duration: float = 0.4
    outcome: str = Outcome.OK
    attempt: int = 1
    category: str = ""
    code: str = ""
    http: int = 0
    object_id: str = ""
    idempotency_key: str = ""
    amount: str = ""


@dataclass(frozen=True)
class Tx:
    """A transaction: its correlation id, legal entity and steps."""

    correlation_id: str
    entity: str
    process: str
    steps: tuple[Step, ...]
    attributes: dict[str, str] = field(default_factory=dict)


def _q2c(cid: str, entity: str, start: float, post: Step | None, *extra: Step) -> Tx:
    steps = [
        Step(Stage.CRM_ORDER_APPROVE, start, object_id=f"opp-{cid}"),
        Step(Stage.BILLING_CUSTOMER_UPSERT, start - 5, object_id=f"cus-{cid}", idempotency_key=f"k-{cid}"),
        Step(Stage.BILLING_INVOICE_CREATE, start - 10, object_id=f"in-{cid}", amount="1200.50"),
        Step(Stage.ERP_CUSTOMER_UPSERT, start - 12, object_id=f"C-{cid}"),
    ]
    if post is not None:
        steps.append(post)
    return Tx(cid, entity, sc.Process.QUOTE_TO_CASH, (*steps, *extra))


def transactions() -> list[Tx]:
    """The workload (see the module docstring)."""
    return [
        _q2c("q2c-ok-1", "US01", 3600, Step(Stage.ERP_INVOICE_POST, 3600 - 10 - 120, object_id="INV-1")),
        _q2c("q2c-ok-2", "DE01", 7200, Step(Stage.ERP_INVOICE_POST, 7200 - 10 - 3000, object_id="INV-2")),
        _q2c(
            "q2c-stuck",
            "US01",
            1800,
            Step(
                Stage.ERP_INVOICE_POST,
                1800 - 20,
                outcome=Outcome.FAILED,
                category=FailureCategory.MASTER_DATA,
                code="MISSING_COST_CENTER",
                http=400,
            ),
        ),
        _q2c(
            "q2c-retry",
            "US01",
            900,
            Step(
                Stage.ERP_INVOICE_POST,
                900 - 20,
                outcome=Outcome.RETRYING,
                category=FailureCategory.TRANSIENT,
                http=503,
            ),
            Step(Stage.ERP_INVOICE_POST, 900 - 80, attempt=2, object_id="INV-3"),
        ),
        Tx(
            "pay-1",
            "US01",
            sc.Process.PAYMENT_UPDATE,
            (
                Step(Stage.BILLING_PAYMENT_SUCCEED, 600, object_id="py-1", amount="99.00"),
                Step(Stage.ERP_PAYMENT_APPLY, 570, object_id="PAY-1", amount="99.00"),
            ),
        ),
        Tx(
            "cust-dup",
            "DE01",
            sc.Process.CUSTOMER_SYNC,
            (
                Step(Stage.BILLING_CUSTOMER_UPSERT, 300, object_id="cus-a", idempotency_key="k-dup"),
                Step(
                    Stage.BILLING_CUSTOMER_UPSERT, 290, object_id="cus-b", idempotency_key="k-dup", attempt=2
                ),
            ),
        ),
    ]


def span_count() -> int:
    """How many spans :func:`spans` makes."""
    return sum(len(tx.steps) for tx in transactions())


def _ns(now: float, seconds_before: float) -> int:
    return int((now - seconds_before) * 1e9)


def spans(now: float) -> list[ReadableSpan]:
    """Every step as a finished SDK span, one trace per transaction, one provider per system."""
    exporter = InMemorySpanExporter()
    providers: dict[str, TracerProvider] = {}
    for system, vendor in VENDORS.items():
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"{vendor}-adapter", "deployment.environment": "test"})
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[system] = provider
    from opentelemetry import trace

    for tx in transactions():
        parent_context = None
        for step in tx.steps:
            system = step.stage.split(".")[0]
            tracer = providers[system].get_tracer("tests.deploy")
            attributes: dict[str, str | int] = {
                sc.BIZ_CORRELATION_ID: tx.correlation_id,
                sc.BIZ_PROCESS: tx.process,
                sc.BIZ_STAGE: step.stage,
                sc.BIZ_SYSTEM: system,
                sc.BIZ_SYSTEM_VENDOR: VENDORS[system],
                sc.BIZ_LEGAL_ENTITY: tx.entity,
                sc.BIZ_OUTCOME: step.outcome,
                sc.BIZ_ATTEMPT: step.attempt,
            }
            optional = {
                sc.BIZ_OBJECT_ID: step.object_id,
                sc.BIZ_IDEMPOTENCY_KEY: step.idempotency_key,
                sc.BIZ_AMOUNT: step.amount,
                sc.BIZ_CURRENCY: "USD" if step.amount else "",
                sc.BIZ_ERROR_CATEGORY: step.category,
                sc.BIZ_ERROR_CODE: step.code,
            }
            attributes.update({k: v for k, v in optional.items() if v})
            if step.http:
                attributes["http.response.status_code"] = step.http
            span = tracer.start_span(
                step.stage,
                context=parent_context,
                kind=SpanKind.CLIENT if system != "middleware" else SpanKind.INTERNAL,
                attributes=attributes,
                start_time=_ns(now, step.at),
            )
            if step.outcome != Outcome.OK and step.outcome != Outcome.RETRYING:
                span.set_status(Status(StatusCode.ERROR, step.code or step.category))
            span.add_event(sc.EVENT_PAYLOAD, {"biz.payload.kind": "request", "biz.payload.body": "{}"})
            span.end(end_time=_ns(now, step.at - step.duration))
            if parent_context is None:
                parent_context = trace.set_span_in_context(span)
    for provider in providers.values():
        provider.shutdown()
    return sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)


def traces_body(now: float) -> bytes:
    """The OTLP/protobuf ``/v1/traces`` body of the workload."""
    return bytes(encode_spans(spans(now)).SerializeToString())


def _points(now: float) -> Iterator[tuple[str, str, dict[str, str], float, float]]:
    """(metric, kind, attributes, seconds before now, value)."""
    for minutes in range(0, 60, 5):
        yield METRIC_QUEUE_DEPTH, "gauge", {}, minutes * 60.0, float(minutes % 7)
        yield METRIC_DLQ_SIZE, "gauge", {}, minutes * 60.0, 1.0 if minutes < 30 else 0.0
        for system in ("billing", "erp"):
            yield (
                METRIC_BREAKER_STATE,
                "gauge",
                {sc.BIZ_SYSTEM: system},
                minutes * 60.0,
                2.0 if system == "erp" and minutes == 15 else 0.0,
            )
            yield METRIC_RETRIES, "sum", {sc.BIZ_SYSTEM: system}, minutes * 60.0, float(60 - minutes)


def metrics_body(now: float) -> bytes:
    """The OTLP/JSON ``/v1/metrics`` body: the sync engine's gauges and counters."""
    start = _ns(now, 3600)
    by_metric: dict[tuple[str, str], list[dict[str, object]]] = {}
    for name, kind, attrs, before, value in _points(now):
        by_metric.setdefault((name, kind), []).append(
            {
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
                "startTimeUnixNano": str(start),
                "timeUnixNano": str(_ns(now, before)),
                "asDouble": value,
            }
        )
    metrics: list[dict[str, object]] = []
    for (name, kind), points in by_metric.items():
        if kind == "gauge":
            metrics.append({"name": name, "gauge": {"dataPoints": points}})
        else:
            metrics.append(
                {
                    "name": name,
                    "sum": {"dataPoints": points, "aggregationTemporality": 2, "isMonotonic": True},
                }
            )
    request = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "sync-engine"}}]
                },
                "scopeMetrics": [{"scope": {"name": "sync_engine"}, "metrics": metrics}],
            }
        ]
    }
    return json.dumps(request).encode()


def metric_point_count() -> int:
    """How many data points :func:`metrics_body` carries."""
    return sum(1 for _ in _points(time.time()))


def send(endpoint: str, now: float, token: str = "") -> None:
    """POST the workload's spans and metrics to a collector at ``endpoint``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    traces = httpx.post(
        f"{endpoint}/v1/traces",
        content=traces_body(now),
        headers={**headers, "Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    traces.raise_for_status()
    metrics = httpx.post(
        f"{endpoint}/v1/metrics",
        content=metrics_body(now),
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )
    metrics.raise_for_status()
