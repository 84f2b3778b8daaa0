"""The engine's state: transactions with their checkpoints and preserved
payloads, the event inbox (deduplication by event id and by business effect),
per-object ordering, parked events, the dead-letter queue, the retry queue and
the cross-reference of ids between systems.

It is kept in memory: the reference engine demonstrates the patterns, it is
not meant to survive a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from tracer import RemoteContext
from tracer.semconv import FailureCategory, Process, Stage, System, format_object_ref

__all__ = [
    "TERMINAL_STATES",
    "DeadLetter",
    "DeadLetterQueue",
    "EventStatus",
    "InboundEvent",
    "Inbox",
    "Observation",
    "ParkingLot",
    "RetryQueue",
    "Transaction",
    "TxState",
    "XRef",
]


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TxState(StrEnum):
    """Where a transaction is."""

    RUNNING = "running"
    AWAITING_EVENT = "awaiting_event"
    """Billing is done; the engine waits for billing's ``invoice.finalized``."""
    QUEUED = "queued"
    """A retryable failure outlasted the in-call retries: re-driven later from the retry queue."""
    PARKED = "parked"
    """Its event waits for an earlier event of the same object."""
    COMPLETED = "completed"
    FAILED = "failed"
    HELD = "held"
    """Billing succeeded but ERP posting failed for good: held for finance review."""


TERMINAL_STATES: Final = frozenset({TxState.COMPLETED, TxState.FAILED, TxState.HELD})


@dataclass
class InboundEvent:
    """A webhook or CDC message, normalized by the intake."""

    id: str
    source: System
    type: str
    payload: dict[str, Any]
    received_at: dt.datetime
    occurred_at: dt.datetime
    sequence: int | None
    stream: str | None
    correlation_id: str | None
    process: str | None
    remote: RemoteContext | None = None
    replay_of: str | None = None
    """The dead letter this delivery replays (dead-letter replays skip deduplication)."""

    def summary(self) -> dict[str, Any]:
        """What the API shows of it."""
        return {
            "event_id": self.id,
            "source": self.source.value,
            "type": self.type,
            "sequence": self.sequence,
            "occurred_at": _iso(self.occurred_at),
            "received_at": _iso(self.received_at),
        }


@dataclass(frozen=True)
class Observation:
    """Something the engine itself saw happen to a transaction and absorbed or
    suffered: a circuit-open rejection, a parked event, a skipped duplicate."""

    kind: str
    category: FailureCategory | None
    stage: Stage | None
    detail: str = ""
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass
class Transaction:
    """One business transaction, its progress and what is needed to re-drive it."""

    correlation_id: str
    process: Process
    trigger: str
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    legal_entity: str | None = None
    region: str | None = None
    currency: str | None = None
    state: TxState = TxState.RUNNING
    category: FailureCategory | None = None
    failed_stage: Stage | None = None
    error_code: str | None = None
    error_message: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    """Preserved inputs: the triggering event, the canonical contract, …"""
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Completed steps and what they produced, by stage."""
    requests: dict[str, Any] = field(default_factory=dict)
    """Request bodies built once per step and resent unchanged on retry (idempotency keys
    only work when the parameters are the same)."""
    attempts: dict[str, int] = field(default_factory=dict)
    refs: dict[str, None] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    requeues: int = 0
    posting_started: float | None = None
    """Monotonic time the invoice was created in billing (the posting SLA starts)."""
    posting_finished: float | None = None
    """Monotonic time the invoice was posted in ERP."""
    finished_at: dt.datetime | None = None
    updated: float = field(default_factory=time.monotonic)
    running: bool = False
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Objects derived from the checkpoints (the canonical contract), not part of the record."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def note(self, text: str, **detail: Any) -> None:
        """Append to the audit history."""
        self.history.append(
            {"at": _iso(dt.datetime.now(dt.UTC)), "state": self.state.value, "note": text, **detail}
        )
        self.updated = time.monotonic()

    def set_state(self, state: TxState, note: str, **detail: Any) -> None:
        """Move to ``state``, recording why."""
        self.state = state
        if state in TERMINAL_STATES:
            self.finished_at = dt.datetime.now(dt.UTC)
        self.note(note, **detail)

    def fail(
        self, state: TxState, stage: Stage, category: FailureCategory, code: str | None, message: str | None
    ) -> None:
        """End in FAILED or HELD (or wait in QUEUED) because of ``stage``."""
        self.category = category
        self.failed_stage = stage
        self.error_code = code
        self.error_message = message
        self.set_state(state, f"{stage.value} failed: {category.value}", code=code)

    def add_ref(self, system: System, object_type: str, object_id: str | None) -> str | None:
        """Remember the id of one of its objects in one system."""
        if not object_id:
            return None
        ref = format_object_ref(system.value, object_type, object_id)
        self.refs[ref] = None
        return ref

    def refs_except(self, own: str | None = None) -> list[str]:
        """Its object references, without ``own``."""
        return [r for r in self.refs if r != own]

    def checkpoint(self, stage: Stage, **result: Any) -> None:
        """Record a completed step."""
        self.checkpoints[stage.value] = result
        self.note(f"{stage.value} done")

    @property
    def posting_seconds(self) -> float | None:
        """Real seconds from invoice creation in billing to posting in ERP."""
        if self.posting_started is None or self.posting_finished is None:
            return None
        return self.posting_finished - self.posting_started

    def to_json(self, *, payload: bool = True) -> dict[str, Any]:
        """The API's view of the transaction."""
        out: dict[str, Any] = {
            "correlation_id": self.correlation_id,
            "process": self.process.value,
            "state": self.state.value,
            "trigger": self.trigger,
            "legal_entity": self.legal_entity,
            "region": self.region,
            "category": self.category.value if self.category else None,
            "failed_stage": self.failed_stage.value if self.failed_stage else None,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "requeues": self.requeues,
            "attempts": dict(self.attempts),
            "refs": list(self.refs),
            "events": list(self.events),
            "checkpoints": self.checkpoints,
            "history": self.history,
        }
        if payload:
            out["payload"] = self.payload
        return out


