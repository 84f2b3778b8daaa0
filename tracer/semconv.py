"""The revtrace business vocabulary: every ``biz.*`` attribute, stage, system,
outcome and failure category, named once; with them the reference sync
engine's metric names and the status values of the evaluator's tables, which
the dashboard reads (it never imports the evaluator).

No OpenTelemetry semantic convention exists for a business transaction that
crosses CRM, billing and ERP, so revtrace defines its own here. The collector's
SQL, the SLA rules, the dashboard and the reference sync engine all import
these names; nothing else spells the strings. ``docs/conventions.md`` documents
them for people who instrument without this library.

Stage names follow ``<system>.<object>.<action>`` (``billing.invoice.create``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = [
    "ATTRIBUTE_KEYS",
    "BAGGAGE_CORRELATION_ID",
    "BAGGAGE_PROCESS",
    "BIZ_AMOUNT",
    "BIZ_ATTEMPT",
    "BIZ_CORRELATION_ID",
    "BIZ_CORRELATION_SOURCE",
    "BIZ_CURRENCY",
    "BIZ_ERROR_CATEGORY",
    "BIZ_ERROR_CODE",
    "BIZ_ERROR_EVIDENCE",
    "BIZ_ERROR_RETRYABLE",
    "BIZ_ERROR_RETRY_AFTER",
    "BIZ_EVENT_ID",
    "BIZ_EVENT_OCCURRED_AT",
    "BIZ_EVENT_SEQUENCE",
    "BIZ_IDEMPOTENCY_KEY",
    "BIZ_LEGAL_ENTITY",
    "BIZ_LINK_HOP",
    "BIZ_OBJECT_ID",
    "BIZ_OBJECT_REFS",
    "BIZ_OBJECT_TYPE",
    "BIZ_OUTCOME",
    "BIZ_PROCESS",
    "BIZ_RECON_AMOUNT",
    "BIZ_RECON_COUNT",
    "BIZ_RECON_PERIOD",
    "BIZ_RECON_STATUSES",
    "BIZ_REGION",
    "BIZ_STAGE",
    "BIZ_SYSTEM",
    "BIZ_SYSTEM_VENDOR",
    "CANONICAL_STAGES",
    "DETAIL_ATTRIBUTE_KEYS",
    "EVENT_PAYLOAD",
    "EVENT_TRANSFORM",
    "METRIC_QUEUE_CAPACITY",
    "METRIC_QUEUE_SIZE",
    "METRIC_SPANS_DROPPED",
    "METRIC_SPANS_EXPORTED",
    "METRIC_SYNCENGINE_BREAKER_STATE",
    "METRIC_SYNCENGINE_DLQ_SIZE",
    "METRIC_SYNCENGINE_INFLIGHT",
    "METRIC_SYNCENGINE_PARKED",
    "METRIC_SYNCENGINE_QUEUE_DEPTH",
    "METRIC_SYNCENGINE_RATELIMIT_WAITS",
    "METRIC_SYNCENGINE_RETRIES",
    "METRIC_SYNCENGINE_TRANSACTIONS",
    "PAYLOAD_BODY",
    "PAYLOAD_HASH",
    "PAYLOAD_KIND",
    "PAYLOAD_REDACTED_FIELDS",
    "PAYLOAD_SIZE",
    "PAYLOAD_SYSTEM",
    "PAYLOAD_TRUNCATED",
    "RECONCILIATION_STAGES",
    "STAGE_PATTERN",
    "TRANSFORM_FROM",
    "TRANSFORM_MAPPING",
    "TRANSFORM_TO",
    "WEBHOOK_METADATA_CORRELATION_ID",
    "WEBHOOK_METADATA_PROCESS",
    "WEBHOOK_METADATA_TRACEPARENT",
    "WEBHOOK_METADATA_TRACESTATE",
    "AlertStatus",
    "CorrelationSource",
    "DropReason",
    "FailureCategory",
    "Hop",
    "ObjectType",
    "Outcome",
    "PayloadKind",
    "Process",
    "ReconStatus",
    "Stage",
    "System",
    "TransactionStatus",
    "format_object_ref",
    "parse_object_ref",
    "parse_stage",
]

# --- span attributes --------------------------------------------------------

BIZ_CORRELATION_ID: Final = "biz.correlation_id"
"""The business transaction, the same across every system, hop and retry."""
BIZ_PROCESS: Final = "biz.process"
"""The business process (:class:`Process`), e.g. ``quote_to_cash``."""
BIZ_STAGE: Final = "biz.stage"
"""One step of the process, ``<system>.<object>.<action>`` (:class:`Stage`)."""
BIZ_SYSTEM: Final = "biz.system"
"""The kind of system the step ran in (:class:`System`)."""
BIZ_SYSTEM_VENDOR: Final = "biz.system.vendor"
"""The product behind the system: ``salesforce``, ``stripe``, ``netsuite``, …"""
BIZ_OBJECT_TYPE: Final = "biz.object.type"
"""The canonical business object the step acts on (:class:`ObjectType`)."""
BIZ_OBJECT_ID: Final = "biz.object.id"
"""The object's id in the system of this step."""
BIZ_OBJECT_REFS: Final = "biz.object.refs"
"""Ids of the same object in other systems, as a string array of
``<system>:<type>/<id>`` (``crm:opportunity/006Dn00000A1b2C``)."""
BIZ_LEGAL_ENTITY: Final = "biz.legal_entity"
"""The legal entity (subsidiary, company code) the transaction books into."""
BIZ_REGION: Final = "biz.region"
"""A sales or booking region, a grouping dimension for SLAs."""
BIZ_AMOUNT: Final = "biz.amount"
"""The monetary amount in currency units (a decimal, not minor units)."""
BIZ_CURRENCY: Final = "biz.currency"
"""ISO 4217 currency code."""
BIZ_IDEMPOTENCY_KEY: Final = "biz.idempotency_key"
"""The key that makes the business effect of this step happen at most once."""
BIZ_ATTEMPT: Final = "biz.attempt"
"""1 for the first try of a step, 2 for the first retry, …"""
BIZ_EVENT_ID: Final = "biz.event.id"
"""The id of the event (webhook, CDC message) the step handles."""
BIZ_EVENT_SEQUENCE: Final = "biz.event.sequence"
"""The event's position in its object's history (for ordering checks)."""
BIZ_EVENT_OCCURRED_AT: Final = "biz.event.occurred_at"
"""When the event happened at its source, RFC 3339."""
BIZ_OUTCOME: Final = "biz.outcome"
"""How the step ended (:class:`Outcome`)."""
BIZ_ERROR_CATEGORY: Final = "biz.error.category"
"""The failure category (:class:`FailureCategory`) when the step failed."""
BIZ_ERROR_CODE: Final = "biz.error.code"
"""The failing system's own error code (``resource_missing``, ``INVALID_KEY_OR_REF``)."""

