"""The evaluator's queries: SQL from ``sla_rules/sql/*.sql`` run through the
:class:`~collector.store.Store`, results mapped to the statistics of
:mod:`sla_rules._model`. Every value is a bound ``{name:Type}`` parameter; the
only text put into SQL is this package's own fragments, column names from the
fixed :data:`~sla_rules._spec.DIMENSIONS` table and the outcome vocabulary of
:mod:`tracer.semconv`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Final

from collector.store import Rows, Store
from sla_rules._model import (
    BurnStats,
    GroupCount,
    LatencyGroup,
    LatencyStats,
    MttrStats,
    RateStats,
    ReconSnapshot,
    ReconStats,
    SequenceViolation,
    SpanSignal,
    TransactionFacts,
    TxStatus,
)
from sla_rules._spec import (
    DIMENSIONS,
    BurnRateRule,
    CompletenessRule,
    DuplicateRule,
    LatencyRule,
    MttrRule,
    OrderingRule,
    RateRule,
    ReconciliationRule,
    Rule,
)
from tracer.semconv import Outcome

__all__ = [
    "FACTS_STATE",
    "FactsPass",
    "FactsPlan",
    "backfill_facts",
    "backfill_sql",
    "burn_stats",
    "duplicate_keys",
    "facts_complete_from",
    "latency_stats",
    "mttr_stats",
    "plan_facts",
    "rate_stats",
    "recon_stats",
    "sequence_violations",
    "sql",
    "to_db_time",
    "verdict_share",
    "verdict_shares",
]


def _quote(values: Iterable[str]) -> str:
    # Only ever used on this codebase's own vocabulary (semconv enums, statuses).
    return "(" + ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + ")"


_OK_OUTCOMES: Final = (Outcome.OK, "", Outcome.SKIPPED_DUPLICATE, Outcome.COMPENSATED)
_MARKERS: Final = {
    # A step that did not fail (an empty outcome is judged by the span status).
    "OK": f"(Outcome IN {_quote(_OK_OUTCOMES)} AND NOT (Outcome = '' AND StatusCode = 'Error'))",
    # A step that took effect: plain success, not a skipped duplicate.
    "EFFECT": f"(Outcome IN {_quote((Outcome.OK, ''))} AND StatusCode != 'Error')",
    # An attempt that ended the step as failed (no automatic retry follows).
    "FINAL_FAILURE": (
        f"(Outcome IN {_quote((Outcome.FAILED, Outcome.DEAD_LETTERED, Outcome.PARKED))} "
        "OR (Outcome = '' AND StatusCode = 'Error'))"
    ),
    "RETRYING": _quote((Outcome.RETRYING,))[1:-1],
    "OPEN_STATUSES": _quote(TxStatus.OPEN),
    "STATUS_OK": _quote((TxStatus.OK,))[1:-1],
}
_SECTION: Final = re.compile(r"^-- name: (?P<name>[a-z_]+)\s*$", re.MULTILINE)
_MARKER: Final = re.compile(r"/\*@(?P<name>[A-Z_]+)@\*/")


log = logging.getLogger(__name__)


@cache
def _sections(file: str) -> dict[str, str]:
    text = resources.files("sla_rules.sql").joinpath(f"{file}.sql").read_text(encoding="utf-8")
    parts = _SECTION.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        out[name] = "\n".join(lines).strip()
    return out


def sql(file: str, name: str, **markers: str) -> str:
    """Section ``name`` of ``sla_rules/sql/<file>.sql`` with its markers filled."""
    values = {**_MARKERS, **markers}

    def fill(match: re.Match[str]) -> str:
        key = match["name"]
        if key not in values:
            raise KeyError(f"{file}.sql/{name}: no value for /*@{key}@*/")
        return values[key]

    text = _sections(file)[name]
    # Markers may hold markers (a fragment using OK): fill until stable.
    for _ in range(4):
        filled = _MARKER.sub(fill, text)
        if filled == text:
            break
        text = filled
    return text


SETTINGS: Final = {"prefer_column_name_to_alias": 1, "optimize_aggregation_in_order": 1}
"""Session settings of every evaluator query: an aggregate aliased like its
column (``anyIf(Process, …) AS Process``) still reads the column."""


def _query(store: Store, text: str, params: Mapping[str, Any] | None = None) -> Rows:
    return store.query(text, params, settings=SETTINGS)


def _command(store: Store, text: str, params: Mapping[str, Any] | None = None) -> None:
    store.command(text, params, settings=SETTINGS)


def to_db_time(seconds: float) -> dt.datetime:
    """Epoch seconds → the naive UTC datetime the store binds (sessions are UTC)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return float(value.timestamp())
    return float(value or 0)


