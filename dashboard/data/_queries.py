"""The queries behind the pages, each returning a small DataFrame.

Every aggregation happens in SQL (GROUP BY, quantiles, LIMIT); what comes back
is at most a few hundred rows. User input is always a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from collector.store import Store
from dashboard import model
from dashboard.data._core import Filters, cached, cached_for, run_df, table_exists, utcnow
from tracer.semconv import AlertStatus, ReconStatus, TransactionStatus

__all__ = [
    "ALERTS_TABLE",
    "HISTOGRAM_BINS",
    "RECON_ITEMS_TABLE",
    "RECON_RUNS_TABLE",
    "SILENCES_TABLE",
    "SLA_POINTS_TABLE",
    "TRANSACTIONS_TABLE",
    "LatencyView",
    "Overview",
    "alerts",
    "alerts_by_category",
    "duplicates",
    "entities",
    "evaluator_tables",
    "failures_by_category",
    "find_correlations",
    "has_spans",
    "latency",
    "metric_increases",
    "metric_latest",
    "metric_levels",
    "mttr",
    "objects",
    "overview",
    "recon_exceptions",
    "recon_items",
    "recon_runs",
    "replay_key",
    "silences",
    "sla_points",
    "throughput",
    "transactions_for",
    "workbench",
]

ALERTS_TABLE: Final = "revtrace_alerts"
TRANSACTIONS_TABLE: Final = "revtrace_transactions"
SILENCES_TABLE: Final = "revtrace_silences"
SLA_POINTS_TABLE: Final = "revtrace_sla_points"
RECON_RUNS_TABLE: Final = "revtrace_recon_runs"
RECON_ITEMS_TABLE: Final = "revtrace_recon_items"
LIMIT_ROWS: Final = 500
HISTOGRAM_BINS: Final = 30


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


@cached
def evaluator_tables(store: Store) -> dict[str, bool]:
    """Which of the evaluator's tables exist (its migrations may not be applied yet)."""
    tables = (ALERTS_TABLE, TRANSACTIONS_TABLE, SILENCES_TABLE, SLA_POINTS_TABLE, RECON_RUNS_TABLE)
    return {t: table_exists(store, t) for t in tables}


# --- overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """The overview's KPI ingredients: for the whole window and per bucket."""

    total: dict[str, Any]
    """transactions, spans, failed_spans, last_span, sync_ok/failed, inv_completed,
    inv_p50/p95/p99, inv_breaches, inv_waiting_past_sla, pay_completed, pay_p95."""
    buckets: pd.DataFrame
    """The same per bucket of the transactions' first span."""


@cached
def has_spans(store: Store, f: Filters) -> bool:
    """Whether any business span arrived in the window (for the empty states)."""
    return bool(len(run_df(store, "has_spans", f.params())))


@cached
def overview(store: Store, f: Filters, posting: model.StagePair, payment: model.StagePair) -> Overview:
    """One pass over the window: transactions, spans, customer sync, invoice posting
    and payment propagation, in total and per bucket."""
    params = {
        **f.params(),
        "inv_from": posting.from_stage,
        "inv_to": posting.to_stage,
        "inv_sla": float(posting.sla_s),
        "pay_from": payment.from_stage,
        "pay_to": payment.to_stage,
        "now": min(f.end, utcnow()),
    }
    df = run_df(store, "overview_kpis", params)
    if not len(df):
        return Overview({}, df)
    df = df.drop(columns=["inv_q", "pay_q"])
    totals = df[df["part"] == "total"]
    total = {str(k): v for k, v in totals.iloc[0].to_dict().items()} if len(totals) else {}
    return Overview(total, df[df["part"] == "bucket"].reset_index(drop=True))


@cached
def failures_by_category(store: Store, f: Filters) -> pd.DataFrame:
    """Failed spans and transactions per failure category."""
    return run_df(store, "failures_by_category", f.params())


@cached
def duplicates(store: Store, f: Filters) -> pd.DataFrame:
    """Duplicated transactions per bucket of their first span."""
    return run_df(store, "kpi_duplicates", f.params())


# --- latency ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyView:
    """Everything the latency page shows about one stage pair."""

    summary: dict[str, Any]
    """completed, p50, p95, p99, worst, breaches, waiting, waiting_past_sla."""
    bands: pd.DataFrame
    histogram: pd.DataFrame
    by_entity: pd.DataFrame
    by_vendor: pd.DataFrame
    late: pd.DataFrame
    """The worst transactions: breached, or still waiting past the SLA."""