BIZ_RECON_PERIOD: Final = "biz.recon.period"
"""Reconciliation snapshot: the period it covers (``2026-12`` or ``2026-12-03``)."""
BIZ_RECON_COUNT: Final = "biz.recon.count"
"""Reconciliation snapshot: how many objects of the type the system holds for the period."""
BIZ_RECON_AMOUNT: Final = "biz.recon.amount"
"""Reconciliation snapshot: their total amount in currency units."""
BIZ_RECON_STATUSES: Final = "biz.recon.statuses"
"""Reconciliation snapshot: counts per status, JSON object text (``{"paid": 3, "open": 2}``)."""

ATTRIBUTE_KEYS: Final = (
    BIZ_CORRELATION_ID,
    BIZ_PROCESS,
    BIZ_STAGE,
    BIZ_SYSTEM,
    BIZ_SYSTEM_VENDOR,
    BIZ_OBJECT_TYPE,
    BIZ_OBJECT_ID,
    BIZ_OBJECT_REFS,
    BIZ_LEGAL_ENTITY,
    BIZ_REGION,
    BIZ_AMOUNT,
    BIZ_CURRENCY,
    BIZ_IDEMPOTENCY_KEY,
    BIZ_ATTEMPT,
    BIZ_EVENT_ID,
    BIZ_EVENT_SEQUENCE,
    BIZ_EVENT_OCCURRED_AT,
    BIZ_OUTCOME,
    BIZ_ERROR_CATEGORY,
    BIZ_ERROR_CODE,
    BIZ_RECON_PERIOD,
    BIZ_RECON_COUNT,
    BIZ_RECON_AMOUNT,
    BIZ_RECON_STATUSES,
)
"""Every core ``biz.*`` span attribute key: the business dimensions of a step.
The error details and link attributes below (:data:`DETAIL_ATTRIBUTE_KEYS`) are
not in this tuple."""