# --- per-transaction -------------------------------------------------------------------


@dataclass
class FactsPlan:
    """The facts query for a rule set: which stages it looks at, the
    "something may be wrong" condition, and the parameters both bind.

    Every column has two forms: from the spans (``columns``) and from
    ``revtrace_eval_facts`` (``fast_columns``); ``ambiguous`` lists what makes
    the table's row insufficient (its transaction's facts then come from the
    spans)."""

    columns: list[str] = field(default_factory=list)
    fast_columns: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=lambda: ["NotOk > 0", "LastRetry", "LastOk"])
    """What the dirty condition reads (kept in the scratch table's ``Facts``)."""
    ambiguous: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    amounts: set[int] = field(default_factory=set)
    idempotency_keys: bool = False
    """Whether a rule compares idempotency keys (the spans are read with them)."""

    def stage(self, name: str) -> int:
        if name not in self.stages:
            i = len(self.stages)
            self.stages[name] = i
            self.params[f"st_{i}"] = name
            self.columns.append(_fragment("col_first_ok", i=i))
            self.fast_columns.append(_fragment("fast_first_ok", i=i))
            self.names.append(f"ok_{i}")
        return self.stages[name]

    def amount(self, name: str) -> int:
        i = self.stage(name)
        if i not in self.amounts:
            self.amounts.add(i)
            self.columns.append(_fragment("col_amount", i=i))
            self.fast_columns.append(_fragment("fast_amount", i=i))
            self.names.append(f"amt_{i}")
        return i

    def facts(self, scope: str) -> str:
        """The facts from the spans of the transactions ``scope`` selects."""
        return sql("transactions", "facts", COLUMNS="\n    ".join(self.columns), SCOPE=scope)

    def fast_facts(self) -> str:
        """The facts of the candidates from ``revtrace_eval_facts``, with ``FromSpans``."""
        return sql(
            "transactions",
            "facts_fast",
            COLUMNS="\n    ".join(self.fast_columns),
            AMBIGUOUS="\n    ".join(self.ambiguous),
            ROWS=facts_rows(
                sql("transactions", "scope_candidates", CANDIDATES=sql("transactions", "candidates"))
            ),
        )

    def dirty(self) -> str:
        return " OR ".join(self.conditions)


def facts_rows(scope: str) -> str:
    """``revtrace_eval_facts``, one row per transaction of ``scope`` with a span
    in ``[horizon, until]`` (the parameters of the query it goes into)."""
    return sql(
        "transactions", "facts_rows", SCOPE=scope, SPLIT=sql("transactions", "facts_split", SCOPE=scope)
    )


