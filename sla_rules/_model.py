"""What the evaluator reasons about: the statistics its queries return and the
findings and verdicts its pure functions produce. Times are UTC epoch seconds
(floats) so the pure functions never touch clocks or time zones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any, Final, NamedTuple

from tracer.semconv import FailureCategory, Outcome, TransactionStatus

__all__ = [
    "FAILED_OUTCOMES",
    "OK_OUTCOMES",
    "BurnStats",
    "Finding",
    "GroupCount",
    "LatencyGroup",
    "LatencyStats",
    "MttrStats",
    "RateStats",
    "ReconSnapshot",
    "ReconStats",
    "SequenceViolation",
    "SlaPoint",
    "SpanSignal",
    "TransactionFacts",
    "TransactionStats",
    "TxStatus",
    "Verdict",
]

OK_OUTCOMES: Final = frozenset(
    {Outcome.OK.value, "", Outcome.SKIPPED_DUPLICATE.value, Outcome.COMPENSATED.value}
)
"""Outcomes that are no failure (an empty outcome counts by the span status)."""
FAILED_OUTCOMES: Final = frozenset({Outcome.FAILED.value, Outcome.DEAD_LETTERED.value})
"""Outcomes that end a step as failed (unless a later attempt succeeded)."""
_EFFECT_OUTCOMES: Final = frozenset({Outcome.OK.value, ""})


class TxStatus:
    """Verdict statuses (the ``Status`` column of ``revtrace_transactions``), as
    plain strings: the values of :class:`tracer.semconv.TransactionStatus`."""

    OK: Final = TransactionStatus.OK.value
    IN_PROGRESS: Final = TransactionStatus.IN_PROGRESS.value
    FAILED: Final = TransactionStatus.FAILED.value
    STUCK: Final = TransactionStatus.STUCK.value
    HELD: Final = TransactionStatus.HELD.value
    ALL: Final = tuple(s.value for s in TransactionStatus)
    OPEN: Final = (IN_PROGRESS,)
    """Statuses that time alone can change (a deadline passes): re-evaluated every tick."""


class SpanSignal(NamedTuple):
    """One business span of a transaction, as the classifier sees it.

    A named tuple rather than a frozen dataclass: a pass builds one per span
    of every dirty transaction (150,000 in the benchmark's cycle), and a
    frozen dataclass's ``__init__`` sets each of its 19 fields through
    ``object.__setattr__`` (eight times slower to build; as immutable)."""

    stage: str
    start: float
    end: float
    outcome: str = "ok"
    status_code: str = "Unset"
    error_category: str = ""
    error_code: str = ""
    error_type: str = ""
    http_status: int = 0
    vendor: str = ""
    system: str = ""
    attempt: int = 0
    object_type: str = ""
    object_id: str = ""
    idempotency_key: str = ""
    event_id: str = ""
    event_sequence: int | None = None
    amount: Decimal | None = None
    span_id: str = ""

    @property
    def ok(self) -> bool:
        """The step succeeded (or was harmlessly skipped)."""
        return self.outcome in OK_OUTCOMES and not (self.outcome == "" and self.status_code == "Error")

    @property
    def effect(self) -> bool:
        """The step took effect: plain success, not a skipped duplicate or a compensation."""
        return self.outcome in _EFFECT_OUTCOMES and self.status_code != "Error"

    @property
    def failed(self) -> bool:
        """This attempt failed (whatever happens next)."""
        return not self.ok

    def brief(self) -> dict[str, Any]:
        """The span as evidence: only what decides, never payloads."""
        out: dict[str, Any] = {"stage": self.stage, "span_id": self.span_id, "outcome": self.outcome}
        for key, value in (
            ("attempt", self.attempt),
            ("status_code", self.status_code if self.status_code not in ("", "Unset") else ""),
            ("http_status", self.http_status),
            ("error_category", self.error_category),
            ("error_code", self.error_code),
            ("error_type", self.error_type),
            ("vendor", self.vendor),
            ("object", f"{self.object_type}/{self.object_id}" if self.object_id else ""),
        ):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class TransactionFacts:
    """Everything known about one transaction: its dimensions and its spans."""

    correlation_id: str
    process: str
    legal_entity: str
    region: str
    first_seen: float
    last_seen: float
    last_stage: str
    spans: tuple[SpanSignal, ...]
    amount: Decimal | None = None
    currency: str = ""

    def first_ok(self, stage: str) -> float | None:
        """End of the first span of ``stage`` that took effect (a skipped
        duplicate delivery does not count: the stage did not happen then)."""
        return self._first_effects.get(stage)

    @cached_property
    def duplicate_candidates(self) -> dict[str, list[SpanSignal]]:
        """Stage → its spans that took effect as the duplicate rule counts them
        (outcome ok or empty, and ok), in span order."""
        out: dict[str, list[SpanSignal]] = {}
        for s in self.spans:
            if s.outcome in _EFFECT_OUTCOMES and s.ok:
                out.setdefault(s.stage, []).append(s)
        return out

    @cached_property
    def _first_effects(self) -> dict[str, float]:
        # Every rule asks for a few stages of every transaction: one pass over the spans.
        out: dict[str, float] = {}
        for s in self.spans:
            if s.effect and (s.stage not in out or s.end < out[s.stage]):
                out[s.stage] = s.end
        return out


@dataclass(frozen=True)
class SequenceViolation:
    """An object's event applied after a later event of the same object."""

    correlation_id: str
    object_type: str
    object_id: str
    stage: str
    sequence: int
    after_sequence: int
    span_id: str


@dataclass(frozen=True)
class TransactionStats:
    """Input of the per-transaction rules: the transactions to (re)evaluate and
    what the cross-transaction queries found among them."""

    transactions: tuple[TransactionFacts, ...]
    sequence_violations: tuple[SequenceViolation, ...] = ()
    duplicate_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Correlation id → keys (idempotency or event id) another transaction
    already applied."""


@dataclass(frozen=True)
class LatencyGroup:
    """Stage-to-stage times of one group within one window."""

    labels: Mapping[str, str]
    count: int
    quantiles: Mapping[float, float]
    """percentile → seconds."""
    worst: tuple[str, ...] = ()
    """Correlation ids (or objects) of the slowest ones."""


@dataclass(frozen=True)
class LatencyStats:
    """Latency per group for each window of a latency rule's objectives."""

    windows: Mapping[float, tuple[LatencyGroup, ...]]


@dataclass(frozen=True)
class GroupCount:
    """Good and total events of one group within one window."""

    labels: Mapping[str, str]
    good: int
    total: int
    examples: tuple[str, ...] = ()
    """Correlation ids of some bad events."""


@dataclass(frozen=True)
class RateStats:
    """Success/error counts per group over a rate rule's window."""

    groups: tuple[GroupCount, ...]


@dataclass(frozen=True)
class BurnStats:
    """Good/total per window length (seconds) per group, for burn rates."""

    windows: Mapping[float, tuple[GroupCount, ...]]


@dataclass(frozen=True)
class MttrStats:
    """Resolved failures in the window: per group, count and mean seconds."""

    groups: tuple[tuple[Mapping[str, str], int, float], ...]
    unresolved: int = 0


@dataclass(frozen=True)
class ReconSnapshot:
    """The latest snapshot one system reported for an object type and period."""

    system: str
    object_type: str
    period: str
    legal_entity: str
    count: int | None
    amount: Decimal | None
    statuses: Mapping[str, int]
    correlation_id: str = ""


@dataclass(frozen=True)
class ReconStats:
    """Snapshots of the periods in a reconciliation rule's window."""

    snapshots: tuple[ReconSnapshot, ...]


@dataclass(frozen=True)
class Finding:
    """Something a rule found wrong: a group over a window, or transactions."""

    rule: str
    kind: str
    category: FailureCategory
    severity: str
    reason: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    objective: float | None = None
    correlation_ids: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``sla check --format json``)."""
        return {
            "rule": self.rule,
            "kind": self.kind,
            "category": self.category.value,
            "severity": self.severity,
            "reason": self.reason,
            "labels": dict(self.labels),
            "value": self.value,
            "objective": self.objective,
            "correlation_ids": list(self.correlation_ids),
            "objects": list(self.objects),
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class SlaPoint:
    """One measurement of a rule for the trend charts (``revtrace_sla_points``)."""

    rule: str
    kind: str
    measure: str
    window: float
    labels: Mapping[str, str]
    value: float
    objective: float
    unit: str
    good: int = 0
    total: int = 0
    breached: bool = False


@dataclass(frozen=True)
class Verdict:
    """The evaluator's verdict on one transaction (``revtrace_transactions``)."""

    correlation_id: str
    process: str
    legal_entity: str
    region: str
    status: str
    category: str
    severity: str
    reason: str
    evidence: Mapping[str, Any]
    first_seen: float
    last_seen: float
    last_stage: str
    amount: Decimal | None
    currency: str
    rules: tuple[str, ...] = ()
    stage: str = ""
    vendor: str = ""
    objects: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "correlation_id": self.correlation_id,
            "process": self.process,
            "legal_entity": self.legal_entity,
            "status": self.status,
            "category": self.category,
            "severity": self.severity,
            "reason": self.reason,
            "stage": self.stage,
            "rules": list(self.rules),
            "objects": list(self.objects),
            "evidence": dict(self.evidence),
        }