# Details the tracer adds beside the core attributes. They are optional: hand
# instrumentation may leave them out and everything downstream still works.
BIZ_ERROR_RETRYABLE: Final = "biz.error.retryable"
"""Whether the failure is expected to go away on retry (bool)."""
BIZ_ERROR_RETRY_AFTER: Final = "biz.error.retry_after"
"""Seconds the failing system asked us to wait (``Retry-After``), a float."""
BIZ_ERROR_EVIDENCE: Final = "biz.error.evidence"
"""What decided the failure category, e.g. ``http 429 + Retry-After``,
``stripe code resource_missing``. Never contains payload data."""
BIZ_CORRELATION_SOURCE: Final = "biz.correlation.source"
"""Where the step's correlation id came from (:class:`CorrelationSource`)."""
BIZ_LINK_HOP: Final = "biz.link.hop"
"""On a span link: the kind of asynchronous hop it crosses (:class:`Hop`)."""

DETAIL_ATTRIBUTE_KEYS: Final = (
    BIZ_ERROR_RETRYABLE,
    BIZ_ERROR_RETRY_AFTER,
    BIZ_ERROR_EVIDENCE,
    BIZ_CORRELATION_SOURCE,
)
"""The optional ``biz.*`` span attributes beside :data:`ATTRIBUTE_KEYS`."""

# --- baggage ------------------------------------------------------------------

BAGGAGE_CORRELATION_ID: Final = BIZ_CORRELATION_ID
"""W3C Baggage member carrying the correlation id across hops."""
BAGGAGE_PROCESS: Final = BIZ_PROCESS
"""W3C Baggage member carrying the process across hops."""

# --- span events: payload snapshots and transformations -----------------------

EVENT_PAYLOAD: Final = "biz.payload"
"""Span event holding one redacted payload snapshot."""
PAYLOAD_KIND: Final = "biz.payload.kind"
"""Which payload this is (:class:`PayloadKind`)."""
PAYLOAD_SYSTEM: Final = "biz.payload.system"
"""The system the payload came from or went to."""
PAYLOAD_BODY: Final = "biz.payload.body"
"""The redacted payload, JSON text."""
PAYLOAD_TRUNCATED: Final = "biz.payload.truncated"
"""True when the body was cut at the size cap."""
PAYLOAD_REDACTED_FIELDS: Final = "biz.payload.redacted_fields"
"""Paths of the fields that were redacted (string array)."""
PAYLOAD_HASH: Final = "biz.payload.hash"
"""HMAC-SHA256 (hex) of the unredacted payload, for joinability (optional; only
when a key is configured, never a bare hash, which a dictionary could reverse)."""
PAYLOAD_SIZE: Final = "biz.payload.size"
"""Size in bytes of the redacted body before truncation (int)."""

EVENT_TRANSFORM: Final = "biz.transform"
"""Span event recording one mapping step, source → canonical → target."""
TRANSFORM_FROM: Final = "biz.transform.from"
"""The payload kind transformed from."""
TRANSFORM_TO: Final = "biz.transform.to"
"""The payload kind transformed to."""
TRANSFORM_MAPPING: Final = "biz.transform.mapping"
"""The name (and version) of the mapping that was applied."""

# --- carriers: where the context travels when W3C headers cannot --------------