def _fragment(name: str, file: str = "transactions", **indexes: int) -> str:
    text = _sections(file)[name]
    for key, value in indexes.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def plan_facts(rules: Sequence[Rule]) -> FactsPlan:
    """Build the facts query's columns and dirty condition for ``rules``."""
    plan = FactsPlan()
    plan.conditions.append(_fragment("cond_not_ok"))
    object_dup_stages: list[str] = []
    for k, rule in enumerate(rules):
        if isinstance(rule, CompletenessRule | LatencyRule):
            if isinstance(rule, CompletenessRule):
                if rule.idle:
                    continue  # pending work is a span that is not ok: already dirty
                a, b, limit = plan.stage(rule.after), plan.stage(rule.expect), rule.within
            elif rule.deadline is not None and rule.per == "transaction":
                a, b, limit = plan.stage(rule.from_stage), plan.stage(rule.to_stage), rule.deadline
            else:
                continue
            plan.conditions.append(_fragment("cond_expectation", i=k, a=a, b=b))
            plan.params[f"proc_{k}"] = rule.process
            plan.params[f"limit_{k}"] = int(limit * 1000)
        elif isinstance(rule, DuplicateRule) and rule.key == "object":
            object_dup_stages.extend(s for s in rule.stages if s not in object_dup_stages)
        elif isinstance(rule, DuplicateRule):
            plan.idempotency_keys |= rule.key == "idempotency_key"
            for j, stage in enumerate(rule.stages):
                i = k * 100 + j
                plan.params[f"dup_{i}"] = stage
                plan.columns.append(_fragment(f"col_dup_{rule.key}", i=i))
                plan.fast_columns.append(_fragment("fast_dup_key", i=i))
                plan.names.append(f"dup_{i}")
                plan.ambiguous.append(_fragment("fast_ambiguous_key", i=i))
                plan.conditions.append(_fragment("cond_dup", i=i))
        elif isinstance(rule, OrderingRule):
            for first, then in rule.dependencies:
                plan.conditions.append(_fragment("cond_order", a=plan.stage(first), b=plan.stage(then)))
        elif isinstance(rule, ReconciliationRule) and rule.match_from:
            a, b = plan.amount(rule.match_from), plan.amount(rule.match_to)
            plan.conditions.append(_fragment("cond_amount", i=k, a=a, b=b))
            plan.params[f"tol_{k}"] = float(rule.tolerance)
    if object_dup_stages:
        plan.params["dup_stages"] = object_dup_stages
        plan.columns.append(_fragment("col_dup_objects"))
        plan.fast_columns.append(_fragment("fast_dup_objects"))
        plan.names.append("dup_objects")
        plan.conditions.append(_fragment("cond_dup_objects"))
    return plan


def _window_params(since: float | None, until: float, horizon: float, use_open: bool) -> dict[str, Any]:
    # since: the store time of the last tick (None: a cold start, every
    # transaction within the lookback is a candidate).
    return {
        "since": to_db_time(since if since is not None else 0.0),
        "until": to_db_time(until),
        "horizon": to_db_time(horizon),
        "use_open": 1 if use_open else 0,
        "everything": 1 if since is None else 0,
    }


FACTS_STATE: Final = "facts:complete_from"
"""``revtrace_evaluator_state`` entry: the span time (epoch seconds) from which
the back-fill of ``revtrace_eval_facts`` is done."""
_SPANS_VERSION: Final = "0003"  # collector/schema/0003_business_spans.sql: revtrace_spans
_FACTS_VERSION: Final = "0102"  # collector/schema/0102_sla_facts.sql: revtrace_eval_facts and its view
_ONE_MIGRATION_RUN_S: Final = 300.0
"""Migrations recorded this close together ran in one ``db migrate`` (a cluster
waits for every node on each statement: minutes, not hours)."""


def facts_complete_from(store: Store, state: str | None) -> float | None:
    """The span time from which ``revtrace_eval_facts`` holds every span.

    0.0 when its view was created with the span table (a new store: every
    span went through it); on a store that had spans before, what the
    back-fill has done (``state``, the value of :data:`FACTS_STATE`; ``inf``
    when it has not started); None when the table does not exist.
    """
    rows = _query(
        store,
        sql("transactions", "facts_schema"),
        {"spans_version": _SPANS_VERSION, "facts_version": _FACTS_VERSION},
    )
    applied = {str(version): _epoch(at) for version, at in rows}
    if _FACTS_VERSION not in applied:
        return None
    if applied[_FACTS_VERSION] - applied.get(_SPANS_VERSION, -math.inf) <= _ONE_MIGRATION_RUN_S:
        return 0.0
    return float(state) if state else math.inf


