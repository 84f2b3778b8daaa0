"""What the dashboard measures: stage-to-stage SLAs, KPI objectives, canonical
objects and the metric and alert names it reads. Plain data, no I/O.

The stage names, systems, outcomes, categories, the sync engine's metric names
and the statuses of the evaluator's tables (``TransactionStatus``,
``AlertStatus``, ``ReconStatus``) come from :mod:`tracer.semconv`; the names
defined here are the ones no shared module spells yet (the collector's own
metric names). They are the contract with those parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dashboard import settings
from tracer.semconv import (
    METRIC_SYNCENGINE_DLQ_SIZE,
    METRIC_SYNCENGINE_INFLIGHT,
    METRIC_SYNCENGINE_QUEUE_DEPTH,
    METRIC_SYNCENGINE_RATELIMIT_WAITS,
    METRIC_SYNCENGINE_RETRIES,
    METRIC_SYNCENGINE_TRANSACTIONS,
    FailureCategory,
    ObjectType,
    Stage,
    System,
)

__all__ = [
    "ALERT_CATEGORIES",
    "ALERT_LABEL_ENTITY",
    "BREAKER_STATES",
    "COLLECTOR_SERVICE",
    "OBJECT_ALIASES",
    "OBJECT_TYPES",
    "SYNC_COUNTERS",
    "SYNC_LEVELS",
    "CollectorMetric",
    "Objective",
    "StagePair",
    "expected_systems",
    "objectives",
    "stage_pairs",
]


@dataclass(frozen=True)
class StagePair:
    """A stage-to-stage SLA: the time from ``from_stage`` ending ok to ``to_stage`` ending ok."""

    key: str
    title: str
    from_stage: str
    to_stage: str
    sla_s: float

    @property
    def label(self) -> str:
        """``title (from → to)``."""
        return f"{self.title} ({self.from_stage} → {self.to_stage})"


def stage_pairs() -> tuple[StagePair, ...]:
    """Every stage-to-stage SLA the latency view offers, invoice posting first."""
    return (
        StagePair(
            "invoice_posting",
            "Invoice posting",
            Stage.BILLING_INVOICE_CREATE,
            Stage.ERP_INVOICE_POST,
            settings.env_float("REVTRACE_SLA_INVOICE_POSTING_S"),
        ),
        StagePair(
            "payment_propagation",
            "Payment propagation",
            Stage.BILLING_PAYMENT_SUCCEED,
            Stage.ERP_PAYMENT_APPLY,
            settings.env_float("REVTRACE_SLA_PAYMENT_PROPAGATION_S"),
        ),
        StagePair(
            "order_to_invoice", "Order to invoice", Stage.CRM_ORDER_APPROVE, Stage.BILLING_INVOICE_CREATE, 600
        ),
        StagePair(
            "customer_sync",
            "Customer billing → ERP",
            Stage.BILLING_CUSTOMER_UPSERT,
            Stage.ERP_CUSTOMER_UPSERT,
            600,
        ),
        StagePair(
            "payment_to_crm", "Payment to CRM", Stage.BILLING_PAYMENT_SUCCEED, Stage.CRM_ACCOUNT_UPDATE, 600
        ),
        StagePair(
            "refund_posting", "Refund posting", Stage.BILLING_REFUND_CREATE, Stage.ERP_REFUND_POST, 900
        ),
    )


@dataclass(frozen=True)
class Objective:
    """A KPI's target. ``higher_is_better`` says which side of ``target`` is a breach."""

    key: str
    title: str
    target: float
    unit: str
    higher_is_better: bool

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the objective."""
        return value >= self.target if self.higher_is_better else value <= self.target


def objectives() -> dict[str, Objective]:
    """The overview's KPI objectives (from the ``REVTRACE_SLA_*`` settings)."""
    env = settings.env_float
    items = (
        Objective("customer_sync", "Customer-sync success", env("REVTRACE_SLA_CUSTOMER_SYNC_PCT"), "%", True),
        Objective(
            "invoice_posting", "Invoice posting p95", env("REVTRACE_SLA_INVOICE_POSTING_S"), "s", False
        ),
        Objective(
            "payment_propagation",
            "Payment propagation p95",
            env("REVTRACE_SLA_PAYMENT_PROPAGATION_S"),
            "s",
            False,
        ),
        Objective("duplicates", "Duplicate transactions", env("REVTRACE_SLA_DUPLICATE_PCT"), "%", False),
        Objective("reconciliation", "Reconciliation exceptions", 0, "", False),
        Objective("mttr", "Mean time to resolve", env("REVTRACE_SLA_MTTR_S"), "s", False),
    )
    return {o.key: o for o in items}


