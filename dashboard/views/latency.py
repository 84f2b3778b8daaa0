"""Latency: invoice posting and every other stage-to-stage SLA over time — percentile
bands, the distribution, breaches, per legal entity and vendor."""

from __future__ import annotations

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

view = data.latency(store, f, pair)
summary = view.summary
if not summary or (not summary.get("completed") and not summary.get("waiting")):
    if not data.has_spans(store, f):
        ui.empty(ui.NO_SPANS)
    else:
        ui.empty(f"No transaction reached `{pair.from_stage}` in this time range.")
    st.stop()

m = st.columns(6)
m[0].metric("Completed", int(summary["completed"]))
m[1].metric("p50", ui.fmt_seconds(summary["p50"] if summary["completed"] else None))
m[2].metric(
    "p95",
    ui.fmt_seconds(summary["p95"] if summary["completed"] else None),
    delta=None
    if not summary["completed"]
    else ("within SLA" if summary["p95"] <= pair.sla_s else "-over SLA"),
)
m[3].metric("p99", ui.fmt_seconds(summary["p99"] if summary["completed"] else None))
m[4].metric("Breaches", int(summary["breaches"]), help=f"Completed later than {ui.fmt_seconds(pair.sla_s)}.")
m[5].metric(
    "Waiting past SLA",
    int(summary["waiting_past_sla"]),
    help=f"Reached {pair.from_stage} but not {pair.to_stage}, longer ago than the SLA: stuck between the two.",
)

if len(view.bands):
    st.plotly_chart(
        charts.percentile_bands(view.bands, f"{pair.title}: percentiles over time", pair.sla_s), key="bands"
    )
left, right = st.columns(2)
if len(view.histogram):
    left.plotly_chart(
        charts.histogram(
            view.histogram, "Distribution", pair.sla_s, max(pair.sla_s / 10, 0.001), data.HISTOGRAM_BINS
        ),
        key="histogram",
    )
if len(view.by_vendor):
    shown = view.by_vendor.assign(vendor=view.by_vendor["vendor"].replace("", "(not reached)"))
    right.plotly_chart(charts.bars(shown, "vendor", "p95", "p95 by vendor (s)"), key="vendor_chart")

percent = {c: st.column_config.NumberColumn(format="%.1f s") for c in ("p50", "p95", "p99", "worst")}
st.subheader("Per legal entity")
st.dataframe(
    view.by_entity.rename(columns={"entity": "legal entity"}),
    hide_index=True,
    width="stretch",
    key="by_entity",
    column_config=percent,
)
st.subheader("Per vendor")
st.dataframe(view.by_vendor, hide_index=True, width="stretch", key="by_vendor", column_config=percent)

st.subheader("Breaches and stuck transactions")
late = view.late
if len(late):
    st.dataframe(
        late.assign(trace=[ui.trace_url(c) for c in late["correlation_id"]]),
        hide_index=True,
        width="stretch",
        key="breaches",
        column_config={
            "trace": st.column_config.LinkColumn("trace", display_text="open"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
        },
        column_order=("trace", "correlation_id", "state", "seconds", "entity", "vendor", "t_from"),
    )
else:
    st.success("No breach in this time range.")
