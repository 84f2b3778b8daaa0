"""Every page through the router under AppTest, against the workload's known answers."""

from __future__ import annotations

import json

import pytest

from dashboard import ui
from tests.dashboard import workload
from tests.dashboard.apptest import charts, metrics, open_page, texts
from tests.dashboard.conftest import Filled

pytestmark = pytest.mark.usefixtures("use_filled")


def quantile(values: list[float], p: float) -> float:
    """Linear interpolation between order statistics (what ClickHouse's quantiles does for few values)."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_overview_kpis_match_the_workload() -> None:
    at = open_page("overview")
    shown = metrics(at)
    ok, failed = workload.CUSTOMER_UPSERTS_OK, workload.CUSTOMER_UPSERTS_FAILED
    assert shown["Customer-sync success"] == f"{100 * ok / (ok + failed):.1f} %"
    assert shown["Invoice posting p95"] == ui.fmt_seconds(quantile(workload.INVOICE_POSTINGS, 0.95))
    assert shown["Invoice posting p50 / p99"] == (
        f"{ui.fmt_seconds(quantile(workload.INVOICE_POSTINGS, 0.5))} / "
        f"{ui.fmt_seconds(quantile(workload.INVOICE_POSTINGS, 0.99))}"
    )
    assert shown["Payment propagation p95"] == ui.fmt_seconds(quantile(workload.PAYMENT_PROPAGATIONS, 0.95))
    assert (
        shown["Duplicate transactions"] == f"{100 * len(workload.DUPLICATED) / workload.TRANSACTIONS:.2f} %"
    )
    assert shown["Invoices waiting past SLA"] == str(len(workload.INVOICE_WAITING_PAST_SLA))
    # No evaluator run in this store: no reconciliation run, no resolved alert.
    assert shown["Reconciliation exceptions"] == "—"
    assert shown["Mean time to resolve"] == "—"
    caption = texts(at.caption)[0]
    assert f"{workload.TRANSACTIONS} transactions" in caption
    assert f"{workload.SPANS} spans" in caption
    assert len(charts(at)) >= 4  # four KPI trends (and failures by category)
    # The sidebar wrote the filters into the URL so the view can be shared.
    assert at.query_params.get("range") == "24h"


def test_overview_entity_filter_comes_from_the_url() -> None:
    at = open_page("overview", entity="DE01")
    de01 = {t.correlation_id for t in workload.transactions() if t.entity == "DE01"}
    assert f"{len(de01)} transactions" in texts(at.caption)[0]
    assert at.sidebar.selectbox(key="f_entity").value == "DE01"


def test_objects_show_each_system_and_whether_they_agree() -> None:
    at = open_page("objects", status="inconsistent")
    table = at.dataframe[0].value
    disagree = dict(
        zip(
            table["correlation id"],
            zip(table["type"], table["billing"], table["ERP"], strict=True),
            strict=True,
        )
    )
    assert disagree == {
        "q2c-stuck-1": ("invoice", "ok", "missing"),
        "q2c-md-1": ("invoice", "ok", "failed"),
        "cust-map-1": ("customer", "ok", "failed"),
    }
    assert metrics(at)["Systems disagree"] == "3"
    assert all(link.startswith("/trace?correlation_id=") for link in table["trace"])


def test_objects_filters_by_type_and_every_row_links_to_its_trace() -> None:
    at = open_page("objects", type="payment")
    table = at.dataframe[0].value
    assert set(table["correlation id"]) == {"pay-ok-0", "pay-ok-1"}
    assert table["agree"].all()
    assert set(table["ERP id"]) == {"PAY-pay-ok-0", "PAY-pay-ok-1"}


def test_latency_percentiles_breaches_and_stuck_invoices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVTRACE_SLA_INVOICE_POSTING_S", "900")
    at = open_page("latency")
    shown = metrics(at)
    postings = workload.INVOICE_POSTINGS
    assert shown["Completed"] == str(len(postings))
    assert shown["p95"] == ui.fmt_seconds(quantile(postings, 0.95))
    assert shown["Breaches"] == str(sum(1 for p in postings if p > 900))
    assert shown["Waiting past SLA"] == "2"
    by_entity, _by_vendor, breaches = (d.value for d in at.dataframe)
    assert set(by_entity["legal entity"]) == {"US01", "DE01"}
    states = dict(zip(breaches["correlation_id"], breaches["state"], strict=True))
    assert states == {"q2c-ok-5": "breached", "q2c-stuck-1": "waiting", "q2c-md-1": "waiting"}
    assert len(charts(at)) == 3  # bands, histogram, vendors


def test_latency_pair_from_the_url() -> None:
    at = open_page("latency", pair="payment_propagation")
    assert metrics(at)["Completed"] == str(len(workload.PAYMENT_PROPAGATIONS))
    assert "billing.payment.succeed" in texts(at.caption)[0]


def test_sync_engine_shows_engine_and_collector_health() -> None:
    at = open_page("sync_engine")
    shown = metrics(at)
    assert shown["Queue depth"] == str(workload.QUEUE_DEPTH)
    assert shown["Dead-letter queue"] == str(workload.DLQ_SIZE)
    assert shown["erp"] == "open"
    assert shown["crm"] == "closed"
    figures = [json.loads(c.proto.spec) for c in charts(at)]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert "Spans per system" in titles
    counters = next(f for f in figures if f["layout"]["title"]["text"].startswith("Retries"))
    retries = next(t for t in counters["data"] if t["name"] == "syncengine.retries")
    assert sum(retries["y"]) == workload.RETRIES
    assert any(t.startswith("Ingest") for t in titles)  # the collector's own metrics


def test_trace_end_to_end_with_payloads_diffs_and_related() -> None:
    at = open_page("trace", correlation_id="q2c-ok-0")
    shown = metrics(at)
    first = workload.transactions()[0]
    assert shown["Spans"] == str(len(first.spans))
    assert shown["Failed spans"] == "0"
    spans = at.dataframe[0].value
    assert list(spans["stage"]) == [str(s.stage) for s in first.spans]
    code = "\n".join(str(c.value) for c in at.code)
    assert workload.HOSTILE in code  # shown as text in a code block, never as markup
    assert '"amount_due": 120000' in code
    diff_tables = [d.value for d in at.dataframe if "change" in d.value.columns]
    assert len(diff_tables) == 2  # source → canonical, canonical → target_request
    related = next(d.value for d in at.dataframe if "shared_refs" in d.value.columns)
    assert set(related["correlation_id"]) == {"pay-ok-0", "pay-ok-1"}
    assert {b.label for b in at.get("download_button")} == {"Download JSON", "Download CSV", "Download HTML"}


def test_trace_finds_a_transaction_by_object_id() -> None:
    at = open_page("trace", correlation_id="in_q2c-ok-3")
    assert "q2c-ok-3" in texts(at.caption)[0]


def test_trace_shows_retries() -> None:
    at = open_page("trace", correlation_id="q2c-rl-1")
    assert metrics(at)["Retry attempts"] == "2"
    retries = at.dataframe[1].value  # after the spans table
    assert list(
        zip(retries["stage"], retries["attempt"], retries["outcome"], retries["category"], strict=True)
    ) == [
        ("erp.invoice.post", 1, "retrying", "rate_limited"),
        ("erp.invoice.post", 2, "ok", ""),
    ]


@pytest.mark.parametrize("hostile", [workload.HOSTILE, "x' OR '1'='1", "{correlation_id:String}", "%s%%"])
def test_trace_search_input_is_a_bound_parameter(hostile: str, filled: Filled) -> None:
    at = open_page("trace", correlation_id=hostile)
    assert any("No transaction found" in t for t in texts(at.info))
    assert int(filled.store.query("SELECT count() FROM revtrace_spans").scalar()) == workload.SPANS


def test_workbench_lists_failed_transactions_from_the_spans() -> None:
    at = open_page("workbench")
    table = at.dataframe[0].value
    assert dict(zip(table["correlation_id"], table["category"], strict=True)) == {
        cid: str(cat) for cid, cat in workload.FAILED.items()
    }
    assert "evaluator has not written verdicts" in texts(at.caption)[0]
    assert metrics(at)["Open"] == str(len(workload.FAILED))


def test_workbench_category_filter() -> None:
    at = open_page("workbench", category="mapping")
    assert list(at.dataframe[0].value["correlation_id"]) == ["cust-map-1"]


def test_alerts_and_reconciliation_say_the_evaluator_has_not_run() -> None:
    alerts = open_page("alerts")
    assert any("No alert in this time range" in t for t in texts(alerts.info))
    recon = open_page("reconciliation")
    assert any("No reconciliation run" in t for t in texts(recon.info))