_LATE_COLUMNS: Final = ("correlation_id", "entity", "vendor", "t_from", "state", "seconds")


@cached
def latency(store: Store, f: Filters, pair: model.StagePair, limit: int = 100) -> LatencyView:
    """One pass over the pair's spans: bands, distribution, per entity and vendor, worst."""
    bin_s = max(pair.sla_s / 10, 0.001)
    params = {
        **f.params(),
        "from_stage": pair.from_stage,
        "to_stage": pair.to_stage,
        "sla": float(pair.sla_s),
        "now": min(f.end, utcnow()),
        "bin": bin_s,
        "max_bin": HISTOGRAM_BINS,
        "limit": limit,
    }
    df = run_df(store, "latency_page", params)
    if not len(df):
        empty = _empty(())
        return LatencyView({}, empty, empty, empty, empty, _empty(_LATE_COLUMNS))
    metrics = ["completed", "p50", "p95", "p99", "worst", "breaches", "waiting", "waiting_past_sla"]
    total = df[df["part"] == "total"].iloc[0]
    summary = {k: total[k] for k in metrics}
    late = pd.DataFrame([tuple(x) for x in total["late_list"]], columns=list(_LATE_COLUMNS))
    parts = {name: part.reset_index(drop=True) for name, part in df.groupby("part")}

    def part(name: str, key: str) -> pd.DataFrame:
        found = parts.get(name)
        return found[[key, *metrics]] if found is not None else _empty((key, *metrics))

    bands = part("bucket", "bucket")
    bands = bands[bands["completed"] > 0].reset_index(drop=True)
    hist = part("bin", "bin")
    hist = hist[hist["completed"] > 0].reset_index(drop=True)
    hist = hist.assign(lower_s=hist["bin"].astype(float) * bin_s)[["bin", "lower_s", "completed"]]
    by_entity = part("entity", "entity").sort_values(["breaches", "waiting_past_sla"], ascending=False)
    by_vendor = part("vendor", "vendor").sort_values(["breaches", "p95"], ascending=False)
    return LatencyView(summary, bands, hist, by_entity, by_vendor, late)


# --- business objects ----------------------------------------------------------------------


@cached
def objects(
    store: Store,
    f: Filters,
    object_type: str = "",
    status: str = "",
    min_age_s: int = 0,
    limit: int = LIMIT_ROWS,
) -> pd.DataFrame:
    """Business objects with their status in CRM, billing and ERP and whether they agree.

    ``status``: ``''`` (all), ``consistent``, ``inconsistent`` or ``failed``;
    ``min_age_s`` keeps objects first seen at least that long ago. Unfiltered and
    ``consistent`` views examine the newest transactions; ``inconsistent`` and
    ``failed`` examine those with a failed span or a failing evaluator verdict
    (every transaction of the window when the evaluator has written none).
    """
    import datetime as dt

    if status in ("inconsistent", "failed"):
        verdicts = _verdict_suspects(store, f)
        scope = "objects_suspect" if verdicts is not None else "objects_all"
    else:
        verdicts, scope = None, "objects_recent"
    aliases = model.OBJECT_ALIASES
    raw_types = sorted({*model.OBJECT_TYPES, *aliases})
    params = {
        **f.params(),
        "object_type": object_type,
        "status": status,
        "seen_before": min(f.end, utcnow()) - dt.timedelta(seconds=min_age_s),
        "limit": limit,
        "raw_object_types": raw_types,
        "object_types": list(model.OBJECT_TYPES),
        "expected_systems": [list(model.expected_systems(t)) for t in model.OBJECT_TYPES],
        "type_alias_from": list(aliases),
        "type_alias_to": list(aliases.values()),
        "recent": limit * 4,
        "verdict_suspects": verdicts or [],
    }
    return run_df(store, "objects", params, slots={"scope": scope})


