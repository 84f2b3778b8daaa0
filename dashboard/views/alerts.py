"""Alerts: categorized and grouped, with timelines, the objects they affect and silences."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, data, model, ui
from tracer.semconv import AlertStatus

f = ui.filters()
store = data.get_store()

st.title("Alerts")
if not data.evaluator_tables(store).get(data.ALERTS_TABLE):
    ui.empty(
        "The evaluator's tables do not exist yet. It runs inside `revtrace up` (or `revtrace evaluator` "
        "against a ClickHouse server) and creates them on start."
    )
    st.stop()

CATEGORIES = ["", *(str(c) for c in model.ALERT_CATEGORIES)]
STATUSES = ["", *(str(s) for s in AlertStatus)]
cols = st.columns(2)
category = ui.url_selectbox(
    "Category", CATEGORIES, "category", format_func=lambda c: c or "All categories", container=cols[0]
)
status = ui.url_selectbox(
    "Status", STATUSES, "status", format_func=lambda s: s or "All statuses", container=cols[1]
)

counts = data.alerts_by_category(store, f)
m = st.columns(3)
for column, name in zip(m, AlertStatus, strict=True):
    value = int(counts[counts["status"] == name]["alerts"].sum()) if len(counts) else 0
    column.metric(str(name).capitalize(), value)

listed = data.alerts(store, f, category=category, status=status)
if not len(listed):
    ui.empty(
        "No alert in this time range. Alerts appear here when the evaluator finds something that needs a "
        "human (run `make demo` to see the categories in action)."
    )
else:
    st.subheader("Grouped by category and alert")
    grouped = (
        listed.assign(firing=listed["status"] == AlertStatus.FIRING)
        .groupby(["category", "alert"], as_index=False)
        .agg(
            alerts=("fingerprint", "count"),
            firing=("firing", "sum"),
            affected=("affected", "sum"),
            first_start=("starts_at", "min"),
            last_update=("updated_at", "max"),
        )
        .sort_values(["firing", "alerts"], ascending=False)
    )
    st.dataframe(grouped, hide_index=True, width="stretch", key="grouped")
    st.plotly_chart(charts.timeline(listed.head(60), "Timeline", data.utcnow()), key="timeline")

    st.subheader("Alerts")
    shown = listed.assign(
        summary=[str(a.get("summary", "")) for a in listed["annotations"]],
        labels_text=[", ".join(f"{k}={v}" for k, v in sorted(dict(lab).items())) for lab in listed["labels"]],
        trace=[ui.trace_url(str(ids[0])) if len(ids) else None for ids in listed["correlation_ids"]],
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="alerts_table",
        column_order=(
            "status",
            "category",
            "severity",
            "alert",
            "summary",
            "labels_text",
            "affected",
            "value",
            "starts_at",
            "ends_at",
            "trace",
        ),
        column_config={
            "trace": st.column_config.LinkColumn("first affected", display_text="open"),
            "labels_text": st.column_config.TextColumn("labels"),
        },
    )

    st.subheader("Affected objects")
    options = list(listed["fingerprint"])
    names = {
        r.fingerprint: f"[{r.status}] {r.alert} · {r.category} · {r.affected} affected"
        for r in listed.itertuples(index=False)
    }
    chosen = st.selectbox("Alert", options, format_func=lambda fp: names.get(fp, fp), key="affected_alert")
    row = listed[listed["fingerprint"] == chosen].iloc[0]
    ids = tuple(str(c) for c in row["correlation_ids"])[:200]
    if ids:
        verdicts = data.transactions_for(store, ids)
        affected = pd.DataFrame({"correlation_id": list(ids)})
        if len(verdicts):
            affected = affected.merge(verdicts, on="correlation_id", how="left")
        affected.insert(0, "trace", [ui.trace_url(c) for c in affected["correlation_id"]])
        st.dataframe(
            affected,
            hide_index=True,
            width="stretch",
            key="affected",
            column_config={"trace": st.column_config.LinkColumn("trace", display_text="open")},
        )
    else:
        st.caption("This alert is about a window (a rate or a percentile), not individual transactions.")
    notes = dict(row["annotations"])
    if notes:
        st.json(notes, expanded=False)

st.subheader("Silences")
silenced = data.silences(store, f)
if len(silenced):
    st.dataframe(
        silenced.assign(
            matchers=[", ".join(f"{k}={v}" for k, v in dict(m).items()) for m in silenced["matchers"]],
            matchers_re=[", ".join(f"{k}=~{v}" for k, v in dict(m).items()) for m in silenced["matchers_re"]],
        ),
        hide_index=True,
        width="stretch",
        key="silences",
    )
else:
    st.caption("No silence is in force in this time range.")