_BACKFILL_WHERE: Final = "WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp < {end:DateTime64(9)}\n    "


@cache
def backfill_sql() -> str:
    """The facts view's own SELECT (collector/schema/0102_sla_facts.sql) over the spans
    of ``[start, end)``, inserted into ``revtrace_eval_facts``: one source for both."""
    from collector.migrations import RenderOptions, load_migrations

    (migration,) = [
        m for m in load_migrations(RenderOptions(ttl_days=0, cluster="")) if m.version == _FACTS_VERSION
    ]
    view = next(st for st in migration.statements if st.startswith("CREATE MATERIALIZED VIEW"))
    select = view[view.index("AS SELECT") + len("AS ") :]
    inner = "FROM revtrace_spans\n    GROUP BY CorrelationId"
    if select.count(inner) != 1:
        raise RuntimeError(f"migration {_FACTS_VERSION}: the facts view no longer reads {inner!r}")
    return "INSERT INTO revtrace_eval_facts\n" + select.replace(
        inner, inner.replace("GROUP BY", _BACKFILL_WHERE + "GROUP BY")
    )


def backfill_facts(store: Store, start: float, end: float) -> None:
    """Aggregate the spans with ``start <= Timestamp < end`` into ``revtrace_eval_facts``
    (idempotent: re-running it, or overlapping its view, changes no fact)."""
    _command(store, backfill_sql(), {"start": to_db_time(start), "end": to_db_time(min(end, _LAST_TIME))})


_LAST_TIME: Final = 9_000_000_000.0  # 2255: within DateTime64(9), after any span


class FactsPass:
    """One pass over the candidates: their facts are computed once into a
    scratch Memory table; :meth:`write_clean` and :meth:`fetch_dirty` read it.
    Use as a context manager (the table is dropped on exit).

    With ``fast`` the facts come from ``revtrace_eval_facts`` (one row per
    transaction, kept at ingest time), and from the spans only for the
    candidates it cannot answer for; without, from the spans."""

    def __init__(
        self,
        store: Store,
        plan: FactsPlan,
        *,
        since: float | None,
        until: float,
        horizon: float,
        use_open: bool,
        extra: Sequence[str],
        fast: bool = False,
    ) -> None:
        self.store = store
        self.plan = plan
        self.fast = fast
        self.scratch = f"_revtrace_eval_{uuid.uuid4().hex}"
        self.params = {**plan.params, **_window_params(since, until, horizon, use_open), "extra": list(extra)}
        self.from_spans = 0
        """Candidates whose facts were read from the spans although ``fast`` was asked for."""

    def _stage(self, name: str, facts: str, from_spans: str) -> None:
        text = sql(
            "transactions",
            name,
            SCRATCH=self.scratch,
            FACTS=facts,
            DIRTY=self.plan.dirty(),
            FROM_SPANS=from_spans,
            NAMES=", ".join(self.plan.names),
        )
        _command(self.store, text, self.params)

    def __enter__(self) -> FactsPass:
        if not self.fast:
            scope = sql("transactions", "scope_candidates", CANDIDATES=sql("transactions", "candidates"))
            self._stage("stage_facts", self.plan.facts(scope), "0")
            return self
        self._stage("stage_facts", self.plan.fast_facts(), "FromSpans")
        count = sql("transactions", "count_from_spans", SCRATCH=self.scratch)
        self.from_spans = int(_query(self.store, count).scalar() or 0)
        if self.from_spans:
            scope = sql("transactions", "scope_from_spans", SCRATCH=self.scratch)
            self._stage("insert_from_spans", self.plan.facts(scope), "0")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.store.command(f"DROP TABLE IF EXISTS {self.scratch}")
        except Exception:
            log.warning("could not drop scratch table %s", self.scratch)

    def write_clean(self, now: float) -> None:
        """Write ``ok`` verdicts for the candidates nothing is wrong with (server-side)."""
        _command(
            self.store, sql("transactions", "insert_clean", SCRATCH=self.scratch), {"now": to_db_time(now)}
        )

    def count_clean(self) -> int:
        """How many candidates are clean."""
        return int(_query(self.store, sql("transactions", "count_clean", SCRATCH=self.scratch)).scalar() or 0)

    def fetch_dirty(self) -> list[TransactionFacts]:
        """Every span of the candidates something may be wrong with, as facts."""
        keys = "IdempotencyKey" if self.plan.idempotency_keys else "'' AS IdempotencyKey"
        rows = _query(
            self.store, sql("transactions", "dirty_spans", SCRATCH=self.scratch, KEYS=keys), self.params
        )
        return _facts(rows)


