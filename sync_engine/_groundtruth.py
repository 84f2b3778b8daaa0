"""Ground truth: one JSON line per correlation id, saying what a perfect
observer of the spans should conclude about that transaction.

The line is built from what was actually injected (the fault log, never the
plan), the engine's final state, and measurements (invoice posting time,
billing vs ERP amounts); ``docs/ground-truth.md`` describes the format and
the rules below.

* outcome: ``ok`` (completed), ``failed``, ``held`` (billing done, ERP posting
  held for finance review) or ``stuck`` (waiting for something that never came);
* category: for ``stuck``, ``stuck``; for ``failed``/``held``, the category of
  the last fault injected at the stage that failed (else the engine's); for
  ``ok``, ``duplicate`` if a duplicate business effect happened, else
  ``mismatch`` if ERP booked a different amount than billing, else ``latency``
  if posting took longer than the profile's SLA, else null;
* absorbed: the categories of the other faults injected (and of what the engine
  absorbed on its own: parked-then-applied events, circuit-open rejections).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final

import orjson

from sync_engine._clock import Clock
from sync_engine._engine import SyncEngine
from sync_engine._faults import FaultLog, FiredFault
from sync_engine._flows import ReconRun
from sync_engine._profile import FaultProfile
from sync_engine._scenarios import FaultKind
from sync_engine._store import TERMINAL_STATES, Transaction, TxState
from tracer.semconv import FailureCategory, Process, Stage, System

__all__ = ["SETTLE_SECONDS", "GroundTruth", "ScenarioRecord"]

log = logging.getLogger("sync_engine")

RETAINED_LINES: Final = 10_000
"""Lines kept in memory (all of them are in the file)."""
_OUTCOME = {TxState.COMPLETED: "ok", TxState.FAILED: "failed", TxState.HELD: "held"}
SETTLE_SECONDS = 3.0
"""Simulated seconds a finished transaction is left alone before its line is
written (late echoes and duplicate deliveries still land in it)."""


@dataclass
class ScenarioRecord:
    """What the workload started under one correlation id."""

    correlation_id: str
    process: Process
    scenario: str
    legal_entity: str | None
    started_at: dt.datetime


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GroundTruth:
    """Collects scenario records and writes each transaction's line once it is settled."""

    def __init__(
        self, path: Path | None, profile: FaultProfile, clock: Clock, faults: FaultLog, engine: SyncEngine
    ) -> None:
        self.path = path
        self.profile = profile
        self.clock = clock
        self.faults = faults
        self.engine = engine
        self.records: dict[str, ScenarioRecord] = {}
        self.lines: deque[dict[str, Any]] = deque(maxlen=RETAINED_LINES)
        """The lines written, the most recent ``RETAINED_LINES`` of them."""
        self.count = 0
        self._outcomes: Counter[str] = Counter()
        self._categories: Counter[str] = Counter()
        self._pending: dict[str, None] = {}
        self._recon_written: set[str] = set()
        self._file: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")

    def register(self, record: ScenarioRecord) -> None:
        """The workload started a transaction."""
        self.records[record.correlation_id] = record
        self.track(record.correlation_id)

    def track(self, correlation_id: str) -> None:
        """A transaction needs a line (the workload's, or one the engine started)."""
        self._pending[correlation_id] = None

    # -- derivation ------------------------------------------------------------------------------------
    def expected(self, tx: Transaction | None, faults: list[FiredFault], *, final: bool) -> dict[str, Any]:
        """The ``expected`` object of a transaction."""
        state = tx.state if tx is not None else None
        outcome = _OUTCOME.get(state, "stuck") if state is not None else "stuck"
        categories = [f for f in faults if f.category is not None]
        primary: FailureCategory | None = None
        if outcome == "stuck":
            primary = FailureCategory.STUCK
        elif outcome in ("failed", "held"):
            assert tx is not None
            at_stage = [f for f in categories if f.stage is tx.failed_stage]
            if tx.category is FailureCategory.OUT_OF_ORDER:
                primary = FailureCategory.OUT_OF_ORDER
            elif at_stage:
                primary = at_stage[-1].category
            elif categories:
                primary = categories[-1].category
            else:
                primary = tx.category or FailureCategory.UNKNOWN
        elif tx is not None:
            primary = self._ok_category(tx, faults)
        absorbed: list[str] = []
        extra = [
            o.category
            for o in (self.engine.ctx.observations.get(tx.correlation_id, []) if tx else [])
            if o.kind == "parked" and o.category is not None
        ]
        for category in [*(f.category for f in categories), *extra]:
            if category is not None and category is not primary and category.value not in absorbed:
                absorbed.append(category.value)
        out: dict[str, Any] = {
            "outcome": outcome,
            "category": primary.value if primary else None,
            "absorbed": absorbed,
        }
        if (
            final
            and tx is not None
            and tx.state not in TERMINAL_STATES
            and not any(f.kind is FaultKind.DROPPED_WEBHOOK for f in faults)
        ):
            out["incomplete"] = True
        return out

    def _ok_category(self, tx: Transaction, faults: list[FiredFault]) -> FailureCategory | None:
        if any(f.kind is FaultKind.DUPLICATE_EFFECT for f in faults):
            return FailureCategory.DUPLICATE
        billing = tx.checkpoints.get(Stage.BILLING_INVOICE_CREATE.value, {}).get("total")
        erp = tx.checkpoints.get(Stage.ERP_INVOICE_POST.value, {}).get("total")
        if billing is not None and erp is not None and Decimal(str(billing)) != Decimal(str(erp)):
            return FailureCategory.MISMATCH
        posting = tx.posting_seconds
        if posting is not None and posting > self.clock.real(self.profile.invoice_posting_sla):
            return FailureCategory.LATENCY
        return None

    def _faults(self, cid: str) -> list[FiredFault]:
        """Injected faults, then the circuit-open rejections the engine met (one
        entry per system and stage, with how many): not injected into this
        transaction, but they failed its calls all the same."""
        faults = self.faults.for_cid(cid)
        rejected: dict[tuple[str, Stage | None], list[dt.datetime]] = {}
        for observation in self.engine.ctx.observations.get(cid, []):
            if observation.kind == "circuit_open":
                rejected.setdefault((observation.detail, observation.stage), []).append(observation.at)
        for (system, stage), times in rejected.items():
            faults.append(
                FiredFault(
                    cid,
                    FaultKind.CIRCUIT_OPEN,
                    System(system),
                    stage,
                    FailureCategory.TRANSIENT,
                    max(times),
                    {"injected": False, "count": len(times)},
                )
            )
        faults.sort(key=lambda f: f.at)
        return faults

    def line(self, cid: str, *, final: bool = False) -> dict[str, Any]:
        """The ground-truth line of one correlation id."""
        tx = self.engine.transactions.get(cid)
        record = self.records.get(cid)
        faults = self._faults(cid)
        started = record.started_at if record else (tx.started_at if tx else dt.datetime.now(dt.UTC))
        out: dict[str, Any] = {
            "correlation_id": cid,
            "process": (record.process if record else tx.process if tx else Process.QUOTE_TO_CASH).value,
            "scenario": record.scenario if record else "unplanned",
            "legal_entity": (
                tx.legal_entity if tx and tx.legal_entity else record.legal_entity if record else None
            ),
            "started_at": _iso(started),
            "faults": [f.to_json() for f in faults],
            "expected": self.expected(tx, faults, final=final),
            "time_scale": self.clock.scale,
        }
        if tx is not None and tx.posting_seconds is not None:
            out["measured"] = {
                "invoice_posting_seconds": round(tx.posting_seconds, 4),
                "sla_seconds": self.clock.real(self.profile.invoice_posting_sla),
            }
        return out

    # -- writing ---------------------------------------------------------------------------------------
    def _write(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        self._pending.pop(line["correlation_id"], None)
        self.records.pop(line["correlation_id"], None)
        self.count += 1
        self._outcomes[line["expected"]["outcome"]] += 1
        if line["expected"]["category"]:
            self._categories[line["expected"]["category"]] += 1
        if self._file is not None:
            self._file.write(orjson.dumps(line) + b"\n")
            self._file.flush()

    def write_settled(self) -> int:
        """Write the lines of transactions that are finished (and settled), or
        waiting longer than the profile's ``stuck_after``; returns how many."""
        now = time.monotonic()
        settle = self.clock.real(SETTLE_SECONDS)
        stuck_after = self.clock.real(self.profile.stuck_after)
        written = 0
        for cid in list(self._pending):
            tx = self.engine.transactions.get(cid)
            if tx is None or tx.running:
                continue
            terminal = tx.state in TERMINAL_STATES and now - tx.updated >= settle
            waiting = tx.state is TxState.AWAITING_EVENT and now - tx.updated >= stuck_after
            if terminal or waiting:
                self._write(self.line(cid))
                written += 1
        for cid, run in list(self.engine.ctx.recon_runs.items()):
            # A run's outcome is known once its last system answered (or failed), not when it started.
            if cid in self._recon_written or run.finished is None or now - run.finished < settle:
                continue
            self._write_recon(cid, run)
            written += 1
        return written

    def _write_recon(self, cid: str, run: ReconRun) -> None:
        self._recon_written.add(cid)
        self._write(self._recon_line(cid, run))

    def _recon_line(self, cid: str, run: ReconRun) -> dict[str, Any]:
        faults = self.faults.for_cid(cid)
        failed = run.failure
        expected: dict[str, Any] = {
            "outcome": "failed" if failed else "ok",
            "category": failed.value if failed else None,
            "absorbed": [],
        }
        if run.finished is None:
            expected["incomplete"] = True  # the run ended first: a system may not have been read
        return {
            "correlation_id": cid,
            "process": Process.RECONCILIATION.value,
            "scenario": "reconciliation",
            "legal_entity": None,
            "started_at": _iso(run.started_at),
            "faults": [f.to_json() for f in faults],
            "expected": expected,
            "time_scale": self.clock.scale,
        }

    def write_all(self) -> int:
        """At the end of a run: write every line not written yet."""
        written = self.write_settled()
        for cid in list(self._pending):
            self._write(self.line(cid, final=True))
            written += 1
        for cid, run in list(self.engine.ctx.recon_runs.items()):
            if cid not in self._recon_written:
                self._write_recon(cid, run)
                written += 1
        return written

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def summary(self) -> dict[str, Any]:
        """Per category: faults injected, and transactions whose expected category it is."""
        injected = {k: v for k, v in self.faults.by_category().items() if k != "none"}
        categories = sorted(set(injected) | set(self._categories))
        return {
            "transactions": self.count,
            "outcomes": dict(sorted(self._outcomes.items())),
            "categories": {
                c: {"injected": injected.get(c, 0), "expected": self._categories.get(c, 0)}
                for c in categories
            },
        }
