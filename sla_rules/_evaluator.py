"""The evaluator: the service object that runs the rules against the store.

One :class:`Evaluator` holds a store and a rule set. A *transactions* pass
judges the transactions active since the last pass (a watermark in
``revtrace_evaluator_state``, re-reading ``lateness`` before it) plus the open
ones (in progress, stuck, held), so a tick never rescans all history; a
*window* pass measures one window rule; a *dispatch* pass routes alerts and
delivers the outbox. :meth:`Evaluator.start` schedules them with APScheduler
(one job per rule at its interval; coalesced, one instance at a time).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from collector.store import Store, StoreError
from sla_rules import _queries as q
from sla_rules._alerting import (
    TRANSACTIONS_SOURCE,
    alerts_from_findings,
    dispatch,
    sync_alerts,
    transaction_alerts,
)
from sla_rules._errors import EvaluationError
from sla_rules._evaluate import TRANSACTION_KINDS, classify, evaluate, measure, reconcile
from sla_rules._model import (
    Finding,
    RateStats,
    SequenceViolation,
    SlaPoint,
    TransactionFacts,
    TransactionStats,
    TxStatus,
    Verdict,
)
from sla_rules._notify import Delivery, deliver_due
from sla_rules._spec import (
    BurnRateRule,
    CompletenessRule,
    DuplicateRule,
    LatencyRule,
    MttrRule,
    OrderingRule,
    RateRule,
    ReconciliationRule,
    Rule,
    RuleSet,
    builtin_pack,
    load_rules,
)
from tracer.semconv import ReconStatus

__all__ = [
    "ENV_EXTERNAL_URL",
    "ENV_RULES",
    "CycleResult",
    "Evaluator",
    "EvaluatorRole",
    "TransactionResult",
    "configured_rules",
]

log = logging.getLogger(__name__)

ENV_RULES: Final = "REVTRACE_RULES"
"""Path to a rules YAML file or a directory of them; empty: the built-in quote-to-cash pack."""
ENV_EXTERNAL_URL: Final = "REVTRACE_EXTERNAL_URL"
"""Base URL of the dashboard, for links in notifications (default http://127.0.0.1:8501)."""

WATERMARK: Final = "watermark:transactions"
_DAY: Final = 86_400.0

_TX_COLUMNS: Final = (
    "CorrelationId",
    "Process",
    "LegalEntity",
    "Region",
    "Status",
    "Category",
    "Severity",
    "Reason",
    "Evidence",
    "FirstSeen",
    "LastSeen",
    "LastStage",
    "Amount",
    "Currency",
    "Rules",
    "EvaluatedAt",
    "Stage",
    "Vendor",
    "Objects",
)
_POINT_COLUMNS: Final = (
    "Time",
    "Rule",
    "Kind",
    "Measure",
    "WindowSeconds",
    "Labels",
    "Process",
    "LegalEntity",
    "Region",
    "Vendor",
    "Value",
    "Objective",
    "Unit",
    "Good",
    "Total",
    "Breached",
)


def configured_rules(environ: Mapping[str, str] | None = None) -> RuleSet:
    """The rules named by ``REVTRACE_RULES`` (a file or directory), else the
    built-in quote-to-cash pack (``REVTRACE_RULES=builtin:demo`` picks a built-in pack)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_RULES, "").strip()
    if not raw:
        return builtin_pack()
    if raw.startswith("builtin:"):
        return builtin_pack(raw.removeprefix("builtin:"))
    return load_rules(Path(raw).expanduser())


@dataclass(frozen=True)
class TransactionResult:
    """What a transactions pass found."""

    verdicts: tuple[Verdict, ...]
    findings: tuple[Finding, ...]
    clean: int
    since: float | None
    """Store time from which writes were re-read (None: everything in the lookback)."""
    until: float


@dataclass
class CycleResult:
    """What one full cycle (every rule once) found."""

    at: float
    transactions: TransactionResult | None = None
    findings: list[Finding] = field(default_factory=list)
    points: list[SlaPoint] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    delivery: Delivery | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failing(self) -> list[Verdict]:
        """Verdicts that need a human (failed, stuck, held)."""
        if self.transactions is None:
            return []
        return [v for v in self.transactions.verdicts if v.status not in (TxStatus.OK, TxStatus.IN_PROGRESS)]


def _ns(seconds: float) -> int:
    """Epoch seconds → a DateTime64(9) column's value: nanoseconds, to the
    microsecond (as :func:`~sla_rules._queries.to_db_time` binds a time)."""
    return round(seconds * 1_000_000) * 1000


def _verdict_row(v: Verdict, evaluated_ms: int) -> list[Any]:
    # Times as integer ticks: the client writes them as they are (a datetime
    # costs a conversion each way, three per row of a pass's 15,000).
    return [
        v.correlation_id,
        v.process,
        v.legal_entity,
        v.region,
        v.status,
        v.category,
        v.severity,
        v.reason,
        json.dumps(v.evidence, sort_keys=True, default=str),
        _ns(v.first_seen),
        _ns(v.last_seen),
        v.last_stage,
        v.amount,
        v.currency,
        list(v.rules),
        evaluated_ms,
        v.stage,
        v.vendor,
        list(v.objects),
    ]


def _point_row(p: SlaPoint, now: float) -> list[Any]:
    labels = dict(p.labels)
    return [
        q.to_db_time(now),
        p.rule,
        p.kind,
        p.measure,
        int(p.window),
        labels,
        labels.get("process", ""),
        labels.get("legal_entity", ""),
        labels.get("region", ""),
        labels.get("vendor", ""),
        float(p.value),
        float(p.objective),
        p.unit,
        int(p.good),
        int(p.total),
        1 if p.breached else 0,
    ]


class Evaluator:
    """Runs a :class:`RuleSet` against a store."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        *,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        external_url: str | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.environ = environ
        env = os.environ if environ is None else environ
        self.external_url = external_url or env.get(ENV_EXTERNAL_URL, "http://127.0.0.1:8501")
        self.tx_rules: tuple[Rule, ...] = tuple(r for r in rules.rules if r.kind in TRANSACTION_KINDS)
        self.window_rules: tuple[Rule, ...] = tuple(r for r in rules.rules if self._has_window(r))
        self._plan = q.plan_facts(self.tx_rules)
        self._facts_from: float | None = None
        self._scheduler: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def _has_window(rule: Rule) -> bool:
        if isinstance(rule, LatencyRule):
            return bool(rule.objectives)
        if isinstance(rule, ReconciliationRule):
            return bool(rule.systems)
        return True

    # --- state ---------------------------------------------------------------------------

    def watermark(self) -> float | None:
        """The store's clock when the last transactions pass started (epoch seconds), if any."""
        value = self._state(WATERMARK)
        return float(value) if value else None

    def _set_watermark(self, at: float) -> None:
        self._set_state(WATERMARK, repr(at))

    def _state(self, name: str) -> str:
        value = self.store.query(
            "SELECT argMax(Value, UpdatedAt) FROM revtrace_evaluator_state WHERE Name = {n:String}",
            {"n": name},
        ).scalar()
        return str(value or "")

    def _set_state(self, name: str, value: str) -> None:
        self.store.insert_rows(
            "revtrace_evaluator_state",
            [[name, value, q.to_db_time(time.time())]],
            ("Name", "Value", "UpdatedAt"),
        )

    def facts_ready(self, since: float, until: float, *, backfill: bool = True) -> bool:
        """Whether ``revtrace_eval_facts`` holds every span from ``since`` on.

        On a store that had spans before the table's view existed, each call
        with ``backfill`` adds one day of them (newest first); until the
        back-fill reaches ``since`` the passes read the spans instead.
        """
        if self._facts_from != 0.0:  # 0.0: complete from the start, for good
            self._facts_from = q.facts_complete_from(self.store, self._state(q.FACTS_STATE))
        complete = self._facts_from
        if complete is None:
            return False
        if backfill and complete > since:
            # The first day is open-ended: spans stamped ahead of the clock too.
            start = math.floor(until / _DAY) * _DAY if math.isinf(complete) else complete - _DAY
            log.info("back-filling revtrace_eval_facts with the spans from %s", q.to_db_time(start))
            q.backfill_facts(self.store, start, complete)
            self._set_state(q.FACTS_STATE, repr(start))
            self._facts_from = complete = start
        return complete <= since

    # --- passes --------------------------------------------------------------------------

    def transactions(
        self, now: float | None = None, *, write: bool = True, incremental: bool = True
    ) -> TransactionResult:
        """Judge the transactions active since the watermark (and the open ones).

        ``write=False`` (``sla check``) writes nothing and judges every
        transaction active within the lookback before ``now``.
        """
        until = self.clock() if now is None else now
        spec = self.rules.evaluator
        horizon = until - spec.lookback
        # The watermark is the store's clock at the start of the last tick: the
        # change feed (revtrace_eval_changes) is stamped by the same clock, so
        # late spans are seen whatever their own timestamps say. ``lateness``
        # covers writes still committing when the last tick started.
        stamp = self._store_time() if write else None
        mark = self.watermark() if (write and incremental) else None
        since = mark - spec.lateness if mark is not None else None
        use_open = write and incremental
        try:
            seq = []
            dup_keys: dict[str, tuple[str, ...]] = {}
            for rule in self.tx_rules:
                if isinstance(rule, OrderingRule):
                    seq += q.sequence_violations(
                        self.store, rule, start=max(horizon, until - rule.window), until=until
                    )
                elif isinstance(rule, DuplicateRule) and rule.key != "object":
                    for cid, keys in q.duplicate_keys(
                        self.store, rule, start=max(horizon, until - rule.window), until=until
                    ).items():
                        dup_keys[cid] = dup_keys.get(cid, ()) + keys
            extra = sorted({v.correlation_id for v in seq} | set(dup_keys))
            with q.FactsPass(
                self.store,
                self._plan,
                since=since,
                until=until,
                horizon=horizon,
                use_open=use_open,
                extra=extra,
                fast=self.facts_ready(horizon, until, backfill=write),
            ) as scan:
                clean = scan.count_clean()
                clean_written = None
                try:
                    with _no_gc():
                        facts = scan.fetch_dirty()
                        # The ok verdicts are written server-side (one core)
                        # while the dirty transactions are judged here (the other).
                        if write:
                            clean_written = _thread("clean-verdicts").submit(scan.write_clean, time.time())
                        findings, verdicts = self._judge(facts, seq, dup_keys, until)
                        # The spans go now, by reference count: left to the
                        # next collection, it would walk every one of them.
                        del facts
                        evaluated_ms = round(time.time() * 1000)  # EvaluatedAt, DateTime64(3)
                        rows = [_verdict_row(v, evaluated_ms) for v in verdicts] if write else []
                finally:
                    if clean_written is not None:
                        wait([clean_written])
                if clean_written is not None:
                    clean_written.result()
        except StoreError as exc:
            raise EvaluationError(f"transactions pass: {exc}", retryable=exc.retryable) from exc
        if write:
            # One row per transaction: nothing for the ReplacingMergeTree to
            # replace within an insert, so no merge on insert (half its time).
            with _no_gc():
                for i in range(0, len(rows), 50_000):
                    self.store.insert_rows(
                        "revtrace_transactions",
                        rows[i : i + 50_000],
                        _TX_COLUMNS,
                        settings={"optimize_on_insert": 0},
                    )
                del rows
            if stamp is not None:
                self._set_watermark(stamp)
            alerts = transaction_alerts(self.store, since=until - spec.alert_horizon)
            sync_alerts(self.store, TRANSACTIONS_SOURCE, alerts, until)
        return TransactionResult(verdicts, tuple(findings), clean, since, until)

    def _judge(
        self,
        facts: list[TransactionFacts],
        seq: list[SequenceViolation],
        dup_keys: dict[str, tuple[str, ...]],
        until: float,
    ) -> tuple[list[Finding], tuple[Verdict, ...]]:
        """The rules' findings on the dirty transactions, and their verdicts (pure)."""
        stats = TransactionStats(tuple(facts), tuple(seq), dup_keys)
        findings: list[Finding] = []
        for rule in self.tx_rules:
            findings += evaluate(rule, stats, until)
        by_tx: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            for cid in f.correlation_ids:
                by_tx[cid].append(f)
        verdicts = tuple(
            classify(tx, by_tx.get(tx.correlation_id, ()), self.rules.classification, self.tx_rules, until)
            for tx in facts
        )
        return findings, verdicts

    def _store_time(self) -> float:
        value = self.store.query("SELECT toUnixTimestamp64Milli(now64(3))").scalar()
        return int(value) / 1000.0

    def window(
        self,
        rule: Rule,
        now: float | None = None,
        *,
        write: bool = True,
        stats_future: Future[Any] | None = None,
    ) -> tuple[list[Finding], list[SlaPoint]]:
        """Measure one window rule; with ``write``, record its points and alerts.

        ``stats_future``: the rule's statistics as of ``now``, already being
        read (:meth:`cycle` reads them while the transactions pass runs)."""
        until = self.clock() if now is None else now
        try:
            stats = self._window_stats(rule, until) if stats_future is None else stats_future.result()
        except StoreError as exc:
            raise EvaluationError(f"rule {rule.name!r}: {exc}", retryable=exc.retryable) from exc
        if stats is None:
            return [], []
        findings = evaluate(rule, stats, until)
        points = measure(rule, stats, until)
        if isinstance(rule, DuplicateRule | CompletenessRule) and isinstance(stats, RateStats):
            findings, points = self._share(rule, stats)
        if write:
            if points:
                stamp = until
                self.store.insert_rows(
                    "revtrace_sla_points", [_point_row(p, stamp) for p in points], _POINT_COLUMNS
                )
            sync_alerts(self.store, rule.name, alerts_from_findings(rule, findings), until)
            if isinstance(rule, ReconciliationRule):
                self._record_reconciliation(rule, stats, until)
        return findings, points

    @staticmethod
    def _reads_verdicts(rule: Rule) -> bool:
        """Whether the rule's window statistics read the verdicts (so need the transactions pass first)."""
        return isinstance(rule, DuplicateRule | CompletenessRule)

    def _window_stats(self, rule: Rule, until: float) -> Any:
        if isinstance(rule, LatencyRule):
            return q.latency_stats(self.store, rule, until=until)
        if isinstance(rule, RateRule):
            return q.rate_stats(self.store, rule, until=until)
        if isinstance(rule, BurnRateRule):
            return q.burn_stats(self.store, rule, until=until)
        if isinstance(rule, MttrRule):
            facts = self.facts_ready(until - rule.window, until, backfill=False)
            return q.mttr_stats(self.store, rule, until=until, facts=facts)
        if isinstance(rule, ReconciliationRule):
            return q.recon_stats(self.store, rule, until=until)
        if isinstance(rule, DuplicateRule | CompletenessRule):
            return q.verdict_share(self.store, rule, start=until - self._share_window(rule), until=until)
        return None

    @staticmethod
    def _share_window(rule: DuplicateRule | CompletenessRule) -> float:
        """The window of a verdict-share KPI (duplicate rate, stuck share)."""
        return rule.window if isinstance(rule, DuplicateRule) else max(rule.within * 4, 3600.0)

    def _verdict_shares(self, until: float, timings: dict[str, float]) -> dict[str, Future[Any]]:
        """The verdict shares of every rule that reads the verdicts, read in one
        query (as finished futures for :meth:`window`; a store error is each one's)."""
        rules = [r for r in self.window_rules if isinstance(r, DuplicateRule | CompletenessRule)]
        futures: dict[str, Future[Any]] = {r.name: Future() for r in rules}
        if not rules:
            return futures
        t0 = time.perf_counter()
        try:
            shares = q.verdict_shares(
                self.store, [(r, until - self._share_window(r)) for r in rules], until=until
            )
        except StoreError as exc:
            for future in futures.values():
                future.set_exception(exc)
        else:
            for rule, stats in zip(rules, shares, strict=True):
                futures[rule.name].set_result(stats)
        timings["verdict_shares"] = time.perf_counter() - t0
        return futures

    def _share(
        self, rule: DuplicateRule | CompletenessRule, stats: RateStats
    ) -> tuple[list[Finding], list[SlaPoint]]:
        """KPIs from the verdicts: duplicate rate, stuck share."""
        findings: list[Finding] = []
        points: list[SlaPoint] = []
        window = self._share_window(rule)
        for g in stats.groups:
            bad = g.total - g.good
            share = 100.0 * bad / g.total if g.total else 0.0
            limit = rule.threshold if isinstance(rule, DuplicateRule) else 0.0
            measure_name = "duplicate_rate" if isinstance(rule, DuplicateRule) else "stuck_rate"
            points.append(
                SlaPoint(
                    rule.name,
                    rule.kind,
                    measure_name,
                    window,
                    dict(g.labels),
                    share,
                    limit,
                    "percent",
                    g.good,
                    g.total,
                    share > limit,
                )
            )
            if isinstance(rule, DuplicateRule) and share > limit and bad:
                findings.append(
                    Finding(
                        rule=rule.name,
                        kind=rule.kind,
                        category=rule.category,
                        severity=rule.severity,
                        reason=f"{share:.2f}% of {g.total} transactions had a duplicate effect (threshold {limit:g}%)",
                        labels=dict(g.labels),
                        value=share,
                        objective=limit,
                        correlation_ids=g.examples,
                        evidence={"duplicates": bad, "total": g.total},
                    )
                )
        return findings, points

    def _record_reconciliation(self, rule: ReconciliationRule, stats: Any, now: float) -> str:
        items = reconcile(rule, stats)
        run_id = uuid.uuid4().hex
        exceptions = sum(1 for i in items if i.status != ReconStatus.OK)
        periods = sorted({i.period for i in items})
        self.store.insert_rows(
            "revtrace_recon_runs",
            [
                [
                    run_id,
                    rule.name,
                    q.to_db_time(now),
                    q.to_db_time(time.time()),
                    periods,
                    "exceptions" if exceptions else "ok",
                    len(items),
                    exceptions,
                    "",
                ]
            ],
            ("RunId", "Rule", "StartedAt", "FinishedAt", "Periods", "Status", "Items", "Exceptions", "Error"),
        )
        if items:
            self.store.insert_rows(
                "revtrace_recon_items",
                [
                    [
                        run_id,
                        rule.name,
                        q.to_db_time(now),
                        i.period,
                        i.object_type,
                        i.legal_entity,
                        i.measure,
                        list(i.systems),
                        list(i.values),
                        i.difference,
                        i.status,
                        list(i.correlation_ids),
                    ]
                    for i in items
                ],
                (
                    "RunId",
                    "Rule",
                    "CheckedAt",
                    "Period",
                    "ObjectType",
                    "LegalEntity",
                    "Measure",
                    "Systems",
                    "Values",
                    "Difference",
                    "Status",
                    "CorrelationIds",
                ),
            )
        return run_id

    def notify(self, now: float | None = None) -> tuple[list[str], Delivery]:
        """Route and group the alerts, queue what is due, deliver the outbox."""
        at = self.clock() if now is None else now
        queued = dispatch(self.store, self.rules.alerting, at)
        delivery = deliver_due(
            self.store, self.rules.alerting, at, external_url=self.external_url, environ=self.environ
        )
        return queued, delivery

    def cycle(
        self, now: float | None = None, *, write: bool = True, incremental: bool = True, notify: bool = True
    ) -> CycleResult:
        """Every rule once: transactions, then each window rule, then notifications."""
        at = self.clock() if now is None else now
        result = CycleResult(at=at)
        # Two cores, kept busy: the window rules that do not read the verdicts
        # are measured on a thread of their own from the start, beside the
        # pass's facts step (as the scheduler's separate jobs would); the pass
        # then has the engine to itself to fetch the dirty spans, and writes the
        # clean verdicts on another thread while it judges in Python. Each
        # rule's writes still happen below, in rule order, after the pass; the
        # rules that read the verdicts read them in one query then.
        futures: dict[str, Future[Any]] = {}
        try:
            for rule in self.window_rules:
                if not self._reads_verdicts(rule):
                    futures[rule.name] = _thread("window-stats").submit(
                        self._timed_stats, rule, at, result.timings
                    )
            started = time.perf_counter()
            result.transactions = self.transactions(at, write=write, incremental=incremental)
            result.timings["transactions"] = time.perf_counter() - started
            futures |= self._verdict_shares(at, result.timings)
            for rule in self.window_rules:
                t0 = time.perf_counter()
                findings, points = self.window(rule, at, write=write, stats_future=futures.get(rule.name))
                result.findings += findings
                result.points += points
                result.timings[rule.name] = result.timings.get(rule.name, 0.0) + time.perf_counter() - t0
        finally:
            # Nothing of this cycle runs on after it.
            for future in futures.values():
                future.cancel()
            wait(futures.values())
        if write and notify:
            t0 = time.perf_counter()
            result.queued, result.delivery = self.notify(at)
            result.timings["notify"] = time.perf_counter() - t0
        return result

    def _timed_stats(self, rule: Rule, until: float, timings: dict[str, float]) -> Any:
        t0 = time.perf_counter()
        try:
            return self._window_stats(rule, until)
        finally:
            timings[rule.name] = time.perf_counter() - t0

    # --- scheduling ------------------------------------------------------------------------

    def _guard(self, name: str, job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception:
                # A failed tick is logged and tried again at the next interval;
                # it never stops the scheduler.
                log.exception("evaluator job %s failed", name)

        return run

    def start(self, *, notify_interval: float = 5.0) -> None:
        """Schedule every pass with APScheduler (BackgroundScheduler)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        with self._lock:
            if self._scheduler is not None:
                return
            tx_interval = min((r.interval for r in self.tx_rules), default=self.rules.evaluator.interval)
            scheduler = BackgroundScheduler(
                timezone="UTC",
                job_defaults={
                    "coalesce": True,
                    "max_instances": 1,
                    "misfire_grace_time": int(max(30, tx_interval)),
                },
            )
            scheduler.add_job(
                self._guard("transactions", self.transactions),
                "interval",
                seconds=tx_interval,
                id="transactions",
                next_run_time=_now_dt(),
            )
            for rule in self.window_rules:
                scheduler.add_job(
                    self._guard(rule.name, functools.partial(self.window, rule)),
                    "interval",
                    seconds=rule.interval,
                    id=f"rule:{rule.name}",
                    next_run_time=_now_dt(),
                    misfire_grace_time=int(max(30, rule.interval)),
                )
            scheduler.add_job(
                self._guard("notify", self.notify), "interval", seconds=notify_interval, id="notify"
            )
            scheduler.start()
            self._scheduler = scheduler
            log.info(
                "evaluator started: %d rules from %s", len(self.rules.rules), ", ".join(self.rules.sources)
            )

    def stop(self) -> None:
        """Stop the scheduler, waiting for running jobs."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic garbage collection while a pass builds its many small objects
    (spans, findings, verdicts): with them alive, every collection walks them
    all again, a third of the pass's Python time. Nothing they make is cyclic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_pool_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def _thread(name: str) -> ThreadPoolExecutor:
    """The one thread of ``name`` in this process, beside a cycle's caller:
    ``window-stats`` reads the window statistics :meth:`Evaluator.cycle`
    measures beside the transactions pass; ``clean-verdicts`` writes a pass's
    clean verdicts while the pass judges the dirty ones.

    One per process rather than per pass: the store keeps a client per thread."""
    with _pool_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"revtrace-{name}")
        return pool


def _now_dt() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


class EvaluatorRole:
    """The evaluator as a role of ``revtrace up``: ``factory(store, collector)``."""

    name = "evaluator"
    url = ""

    def __init__(self, store: Store, collector: object = None, rules: RuleSet | None = None) -> None:
        self.evaluator = Evaluator(store, rules or configured_rules())
        self.url = ""
        """No endpoint of its own (the attribute ``revtrace up`` prints)."""

    @property
    def description(self) -> str:
        """What it evaluates: the rule count and where the rules came from."""
        return f"{len(self.evaluator.rules.rules)} rules ({', '.join(self.evaluator.rules.sources)})"

    def start(self) -> None:
        """Start the schedule."""
        self.evaluator.start()

    def stop(self) -> None:
        """Stop the schedule."""
        self.evaluator.stop()