_SPAN_ORDER: Final = operator.attrgetter("end", "attempt")


def _facts(rows: Iterable[Sequence[Any]]) -> list[TransactionFacts]:
    by_tx: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        tx_rows = by_tx.get(row[0])
        if tx_rows is None:
            by_tx[row[0]] = [row]
        else:
            tx_rows.append(row)
    out: list[TransactionFacts] = []
    signal = SpanSignal
    for cid, tx_rows in by_tx.items():
        spans = sorted(
            [
                signal(
                    stage, start_ns / 1e9, end_ns / 1e9, outcome, status, category, code, error_type,
                    int(http or 0), vendor, system, int(attempt or 0), otype, oid, ikey, event_id,
                    None if seq is None else int(seq), amount, span_id,
                )
                for (_cid, _p, _e, _r, stage, system, vendor, start_ns, end_ns, outcome, status, category, code,
                     error_type, http, attempt, otype, oid, ikey, event_id, seq, amount, _c, span_id) in tx_rows
            ],
            key=_SPAN_ORDER,
        )  # fmt: skip
        out.append(
            TransactionFacts(
                correlation_id=cid,
                process=max([r[1] for r in tx_rows]),
                legal_entity=max([r[2] for r in tx_rows]),
                region=max([r[3] for r in tx_rows]),
                first_seen=min(sp.start for sp in spans),
                last_seen=spans[-1].end,
                last_stage=spans[-1].stage,
                spans=tuple(spans),
                amount=next((sp.amount for sp in spans if sp.amount is not None), None),
                currency=max([r[22] for r in tx_rows]),
            )
        )
    return out


def sequence_violations(
    store: Store, rule: OrderingRule, *, start: float, until: float
) -> list[SequenceViolation]:
    """Events of one object applied after a later event of the same object."""
    rows = _query(
        store,
        sql("transactions", "sequence_violations"),
        {"start": to_db_time(start), "until": to_db_time(until), "stages": list(rule.stages)},
    )
    return [
        SequenceViolation(
            correlation_id=cid,
            object_type=otype,
            object_id=oid,
            stage=stage,
            sequence=int(seq),
            after_sequence=int(prev),
            span_id=span_id,
        )
        for cid, otype, oid, stage, seq, prev, span_id in rows
    ]


def duplicate_keys(
    store: Store, rule: DuplicateRule, *, start: float, until: float
) -> dict[str, tuple[str, ...]]:
    """Correlation id → keys another (earlier) transaction already applied."""
    if rule.key == "object":
        return {}
    rows = _query(
        store,
        sql("transactions", "duplicate_keys"),
        {
            "start": to_db_time(start),
            "until": to_db_time(until),
            "stages": list(rule.stages),
            "key": rule.key,
        },
    )
    out: dict[str, list[str]] = {}
    for key, cids in rows:
        for cid in cids[1:]:
            out.setdefault(cid, []).append(key)
    return {cid: tuple(keys) for cid, keys in out.items()}


# --- windows ---------------------------------------------------------------------------


def _dims(rule: Rule | Sequence[str]) -> tuple[str, str]:
    """SELECT and GROUP BY text for a rule's grouping dimensions (or these)."""
    group_by = rule if isinstance(rule, Sequence) else rule.group_by
    if not group_by:
        return "'' AS _all", "_all"
    select = ", ".join(f"toString({DIMENSIONS[d]}) AS {d}" for d in group_by)
    return select, ", ".join(group_by)