def _verdict_suspects(store: Store, f: Filters, limit: int = 20_000) -> list[str] | None:
    """Correlation ids the evaluator judged failed, stuck or mismatched; ``None`` when it
    has written no verdict (then nothing but a full pass finds incomplete objects)."""
    if not table_exists(store, TRANSACTIONS_TABLE) or not _has_rows(store, TRANSACTIONS_TABLE):
        return None
    statuses = [str(TransactionStatus.FAILED), str(TransactionStatus.STUCK)]
    df = run_df(store, "verdict_suspects", {**f.params(), "statuses": statuses, "limit": limit})
    return [str(c) for c in df["correlation_id"]] if len(df) else []


# --- alerts -----------------------------------------------------------------------------------

_ALERT_COLUMNS: Final = (
    "fingerprint",
    "alert",
    "category",
    "severity",
    "status",
    "labels",
    "annotations",
    "starts_at",
    "ends_at",
    "updated_at",
    "correlation_ids",
    "affected",
    "value",
)


def _alert_params(f: Filters) -> dict[str, Any]:
    return {
        **f.params(),
        "label_entity": model.ALERT_LABEL_ENTITY,
        "alert_resolved": str(AlertStatus.RESOLVED),
    }


@cached
def alerts(
    store: Store, f: Filters, category: str = "", status: str = "", limit: int = LIMIT_ROWS
) -> pd.DataFrame:
    """Alerts active during the window, newest first (empty until the evaluator runs)."""
    if not table_exists(store, ALERTS_TABLE):
        return _empty(_ALERT_COLUMNS)
    params = {**_alert_params(f), "category": category, "status": status, "limit": limit}
    return run_df(store, "alerts_list", params)


@cached
def alerts_by_category(store: Store, f: Filters) -> pd.DataFrame:
    """Alert counts per category and status in the window."""
    if not table_exists(store, ALERTS_TABLE):
        return _empty(("category", "status", "alerts", "affected"))
    return run_df(store, "alerts_by_category", _alert_params(f))


@cached
def mttr(store: Store, f: Filters) -> pd.DataFrame:
    """Alerts resolved and their mean time to resolve, per bucket of resolution."""
    if not table_exists(store, ALERTS_TABLE):
        return _empty(("resolved", "mttr_s", "bucket"))
    return run_df(store, "alerts_mttr", _alert_params(f))


@cached
def silences(store: Store, f: Filters, limit: int = 200) -> pd.DataFrame:
    """Silences in force at some point of the window."""
    if not table_exists(store, SILENCES_TABLE):
        return _empty(("id", "matchers", "matchers_re", "starts_at", "ends_at", "created_by", "comment"))
    return run_df(store, "silences", {**f.params(), "limit": limit})


@cached
def sla_points(store: Store, f: Filters) -> pd.DataFrame:
    """The evaluator's latest measurement per SLA rule, measure and legal entity."""
    if not table_exists(store, SLA_POINTS_TABLE):
        return _empty(("rule", "measure", "kind", "entity", "value", "objective", "unit", "breached", "at"))
    return run_df(store, "sla_points_latest", f.params())


# --- reconciliation -----------------------------------------------------------------------------


@cached
def recon_runs(store: Store, f: Filters, limit: int = 200) -> pd.DataFrame:
    """Reconciliation runs started in the window, newest first."""
    if not table_exists(store, RECON_RUNS_TABLE):
        return _empty(
            ("run_id", "rule", "started_at", "finished_at", "periods", "status", "items", "exceptions")
        )
    return run_df(store, "recon_runs", {**f.params(), "limit": limit})


@cached
def recon_items(
    store: Store, f: Filters, run_ids: tuple[str, ...], status: str = "", limit: int = LIMIT_ROWS
) -> pd.DataFrame:
    """The items of these runs (exceptions first, biggest difference first)."""
    if not run_ids or not table_exists(store, RECON_ITEMS_TABLE):
        return _empty(("run_id", "rule", "period", "object_type", "entity", "measure", "systems", "values"))
    params = {
        **f.params(),
        "run_ids": list(run_ids),
        "status": status,
        "limit": limit,
        "recon_ok": str(ReconStatus.OK),
    }
    return run_df(store, "recon_items", params)


@cached
def recon_exceptions(store: Store, f: Filters) -> int | None:
    """Items not ok in each rule's latest run of the window; ``None`` when no run happened."""
    if not table_exists(store, RECON_RUNS_TABLE):
        return None
    df = run_df(store, "recon_exceptions", {**f.params(), "recon_ok": str(ReconStatus.OK)})
    if not len(df) or not int(df.iloc[0]["rules"]):
        return None
    return int(df.iloc[0]["exceptions"])


