"""Latency: invoice posting and every other stage-to-stage SLA over time — percentile
bands, the distribution, breaches, per legal entity and vendor."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, data, model, ui

f = ui.filters()
store = data.get_store()
pairs = {p.key: p for p in model.stage_pairs()}

st.title("Latency")
key = ui.url_selectbox("Stage-to-stage SLA", list(pairs), "pair", format_func=lambda k: pairs[k].label)
pair = pairs[key]
st.caption(
    f"From `{pair.from_stage}` ending ok to `{pair.to_stage}` ending ok, per transaction. "
    f"SLA: {ui.fmt_seconds(pair.sla_s)} at p95."
)

summary = data.latency_summary(store, f, pair)
if not summary or (not summary.get("completed") and not summary.get("waiting")):
    if not data.totals(store, f).get("spans"):
        ui.empty(ui.NO_SPANS)
    else:
        ui.empty(f"No transaction reached `{pair.from_stage}` in this time range.")
    st.stop()

m = st.columns(6)
m[0].metric("Completed", int(summary["completed"]))
m[1].metric("p50", ui.fmt_seconds(summary["p50"]))
m[2].metric(
    "p95",
    ui.fmt_seconds(summary["p95"]),
    delta=None
    if pd.isna(summary["p95"])
    else ("within SLA" if summary["p95"] <= pair.sla_s else "-over SLA"),
)
m[3].metric("p99", ui.fmt_seconds(summary["p99"]))
m[4].metric("Breaches", int(summary["breaches"]), help=f"Completed later than {ui.fmt_seconds(pair.sla_s)}.")
m[5].metric(
    "Waiting past SLA",
    int(summary["waiting_past_sla"]),
    help=f"Reached {pair.from_stage} but not {pair.to_stage}, longer ago than the SLA: stuck between the two.",
)

bands = data.latency_bands(store, f, pair)
if len(bands):
    st.plotly_chart(
        charts.percentile_bands(bands, f"{pair.title}: percentiles over time", pair.sla_s), key="bands"
    )
left, right = st.columns(2)
hist = data.latency_histogram(store, f, pair)
if len(hist):
    left.plotly_chart(
        charts.histogram(hist, "Distribution", pair.sla_s, max(pair.sla_s / 10, 0.001), data.HISTOGRAM_BINS),
        key="histogram",
    )
by_vendor = data.latency_by(store, f, pair, "vendor")
if len(by_vendor):
    shown = by_vendor.assign(key=by_vendor["key"].replace("", "(not reached)"))
    right.plotly_chart(charts.bars(shown, "key", "p95", "p95 by vendor (s)"), key="vendor_chart")

st.subheader("Per legal entity")
by_entity = data.latency_by(store, f, pair, "entity")
st.dataframe(
    by_entity.rename(columns={"key": "legal entity"}),
    hide_index=True,
    width="stretch",
    key="by_entity",
    column_config={c: st.column_config.NumberColumn(format="%.1f s") for c in ("p50", "p95", "p99")},
)
st.subheader("Per vendor")
st.dataframe(
    by_vendor.rename(columns={"key": "vendor"}),
    hide_index=True,
    width="stretch",
    key="by_vendor",
    column_config={c: st.column_config.NumberColumn(format="%.1f s") for c in ("p50", "p95", "p99")},
)

st.subheader("Breaches and stuck transactions")
breaches = data.latency_breaches(store, f, pair)
if len(breaches):
    st.dataframe(
        breaches.assign(trace=[ui.trace_url(c) for c in breaches["correlation_id"]]),
        hide_index=True,
        width="stretch",
        key="breaches",
        column_config={
            "trace": st.column_config.LinkColumn("trace", display_text="open"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
        },
        column_order=("trace", "correlation_id", "state", "seconds", "entity", "vendor", "t_from", "t_to"),
    )
else:
    st.success("No breach in this time range.")