WEBHOOK_METADATA_TRACEPARENT: Final = "revtrace_traceparent"
"""Metadata key (e.g. Stripe ``metadata``) holding the W3C ``traceparent``.
Underscored, short and ASCII so vendors' metadata rules accept it."""
WEBHOOK_METADATA_TRACESTATE: Final = "revtrace_tracestate"
"""Metadata key holding the W3C ``tracestate`` (only when non-empty)."""
WEBHOOK_METADATA_CORRELATION_ID: Final = "revtrace_correlation_id"
"""Metadata key holding the correlation id."""
WEBHOOK_METADATA_PROCESS: Final = "revtrace_process"
"""Metadata key holding the process."""

# --- the tracer's own health metrics -------------------------------------------

METRIC_SPANS_DROPPED: Final = "revtrace.tracer.spans.dropped"
"""Counter: spans that never reached the exporter's destination, by
``error.type`` (:class:`DropReason`)."""
METRIC_SPANS_EXPORTED: Final = "revtrace.tracer.spans.exported"
"""Counter: spans the exporter reported as delivered."""
METRIC_QUEUE_SIZE: Final = "revtrace.tracer.queue.size"
"""Gauge: spans waiting in the batch queue."""
METRIC_QUEUE_CAPACITY: Final = "revtrace.tracer.queue.capacity"
"""Gauge: the batch queue's capacity (``OTEL_BSP_MAX_QUEUE_SIZE``)."""

# --- the reference sync engine's health metrics ----------------------------------
# Written by ``sync_engine`` (OpenTelemetry metrics, service ``revtrace-sync-engine``),
# read by the dashboard's Sync engine view and the Grafana board.

METRIC_SYNCENGINE_QUEUE_DEPTH: Final = "syncengine.queue.depth"
"""Gauge: events waiting to be processed plus transactions in the retry queue."""
METRIC_SYNCENGINE_INFLIGHT: Final = "syncengine.inflight"
"""Gauge: transactions started and not finished (running, waiting, queued or parked)."""
METRIC_SYNCENGINE_DLQ_SIZE: Final = "syncengine.dlq.size"
"""Gauge: dead letters not replayed yet."""
METRIC_SYNCENGINE_PARKED: Final = "syncengine.parked"
"""Gauge: events parked until an earlier one arrives."""
METRIC_SYNCENGINE_BREAKER_STATE: Final = "syncengine.breaker.state"
"""Gauge per :data:`BIZ_SYSTEM`: the circuit breaker, 0 closed, 1 half-open, 2 open."""
METRIC_SYNCENGINE_RETRIES: Final = "syncengine.retries"
"""Counter: retried calls, by :data:`BIZ_SYSTEM` and :data:`BIZ_ERROR_CATEGORY`."""
METRIC_SYNCENGINE_TRANSACTIONS: Final = "syncengine.transactions"
"""Counter: finished transactions, by :data:`BIZ_PROCESS` and :data:`BIZ_OUTCOME`
(``ok``, ``failed``, ``held``)."""
METRIC_SYNCENGINE_RATELIMIT_WAITS: Final = "syncengine.ratelimit.waits"
"""Counter: calls that waited for the client-side rate limiter or a ``Retry-After``
cool-down, by :data:`BIZ_SYSTEM`."""


class System(StrEnum):
    """The kinds of system a quote-to-cash transaction crosses."""

    CRM = "crm"
    BILLING = "billing"
    ERP = "erp"
    MIDDLEWARE = "middleware"
    PROVISIONING = "provisioning"


class Process(StrEnum):
    """Business processes the sync engine runs."""

    QUOTE_TO_CASH = "quote_to_cash"
    CUSTOMER_SYNC = "customer_sync"
    PAYMENT_UPDATE = "payment_update"
    RENEWAL = "renewal"
    REFUND = "refund"
    SUBSCRIPTION_CHANGE = "subscription_change"
    RECONCILIATION = "reconciliation"


