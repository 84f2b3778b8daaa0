"""Alerts: categorized and grouped, with timelines, the objects they affect and silences."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard import actions, charts, data, model, ui
from dashboard.auth import Permission
from dashboard.errors import DashboardError
from tracer.semconv import AlertStatus

f = ui.filters()
store = data.get_store()
user = ui.current_user()

st.title("Alerts")
flash = st.session_state.pop("alerts_flash", None)
if flash:
    kind, text = flash
    (st.success if kind == "ok" else st.error)(text)
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
chosen_labels: dict[str, str] = {}  # the selected alert's labels: a new silence's suggestion
chosen_fp = ""
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
    chosen_fp = str(chosen)
    chosen_labels = {
        "alertname": str(row["alert"]),
        **{str(k): str(v) for k, v in dict(row["labels"]).items()},
    }
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


def _act(action: Callable[[], str], done: str, refused: str) -> None:
    """Run a silence action; say how it went on the next run (``done`` formats the silence id)."""
    try:
        silence_id = action()
        st.session_state["alerts_flash"] = ("ok", done.format(silence_id) + "; recorded in the audit log.")
    except (DashboardError, ValueError) as exc:
        st.session_state["alerts_flash"] = ("error", f"{refused}: {exc}")
    data.clear_caches()
    st.rerun()


DURATIONS = {
    "30m": 1800.0,
    "1h": 3600.0,
    "2h": 7200.0,
    "4h": 14400.0,
    "8h": 28800.0,
    "1d": 86400.0,
    "7d": 604800.0,
}
if user is None or not ui.require(Permission.ACT):
    st.caption(
        f"Operators and admins create and expire silences; you are {user.role if user else 'nobody'}. "
        "From a terminal: `revtrace silence add`."
    )
else:
    suggested = "\n".join(f"{k}={v}" for k, v in sorted(chosen_labels.items()))
    with st.form("new_silence", clear_on_submit=False):
        st.markdown(
            "**New silence** — mutes the alerts whose labels match every line (the selected alert's labels)"
        )
        matcher_text = st.text_area(
            "Matchers, one per line: name=value or name=~regex",
            value=suggested,
            key=f"silence_matchers_{chosen_fp}",  # a new suggestion per alert
        )
        duration = st.selectbox("For", list(DURATIONS), index=2, key="silence_duration")
        comment = st.text_input("Comment (required)", key="silence_comment", max_chars=500)
        create = st.form_submit_button("Create silence", key="silence_create")
    if create:
        signed_in = user
        _act(
            lambda: actions.silence(
                store, signed_in, matcher_text.splitlines(), DURATIONS[duration], comment
            )[0],
            "silence {} created for " + duration,
            "silence not created",
        )
    active = (
        [r for r in silenced.itertuples(index=False) if r.ends_at > data.utcnow()] if len(silenced) else []
    )
    if active:
        silence_names = {
            str(
                r.id
            ): f"{r.id[:8]} · {', '.join(f'{k}={v}' for k, v in dict(r.matchers).items())} · {r.comment}"
            for r in active
        }
        expire_cols = st.columns([3, 1])
        to_expire = expire_cols[0].selectbox(
            "Silence", list(silence_names), format_func=lambda i: silence_names.get(i, i), key="expire_which"
        )
        if expire_cols[1].button("Expire now", key="expire_silence"):
            signed_in = user

            def expire() -> str:
                actions.expire_silence(store, signed_in, to_expire)
                return str(to_expire)

            _act(expire, "silence {} expired", "silence not expired")
