"""Reconciliation: the evaluator's runs, differences by system and period, and a
drill-down to the transactions behind a difference."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import charts, data, ui
from tracer.semconv import ReconStatus

f = ui.filters()
store = data.get_store()

st.title("Reconciliation")
if not data.evaluator_tables(store).get(data.RECON_RUNS_TABLE):
    ui.empty("The evaluator's reconciliation tables do not exist yet; they are created when it starts.")
    st.stop()

runs = data.recon_runs(store, f)
if not len(runs):
    ui.empty(
        "No reconciliation run in this time range. The evaluator compares the systems' snapshots "
        "(`*.reconciliation.snapshot` spans) on its schedule; `make demo` produces some."
    )
    st.stop()

latest = runs.sort_values("started_at").groupby("rule").tail(1)
m = st.columns(3)
m[0].metric("Runs", len(runs))
m[1].metric("Rules", runs["rule"].nunique())
m[2].metric("Exceptions in the latest runs", int(latest["exceptions"].sum()))
st.subheader("Runs")
st.dataframe(runs, hide_index=True, width="stretch", key="runs")

RUN_CHOICES = ["", *[str(r) for r in runs["run_id"]]]
names = {
    str(r.run_id): f"{r.rule} · {r.started_at:%Y-%m-%d %H:%M} · {r.exceptions} exception(s)"
    for r in runs.itertuples(index=False)
}
run = ui.url_selectbox(
    "Run", RUN_CHOICES, "run", format_func=lambda r: names.get(r, "Latest run of every rule")
)
STATUS = {
    "": "All items",
    str(ReconStatus.MISMATCH): "Mismatches",
    str(ReconStatus.MISSING): "Missing snapshots",
}
status = ui.url_selectbox("Items", list(STATUS), "item_status", format_func=lambda s: STATUS[s])
run_ids = (run,) if run else tuple(str(r) for r in latest["run_id"])
items = data.recon_items(store, f, run_ids, status=status)
if not len(items):
    st.success("No item matches.")
    st.stop()


def _value(systems: object, values: object, system: str) -> float | None:
    pairs = dict(zip(list(systems), list(values), strict=False))  # type: ignore[call-overload]
    return pairs.get(system)


all_systems = sorted({str(s) for systems in items["systems"] for s in systems})
table = items[["period", "object_type", "entity", "measure", "status", "difference"]].copy()
for system in all_systems:
    table[system] = [_value(s, v, system) for s, v in zip(items["systems"], items["values"], strict=True)]
st.subheader("Differences by system and period")
st.dataframe(table, hide_index=True, width="stretch", key="differences")
exceptions = items[items["status"] != ReconStatus.OK]
if len(exceptions):
    per_period = exceptions.groupby(["period", "object_type"], as_index=False).agg(items=("measure", "count"))
    st.plotly_chart(
        charts.bars(per_period, "period", "items", "Exceptions per period", color="object_type"),
        key="per_period",
    )


def _period_window(period: str) -> tuple[dt.datetime, dt.datetime] | None:
    for fmt, step in (("%Y-%m-%d", "day"), ("%Y-%m", "month")):
        try:
            start = dt.datetime.strptime(period, fmt)
        except ValueError:
            continue
        if step == "day":
            return start, start + dt.timedelta(days=1)
        return start, (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return None


st.subheader("Drill down")
labels = {
    i: f"{r.period} · {r.object_type} · {r.entity or 'all entities'} · {r.measure} · {r.status}"
    for i, r in enumerate(items.itertuples(index=False))
}
index = st.selectbox("Difference", list(labels), format_func=lambda i: labels[i], key="recon_item")
item = items.iloc[int(index)]
window = _period_window(str(item["period"]))
if window is None:
    st.caption(f"The period {item['period']!r} is not a day or a month; no drill-down.")
else:
    scope = data.Filters(window[0], window[1], str(item["entity"]))
    behind = data.objects(store, scope, object_type=str(item["object_type"]), status="inconsistent")
    st.caption(
        f"{item['object_type']} objects of {item['period']} whose systems disagree "
        f"({len(behind)} found; the snapshot spans: {', '.join(str(c) for c in item['correlation_ids']) or 'none'})."
    )
    if len(behind):
        st.dataframe(
            pd.DataFrame(
                {
                    "trace": [ui.trace_url(c) for c in behind["correlation_id"]],
                    "object": behind["object_id"],
                    "crm": behind["crm"],
                    "billing": behind["billing"],
                    "erp": behind["erp"],
                    "amount": behind["amount"],
                    "correlation id": behind["correlation_id"],
                }
            ),
            hide_index=True,
            width="stretch",
            key="behind",
            column_config={"trace": st.column_config.LinkColumn("trace", display_text="open")},
        )