class ObjectType(StrEnum):
    """Canonical business objects."""

    ACCOUNT = "account"
    CUSTOMER = "customer"
    OPPORTUNITY = "opportunity"
    ORDER = "order"
    PRODUCT = "product"
    CONTRACT = "contract"
    SUBSCRIPTION = "subscription"
    INVOICE = "invoice"
    PAYMENT = "payment"
    REFUND = "refund"
    JOURNAL = "journal"


class Outcome(StrEnum):
    """How one business step ended."""

    OK = "ok"
    FAILED = "failed"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    COMPENSATED = "compensated"
    SKIPPED_DUPLICATE = "skipped_duplicate"
    PARKED = "parked"


class FailureCategory(StrEnum):
    """Why a transaction failed, in business terms. The first group is what an
    adapter sees on one call; the second is found by the evaluator across
    spans."""

    TRANSIENT = "transient"
    """5xx, timeouts, connection errors: retrying is expected to help."""
    RATE_LIMITED = "rate_limited"
    """429, quota exhausted."""
    AUTH = "auth"
    """401/403, expired or revoked credentials."""
    MAPPING = "mapping"
    """Our own transform or payload was invalid (400/422 on our fields, unknown SKU)."""
    MASTER_DATA = "master_data"
    """A referenced customer, entity, cost center or tax registration is missing or invalid."""
    BUSINESS_RULE = "business_rule"
    """The downstream system refused on purpose: closed period, credit hold."""
    DUPLICATE = "duplicate"
    """The same business effect happened twice."""
    OUT_OF_ORDER = "out_of_order"
    """An event was applied before the state it depends on."""
    STUCK = "stuck"
    """An expected stage never happened within its deadline."""
    MISMATCH = "mismatch"
    """Amounts, statuses or counts differ between systems."""
    LATENCY = "latency"
    """An SLA on stage-to-stage time was breached."""
    UNKNOWN = "unknown"
    """Failed, and nothing said why. Never guessed."""


class DropReason(StrEnum):
    """Why the tracer lost a span (the ``error.type`` of :data:`METRIC_SPANS_DROPPED`)."""

    QUEUE_FULL = "queue_full"
    """The batch queue was at ``OTEL_BSP_MAX_QUEUE_SIZE`` when the span ended."""
    EXPORT_FAILED = "export_failed"
    """The exporter gave up on the batch (after its own retries) or raised."""
    SHUTDOWN = "already_shutdown"
    """The span ended after :func:`tracer.shutdown`."""


class CorrelationSource(StrEnum):
    """Where a business span's correlation id came from."""

    ARGUMENT = "argument"
    """Passed explicitly by the adapter."""
    BAGGAGE = "baggage"
    """Inherited from W3C Baggage (same process or an upstream hop)."""
    LINK = "link"
    """Taken from a linked upstream context (queue message, webhook metadata)."""
    REF_INDEX = "ref_index"
    """Re-associated by business object reference (the in-process ref index)."""
    MINTED = "minted"
    """Nothing upstream had one: this step started the transaction."""


class Hop(StrEnum):
    """The carriers a context crosses between steps."""

    HTTP = "http"
    MESSAGE = "message"
    WEBHOOK = "webhook"


class PayloadKind(StrEnum):
    """Which payload a snapshot holds, in transformation order."""

    SOURCE = "source"
    CANONICAL = "canonical"
    TARGET_REQUEST = "target_request"
    TARGET_RESPONSE = "target_response"


