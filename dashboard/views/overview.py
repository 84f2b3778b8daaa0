"""Overview: the KPIs revenue operations and finance track, each against its SLA,
with trends, and the firing alerts by category."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, data, model, ui
from tracer.semconv import AlertStatus

f = ui.filters()
store = data.get_store()
objectives = model.objectives()
pairs = {p.key: p for p in model.stage_pairs()}

st.title("Overview")
view = data.overview(store, f, pairs["invoice_posting"], pairs["payment_propagation"])
totals = view.total
if not totals or not totals.get("spans"):
    ui.empty(ui.NO_SPANS)
    st.stop()

st.caption(
    f"{int(totals['transactions']):,} transactions · {int(totals['spans']):,} spans · "
    f"{int(totals['failed_spans']):,} failed spans · last span {totals['last_span']:%Y-%m-%d %H:%M:%S} UTC"
)

buckets = view.buckets
dups = data.duplicates(store, f)
resolved = data.mttr(store, f)
by_category = data.alerts_by_category(store, f)
tables = data.evaluator_tables(store)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if pd.isna(number) else number


def _rate(ok: float, total: float) -> float | None:
    return 100.0 * ok / total if total else None


sync_rate = _rate(float(totals["sync_ok"]), float(totals["sync_ok"] + totals["sync_failed"]))
duplicated = float(dups["duplicated"].sum()) if len(dups) else 0.0
dup_rate = _rate(duplicated, float(totals["transactions"]))
mttr_s = (
    float((resolved["mttr_s"] * resolved["resolved"]).sum() / resolved["resolved"].sum())
    if len(resolved) and resolved["resolved"].sum()
    else None
)
firing = by_category[by_category["status"] == AlertStatus.FIRING] if len(by_category) else by_category
recon_exceptions = data.recon_exceptions(store, f)


def _kpi(column: st.delta_generator.DeltaGenerator, key: str, value: float | None, text: str) -> None:
    objective = objectives[key]
    if value is None:
        column.metric(
            objective.title,
            "—",
            help=f"No data in the window. Objective: {objective.target:g}{objective.unit}",
            border=True,
        )
        return
    diff = value - objective.target
    if objective.unit == "s":
        delta = ("+" if diff >= 0 else "-") + ui.fmt_seconds(abs(diff)) + " vs SLA"
    elif objective.unit == "%":
        delta = f"{diff:+.2f} pp vs SLA"
    else:
        delta = f"{diff:+g} vs SLA"
    column.metric(
        objective.title,
        text,
        delta=delta,
        delta_color="normal" if objective.higher_is_better else "inverse",
        help=f"Objective: {'≥' if objective.higher_is_better else '≤'} {objective.target:g}{objective.unit}. "
        + ("Met." if objective.met(value) else "Breached."),
        border=True,
    )


row = [*st.columns(3), *st.columns(3)]
_kpi(row[0], "customer_sync", sync_rate, "—" if sync_rate is None else f"{sync_rate:.1f} %")
p95 = _number(totals["inv_p95"]) if totals["inv_completed"] else None
_kpi(row[1], "invoice_posting", p95, ui.fmt_seconds(p95))
pp95 = _number(totals["pay_p95"]) if totals["pay_completed"] else None
_kpi(row[2], "payment_propagation", pp95, ui.fmt_seconds(pp95))
_kpi(row[3], "duplicates", dup_rate, "—" if dup_rate is None else f"{dup_rate:.2f} %")
_kpi(
    row[4],
    "reconciliation",
    None if recon_exceptions is None else float(recon_exceptions),
    "—" if recon_exceptions is None else str(recon_exceptions),
)
_kpi(row[5], "mttr", mttr_s, ui.fmt_seconds(mttr_s))

detail = st.columns(3)
detail[0].metric(
    "Invoice posting p50 / p99",
    f"{ui.fmt_seconds(totals['inv_p50'] if totals['inv_completed'] else None)} / "
    f"{ui.fmt_seconds(totals['inv_p99'] if totals['inv_completed'] else None)}",
    help="From billing.invoice.create ending ok to erp.invoice.post ending ok.",
)
detail[1].metric(
    "Invoices waiting past SLA",
    int(totals["inv_waiting_past_sla"]),
    help="Created in billing, not posted to ERP, older than the invoice-posting SLA.",
)
detail[2].metric("Invoice postings breaching SLA", int(totals["inv_breaches"]))
if totals["inv_waiting_past_sla"]:
    st.page_link(
        "views/latency.py",
        label=f"{int(totals['inv_waiting_past_sla'])} invoice(s) stuck between billing and ERP → Latency",
        icon=":material/warning:",
    )

left, right = st.columns(2)
rate = buckets.assign(
    rate=100.0 * buckets["sync_ok"] / (buckets["sync_ok"] + buckets["sync_failed"]).where(lambda n: n > 0)
)
left.plotly_chart(
    charts.trend(rate, "bucket", "rate", "Customer-sync success", objectives["customer_sync"].target, " %"),
    key="trend_sync",
)
posting_trend = buckets[buckets["inv_completed"] > 0]
right.plotly_chart(
    charts.trend(
        posting_trend, "bucket", "inv_p95", "Invoice posting p95 (s)", pairs["invoice_posting"].sla_s, " s"
    ),
    key="trend_posting",
)
left, right = st.columns(2)
payment_trend = buckets[buckets["pay_completed"] > 0]
left.plotly_chart(
    charts.trend(
        payment_trend,
        "bucket",
        "pay_p95",
        "Payment propagation p95 (s)",
        pairs["payment_propagation"].sla_s,
        " s",
    ),
    key="trend_payment",
)
dup_counts = dict(zip(dups["bucket"], dups["duplicated"], strict=True)) if len(dups) else {}
dup_trend = buckets[["bucket", "transactions"]].assign(
    rate=[
        100.0 * dup_counts.get(b, 0) / n
        for b, n in zip(buckets["bucket"], buckets["transactions"], strict=True)
    ]
)
right.plotly_chart(
    charts.trend(
        dup_trend, "bucket", "rate", "Duplicate transactions", objectives["duplicates"].target, " %"
    ),
    key="trend_duplicates",
)

st.subheader("Firing alerts by category")
if not tables.get(data.ALERTS_TABLE):
    ui.empty("The evaluator has not created its alert tables yet; it runs inside `revtrace up`.")
elif len(firing):
    st.plotly_chart(charts.bars(firing, "category", "alerts", "Firing alerts"), key="firing")
    st.page_link("views/alerts.py", label="All alerts →", icon=":material/notifications:")
else:
    st.success("No alert is firing in this window.")

points = data.sla_points(store, f)
if len(points):
    st.subheader("SLA rules (the evaluator's latest measurements)")
    st.dataframe(
        points,
        hide_index=True,
        width="stretch",
        key="sla_points",
        column_config={"breached": st.column_config.CheckboxColumn("breached")},
    )

failures = data.failures_by_category(store, f)
if len(failures):
    st.subheader("Failed spans by category")
    shown = failures.assign(category=failures["category"].replace("", "uncategorized"))
    st.plotly_chart(charts.bars(shown, "category", "failed_spans", "Failed spans"), key="failures")