def _labels(rule: Rule, row: Sequence[Any]) -> dict[str, str]:
    return {d: str(v) for d, v in zip(rule.group_by, row, strict=False)}


def _scope_params(rule: RateRule | BurnRateRule, start: float, until: float) -> dict[str, Any]:
    return {
        "start": to_db_time(start),
        "until": to_db_time(until),
        "process": rule.process,
        "stage": rule.stage,
        "system": rule.system,
        "vendor": rule.vendor,
    }


def latency_stats(store: Store, rule: LatencyRule, *, until: float) -> LatencyStats:
    """Percentiles of the rule's stage-to-stage time per group, per objective window."""
    select, group = _dims(rule)
    ndims = max(1, len(rule.group_by))
    windows: dict[float, tuple[LatencyGroup, ...]] = {}
    by_window: dict[float, list[float]] = {}
    for o in rule.objectives:
        by_window.setdefault(o.window, []).append(o.percentile)
    for window, percentiles in by_window.items():
        levels = ", ".join(f"{{level_{i}:Float64}}" for i in range(len(percentiles)))
        name = "latency_transaction" if rule.per == "transaction" else "latency_object"
        params: dict[str, Any] = {
            "start": to_db_time(until - window),
            "until": to_db_time(until),
            "from_stage": rule.from_stage,
            "to_stage": rule.to_stage,
            "process": rule.process,
            **{f"level_{i}": p / 100.0 for i, p in enumerate(percentiles)},
        }
        rows = _query(store, sql("windows", name, DIMS=select, GROUP=group, LEVELS=levels), params)
        groups = []
        for row in rows:
            n, q, worst = row[ndims], row[ndims + 1], row[ndims + 2]
            groups.append(
                LatencyGroup(
                    labels=_labels(rule, row),
                    count=int(n),
                    quantiles={p: float(v) for p, v in zip(percentiles, q, strict=True)},
                    worst=tuple(str(w) for w in worst),
                )
            )
        windows[window] = tuple(groups)
    return LatencyStats(windows=windows)


def rate_stats(store: Store, rule: RateRule, *, until: float) -> RateStats:
    """Good and total steps (or attempts) per group over the rule's window."""
    select, group = _dims(rule)
    ndims = max(1, len(rule.group_by))
    name = "rate_steps" if rule.unit == "step" else "rate_attempts"
    scope = sql("windows", "scope")
    rows = _query(
        store,
        sql("windows", name, DIMS=select, GROUP=group, SCOPE=scope),
        _scope_params(rule, until - rule.window, until),
    )
    return RateStats(
        groups=tuple(
            GroupCount(_labels(rule, row), int(row[ndims]), int(row[ndims + 1]), tuple(row[ndims + 2]))
            for row in rows
        )
    )


def burn_stats(store: Store, rule: BurnRateRule, *, until: float) -> BurnStats:
    """Good and total steps per group for every window length the rule uses."""
    lengths = sorted({w for bw in rule.windows for w in (bw.long, bw.short)})
    select, group = _dims(rule)
    ndims = max(1, len(rule.group_by))
    params = {
        **_scope_params(rule, until - max(lengths), until),
        "windows_ms": [int(w * 1000) for w in lengths],
    }
    rows = _query(
        store, sql("windows", "burn_steps", DIMS=select, GROUP=group, SCOPE=sql("windows", "scope")), params
    )
    windows: dict[float, list[GroupCount]] = {w: [] for w in lengths}
    for row in rows:
        labels = _labels(rule, row)
        goods, totals, examples = row[ndims], row[ndims + 1], tuple(row[ndims + 2])
        for w, good, total in zip(lengths, goods, totals, strict=True):
            windows[w].append(GroupCount(labels, int(good), int(total), examples))
    return BurnStats(windows={w: tuple(g) for w, g in windows.items()})


