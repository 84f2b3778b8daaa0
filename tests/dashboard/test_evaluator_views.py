"""Pages that read the evaluator's contract tables: alerts, silences, MTTR, SLA points,
reconciliation runs and the overview's alert KPIs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from collector.store import Store
from tests.dashboard import evaluator_rows as ev
from tests.dashboard.apptest import charts, metrics, open_page, texts


@pytest.fixture
def alerts(use_empty: Store) -> Store:
    s = use_empty
    ev.alert(
        s,
        "fp-md-de01",
        "invoice-posting-master-data",
        "master_data",
        "firing",
        started_s_ago=3600,
        correlation_ids=("q2c-md-1", "q2c-md-2"),
        labels={"legal_entity": "DE01"},
        summary="ERP rejects postings: cost center missing",
    )
    ev.alert(
        s,
        "fp-rl",
        "erp-rate-limited",
        "rate_limited",
        "resolved",
        started_s_ago=7200,
        ended_s_ago=5400,
        labels={"legal_entity": "US01"},
    )
    ev.alert(
        s,
        "fp-stuck",
        "stuck-invoice-posting",
        "stuck",
        "firing",
        started_s_ago=600,
        correlation_ids=("q2c-stuck-1",),
        labels={"legal_entity": "DE01"},
    )
    ev.alert(
        s, "fp-old", "erp-outage", "transient", "resolved", started_s_ago=10 * 86400, ended_s_ago=9 * 86400
    )
    ev.silence(s, "sil-1", {"alertname": "erp-rate-limited"})
    ev.verdict(s, "q2c-md-1", "failed", "master_data", reason="INVALID_COST_CENTER")
    return s


def test_alerts_are_categorized_grouped_and_linked(alerts: Store) -> None:
    at = open_page("alerts")
    assert metrics(at) == {"Firing": "2", "Resolved": "1", "Suppressed": "0"}
    grouped = at.dataframe[0].value
    assert set(zip(grouped["category"], grouped["alert"], grouped["firing"], strict=True)) == {
        ("master_data", "invoice-posting-master-data", 1),
        ("stuck", "stuck-invoice-posting", 1),
        ("rate_limited", "erp-rate-limited", 0),
    }
    listed = at.dataframe[1].value.set_index("fingerprint")
    assert listed.loc["fp-md-de01", "summary"] == "ERP rejects postings: cost center missing"
    assert listed.loc["fp-md-de01", "trace"] == "/trace?correlation_id=q2c-md-1"
    assert len(charts(at)) == 1  # the timeline
    affected = at.dataframe[2].value  # of the first alert in the list (newest: fp-stuck)
    assert list(affected["correlation_id"]) == ["q2c-stuck-1"]
    at.selectbox(key="affected_alert").set_value("fp-md-de01").run()
    affected = at.dataframe[2].value.set_index("correlation_id")
    assert list(affected.index) == ["q2c-md-1", "q2c-md-2"]
    assert affected.loc["q2c-md-1", "reason"] == "INVALID_COST_CENTER"  # joined with the verdict
    silences = at.dataframe[3].value
    assert list(silences["matchers"]) == ["alertname=erp-rate-limited"]


def test_alert_filters_from_the_url(alerts: Store) -> None:
    at = open_page("alerts", category="stuck")
    assert list(at.dataframe[1].value["fingerprint"]) == ["fp-stuck"]
    de = open_page("alerts", entity="DE01", status="firing")
    assert set(de.dataframe[1].value["fingerprint"]) == {"fp-md-de01", "fp-stuck"}


def test_overview_alert_kpis(alerts: Store) -> None:
    ev.recon_run(alerts, "run-1", "monthly-invoices", ["2026-12"], 4, 1, s_ago=600)
    ev.recon_item(
        alerts,
        "run-1",
        "monthly-invoices",
        "2026-12",
        "invoice",
        "count",
        ["billing", "erp"],
        [10, 9],
        "mismatch",
    )
    at = open_page("overview")
    # No spans in this store: the overview says how to get some.
    assert any("No spans yet" in t for t in texts(at.info))
    # With spans, the KPIs read the alerts: put one span in.
    alerts.insert_rows(
        "revtrace_spans",
        [["tx-1", "billing.invoice.create", "ok", ev.now()]],
        ["CorrelationId", "Stage", "Outcome", "Timestamp"],
    )
    at = open_page("overview")
    shown = metrics(at)
    assert shown["Mean time to resolve"] == "30m 00s"  # fp-rl: 7200 s → 5400 s ago
    assert shown["Reconciliation exceptions"] == "1"
    firing = next(c for c in charts(at) if "Firing alerts" in c.proto.spec)
    assert '"master_data"' in firing.proto.spec and '"stuck"' in firing.proto.spec


def test_reconciliation_runs_differences_and_drill_down(use_empty: Store) -> None:
    s = use_empty
    today = ev.now().strftime("%Y-%m-%d")
    ev.recon_run(s, "run-old", "daily-invoices", [today], 2, 0, s_ago=7200)
    ev.recon_run(s, "run-new", "daily-invoices", [today], 2, 1, s_ago=60)
    ev.recon_item(
        s, "run-new", "daily-invoices", today, "invoice", "count", ["billing", "erp"], [3, 2], "mismatch"
    )
    ev.recon_item(
        s, "run-new", "daily-invoices", today, "invoice", "amount", ["billing", "erp"], [300, 300], "ok"
    )
    # The transactions behind it: an invoice billed today that never reached the ERP.
    start = dt.datetime.strptime(today, "%Y-%m-%d") + dt.timedelta(minutes=1)
    s.insert_rows(
        "revtrace_spans",
        [["inv-9", "billing.invoice.create", "billing", "invoice", "in_9", "DE01", "ok", start]],
        ["CorrelationId", "Stage", "System", "ObjectType", "ObjectId", "LegalEntity", "Outcome", "Timestamp"],
    )
    at = open_page("reconciliation")
    assert metrics(at) == {"Runs": "2", "Rules": "1", "Exceptions in the latest runs": "1"}
    differences = at.dataframe[1].value
    mismatch = differences[differences["status"] == "mismatch"].iloc[0]
    assert (mismatch["billing"], mismatch["erp"], mismatch["difference"]) == (3.0, 2.0, 1.0)
    behind = at.dataframe[2].value
    assert list(behind["correlation id"]) == ["inv-9"]
    assert list(behind["erp"]) == [""]
    only_mismatches = open_page("reconciliation", item_status="mismatch")
    assert list(only_mismatches.dataframe[1].value["measure"]) == ["count"]


def test_silence_an_alert_from_the_page_and_expire_it(alerts: Store) -> None:
    import time

    from dashboard import data
    from sla_rules._alerting import silences

    at = open_page("alerts")
    at.selectbox(key="affected_alert").set_value("fp-md-de01").run()
    suggested = at.text_area(key="silence_matchers_fp-md-de01").value
    assert suggested.splitlines() == ["alertname=invoice-posting-master-data", "legal_entity=DE01"]
    at.button(key="silence_create").click().run()  # no comment
    assert any("needs a comment" in e for e in texts(at.error))
    at.text_area(key="silence_matchers_fp-md-de01").input(
        "alertname=invoice-posting-master-data\nlegal_entity=~DE.*"
    )
    at.text_input(key="silence_comment").input("cost center fix deploying")
    at.selectbox(key="silence_duration").set_value("4h")
    at.button(key="silence_create").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("created for 4h" in s for s in texts(at.success)), texts(at.error)
    (made,) = [s for s in silences(alerts, time.time()) if s.id != "sil-1"]
    assert made.matchers == {"alertname": "invoice-posting-master-data"}
    assert made.matchers_re == {"legal_entity": "DE.*"}
    assert made.created_by == "local" and made.comment == "cost center fix deploying"
    assert 4 * 3600 - 60 < made.ends_at - time.time() <= 4 * 3600
    assert len(at.dataframe[3].value) == 2  # the silences table lists it

    at.selectbox(key="expire_which").set_value(made.id).run()
    at.button(key="expire_silence").click().run()
    assert any("expired" in s for s in texts(at.success)), texts(at.error)
    assert [s.id for s in silences(alerts, time.time() + 0.01)] == ["sil-1"]
    entries = [(e.action, json.loads(e.details).get("silence_id")) for e in data.audit_entries(alerts)]
    assert entries == [("silence", made.id), ("expire_silence", made.id)]
    assert data.verify_audit_log(alerts).ok


def test_viewers_may_not_silence(alerts: Store) -> None:
    from dashboard import actions
    from dashboard.auth import AuthMode, Role, User
    from dashboard.errors import PermissionDenied

    viewer = User("val", Role.VIEWER, AuthMode.LOCAL)
    with pytest.raises(PermissionDenied):
        actions.silence(alerts, viewer, ["alertname=x"], 3600, "no")
    with pytest.raises(PermissionDenied):
        actions.expire_silence(alerts, viewer, "sil-1")
