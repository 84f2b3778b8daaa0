"""Workbench: failed and stuck transactions for exception handlers — filtered by
category, entity and age; replay, resolve with a note, assign — every action in
the hash-chained audit log."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, data, model, ui
from dashboard.auth import Permission
from dashboard.errors import DashboardError
from tracer.semconv import TransactionStatus

f = ui.filters()
store = data.get_store()
user = ui.current_user()

st.title("Workbench")
flash = st.session_state.pop("workbench_flash", None)
if flash:
    kind, text = flash
    (st.success if kind == "ok" else st.error)(text)

CATEGORIES = ["", *(str(c) for c in model.ALERT_CATEGORIES)]
AGES = {"0": "Any age", "900": "Older than 15 min", "3600": "Older than 1 hour", "86400": "Older than 1 day"}
STATUSES = {
    "": "Failed and stuck",
    str(TransactionStatus.FAILED): "Failed",
    str(TransactionStatus.STUCK): "Stuck",
}
cols = st.columns(4)
category = ui.url_selectbox(
    "Category", CATEGORIES, "category", format_func=lambda c: c or "All categories", container=cols[0]
)
status = ui.url_selectbox(
    "Status", list(STATUSES), "status", format_func=lambda s: STATUSES[s], container=cols[1]
)
age = ui.url_selectbox("Age", list(AGES), "age", format_func=lambda a: AGES[a], container=cols[2])
include_resolved = cols[3].toggle("Show resolved", key="wb_resolved")

statuses = (status,) if status else (str(TransactionStatus.FAILED), str(TransactionStatus.STUCK))
rows, source = data.workbench(
    store, f, category=category, min_age_s=int(age), include_resolved=include_resolved, statuses=statuses
)
if source == "spans":
    st.caption(
        "From the spans: transactions whose last attempt at a step failed. The evaluator has not written "
        "verdicts yet; stuck transactions (a step that never happened) appear once it runs."
    )
else:
    st.caption("From the evaluator's verdicts, oldest first.")

if not len(rows):
    if not data.has_spans(store, f):
        ui.empty(ui.NO_SPANS)
    else:
        st.success("Nothing to handle: no failed or stuck transaction matches these filters.")
else:
    m = st.columns(3)
    m[0].metric("Open", int((~rows["resolved"].astype(bool)).sum()))
    m[1].metric("Assigned", int((rows["assignee"] != "").sum()))
    m[2].metric("Replayed", int((rows["replays"] > 0).sum()))
    table = rows.assign(trace=[ui.trace_url(c) for c in rows["correlation_id"]])
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="workbench_table",
        column_order=(
            "trace",
            "correlation_id",
            "status",
            "category",
            "reason",
            "entity",
            "process",
            "last_stage",
            "amount",
            "currency",
            "first_seen",
            "last_seen",
            "assignee",
            "replays",
            "resolved",
            "last_note",
        ),
        column_config={"trace": st.column_config.LinkColumn("trace", display_text="open")},
    )

    st.subheader("Act")
    if user is None or not ui.require(Permission.ACT):
        st.info(
            f"Replay, resolve and assign are for operators and admins; you are {user.role if user else 'nobody'}."
        )
    else:
        labels = {
            str(r.correlation_id): f"{r.correlation_id} · {r.category or r.status} · {r.reason}"[:140]
            for r in rows.itertuples(index=False)
        }
        chosen = st.multiselect(
            "Transactions", list(labels), format_func=lambda c: labels.get(c, c), key="wb_selected"
        )
        note = st.text_area("Note (required to resolve)", key="wb_note", max_chars=2000)
        assignee = st.text_input("Assign to", key="wb_assignee", max_chars=128)
        buttons = st.columns(3)
        replay_clicked = buttons[0].button("Replay", disabled=not chosen, key="wb_replay")
        resolve_clicked = buttons[1].button("Resolve", disabled=not chosen, key="wb_resolve")
        assign_clicked = buttons[2].button("Assign", disabled=not chosen, key="wb_assign")
        if replay_clicked or resolve_clicked or assign_clicked:
            done: list[str] = []
            failed: list[str] = []
            for cid in chosen:
                try:
                    if replay_clicked:
                        actions.replay(store, user, cid, note)
                    elif resolve_clicked:
                        actions.resolve(store, user, cid, note)
                    else:
                        actions.assign(store, user, cid, assignee, note)
                    done.append(cid)
                except (DashboardError, ValueError) as exc:
                    failed.append(f"{cid}: {exc}")
            verb = (
                "replay requested for" if replay_clicked else ("resolved" if resolve_clicked else "assigned")
            )
            data.clear_caches()
            if failed:
                st.session_state["workbench_flash"] = (
                    "error",
                    f"{verb} {len(done)} of {len(chosen)}. " + " · ".join(failed),
                )
            else:
                st.session_state["workbench_flash"] = (
                    "ok",
                    f"{verb} {len(done)} transaction(s); recorded in the audit log.",
                )
            st.rerun()

st.subheader("Audit log")
if data.table_exists(store, data.AUDIT_TABLE):
    recent = data.recent_actions(store, 50)
    if len(recent):
        st.dataframe(recent, hide_index=True, width="stretch", key="audit_recent")
    else:
        st.caption("No action recorded yet.")
    if st.button("Verify the hash chain", key="wb_verify"):
        result = data.verify_audit_log(store)
        (st.success if result.ok else st.error)(result.describe())
