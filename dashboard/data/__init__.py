"""The dashboard's one door to the store: the cached store client and every query.

Pages never touch the store themselves; they call these functions, which bind
every input as a server-side parameter, aggregate in SQL and return small
DataFrames (cached for a few seconds inside Streamlit). The SQL lives in
``dashboard/data/sql/*.sql`` (package resources; ``_name.sql`` files are
snippets included with ``/*@name*/``).

The store is the one ``revtrace up`` hands in (:func:`use_store`: chDB can be
opened once per process), else the one ``REVTRACE_CLICKHOUSE_URL`` names,
opened once per process.
"""

from __future__ import annotations

from collector.store import StoreError
from dashboard.data._audit_log import (
    AUDIT_TABLE,
    append_audit,
    audit_entries,
    recent_actions,
    verify_audit_log,
)
from dashboard.data._core import (
    CACHE_TTL_S,
    Filters,
    clear_caches,
    collector_status,
    get_store,
    sql,
    table_exists,
    use_collector_status,
    use_store,
    utcnow,
)
from dashboard.data._queries import (
    ALERTS_TABLE,
    HISTOGRAM_BINS,
    RECON_ITEMS_TABLE,
    RECON_RUNS_TABLE,
    SILENCES_TABLE,
    SLA_POINTS_TABLE,
    TRANSACTIONS_TABLE,
    LatencyView,
    Overview,
    alerts,
    alerts_by_category,
    duplicates,
    entities,
    evaluator_tables,
    failures_by_category,
    find_correlations,
    has_spans,
    latency,
    metric_increases,
    metric_latest,
    metric_levels,
    mttr,
    objects,
    overview,
    recon_exceptions,
    recon_items,
    recon_runs,
    replay_key,
    silences,
    sla_points,
    throughput,
    transactions_for,
    workbench,
)
from dashboard.data._trace import TraceBundle, load_trace

__all__ = [
    "ALERTS_TABLE",
    "AUDIT_TABLE",
    "CACHE_TTL_S",
    "HISTOGRAM_BINS",
    "RECON_ITEMS_TABLE",
    "RECON_RUNS_TABLE",
    "SILENCES_TABLE",
    "SLA_POINTS_TABLE",
    "TRANSACTIONS_TABLE",
    "Filters",
    "LatencyView",
    "Overview",
    "StoreError",
    "TraceBundle",
    "alerts",
    "alerts_by_category",
    "append_audit",
    "audit_entries",
    "clear_caches",
    "collector_status",
    "duplicates",
    "entities",
    "evaluator_tables",
    "failures_by_category",
    "find_correlations",
    "get_store",
    "has_spans",
    "latency",
    "load_trace",
    "metric_increases",
    "metric_latest",
    "metric_levels",
    "mttr",
    "objects",
    "overview",
    "recent_actions",
    "recon_exceptions",
    "recon_items",
    "recon_runs",
    "replay_key",
    "silences",
    "sla_points",
    "sql",
    "table_exists",
    "throughput",
    "transactions_for",
    "use_collector_status",
    "use_store",
    "utcnow",
    "verify_audit_log",
    "workbench",
]
