"""A small, realistic quote-to-cash workload with known answers, sent as real OTLP.

Every transaction is spelled out below with its timing, so the tests can say
exactly what each page must show (invoice-posting latencies, failures by
category, the duplicate, the stuck invoice, …). Spans go through the
OpenTelemetry SDK's OTLP/HTTP exporter to a running collector, one tracer
provider per system (each with its own ``service.name``), like real adapters.
Sync-engine metrics are posted as OTLP/JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector.store import Store
from tracer import semconv as sc
from tracer.semconv import FailureCategory as Cat
from tracer.semconv import Outcome, PayloadKind, Process, Stage

HOSTILE = "<script>alert('x')</script>'; DROP TABLE revtrace_spans; --"
"""A string that must come out of every page, export and query harmless."""

VENDORS = {"crm": "salesforce", "billing": "stripe", "erp": "netsuite", "middleware": "mulesoft"}
ERP_VENDOR_BY_ENTITY = {"US01": "netsuite", "DE01": "sap"}


@dataclass(frozen=True)
class SpanSpec:
    """One business span, timed in seconds before the workload's ``now``."""

    stage: str
    at: float
    duration: float = 0.5
    outcome: str = Outcome.OK
    attempt: int = 1
    category: str = ""
    code: str = ""
    http: int = 0
    object_id: str = ""
    refs: tuple[str, ...] = ()
    amount: str = ""
    idempotency_key: str = ""
    payloads: tuple[tuple[str, Any], ...] = ()
    transforms: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Tx:
    """One business transaction."""

    correlation_id: str
    process: str
    entity: str
    spans: Sequence[SpanSpec] = field(default_factory=tuple)


def _q2c(
    cid: str, n: str, entity: str, start: float, posting: float | None, amount: str = "1200.00"
) -> list[SpanSpec]:
    """A new sale: CRM approve → validate → billing customer, subscription, invoice → ERP.

    ``posting`` is the seconds from the invoice (ending ok) to its ERP posting
    (ending ok); ``None`` leaves the posting out (the invoice is stuck).
    """
    inv = f"in_{cid}"
    specs = [
        SpanSpec(Stage.CRM_ORDER_APPROVE, start, 0.3, object_id=f"006{n}", amount=amount),
        SpanSpec(Stage.MIDDLEWARE_ORDER_VALIDATE, start - 1, 0.1),
        SpanSpec(
            Stage.BILLING_CUSTOMER_UPSERT,
            start - 2,
            0.4,
            object_id=f"cus_{cid}",
            idempotency_key=f"{cid}-cust",
            refs=(f"crm:account/001{n}",),
        ),
        SpanSpec(Stage.BILLING_SUBSCRIPTION_CREATE, start - 3, 0.4, object_id=f"sub_{cid}"),
        SpanSpec(
            Stage.BILLING_INVOICE_CREATE,
            start - 4,
            1.0,
            object_id=inv,
            amount=amount,
            idempotency_key=f"{cid}-inv",
            refs=(f"crm:opportunity/006{n}",),
        ),
        SpanSpec(
            Stage.ERP_CUSTOMER_UPSERT,
            start - 6,
            0.5,
            object_id=f"C-{cid}",
            refs=(f"billing:customer/cus_{cid}",),
        ),
    ]
    if posting is not None:
        # The invoice span ends at start - 4 + 1.0 (seconds before now go down).
        invoice_end = start - 4 - 1.0
        specs.append(
            SpanSpec(
                Stage.ERP_INVOICE_POST,
                invoice_end - posting + 0.5,
                0.5,
                object_id=f"INV-{cid}",
                amount=amount,
                idempotency_key=f"{cid}-post",
                refs=(f"billing:invoice/{inv}",),
            )
        )
    return specs


