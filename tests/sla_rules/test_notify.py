"""Alerts to on-call: routing, grouping, inhibition, silences, and delivery
from the outbox to real local HTTP and SMTP servers, through outages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from collector.store import Store
from sla_rules import Alert, add_silence, match_routes, parse_rules
from sla_rules._alerting import dispatch, suppress, sync_alerts
from sla_rules._notify import deliver_due
from sla_rules._spec import AlertingSpec
from tests.sla_rules.servers import HttpSink, SmtpSink, http_sink, smtp_sink


@pytest.fixture
def http() -> Iterator[HttpSink]:
    with http_sink() as sink:
        yield sink


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_sink() as sink:
        yield sink


def _spec(alerting: dict[str, Any]) -> AlertingSpec:
    doc = {"version": "revtrace/v1", "rules": [{"name": "r", "kind": "mttr"}], "alerting": alerting}
    return parse_rules(doc).alerting


def _alert(name: str, **labels: str) -> Alert:
    return Alert(
        labels={"alertname": name, "severity": "critical", "category": "master_data", **labels},
        annotations={"summary": f"{name} summary", "description": f"{name} happened"},
        value=1.0,
        correlation_ids=("c-1",),
    )


def _outbox(store: Store) -> list[tuple[str, str, int]]:
    return store.query(
        "SELECT Integration, Status, Attempts FROM revtrace_notifications FINAL ORDER BY Integration"
    ).rows


T0 = float(int(time.time()))


def test_webhook_gets_the_alertmanager_v4_payload(store: Store, http: HttpSink) -> None:
    spec = _spec({"route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "30s"},
                  "receivers": [{"name": "hook", "webhook": [{"url": http.url + "/alerts"}]}]})  # fmt: skip
    sync_alerts(store, "rule-a", [_alert("posting-failed", legal_entity="ACME-DE")], T0)
    assert dispatch(store, spec, T0) == []  # group_wait
    queued = dispatch(store, spec, T0 + 31)
    assert len(queued) == 1
    assert deliver_due(store, spec, T0 + 31, external_url="http://dash").sent == 1
    (body,) = http.bodies("/alerts")
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["groupLabels"] == {"alertname": "posting-failed"}
    assert body["commonLabels"]["legal_entity"] == "ACME-DE"
    (alert,) = body["alerts"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == "http://dash/trace?correlation_id=c-1"
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                         "commonLabels", "commonAnnotations", "externalURL", "alerts"}  # fmt: skip
    # The cause goes away: one resolved notification after group_interval.
    sync_alerts(store, "rule-a", [], T0 + 40)
    assert dispatch(store, spec, T0 + 60) == []
    assert len(dispatch(store, spec, T0 + 31 + 300)) == 1
    deliver_due(store, spec, T0 + 400)
    assert [b["status"] for b in http.bodies()] == ["firing", "resolved"]
    assert http.bodies()[1]["alerts"][0]["status"] == "resolved"


def test_pagerduty_triggers_and_resolves_with_one_dedup_key(
    store: Store, http: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PD_KEY", "routing-key-from-env")
    http.ok_status = 202
    spec = _spec({"route": {"receiver": "pd", "group_wait": 0},
                  "receivers": [{"name": "pd", "pagerduty": [{"routing_key": "${TEST_PD_KEY}", "url": http.url + "/v2/enqueue"}]}]})  # fmt: skip
    sync_alerts(store, "rule-a", [_alert("erp-down")], T0)
    dispatch(store, spec, T0)
    deliver_due(store, spec, T0)
    sync_alerts(store, "rule-a", [], T0 + 10)
    dispatch(store, spec, T0 + 400)
    deliver_due(store, spec, T0 + 400)
    trigger, resolve = http.bodies("/v2/enqueue")
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["routing_key"] == "routing-key-from-env"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "revtrace"
    stored = store.query("SELECT Payload FROM revtrace_notifications").rows
    assert all("routing-key-from-env" not in p for (p,) in stored), "secrets never reach the outbox"


def test_slack_and_email(
    store: Store, http: HttpSink, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", http.url + "/services/T000/B000/XXXX")
    spec = _spec({"route": {"receiver": "team", "group_wait": 0},
                  "receivers": [{"name": "team",
                                 "slack": [{"url": "${TEST_SLACK_URL}", "channel": "#revops"}],
                                 "email": [{"to": ["oncall@example.com"], "from": "revtrace@example.com",
                                            "smarthost": f"127.0.0.1:{smtp.port}"}]}]})  # fmt: skip
    sync_alerts(store, "rule-a", [_alert("stuck-invoices", legal_entity="ACME-US")], T0)
    dispatch(store, spec, T0)
    assert deliver_due(store, spec, T0).sent == 2
    (slack,) = http.bodies("/services/T000/B000/XXXX")
    assert slack["channel"] == "#revops" and "stuck-invoices" in slack["text"]
    ((sender, rcpts, data),) = smtp.messages
    assert sender == "<revtrace@example.com>" and rcpts == ["<oncall@example.com>"]
    assert "Subject: [FIRING:1] stuck-invoices" in data and "stuck-invoices happened" in data


def test_receiver_outage_loses_nothing_and_doubles_nothing(store: Store, http: HttpSink) -> None:
    spec = _spec({"route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": 0, "group_interval": "1s"},
                  "receivers": [{"name": "hook", "webhook": [{"url": http.url}]}]})  # fmt: skip
    http.fail_next = 3
    sync_alerts(store, "rule-a", [_alert("a"), _alert("b")], T0)
    assert len(dispatch(store, spec, T0)) == 2
    assert dispatch(store, spec, T0) == []  # same group, same state: not queued again
    now = T0
    for _ in range(8):
        deliver_due(store, spec, now)
        now += 700  # past the longest back-off
    assert sorted(b["groupLabels"]["alertname"] for b in http.bodies()) == ["a", "b"]
    assert {status for _, status, _ in _outbox(store)} == {"sent"}
    assert max(attempts for *_, attempts in _outbox(store)) >= 2
    deliver_due(store, spec, now + 10_000)
    assert len(http.bodies()) == 2


def test_smtp_outage_then_recovery(store: Store) -> None:
    with smtp_sink() as smtp:
        port = smtp.port
    spec = _spec({"route": {"receiver": "mail", "group_wait": 0},
                  "receivers": [{"name": "mail", "email": [{"to": ["a@example.com"], "from": "r@example.com",
                                                            "smarthost": f"127.0.0.1:{port}"}]}]})  # fmt: skip
    sync_alerts(store, "rule-a", [_alert("posting")], T0)
    dispatch(store, spec, T0)
    result = deliver_due(store, spec, T0)  # nothing listens on the port
    assert (result.sent, result.retried) == (0, 1)
    with smtp_sink(port) as smtp:
        smtp.refuse_next = 1  # a 421 first: still retryable
        assert deliver_due(store, spec, T0 + 1).sent == 0  # backing off
        assert deliver_due(store, spec, T0 + 700).retried == 1
        assert deliver_due(store, spec, T0 + 1400).sent == 1
        assert deliver_due(store, spec, T0 + 99_999).sent == 0
        assert len(smtp.messages) == 1


def test_permanent_failure_is_not_retried(store: Store, http: HttpSink) -> None:
    spec = _spec(
        {
            "route": {"receiver": "hook", "group_wait": 0},
            "receivers": [{"name": "hook", "webhook": [{"url": http.url}]}],
        }
    )
    http.fail_next, http.fail_status = 1, 400
    sync_alerts(store, "rule-a", [_alert("x")], T0)
    dispatch(store, spec, T0)
    assert deliver_due(store, spec, T0).failed == 1
    assert deliver_due(store, spec, T0 + 10_000).sent == 0
    assert _outbox(store)[0][1] == "failed"


def test_repeat_interval_and_group_interval(store: Store, http: HttpSink) -> None:
    spec = _spec({"route": {"receiver": "hook", "group_by": ["category"], "group_wait": "10s",
                            "group_interval": "5m", "repeat_interval": "1h"},
                  "receivers": [{"name": "hook", "webhook": [{"url": http.url}]}]})  # fmt: skip
    sync_alerts(store, "rule-a", [_alert("a")], T0)
    assert len(dispatch(store, spec, T0 + 10)) == 1
    sync_alerts(store, "rule-b", [_alert("b")], T0 + 20)  # same group (category), changed
    assert dispatch(store, spec, T0 + 100) == []  # within group_interval
    assert len(dispatch(store, spec, T0 + 310)) == 1
    assert dispatch(store, spec, T0 + 1000) == []  # unchanged, before repeat_interval
    assert len(dispatch(store, spec, T0 + 310 + 3600)) == 1
    deliver_due(store, spec, T0 + 5000)
    assert [len(b["alerts"]) for b in http.bodies()] == [1, 2, 2]


def test_silence_with_expiry(store: Store, http: HttpSink) -> None:
    spec = _spec(
        {
            "route": {"receiver": "hook", "group_wait": 0},
            "receivers": [{"name": "hook", "webhook": [{"url": http.url}]}],
        }
    )
    add_silence(
        store, {"alertname": "noisy"}, starts_at=T0 - 1, ends_at=T0 + 600, created_by="ops", comment="known"
    )
    sync_alerts(store, "rule-a", [_alert("noisy")], T0)
    assert dispatch(store, spec, T0) == []
    status, by = store.query("SELECT Status, SuppressedBy FROM revtrace_alerts FINAL").rows[0]
    assert status == "suppressed" and by[0].startswith("silence:")
    assert len(dispatch(store, spec, T0 + 601)) == 1  # the silence expired
    assert store.query("SELECT Status FROM revtrace_alerts FINAL").scalar() == "firing"
    with pytest.raises(ValueError):
        add_silence(store, {}, starts_at=T0, ends_at=T0 + 1)


def test_inhibition_needs_equal_labels() -> None:
    spec = _spec({"route": {"receiver": "null"},
                  "inhibit_rules": [{"source_match": {"alertname": "erp-down"},
                                     "target_match": {"stage": "erp.invoice.post"}, "equal": ["legal_entity"]}]})  # fmt: skip
    source = _alert("erp-down", legal_entity="ACME-DE")
    same = _alert("posting", stage="erp.invoice.post", legal_entity="ACME-DE")
    other = _alert("posting", stage="erp.invoice.post", legal_entity="ACME-US")
    decided = {
        a.labels.get("legal_entity", "") + a.name: a for a in suppress([source, same, other], spec, [])
    }
    assert decided["ACME-DEposting"].status == "suppressed"
    assert decided["ACME-DEposting"].suppressed_by == (source.fingerprint,)
    assert decided["ACME-USposting"].status == "firing"
    assert decided["ACME-DEerp-down"].status == "firing"


def test_routing_tree_first_match_wins_unless_continue() -> None:
    spec = _spec({"route": {"receiver": "default", "group_by": ["alertname"], "routes": [
        {"match": {"category": "auth"}, "receiver": "security", "continue": True},
        {"match_re": {"severity": "critical|warning"}, "receiver": "pager", "group_wait": "5s",
         "routes": [{"match": {"process": "refund"}, "receiver": "finance"}]},
        {"match": {"severity": "critical"}, "receiver": "never"},
    ]}, "receivers": [{"name": n} for n in ("default", "security", "pager", "finance", "never")]})  # fmt: skip

    def receivers(**labels: str) -> list[str]:
        return [r.receiver for _, r in match_routes(spec.route, labels)]

    assert receivers(category="auth", severity="critical") == ["security", "pager"]
    assert receivers(category="mapping", severity="critical", process="refund") == ["finance"]
    assert receivers(category="mapping", severity="info") == ["default"]
    finance = match_routes(spec.route, {"severity": "warning", "process": "refund"})[0][1]
    assert (finance.group_wait, finance.group_by) == (5.0, ("alertname",))  # inherited
