"""Sync engine: throughput, retries, dead-letter depth, circuit breakers, rate limiting,
in-flight transactions — and the collector's own health."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, model, ui
from tracer import semconv

f = ui.filters()
store = data.get_store()

st.title("Sync engine")

st.subheader("Throughput (from the business spans)")
flow = data.throughput(store, f)
if len(flow):
    left, right = st.columns(2)
    left.plotly_chart(
        charts.bars(flow, "bucket", "spans", "Spans per system", color="system"), key="throughput"
    )
    per_bucket = flow.groupby("bucket", as_index=False)[["failed", "retries", "rate_limited"]].sum()
    long = per_bucket.melt(id_vars="bucket", var_name="kind", value_name="spans")
    right.plotly_chart(
        charts.lines(long, "bucket", "spans", "kind", "Failures, retries, rate limits"), key="errors"
    )
else:
    ui.empty(ui.NO_SPANS)

st.subheader("Engine health (from the sync engine's metrics)")
levels = data.metric_levels(store, f, model.SYNC_LEVELS, semconv.BIZ_SYSTEM)
counters = data.metric_increases(store, f, model.SYNC_COUNTERS, semconv.BIZ_SYSTEM)
breakers = data.metric_latest(store, f, (semconv.METRIC_SYNCENGINE_BREAKER_STATE,), semconv.BIZ_SYSTEM)
if not len(levels) and not len(counters) and not len(breakers):
    ui.empty(
        "No sync-engine metrics yet. The reference sync engine exports them (`make demo`); your own engine "
        "can send syncengine.* metrics to the collector's /v1/metrics."
    )
else:
    latest = (
        levels.sort_values("bucket").groupby("metric").tail(1).set_index("metric") if len(levels) else None
    )
    now_cols = st.columns(4)
    for column, metric, title in zip(
        now_cols,
        model.SYNC_LEVELS,
        ("Queue depth", "In flight", "Dead-letter queue"),
        strict=False,
    ):
        value = (
            latest.loc[str(metric), "total"] if latest is not None and str(metric) in latest.index else None
        )
        column.metric(title, "—" if value is None else f"{value:,.0f}")
    waits = (
        counters[counters["metric"] == semconv.METRIC_SYNCENGINE_RATELIMIT_WAITS]["increase"].sum()
        if len(counters)
        else 0
    )
    now_cols[3].metric(
        "Rate-limit waits", f"{waits:,.0f}", help="Waits for a vendor's rate limit in the window."
    )

    if len(breakers):
        st.markdown("**Circuit breakers**")
        cols = st.columns(max(len(breakers), 1))
        for column, row in zip(cols, breakers.itertuples(index=False), strict=True):
            state = model.BREAKER_STATES.get(int(row.value), f"state {row.value:g}")
            column.metric(str(row.series) or "(all)", state, help=f"as of {row.at:%H:%M:%S} UTC")
    left, right = st.columns(2)
    if len(levels):
        level_lines = levels[levels["metric"] != semconv.METRIC_SYNCENGINE_BREAKER_STATE]
        left.plotly_chart(
            charts.lines(level_lines, "bucket", "total", "metric", "Queue, in flight, DLQ"), key="levels"
        )
    if len(counters):
        right.plotly_chart(
            charts.bars(
                counters, "bucket", "increase", "Retries, transactions, rate-limit waits", color="metric"
            ),
            key="counters",
        )
    history = data.metric_levels(store, f, (semconv.METRIC_SYNCENGINE_BREAKER_STATE,), semconv.BIZ_SYSTEM)
    if len(history):
        st.plotly_chart(
            charts.lines(
                history,
                "bucket",
                "peak",
                "series",
                "Breaker state (0 closed, 1 half-open, 2 open)",
                step=True,
            ),
            key="breakers",
        )

st.subheader("Collector health")
live = data.collector_status()
if live is not None:
    ingest = live.get("ingest", {})
    spool = live.get("spool", {})
    writer = live.get("writer", {})
    c = st.columns(4)
    c[0].metric("Accepted (since start)", f"{sum(ingest.get('accepted', {}).values()):,}")
    c[1].metric("Rejected (since start)", f"{sum(ingest.get('rejected', {}).values()):,}")
    c[2].metric("Spool backlog", f"{spool.get('backlog_bytes', 0):,} B")
    c[3].metric(
        "Writer", "healthy" if writer.get("healthy") else "failing", help=str(writer.get("last_error", ""))
    )
ingest_rates = data.metric_increases(
    store,
    f,
    (
        str(model.CollectorMetric.ACCEPTED),
        str(model.CollectorMetric.REJECTED),
        str(model.CollectorMetric.REFUSED),
    ),
    "signal",
)
backlog = data.metric_levels(store, f, (str(model.CollectorMetric.SPOOL_BACKLOG),), "signal")
if len(ingest_rates) or len(backlog):
    left, right = st.columns(2)
    if len(ingest_rates):
        shown = ingest_rates.assign(
            series=ingest_rates["metric"].str.rsplit(".", n=1).str[-1] + " " + ingest_rates["series"]
        )
        left.plotly_chart(
            charts.bars(shown, "bucket", "increase", "Ingest per bucket", color="series"), key="ingest"
        )
    if len(backlog):
        right.plotly_chart(
            charts.lines(
                backlog.assign(series="spool"), "bucket", "total", "series", "Spool backlog (bytes)"
            ),
            key="spool",
        )
elif live is None:
    ui.empty("No collector metrics yet: the collector records its own every 15 s while it runs.")