def transactions() -> list[Tx]:
    """The workload. Times are seconds before now."""
    txs: list[Tx] = []
    postings = [60, 120, 180, 240, 300, 1200]
    for i, posting in enumerate(postings):
        entity = "US01" if i % 2 == 0 else "DE01"
        txs.append(
            Tx(
                f"q2c-ok-{i}",
                Process.QUOTE_TO_CASH,
                entity,
                _q2c(f"q2c-ok-{i}", str(i), entity, 9000 - i * 600, posting),
            )
        )
    # Payload snapshots and transformations on the first transaction's invoice.
    first = txs[0]
    source = {"Opportunity": {"Id": "0060", "Amount": 1200.0, "Name": HOSTILE, "Email": "[redacted]"}}
    canonical = {
        "invoice": {"amount": "1200.00", "currency": "EUR", "customer": "cus_q2c-ok-0", "memo": HOSTILE}
    }
    target = {"amount": 120000, "currency": "eur", "customer": "cus_q2c-ok-0", "description": HOSTILE}
    response = {"id": "in_q2c-ok-0", "status": "open", "amount_due": 120000}
    spans = list(first.spans)
    inv_index = next(i for i, s in enumerate(spans) if s.stage == Stage.BILLING_INVOICE_CREATE)
    inv = spans[inv_index]
    spans[inv_index] = SpanSpec(
        inv.stage,
        inv.at,
        inv.duration,
        object_id=inv.object_id,
        amount=inv.amount,
        idempotency_key=inv.idempotency_key,
        refs=inv.refs,
        payloads=(
            (PayloadKind.SOURCE, source),
            (PayloadKind.CANONICAL, canonical),
            (PayloadKind.TARGET_REQUEST, target),
            (PayloadKind.TARGET_RESPONSE, response),
        ),
        transforms=(
            (PayloadKind.SOURCE, PayloadKind.CANONICAL, "crm-to-canonical@3"),
            (PayloadKind.CANONICAL, PayloadKind.TARGET_REQUEST, "canonical-to-stripe@7"),
        ),
    )
    txs[0] = Tx(first.correlation_id, first.process, first.entity, spans)

    # Invoice created two hours ago, never posted to ERP: stuck between billing and ERP.
    txs.append(
        Tx("q2c-stuck-1", Process.QUOTE_TO_CASH, "DE01", _q2c("q2c-stuck-1", "71", "DE01", 7300, None))
    )
    # ERP refuses the posting: the cost center is missing for DE01 (master data).
    md = _q2c("q2c-md-1", "72", "DE01", 5500, None)
    md.append(
        SpanSpec(
            Stage.ERP_INVOICE_POST,
            5400,
            0.4,
            outcome=Outcome.FAILED,
            category=Cat.MASTER_DATA,
            code="INVALID_COST_CENTER",
            http=400,
            object_id="",
            idempotency_key="q2c-md-1-post",
        )
    )
    txs.append(Tx("q2c-md-1", Process.QUOTE_TO_CASH, "DE01", md))
    # Rate limited once, then posted 400 s after the invoice.
    rl = _q2c("q2c-rl-1", "73", "US01", 4000, 400)
    post = rl[-1]
    rl.insert(
        -1,
        SpanSpec(
            Stage.ERP_INVOICE_POST,
            post.at + 200,
            0.2,
            outcome=Outcome.RETRYING,
            attempt=1,
            category=Cat.RATE_LIMITED,
            code="429",
            http=429,
            idempotency_key="q2c-rl-1-post",
        ),
    )
    rl[-1] = SpanSpec(
        post.stage,
        post.at,
        post.duration,
        attempt=2,
        object_id=post.object_id,
        amount=post.amount,
        idempotency_key=post.idempotency_key,
        refs=post.refs,
    )
    txs.append(Tx("q2c-rl-1", Process.QUOTE_TO_CASH, "US01", rl))
    # A retry created a second customer in billing (same idempotency key, two ids).
    dup = _q2c("q2c-dup-1", "74", "US01", 3000, 90)
    dup.insert(
        3,
        SpanSpec(
            Stage.BILLING_CUSTOMER_UPSERT,
            2997.5,
            0.4,
            attempt=2,
            object_id="cus_q2c-dup-1-second",
            idempotency_key="q2c-dup-1-cust",
        ),
    )
    txs.append(Tx("q2c-dup-1", Process.QUOTE_TO_CASH, "US01", dup))
    # Payments: billing → ERP (30 s and 90 s) → CRM.
    for i, lag in enumerate((30, 90)):
        cid = f"pay-ok-{i}"
        start = 2500 - i * 300
        txs.append(
            Tx(
                cid,
                Process.PAYMENT_UPDATE,
                "US01",
                [
                    SpanSpec(
                        Stage.BILLING_PAYMENT_SUCCEED,
                        start,
                        0.5,
                        object_id=f"py_{cid}",
                        amount="1200.00",
                        refs=("billing:invoice/in_q2c-ok-0",),
                    ),
                    SpanSpec(
                        Stage.ERP_PAYMENT_APPLY,
                        start - 0.5 - lag + 0.5,
                        0.5,
                        object_id=f"PAY-{cid}",
                        amount="1200.00",
                        refs=(f"billing:payment/py_{cid}",),
                    ),
                    SpanSpec(Stage.CRM_ACCOUNT_UPDATE, start - lag - 5, 0.3, object_id="0010"),
                ],
            )
        )
    # Customer sync: billing accepts, ERP rejects the mapping (an unknown field).
    txs.append(
        Tx(
            "cust-map-1",
            Process.CUSTOMER_SYNC,
            "DE01",
            [
                SpanSpec(Stage.BILLING_CUSTOMER_UPSERT, 1800, 0.3, object_id="cus_map1"),
                SpanSpec(
                    Stage.ERP_CUSTOMER_UPSERT,
                    1790,
                    0.3,
                    outcome=Outcome.FAILED,
                    category=Cat.MAPPING,
                    code="INVALID_FIELD",
                    http=422,
                    object_id="",
                ),
            ],
        )
    )
    return txs