class Stage(StrEnum):
    """The canonical quote-to-cash stages. The default rule pack, the reference
    sync engine and hand instrumentation all use these names."""

    CRM_ORDER_APPROVE = "crm.order.approve"
    MIDDLEWARE_ORDER_VALIDATE = "middleware.order.validate"
    BILLING_CUSTOMER_UPSERT = "billing.customer.upsert"
    BILLING_SUBSCRIPTION_CREATE = "billing.subscription.create"
    BILLING_INVOICE_CREATE = "billing.invoice.create"
    ERP_CUSTOMER_UPSERT = "erp.customer.upsert"
    ERP_INVOICE_POST = "erp.invoice.post"
    BILLING_PAYMENT_SUCCEED = "billing.payment.succeed"
    BILLING_PAYMENT_FAIL = "billing.payment.fail"
    CRM_ACCOUNT_UPDATE = "crm.account.update"
    ERP_PAYMENT_APPLY = "erp.payment.apply"
    BILLING_REFUND_CREATE = "billing.refund.create"
    ERP_REFUND_POST = "erp.refund.post"
    BILLING_SUBSCRIPTION_UPDATE = "billing.subscription.update"
    BILLING_SUBSCRIPTION_CANCEL = "billing.subscription.cancel"
    CRM_RECONCILIATION_SNAPSHOT = "crm.reconciliation.snapshot"
    BILLING_RECONCILIATION_SNAPSHOT = "billing.reconciliation.snapshot"
    ERP_RECONCILIATION_SNAPSHOT = "erp.reconciliation.snapshot"


# --- evaluator tables: the status columns the evaluator writes and the dashboard reads --


class TransactionStatus(StrEnum):
    """A transaction's verdict: ``revtrace_transactions.Status``."""

    OK = "ok"
    """Nothing wrong, nothing pending."""
    IN_PROGRESS = "in_progress"
    """A retry is scheduled, an event is parked, or an expected stage is not due yet."""
    FAILED = "failed"
    """A step failed for good, or a rule found the transaction wrong."""
    STUCK = "stuck"
    """An expected stage never happened within its deadline."""
    HELD = "held"
    """A step failed for good after a ``held_after`` stage succeeded (waits for finance)."""


class AlertStatus(StrEnum):
    """Where an alert is in its lifecycle: ``revtrace_alerts.Status``."""

    FIRING = "firing"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"
    """Inhibited by another alert or silenced."""


class ReconStatus(StrEnum):
    """A reconciliation item's result: ``revtrace_recon_items.Status``."""

    OK = "ok"
    """The systems agree (within the rule's tolerance)."""
    MISMATCH = "mismatch"
    """The systems' figures differ."""
    MISSING = "missing"
    """A system's snapshot is missing for the period."""


CANONICAL_STAGES: Final = tuple(s.value for s in Stage if not s.value.endswith(".reconciliation.snapshot"))
"""Every canonical transaction stage name, in quote-to-cash order."""

RECONCILIATION_STAGES: Final = (
    Stage.CRM_RECONCILIATION_SNAPSHOT,
    Stage.BILLING_RECONCILIATION_SNAPSHOT,
    Stage.ERP_RECONCILIATION_SNAPSHOT,
)
"""Stages of reconciliation snapshot spans: one span per system, object type and
period, with :data:`BIZ_OBJECT_TYPE` and the ``biz.recon.*`` attributes."""

STAGE_PATTERN: Final = re.compile(
    r"^(?P<system>[a-z][a-z0-9_]*)\.(?P<object>[a-z][a-z0-9_]*)\.(?P<action>[a-z][a-z0-9_]*)$"
)
"""What a stage name looks like: ``<system>.<object>.<action>``, lower snake case."""


def parse_stage(stage: str) -> tuple[str, str, str] | None:
    """Split ``billing.invoice.create`` into ``("billing", "invoice", "create")``;
    ``None`` when the name does not follow the convention."""
    match = STAGE_PATTERN.match(stage)
    if match is None:
        return None
    return match["system"], match["object"], match["action"]


_REF_PATTERN: Final = re.compile(r"^(?P<system>[a-z][a-z0-9_]*):(?P<type>[a-z][a-z0-9_]*)/(?P<id>.+)$")


def format_object_ref(system: str, object_type: str, object_id: str) -> str:
    """``crm``, ``opportunity``, ``006…`` → ``crm:opportunity/006…`` (the form of
    :data:`BIZ_OBJECT_REFS` entries)."""
    return f"{system}:{object_type}/{object_id}"


def parse_object_ref(ref: str) -> tuple[str, str, str] | None:
    """Inverse of :func:`format_object_ref`; ``None`` for a malformed ref."""
    match = _REF_PATTERN.match(ref)
    if match is None:
        return None
    return match["system"], match["type"], match["id"]