# --- business objects --------------------------------------------------------------

OBJECT_TYPES: Final = (
    str(ObjectType.CUSTOMER),
    str(ObjectType.SUBSCRIPTION),
    str(ObjectType.INVOICE),
    str(ObjectType.PAYMENT),
    str(ObjectType.REFUND),
)
"""The canonical objects the business-objects view lists."""

OBJECT_ALIASES: Final = {str(ObjectType.ACCOUNT): str(ObjectType.CUSTOMER)}
"""A CRM account is the customer of billing and ERP."""

_EXPECTED: Final = {
    str(ObjectType.CUSTOMER): (System.BILLING, System.ERP),
    str(ObjectType.SUBSCRIPTION): (System.BILLING,),
    str(ObjectType.INVOICE): (System.BILLING, System.ERP),
    str(ObjectType.PAYMENT): (System.BILLING, System.ERP),
    str(ObjectType.REFUND): (System.BILLING, System.ERP),
}


def expected_systems(object_type: str) -> tuple[str, ...]:
    """The systems that must hold ``object_type`` for the systems to agree."""
    return tuple(str(s) for s in _EXPECTED.get(object_type, ()))


# --- the evaluator's contract tables (their statuses: tracer.semconv) -------------------

ALERT_LABEL_ENTITY: Final = "legal_entity"
"""The alert label holding the legal entity."""

ALERT_CATEGORIES: Final = (
    FailureCategory.TRANSIENT,
    FailureCategory.RATE_LIMITED,
    FailureCategory.AUTH,
    FailureCategory.MAPPING,
    FailureCategory.MASTER_DATA,
    FailureCategory.BUSINESS_RULE,
    FailureCategory.DUPLICATE,
    FailureCategory.OUT_OF_ORDER,
    FailureCategory.STUCK,
    FailureCategory.MISMATCH,
    FailureCategory.LATENCY,
    FailureCategory.UNKNOWN,
)
"""Alert categories in the order the alerts view shows them."""


# --- metrics ----------------------------------------------------------------------------


SYNC_LEVELS: Final = (METRIC_SYNCENGINE_QUEUE_DEPTH, METRIC_SYNCENGINE_INFLIGHT, METRIC_SYNCENGINE_DLQ_SIZE)
"""The sync engine's gauges the Sync engine view charts as levels."""
SYNC_COUNTERS: Final = (
    METRIC_SYNCENGINE_RETRIES,
    METRIC_SYNCENGINE_TRANSACTIONS,
    METRIC_SYNCENGINE_RATELIMIT_WAITS,
)
"""The sync engine's counters the Sync engine view charts as increases."""
BREAKER_STATES: Final = {0: "closed", 1: "half-open", 2: "open"}

COLLECTOR_SERVICE: Final = "revtrace-collector"
"""The service name of the collector's own metrics."""


class CollectorMetric(StrEnum):
    """The collector's own health metrics (service ``revtrace-collector``)."""

    ACCEPTED = "revtrace.ingest.accepted"
    REJECTED = "revtrace.ingest.rejected"
    REFUSED = "revtrace.ingest.refused"
    SPOOL_BACKLOG = "revtrace.spool.backlog_bytes"
    WRITER_ROWS = "revtrace.writer.rows"
    WRITER_ERRORS = "revtrace.writer.errors"