def mttr_stats(store: Store, rule: MttrRule, *, until: float, facts: bool = False) -> MttrStats:
    """Resolved final failures per group over the rule's window. With
    ``facts`` (``revtrace_eval_facts`` holds every span of the window) the
    failed transactions are found there instead of in a scan of the spans."""
    select, group = _dims(rule)
    ndims = max(1, len(rule.group_by))
    failed = sql("windows", "mttr_failed_facts" if facts else "mttr_failed")
    rows = _query(
        store,
        sql("windows", "mttr", DIMS=select, GROUP=group, FAILED=failed),
        {"start": to_db_time(until - rule.window), "until": to_db_time(until)},
    )
    groups = tuple((_labels(rule, row), int(row[ndims]), float(row[ndims + 1] or 0.0)) for row in rows)
    return MttrStats(groups=groups, unresolved=sum(int(row[ndims + 2]) for row in rows))


def verdict_share(
    store: Store, rule: DuplicateRule | CompletenessRule, *, start: float, until: float
) -> RateStats:
    """Transactions seen in the window without (good) and with the rule's category."""
    return verdict_shares(store, [(rule, start)], until=until)[0]


def verdict_shares(
    store: Store, rules: Sequence[tuple[DuplicateRule | CompletenessRule, float]], *, until: float
) -> list[RateStats]:
    """:func:`verdict_share` of each ``(rule, start)``, from one pass over the verdicts."""
    if not rules:
        return []
    dims = [d for d in DIMENSIONS if any(d in rule.group_by for rule, _ in rules)]
    select, group_sql = _dims(dims)
    counts = "\n".join(_fragment("verdict_share_counts", "windows", k=k) for k in range(len(rules)))
    params: dict[str, Any] = {
        "start": to_db_time(min(start for _, start in rules)),
        "until": to_db_time(until),
    }
    for k, (rule, start) in enumerate(rules):
        params |= {
            f"start_{k}": to_db_time(start),
            f"process_{k}": rule.process,
            f"category_{k}": rule.category.value,
        }
    text = sql("windows", "verdict_share", DIMS=select, GROUP=group_sql, COUNTS=counts)
    rows = _query(store, text, params)
    ndims = max(1, len(dims))
    out: list[RateStats] = []
    for k, (rule, _) in enumerate(rules):
        total, bad, examples = ndims + 3 * k, ndims + 3 * k + 1, ndims + 3 * k + 2
        groups: dict[tuple[str, ...], list[Any]] = {}
        for row in rows:
            if not row[total]:
                continue
            labels = dict(zip(dims, (str(v) for v in row), strict=False))
            key = tuple(labels[d] for d in rule.group_by)
            group = groups.setdefault(key, [0, 0, []])
            group[0] += int(row[total])
            group[1] += int(row[bad])
            group[2] += [str(cid) for cid in row[examples]]
        out.append(
            RateStats(
                groups=tuple(
                    GroupCount(dict(zip(rule.group_by, key, strict=True)), n - n_bad, n, tuple(ex[:10]))
                    for key, (n, n_bad, ex) in sorted(groups.items())
                )
            )
        )
    return out


def recon_stats(store: Store, rule: ReconciliationRule, *, until: float) -> ReconStats:
    """The latest snapshot per system, object type, period and legal entity."""
    rows = _query(
        store,
        sql("windows", "recon_snapshots"),
        {
            "start": to_db_time(until - rule.window),
            "until": to_db_time(until),
            "object_type": rule.object_type,
        },
    )
    return ReconStats(
        snapshots=tuple(
            ReconSnapshot(
                system=system,
                object_type=otype,
                period=period,
                legal_entity=entity,
                count=None if count is None else int(count),
                amount=None if amount is None else Decimal(amount),
                statuses={str(k): int(v) for k, v in (statuses or {}).items()},
                correlation_id=cid,
            )
            for system, otype, period, entity, count, amount, statuses, cid in rows
        )
    )