# --- sync engine and collector ----------------------------------------------------------------


@cached
def throughput(store: Store, f: Filters) -> pd.DataFrame:
    """Spans, failures, retries and rate-limited spans per bucket and system."""
    return run_df(store, "span_throughput", f.params())


@cached
def metric_levels(store: Store, f: Filters, metrics: tuple[str, ...], series_attr: str) -> pd.DataFrame:
    """Level metrics per bucket, metric and series attribute value (total and peak)."""
    return run_df(
        store, "metric_levels", {**f.params(), "metrics": list(metrics), "series_attr": series_attr}
    )


@cached
def metric_increases(store: Store, f: Filters, metrics: tuple[str, ...], series_attr: str) -> pd.DataFrame:
    """Counter increases per bucket, metric and series attribute value."""
    return run_df(
        store, "metric_increases", {**f.params(), "metrics": list(metrics), "series_attr": series_attr}
    )


@cached
def metric_latest(store: Store, f: Filters, metrics: tuple[str, ...], series_attr: str) -> pd.DataFrame:
    """The latest value of level metrics per series attribute value."""
    return run_df(
        store, "metric_latest", {**f.params(), "metrics": list(metrics), "series_attr": series_attr}
    )


# --- pickers, search, transactions ---------------------------------------------------------------


@cached_for(300)
def entities(store: Store, f: Filters) -> list[str]:
    """Legal entities seen in the window."""
    df = run_df(store, "entities", f.params())
    return [str(e) for e in df["entity"]] if len(df) else []


@cached
def find_correlations(store: Store, f: Filters, query: str, limit: int = 20) -> list[str]:
    """Correlation ids for an object reference, object id or idempotency key."""
    df = run_df(store, "find_by_ref", {**f.params(), "query": query, "limit": limit})
    return [str(c) for c in df["correlation_id"]] if len(df) else []


@cached
def transactions_for(store: Store, correlation_ids: tuple[str, ...]) -> pd.DataFrame:
    """The evaluator's verdicts on these transactions (empty until it runs)."""
    if not correlation_ids or not table_exists(store, TRANSACTIONS_TABLE):
        return _empty(("correlation_id", "status", "category", "severity", "reason"))
    return run_df(
        store, "transactions_for", {"correlation_ids": list(correlation_ids), "limit": len(correlation_ids)}
    )


_WORKBENCH_STATUSES: Final = (TransactionStatus.FAILED, TransactionStatus.STUCK)


@cached
def workbench(
    store: Store,
    f: Filters,
    category: str = "",
    min_age_s: int = 0,
    include_resolved: bool = False,
    statuses: tuple[str, ...] = tuple(str(s) for s in _WORKBENCH_STATUSES),
    limit: int = LIMIT_ROWS,
) -> tuple[pd.DataFrame, str]:
    """Failed and stuck transactions with their workbench state, oldest first, and where
    they come from: ``evaluator`` (its verdicts) or ``spans`` (failed stages only)."""
    import datetime as dt

    from dashboard.audit import AuditAction

    params = {
        **f.params(),
        "category": category,
        "seen_before": min(f.end, utcnow()) - dt.timedelta(seconds=min_age_s),
        "include_resolved": include_resolved,
        "statuses": list(statuses),
        "limit": limit,
        "status_failed": str(TransactionStatus.FAILED),
        "action_assign": str(AuditAction.ASSIGN),
        "action_resolve": str(AuditAction.RESOLVE),
        "action_replay": str(AuditAction.REPLAY),
    }
    if table_exists(store, TRANSACTIONS_TABLE) and _has_rows(store, TRANSACTIONS_TABLE):
        return run_df(store, "workbench_evaluated", params), "evaluator"
    return run_df(store, "workbench_spans", params), "spans"


def replay_key(store: Store, correlation_id: str) -> str:
    """The idempotency key a replay of ``correlation_id`` reuses ('' when none was recorded)."""
    df = run_df(store, "replay_key", {"correlation_id": correlation_id})
    if not len(df):
        return ""
    return str(df.iloc[0]["failed_key"] or df.iloc[0]["last_key"] or "")


def _has_rows(store: Store, table: str) -> bool:
    rows = store.query(
        "SELECT sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = {t:String} "
        "AND active",
        {"t": table},
    )
    return bool(rows.scalar())