# --- expected answers (derived by hand from the workload above) -----------------------------

INVOICE_POSTINGS = sorted([60, 120, 180, 240, 300, 1200, 400, 90])
"""Completed invoice postings, seconds: six clean sales, the rate-limited one, the duplicate."""
INVOICE_WAITING_PAST_SLA = {"q2c-stuck-1", "q2c-md-1"}
PAYMENT_PROPAGATIONS = [30, 90]
CUSTOMER_UPSERTS_OK = 6 * 2 + 2 + 2 + 2 + 2 + 1
"""Final ok customer upserts: (billing, ERP) for the 6 sales, stuck, md, rl, dup; billing of cust-map-1."""
CUSTOMER_UPSERTS_FAILED = 1
TRANSACTIONS = 13
DUPLICATED = {"q2c-dup-1"}
FAILED = {"q2c-md-1": Cat.MASTER_DATA, "cust-map-1": Cat.MAPPING}
SPANS = sum(len(t.spans) for t in transactions())


# --- sending -----------------------------------------------------------------------------------


def _ns(now: float, seconds_before: float) -> int:
    return int((now - seconds_before) * 1e9)


def send(endpoint: str, now: float | None = None, txs: Sequence[Tx] | None = None) -> int:
    """Send the workload's spans as OTLP/HTTP to ``endpoint`` (the collector's base URL).

    Returns how many spans were sent.
    """
    now = time.time() if now is None else now
    txs = list(transactions() if txs is None else txs)
    providers: dict[str, TracerProvider] = {}

    def tracer_for(system: str) -> trace.Tracer:
        if system not in providers:
            provider = TracerProvider(resource=Resource.create({"service.name": f"{system}-adapter"}))
            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10))
            )
            providers[system] = provider
        return providers[system].get_tracer("tests.dashboard.workload")

    sent = 0
    for tx in txs:
        root_ctx = None
        for spec in tx.spans:
            system = spec.stage.split(".")[0]
            vendor = ERP_VENDOR_BY_ENTITY[tx.entity] if system == "erp" else VENDORS.get(system, "")
            attrs: dict[str, Any] = {
                sc.BIZ_CORRELATION_ID: tx.correlation_id,
                sc.BIZ_PROCESS: str(tx.process),
                sc.BIZ_STAGE: str(spec.stage),
                sc.BIZ_SYSTEM: system,
                sc.BIZ_SYSTEM_VENDOR: vendor,
                sc.BIZ_LEGAL_ENTITY: tx.entity,
                sc.BIZ_OUTCOME: str(spec.outcome),
                sc.BIZ_ATTEMPT: spec.attempt,
            }
            if spec.object_id:
                attrs[sc.BIZ_OBJECT_ID] = spec.object_id
            if spec.refs:
                attrs[sc.BIZ_OBJECT_REFS] = list(spec.refs)
            if spec.amount:
                attrs[sc.BIZ_AMOUNT] = spec.amount
                attrs[sc.BIZ_CURRENCY] = "EUR"
            if spec.idempotency_key:
                attrs[sc.BIZ_IDEMPOTENCY_KEY] = spec.idempotency_key
            if spec.category:
                attrs[sc.BIZ_ERROR_CATEGORY] = str(spec.category)
            if spec.code:
                attrs[sc.BIZ_ERROR_CODE] = spec.code
            if spec.http:
                attrs["http.response.status_code"] = spec.http
            start = _ns(now, spec.at)
            span = tracer_for(system).start_span(
                str(spec.stage), context=root_ctx, kind=SpanKind.CLIENT, start_time=start, attributes=attrs
            )
            for i, (kind, body) in enumerate(spec.payloads):
                span.add_event(
                    sc.EVENT_PAYLOAD,
                    {
                        sc.PAYLOAD_KIND: str(kind),
                        sc.PAYLOAD_SYSTEM: system,
                        sc.PAYLOAD_BODY: json.dumps(body),
                        sc.PAYLOAD_TRUNCATED: False,
                        sc.PAYLOAD_REDACTED_FIELDS: ["Opportunity.Email"]
                        if kind == PayloadKind.SOURCE
                        else [],
                    },
                    timestamp=start + (i + 1) * 1000,
                )
            for i, (src, dst, mapping) in enumerate(spec.transforms):
                span.add_event(
                    sc.EVENT_TRANSFORM,
                    {sc.TRANSFORM_FROM: str(src), sc.TRANSFORM_TO: str(dst), sc.TRANSFORM_MAPPING: mapping},
                    timestamp=start + (i + 1) * 1500,
                )
            if spec.outcome in (Outcome.FAILED, Outcome.DEAD_LETTERED):
                span.set_status(Status(StatusCode.ERROR, spec.code))
            span.end(end_time=start + int(spec.duration * 1e9))
            if root_ctx is None:
                root_ctx = trace.set_span_in_context(span)
            sent += 1
    for provider in providers.values():
        provider.force_flush(10_000)
        provider.shutdown()
    return sent


