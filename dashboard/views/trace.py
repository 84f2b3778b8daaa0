"""Trace: one correlation id end to end, for auditors — the waterfall across CRM,
billing, ERP and middleware, payload snapshots and transformations, retries,
related transactions and operator actions; exportable as JSON, CSV and HTML."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from dashboard import actions, charts, data, report, ui
from dashboard.auth import Permission
from dashboard.diff import field_diff, pretty, unified_diff
from tracer.semconv import EVENT_PAYLOAD, TransactionStatus

f = ui.filters()
store = data.get_store()
user = ui.current_user()

st.title("Trace")
query = ui.url_text(
    "Correlation id, object reference or object id",
    "correlation_id",
    placeholder="q2c-… or crm:opportunity/006… or in_…",
)
if not query:
    ui.empty(
        "Enter a correlation id (or an object reference such as `crm:opportunity/006…`, an object id or an "
        "idempotency key) to see the whole transaction. Links from the other pages open here."
    )
    st.stop()

may_see_payloads = ui.require(Permission.SEE_PAYLOADS)
bundle = data.load_trace(store, query, may_see_payloads)
if bundle is None:
    matches = data.find_correlations(store, f, query)
    if len(matches) == 1:
        bundle = data.load_trace(store, matches[0], may_see_payloads)
    elif matches:
        st.write(f"`{query}` belongs to {len(matches)} transactions:")
        for cid in matches:
            st.markdown(f"- [{cid}]({ui.trace_url(cid)})")
        st.stop()
if bundle is None:
    ui.empty(
        f"No transaction found for `{query}`. Check the id, widen the time range (object ids are searched "
        "in it), or wait a few seconds if it is still arriving."
    )
    st.stop()

s = bundle.summary
spans = bundle.spans
duration = (pd.Timestamp(s["end"]) - pd.Timestamp(s["start"])).total_seconds()
head = st.columns(4)
head[0].metric("Spans", len(spans))
head[1].metric("Failed spans", int(s["failed_spans"]))
head[2].metric(
    "Retry attempts", len(bundle.retries), help="Attempts that ended retrying, and the retries after them."
)
head[3].metric("Duration", ui.fmt_seconds(duration))
st.caption(
    f"Correlation id `{bundle.correlation_id}` · process {s['process'] or '—'} · legal entity "
    f"{s['entity'] or '—'} · {s['start']} → {s['end']} UTC"
)
if bundle.verdict:
    v = bundle.verdict
    text = f"Evaluator: **{v['status']}** {v.get('category') or ''} — {v.get('reason') or ''}"
    (st.error if v["status"] in (TransactionStatus.FAILED, TransactionStatus.STUCK) else st.info)(text)
if bundle.truncated:
    st.warning(f"This transaction has more than {len(spans)} spans; the first {len(spans)} are shown.")

st.plotly_chart(charts.waterfall(spans, "Waterfall"), key="waterfall")
st.dataframe(
    spans,
    hide_index=True,
    width="stretch",
    key="spans",
    column_order=(
        "start",
        "duration_ms",
        "system",
        "vendor",
        "stage",
        "attempt",
        "outcome",
        "category",
        "error_code",
        "http_status",
        "object_type",
        "object_id",
        "amount",
        "currency",
        "idempotency_key",
        "payloads",
        "service",
        "span_id",
    ),
)

retries = bundle.retries
st.subheader("Retries")
if len(retries):
    st.dataframe(
        retries,
        hide_index=True,
        width="stretch",
        key="retries",
        column_order=(
            "start",
            "stage",
            "attempt",
            "outcome",
            "category",
            "error_code",
            "http_status",
            "idempotency_key",
        ),
    )
else:
    st.caption("No step was retried.")

st.subheader("Payload snapshots and transformations")
if bundle.events is None:
    st.info(
        f"Payload snapshots are shown to auditors and admins; you are signed in as "
        f"{user.role if user else 'nobody'}."
    )
elif not len(bundle.events):
    st.caption("No payload snapshot was recorded for this transaction.")
else:
    payloads = bundle.events[bundle.events["event"] == EVENT_PAYLOAD]
    for _span_id, part in payloads.groupby("span_id", sort=False):
        stage = str(part.iloc[0]["stage"])
        with st.expander(f"{stage} — {len(part)} snapshot(s)", expanded=True):
            tabs = st.tabs([str(k) for k in part["kind"]])
            for tab, row in zip(tabs, part.itertuples(index=False), strict=True):
                notes = []
                if row.truncated:
                    notes.append("truncated at the size cap")
                if len(row.redacted_fields):
                    notes.append("redacted: " + ", ".join(str(x) for x in row.redacted_fields))
                if notes:
                    tab.caption(" · ".join(notes))
                tab.code(pretty(str(row.body)), language="json")
    for step in report.transformations(bundle):
        st.markdown(f"**{step.stage}: {step.source_kind} → {step.target_kind}** {step.mapping}")
        changes = field_diff(step.before, step.after)
        st.dataframe(
            pd.DataFrame([c.__dict__ for c in changes], columns=["path", "change", "before", "after"]),
            hide_index=True,
            width="stretch",
            key=f"diff_{step.span_id}_{step.source_kind}_{step.target_kind}",
        )
        st.code(unified_diff(step.before, step.after, step.source_kind, step.target_kind), language="diff")

st.subheader("Related transactions")
if len(bundle.related):
    related = bundle.related.assign(trace=[ui.trace_url(c) for c in bundle.related["correlation_id"]])
    st.dataframe(
        related,
        hide_index=True,
        width="stretch",
        key="related",
        column_order=("trace", "correlation_id", "shared_refs", "first_seen", "last_seen"),
        column_config={"trace": st.column_config.LinkColumn("trace", display_text="open")},
    )
else:
    st.caption("No other transaction shares an object reference with this one.")

st.subheader("Operator actions")
if len(bundle.actions):
    st.dataframe(bundle.actions, hide_index=True, width="stretch", key="actions")
else:
    st.caption("No operator action recorded.")

st.subheader("Export")
if user is not None and ui.require(Permission.EXPORT):
    exported_by = f"{user.name} ({user.role})"

    def _exported(fmt: str) -> None:
        assert user is not None and bundle is not None
        actions.record_export(store, user, bundle.correlation_id, fmt)
        data.clear_caches()

    cols = st.columns(3)
    for column, fmt, mime in zip(
        cols, ("json", "csv", "html"), ("application/json", "text/csv", "text/html"), strict=True
    ):
        column.download_button(
            f"Download {fmt.upper()}",
            report.render(bundle, fmt, exported_by),
            file_name=f"revtrace-{re.sub(r'[^A-Za-z0-9._-]', '_', bundle.correlation_id)[:64]}.{fmt}",
            mime=mime,
            key=f"export_{fmt}",
            on_click=_exported,
            args=(fmt,),
        )
else:
    st.caption("Exports are for auditors and admins.")
