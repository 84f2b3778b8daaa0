"""The fault plan (what the workload decided to inject, per transaction) and
the fault log (what was actually injected, when and where).

Simulators consult the plan with the correlation id they read from the
request's W3C baggage or the event's metadata, and record every fault they
inject in the log; the ground truth is built from the log, never from the plan.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

from sync_engine._clock import Clock
from sync_engine._profile import FaultSpec, LatencySpec, OutageSpec
from sync_engine._scenarios import FAULT_CATEGORY, FaultKind, Scenario
from tracer.semconv import FailureCategory, Stage, System

__all__ = [
    "CALL_FAULT_KINDS",
    "FaultLog",
    "FaultPlan",
    "FiredFault",
    "LatencySampler",
    "OutageSchedule",
    "PlannedFault",
]

CALL_FAULT_KINDS: Final = frozenset(
    {FaultKind.TRANSIENT, FaultKind.RATE_LIMIT, FaultKind.TIMEOUT, FaultKind.AUTH}
)
"""Faults a simulator injects into its answer to an API call."""


@dataclass
class PlannedFault:
    """A fault planned for one transaction, with what is left of it."""

    spec: FaultSpec
    correlation_id: str
    scenario: Scenario
    remaining: int
    stage: Stage | None = None
    """The stage it hits (the spec's, or the first one it hit)."""
    state: dict[str, Any] = field(default_factory=dict)
    """Per-kind bookkeeping of the simulator that injects it."""


class FaultPlan:
    """Planned faults by correlation id (at most one per transaction)."""

    def __init__(self) -> None:
        self._by_cid: dict[str, PlannedFault] = {}

    def plan(self, correlation_id: str, spec: FaultSpec, scenario: Scenario) -> PlannedFault:
        """Plan ``spec`` for the transaction."""
        planned = PlannedFault(spec, correlation_id, scenario, spec.count, spec.stage)
        self._by_cid[correlation_id] = planned
        return planned

    def get(self, correlation_id: str | None, kind: FaultKind | None = None) -> PlannedFault | None:
        """The transaction's planned fault (of ``kind``, if given)."""
        if correlation_id is None:
            return None
        planned = self._by_cid.get(correlation_id)
        if planned is None or (kind is not None and planned.spec.kind is not kind):
            return None
        return planned

    def take_call(
        self, correlation_id: str | None, system: System, stages: tuple[Stage, ...]
    ) -> PlannedFault | None:
        """The call fault to inject into this request, if any (uses one of its count)."""
        planned = self.get(correlation_id)
        if planned is None or planned.spec.kind not in CALL_FAULT_KINDS or planned.spec.system is not system:
            return None
        if planned.stage is not None and planned.stage not in stages:
            return None
        if planned.remaining <= 0:
            return None
        if planned.stage is None:
            planned.stage = stages[0]
        planned.remaining -= 1
        return planned


@dataclass(frozen=True)
class FiredFault:
    """One fault that was injected into one transaction."""

    correlation_id: str
    kind: FaultKind
    system: System
    stage: Stage | None
    category: FailureCategory | None
    at: dt.datetime
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The ground-truth form: kind, system, stage, category, at and details."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "system": self.system.value,
            "stage": self.stage.value if self.stage is not None else None,
            "category": self.category.value if self.category is not None else None,
            "at": self.at.isoformat().replace("+00:00", "Z"),
        }
        out.update(self.detail)
        return out


class FaultLog:
    """Every injected fault, by correlation id."""

    def __init__(self) -> None:
        self._by_cid: dict[str, list[FiredFault]] = defaultdict(list)
        self._count = 0
        self._categories: Counter[str] = Counter()

    def record(
        self,
        correlation_id: str | None,
        kind: FaultKind,
        system: System,
        stage: Stage | None,
        *,
        category: FailureCategory | bool | None = True,
        **detail: Any,
    ) -> None:
        """Record an injected fault; ``category`` defaults to the kind's (pass
        None for a fault that is no failure of this transaction, e.g. the delayed
        earlier event of an out-of-order pair)."""
        if correlation_id is None:
            return
        cat = FAULT_CATEGORY[kind] if category is True else (category or None)
        self._by_cid[correlation_id].append(
            FiredFault(correlation_id, kind, system, stage, cat, dt.datetime.now(dt.UTC), detail)
        )
        self._count += 1
        self._categories[cat.value if cat else "none"] += 1

    def for_cid(self, correlation_id: str) -> list[FiredFault]:
        """The faults injected into one transaction, in order."""
        return list(self._by_cid.get(correlation_id, ()))

    def __len__(self) -> int:
        return self._count

    def by_category(self) -> dict[str, int]:
        """How many faults were injected per category."""
        return dict(self._categories)


class LatencySampler:
    """Draws log-normal latencies (simulated seconds) from a profile's spec."""

    def __init__(self, spec: LatencySpec, rng: random.Random) -> None:
        self._mu = math.log(spec.median)
        self._sigma = spec.sigma
        self._cap = spec.p99 * 3
        self._rng = rng

    def sample(self) -> float:
        """One latency, capped at three times the p99."""
        if self._sigma == 0:
            return math.exp(self._mu)
        return min(self._rng.lognormvariate(self._mu, self._sigma), self._cap)


class OutageSchedule:
    """A profile's outage windows on the simulated timeline."""

    def __init__(self, outages: tuple[OutageSpec, ...], clock: Clock) -> None:
        self._outages = outages
        self._clock = clock

    def active(self, system: System) -> OutageSpec | None:
        """The outage the system is in right now, if any."""
        now = self._clock.elapsed()
        for outage in self._outages:
            if outage.system is system and outage.start <= now < outage.start + outage.duration:
                return outage
        return None