BREAKERS = {"crm": 0, "billing": 0, "erp": 2}
"""The circuit breakers' current states: ERP's is open."""
DLQ_SIZE = 3
QUEUE_DEPTH = 17
RETRIES = 5


def _point(value: float, at_ns: int, start_ns: int, attrs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "startTimeUnixNano": str(start_ns),
        "timeUnixNano": str(at_ns),
        "asDouble": float(value),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in (attrs or {}).items()],
    }


def metrics_request(now: float) -> dict[str, Any]:
    """Sync-engine health metrics as an OTLP/JSON export request.

    Gauges observed ten and one minutes ago (the DLQ grows 1 → 3, ERP's breaker
    opens); counters cumulative since an hour ago (retries 2 → 5, transactions
    10 → 15, rate-limit waits 1).
    """
    start = _ns(now, 3600)
    t1, t2 = _ns(now, 600), _ns(now, 60)

    def gauge(name: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "gauge": {"dataPoints": points}}

    def counter(name: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": points}}

    erp = {sc.BIZ_SYSTEM: "erp"}
    metrics = [
        gauge("syncengine.queue.depth", [_point(5, t1, start), _point(QUEUE_DEPTH, t2, start)]),
        gauge("syncengine.inflight", [_point(2, t1, start), _point(4, t2, start)]),
        gauge("syncengine.dlq.size", [_point(1, t1, start), _point(DLQ_SIZE, t2, start)]),
        gauge(
            "syncengine.breaker.state",
            [_point(0, t1, start, {sc.BIZ_SYSTEM: system}) for system in BREAKERS]
            + [_point(state, t2, start, {sc.BIZ_SYSTEM: system}) for system, state in BREAKERS.items()],
        ),
        counter("syncengine.retries", [_point(2, t1, start, erp), _point(RETRIES, t2, start, erp)]),
        counter("syncengine.transactions", [_point(10, t1, start, erp), _point(15, t2, start, erp)]),
        counter("syncengine.ratelimit.waits", [_point(1, t1, start, erp), _point(1, t2, start, erp)]),
    ]
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "sync-engine"}}]
                },
                "scopeMetrics": [{"scope": {"name": "tests.dashboard.workload"}, "metrics": metrics}],
            }
        ]
    }


def send_metrics(endpoint: str, now: float) -> None:
    """POST the sync-engine metrics as OTLP/JSON to the collector.

    (Hand-built rather than through the SDK's gauges: those carry no start time,
    which the collector currently cannot store.)
    """
    response = httpx.post(f"{endpoint}/v1/metrics", json=metrics_request(now), timeout=10)
    response.raise_for_status()


def wait_for(store: Store, spans: int, timeout: float = 30.0) -> None:
    """Block until ``spans`` business spans and both metric exports are in the store."""
    deadline = time.monotonic() + timeout
    while True:
        have = int(store.query("SELECT count() FROM revtrace_spans").scalar() or 0)
        if have >= spans:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {have} of {spans} spans reached the store")
        time.sleep(0.1)


def utc(seconds_before: float, now: float) -> dt.datetime:
    """A naive UTC datetime ``seconds_before`` the workload's ``now``."""
    return dt.datetime.fromtimestamp(now - seconds_before, dt.UTC).replace(tzinfo=None)