class EventStatus(StrEnum):
    """Where an inbound event is."""

    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    PARKED = "parked"
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"


@dataclass
class InboxEntry:
    """An event the engine received, and what became of it."""

    event: InboundEvent
    status: EventStatus = EventStatus.RECEIVED
    deliveries: int = 1
    correlation_id: str | None = None


class Inbox:
    """Events by id (deduplication of deliveries) and applied business effects
    by key (deduplication of the same change under another event id)."""

    def __init__(self) -> None:
        self.entries: dict[str, InboxEntry] = {}
        self.effects: dict[str, str] = {}

    def get(self, event_id: str) -> InboxEntry | None:
        """The entry of an event id."""
        return self.entries.get(event_id)

    def add(self, event: InboundEvent) -> InboxEntry:
        """Record a first delivery."""
        entry = self.entries[event.id] = InboxEntry(event)
        return entry


@dataclass
class DeadLetter:
    """An event the engine gave up on, with why; replayable."""

    id: str
    event: InboundEvent
    correlation_id: str | None
    stage: Stage
    category: FailureCategory
    reason: str
    dead_lettered_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    status: str = "open"
    replays: int = 0

    def to_json(self) -> dict[str, Any]:
        """The API's view of the dead letter."""
        return {
            "id": self.id,
            "correlation_id": self.correlation_id,
            "stage": self.stage.value,
            "category": self.category.value,
            "reason": self.reason,
            "status": self.status,
            "replays": self.replays,
            "dead_lettered_at": _iso(self.dead_lettered_at),
            **self.event.summary(),
            "payload": self.event.payload,
        }


class DeadLetterQueue:
    """Dead letters by id (``dlq_000001``)."""

    def __init__(self) -> None:
        self.items: dict[str, DeadLetter] = {}
        self._ids = itertools.count(1)

    def add(
        self,
        event: InboundEvent,
        correlation_id: str | None,
        stage: Stage,
        category: FailureCategory,
        reason: str,
    ) -> DeadLetter:
        """Dead-letter an event."""
        letter = DeadLetter(f"dlq_{next(self._ids):06d}", event, correlation_id, stage, category, reason)
        self.items[letter.id] = letter
        return letter

    @property
    def open_count(self) -> int:
        """Dead letters not replayed successfully."""
        return sum(1 for d in self.items.values() if d.status != "replayed")


@dataclass
class _Parked:
    event: InboundEvent
    key: str
    deadline: float


class ParkingLot:
    """Events waiting for what they depend on (an earlier event of their object,
    or the transaction they continue), each with a deadline."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[_Parked]] = {}

    def park(self, event: InboundEvent, key: str, deadline: float) -> None:
        """Park ``event`` until ``key`` is satisfied or ``deadline`` (monotonic) passes."""
        self._by_key.setdefault(key, []).append(_Parked(event, key, deadline))

    def release(self, key: str) -> list[InboundEvent]:
        """The events waiting for ``key`` (now satisfied)."""
        return [p.event for p in self._by_key.pop(key, [])]

    def expired(self, now: float) -> list[tuple[InboundEvent, str]]:
        """Remove and return the events whose deadline passed, with their key."""
        out: list[tuple[InboundEvent, str]] = []
        for key in list(self._by_key):
            keep = []
            for parked in self._by_key[key]:
                if parked.deadline <= now:
                    out.append((parked.event, key))
                else:
                    keep.append(parked)
            if keep:
                self._by_key[key] = keep
            else:
                del self._by_key[key]
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline, if anything is parked."""
        return min((p.deadline for ps in self._by_key.values() for p in ps), default=None)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())


class RetryQueue:
    """Transactions to re-drive later, by due time (monotonic)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.changed = asyncio.Event()

    def push(self, due: float, correlation_id: str) -> None:
        """Re-drive ``correlation_id`` at ``due``."""
        heapq.heappush(self._heap, (due, next(self._seq), correlation_id))
        self.changed.set()

    def pop_due(self, now: float) -> list[str]:
        """Remove and return what is due."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_due(self) -> float | None:
        """When the next item is due."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class XRef:
    """The same business objects' ids across systems, and what the engine
    learned about them."""

    billing_customer: dict[tuple[str, str], str] = field(default_factory=dict)
    """(CRM account, legal entity) → billing customer (one per currency/entity)."""
    erp_customer: dict[str, str] = field(default_factory=dict)
    """CRM account → ERP customer internal id."""
    erp_subsidiaries: dict[str, set[str]] = field(default_factory=dict)
    """CRM account → legal entities its ERP customer is linked to."""
    subscription: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Billing subscription → {account, legal_entity, team, opportunity, correlation_id}."""
    invoice: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Billing invoice → {account, legal_entity, erp_invoice, total, currency, correlation_id}."""
    payment: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Billing payment intent → {invoice, amount, erp_payment}."""
    account_entity: dict[str, str] = field(default_factory=dict)
    """CRM account → the legal entity of its first order (its home entity)."""
    payment_status: dict[str, str] = field(default_factory=dict)
    """CRM account → the payment status last written to the CRM."""
    stream_applied: dict[str, int] = field(default_factory=dict)
    """Ordering: the last applied sequence per object stream."""
