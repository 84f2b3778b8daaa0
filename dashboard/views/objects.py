"""Business objects: every customer, subscription, invoice, payment and refund with
its status in CRM | billing | ERP side by side, and whether the systems agree."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, model, ui

f = ui.filters()
store = data.get_store()

st.title("Business objects")
st.caption(
    "One row per object and transaction: its last outcome in each system. "
    "Consistent means every system that must hold it ended ok, none failed, and the amounts agree."
)

STATUSES = {
    "": "All",
    "inconsistent": "Systems disagree",
    "failed": "Failed somewhere",
    "consistent": "Consistent",
}
AGES = {"0": "Any age", "900": "Older than 15 min", "3600": "Older than 1 hour", "86400": "Older than 1 day"}
cols = st.columns(3)
object_type = ui.url_selectbox(
    "Object type",
    ["", *model.OBJECT_TYPES],
    "type",
    format_func=lambda t: t or "All types",
    container=cols[0],
)
status = ui.url_selectbox(
    "Status", list(STATUSES), "status", format_func=lambda s: STATUSES[s], container=cols[1]
)
age = ui.url_selectbox("Age", list(AGES), "age", format_func=lambda a: AGES[a], container=cols[2])

rows = data.objects(store, f, object_type=object_type, status=status, min_age_s=int(age))
if not len(rows):
    if not data.has_spans(store, f):
        ui.empty(ui.NO_SPANS)
    else:
        ui.empty("No business object matches these filters in this time range.")
    st.stop()


def _cell(outcome: str, system: str, expected: list[str]) -> str:
    if outcome:
        return str(outcome)
    return "missing" if system in expected else "—"


table = pd.DataFrame(
    {
        "trace": [ui.trace_url(c) for c in rows["correlation_id"]],
        "type": rows["object_type"],
        "object": rows["object_id"],
        "agree": rows["consistent"].astype(bool),
        "CRM": [_cell(o, "crm", list(e)) for o, e in zip(rows["crm"], rows["expected"], strict=True)],
        "billing": [
            _cell(o, "billing", list(e)) for o, e in zip(rows["billing"], rows["expected"], strict=True)
        ],
        "ERP": [_cell(o, "erp", list(e)) for o, e in zip(rows["erp"], rows["expected"], strict=True)],
        "CRM id": rows["crm_id"],
        "billing id": rows["billing_id"],
        "ERP id": rows["erp_id"],
        "amount": rows["amount"],
        "currency": rows["currency"],
        "entity": rows["entity"],
        "first seen (UTC)": rows["first_seen"],
        "correlation id": rows["correlation_id"],
    }
)
disagree = int((~table["agree"]).sum())
summary = st.columns(3)
summary[0].metric("Objects shown", len(table))
summary[1].metric("Systems disagree", disagree)
summary[2].metric("Failed in a system", int(rows["failed"].astype(bool).sum()))
if len(table) >= 500:
    st.caption("Showing the newest 500; narrow the filters to see others.")

event = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="objects_table",
    column_config={
        "trace": st.column_config.LinkColumn("trace", display_text="open", width="small"),
        "agree": st.column_config.CheckboxColumn("agree", width="small"),
        "first seen (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)
selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
if selected:
    chosen = str(table.iloc[selected[0]]["correlation id"])
    st.switch_page("views/trace.py", query_params={"correlation_id": chosen})
