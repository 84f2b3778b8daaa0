"""The evaluator against the real embedded ClickHouse: verdicts, incremental
ticks, window rules, alert lifecycle, SLO points, reconciliation, commands."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import yaml

from collector.store import Store
from sla_rules import Evaluator, builtin_pack, parse_rules
from sla_rules.commands import check, parse_time, reconcile
from tests.sla_rules.spans import insert_spans, span

HOUR = 3600.0


def _verdicts(store: Store) -> dict[str, tuple[str, str]]:
    rows = store.query("SELECT CorrelationId, Status, Category FROM revtrace_transactions FINAL")
    return {cid: (status, category) for cid, status, category in rows}


def _alerts(store: Store) -> dict[str, tuple[str, float]]:
    rows = store.query("SELECT AlertName, Status, Value, Labels FROM revtrace_alerts FINAL")
    return {
        f"{name}:{labels.get('category', '')}:{labels.get('legal_entity', '')}": (status, value)
        for name, status, value, labels in rows
    }


@pytest.fixture
def now() -> float:
    return float(int(time.time()))


def _workload(now: float) -> list[dict[str, object]]:
    return [
        span("ok-1", "crm.order.approve", now - 3 * HOUR),
        span("ok-1", "billing.invoice.create", now - 2 * HOUR, amount="100.00", object_type="invoice", object_id="in_1"),
        span("ok-1", "erp.invoice.post", now - 2 * HOUR + 60, amount="100.00"),
        span("blip", "billing.invoice.create", now - 2 * HOUR),
        span("blip", "erp.invoice.post", now - 2 * HOUR + 5, outcome="retrying", http=503, attempt=1),
        span("blip", "erp.invoice.post", now - 2 * HOUR + 20, attempt=2),
        span("md", "billing.invoice.create", now - HOUR, legal_entity="ACME-SG"),
        span("md", "erp.invoice.post", now - HOUR + 5, legal_entity="ACME-SG", outcome="failed", error_category="master_data", error_code="INVALID_KEY_OR_REF", vendor="netsuite"),
        span("rl", "crm.order.approve", now - HOUR),
        span("rl", "billing.customer.upsert", now - HOUR + 1, outcome="failed", http=429),
        span("late", "billing.invoice.create", now - 10 * HOUR),
        span("late", "erp.invoice.post", now - 5 * HOUR),
        span("waiting", "billing.invoice.create", now - 600),
    ]  # fmt: skip


def test_cycle_writes_one_verdict_per_transaction(store: Store, now: float) -> None:
    insert_spans(store, _workload(now))
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: now)
    result = evaluator.cycle()
    assert _verdicts(store) == {
        "ok-1": ("ok", ""),
        "blip": ("ok", ""),
        "md": ("held", "master_data"),
        "rl": ("failed", "rate_limited"),
        "late": ("failed", "latency"),
        "waiting": ("in_progress", ""),
    }
    assert {v.correlation_id for v in result.failing} == {"md", "rl", "late"}
    evidence = json.loads(
        store.query("SELECT Evidence FROM revtrace_transactions FINAL WHERE CorrelationId = 'md'").scalar()
    )
    assert evidence["decided_by"] == "explicit"
    assert evidence["span"]["error_code"] == "INVALID_KEY_OR_REF"
    alerts = _alerts(store)
    assert alerts["transaction-failed:master_data:ACME-SG"] == ("firing", 1.0)
    assert alerts["invoice-posting-latency:latency:ACME-DE"][0] == "firing"
    points = store.query(
        "SELECT Rule, Measure, Value, Breached FROM revtrace_sla_points WHERE Rule = 'invoice-posting-latency'"
    )
    assert any(m == "p95" and b == 1 for _, m, _, b in points)


def test_ticks_are_incremental_and_open_transactions_age_into_stuck(store: Store, now: float) -> None:
    insert_spans(store, _workload(now))
    clock = [now]
    pack = builtin_pack()
    # No re-read margin: nothing is committing concurrently in this test.
    pack = dataclasses.replace(pack, evaluator=dataclasses.replace(pack.evaluator, lateness=0.0))
    evaluator = Evaluator(store, pack, clock=lambda: clock[0])
    first = evaluator.transactions()
    assert first.since is None  # a cold start takes everything in the lookback
    rows_before = store.query("SELECT count() FROM revtrace_transactions").scalar()
    mark = evaluator.watermark()
    assert mark is not None
    # Nothing new: only the open transaction is re-evaluated.
    clock[0] = now + 60
    result = evaluator.transactions()
    assert [v.correlation_id for v in result.verdicts] == ["waiting"]
    assert result.since == pytest.approx(mark)
    assert store.query("SELECT count() FROM revtrace_transactions").scalar() == rows_before + 1
    # A span that arrives late (its timestamp hours ago) is still seen.
    insert_spans(
        store, [span("ok-1", "erp.payment.apply", now - 3 * HOUR, outcome="dead_lettered", http=500)]
    )
    evaluator.transactions()
    assert _verdicts(store)["ok-1"] == ("failed", "transient")
    # A new span for a failed transaction makes it active again: the replay succeeded.
    insert_spans(store, [span("rl", "billing.customer.upsert", now + 100, attempt=2)])
    clock[0] = now + 200
    result = evaluator.transactions()
    assert "rl" in {v.correlation_id for v in result.verdicts} or _verdicts(store)["rl"] == ("ok", "")
    assert _verdicts(store)["rl"] in {("ok", ""), ("in_progress", "")}
    # A day later the waiting invoice was never posted: stuck, with no new span.
    clock[0] = now + 2 * 86400
    evaluator.transactions()
    assert _verdicts(store)["waiting"] == ("stuck", "stuck")


def test_alerts_resolve_when_the_cause_is_gone(store: Store, now: float) -> None:
    insert_spans(store, _workload(now))
    clock = [now]
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: clock[0])
    evaluator.transactions()
    assert _alerts(store)["transaction-failed:rate_limited:ACME-DE"][0] == "firing"
    insert_spans(store, [span("rl", "billing.customer.upsert", now + 10, attempt=2)])
    clock[0] = now + 60
    evaluator.transactions()
    assert _alerts(store)["transaction-failed:rate_limited:ACME-DE"][0] == "resolved"
    ends = store.query(
        "SELECT EndsAt FROM revtrace_alerts FINAL WHERE AlertName = 'transaction-failed' AND Category = 'rate_limited'"
    ).scalar()
    assert ends is not None


def test_error_rate_alert_inhibits_posting_alerts(store: Store, now: float) -> None:
    spans = []
    for i in range(12):
        spans.append(span(f"o{i}", "billing.invoice.create", now - 200))
        spans.append(span(f"o{i}", "erp.invoice.post", now - 150, outcome="failed", http=503))
    insert_spans(store, spans)
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: now)
    evaluator.cycle()
    rows = store.query("SELECT AlertName, Status, SuppressedBy, Labels FROM revtrace_alerts FINAL").rows
    by_name = {name: (status, sup, labels) for name, status, sup, labels in rows}
    assert by_name["erp-error-rate"][0] == "firing"
    assert by_name["erp-error-rate"][2]["category"] == "transient"
    status, suppressed_by, labels = by_name["transaction-failed"]
    assert (status, labels["stage"]) == ("suppressed", "erp.invoice.post")
    assert suppressed_by


def test_window_rules_measure_and_fire(store: Store, now: float) -> None:
    spans = []
    for i in range(40):
        ok = i % 4 != 0
        spans.append(span(f"cs{i}", "crm.account.update", now - 240 + i, process="customer_sync"))
        spans.append(
            span(f"cs{i}", "billing.customer.upsert", now - 230 + i, process="customer_sync",
                 outcome="ok" if ok else "dead_lettered", http=200 if ok else 500)
        )  # fmt: skip
    insert_spans(store, spans)
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: now)
    findings, _points = evaluator.window(builtin_pack().rule("customer-sync-success-rate"))
    assert len(findings) == 1 and findings[0].value == pytest.approx(87.5)
    assert findings[0].correlation_ids
    burn, burn_points = evaluator.window(builtin_pack().rule("customer-sync-slo"))
    assert burn and burn[0].severity == "critical" and burn[0].evidence["long_s"] == 3600.0
    assert {p.window for p in burn_points} >= {300.0, 3600.0}


def test_mttr_from_dead_letter_to_replay(store: Store, now: float) -> None:
    insert_spans(
        store,
        [
            span("r1", "erp.invoice.post", now - 6 * HOUR, outcome="dead_lettered", http=500),
            span("r1", "erp.invoice.post", now - HOUR, attempt=2),
            span("r2", "erp.invoice.post", now - 3 * HOUR, outcome="dead_lettered", http=500),
            span("r2", "erp.invoice.post", now - 2 * HOUR, attempt=2),
        ],
    )
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: now)
    findings, points = evaluator.window(builtin_pack().rule("mttr-failed-integrations"))
    assert points[0].value == pytest.approx(3 * HOUR, abs=2)
    assert not findings  # 3 h mean is under the 4 h objective


def test_reconciliation_records_a_run_with_items(store: Store, now: float) -> None:
    insert_spans(
        store,
        [
            span("recon-1", "billing.reconciliation.snapshot", now - 600, process="reconciliation", object_type="invoice",
                 period="2026-12-02", count=10, recon_amount="1000.00", statuses={"paid": 7, "open": 3}),
            span("recon-1", "erp.reconciliation.snapshot", now - 590, process="reconciliation", object_type="invoice",
                 period="2026-12-02", count=9, recon_amount="900.00", statuses={"paid": 7, "open": 2}),
        ],
    )  # fmt: skip
    out = reconcile(store, at=str(now), format="json")
    assert out.exit_code == 1
    doc = json.loads(out.text)
    measures = {d["labels"]["measure"] for d in doc if "labels" in d}
    assert measures == {"count", "amount", "status:open"}
    items = store.query("SELECT Measure, Status, Values FROM revtrace_recon_items ORDER BY Measure").rows
    assert ("status:paid", "ok", [7.0, 7.0]) in items
    assert store.query("SELECT Status, Exceptions FROM revtrace_recon_runs").rows == [("exceptions", 3)]


def test_check_is_reproducible_and_writes_nothing(store: Store, now: float) -> None:
    insert_spans(store, _workload(now))
    at = str(now)
    first = check(store, at=at, format="json")
    second = check(store, at=at, format="json")
    assert first.exit_code == 1
    assert first.text == second.text
    doc = json.loads(first.text)
    by_cid = {
        f["correlation_ids"][0]: f for f in doc["findings"] if f.get("status") in ("failed", "held", "stuck")
    }
    assert by_cid["md"]["category"] == "master_data" and by_cid["md"]["evidence"]["decided_by"] == "explicit"
    assert by_cid["rl"]["category"] == "rate_limited"
    assert store.query("SELECT count() FROM revtrace_transactions").scalar() == 0
    earlier = json.loads(check(store, at=str(now - 4 * HOUR), format="json").text)
    assert earlier["at"] < doc["at"]
    text = check(store, at=at).text
    assert "master_data (1)" in text and "rate_limited (1)" in text


def test_check_passes_when_nothing_fires(store: Store, now: float) -> None:
    insert_spans(store, _workload(now)[:3])
    out = check(store, at=str(now))
    assert out.exit_code == 0, out.text
    assert "nothing fires" in out.text


def test_parse_time() -> None:
    assert parse_time("2026-12-03T10:00:00Z") == parse_time("2026-12-03T10:00:00") == 1796292000.0
    assert parse_time("1796292000") == 1796292000.0
    with pytest.raises(ValueError, match="--at"):
        parse_time("yesterday")


def test_custom_rules_file(store: Store, now: float, tmp_path: Path) -> None:
    doc = {
        "version": "revtrace/v1",
        "rules": [{"name": "fast-posting", "kind": "latency", "from": "billing.invoice.create", "to": "erp.invoice.post", "deadline": "30s"}],
    }  # fmt: skip
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(doc))
    insert_spans(store, _workload(now)[:3])
    out = check(store, at=str(now), format="json", rules=str(tmp_path / "rules.yaml"))
    findings = json.loads(out.text)["findings"]
    assert [(f["rule"], f["category"]) for f in findings] == [("fast-posting", "latency")]
    assert parse_rules(doc).rules[0].name == "fast-posting"


def test_verdict_shares_of_several_rules_from_one_query(store: Store, now: float) -> None:
    """Each rule's share is its own: its window, process, category and grouping,
    although one query reads the verdicts for them all."""
    from sla_rules import _queries as q
    from sla_rules._evaluator import _TX_COLUMNS

    verdicts = [
        # (cid, process, legal entity, region, category, last seen hours ago)
        ("a", "quote_to_cash", "ACME-DE", "EMEA", "stuck", 1),
        ("b", "quote_to_cash", "ACME-DE", "EMEA", "", 1),
        ("c", "quote_to_cash", "ACME-UK", "EMEA", "duplicate", 2),
        ("d", "renewal", "ACME-UK", "EMEA", "stuck", 3),
        ("e", "renewal", "ACME-US", "AMER", "duplicate", 30),
        ("f", "quote_to_cash", "ACME-US", "AMER", "stuck", 30),
        ("g", "quote_to_cash", "ACME-US", "AMER", "", 50),
    ]
    rows = []
    for cid, process, entity, region, category, ago in verdicts:
        seen = q.to_db_time(now - ago * HOUR)
        status = "failed" if category else "ok"
        rows.append([cid, process, entity, region, status, category, "", "", "{}", seen, seen, "s", None, "EUR", [], q.to_db_time(now), "", "", []])  # fmt: skip
    store.insert_rows("revtrace_transactions", rows, _TX_COLUMNS)
    rules = {
        r.name: r
        for r in parse_rules(
            {
                "version": "revtrace/v1",
                "rules": [
                    {"name": "dup", "kind": "duplicate", "stages": ["billing.invoice.create"], "key": "object",
                     "window": "2d", "group_by": ["region"]},
                    {"name": "stuck-q2c", "kind": "completeness", "process": "quote_to_cash",
                     "after": "crm.order.approve", "expect": "billing.invoice.create", "within": "1h",
                     "group_by": ["legal_entity"]},
                    {"name": "stuck-all", "kind": "completeness", "after": "crm.order.approve",
                     "expect": "billing.invoice.create", "within": "1d", "group_by": []},
                ],
            }
        ).rules
    }  # fmt: skip
    windows = {"dup": 2 * 24 * HOUR, "stuck-q2c": 4 * HOUR, "stuck-all": 4 * 24 * HOUR}
    asked = [(rules[name], now - windows[name]) for name in ("dup", "stuck-q2c", "stuck-all")]
    batched = q.verdict_shares(store, asked, until=now)

    def expected(name: str) -> dict[tuple[tuple[str, str], ...], tuple[int, int, set[str]]]:
        rule = rules[name]
        dims = {"legal_entity": 2, "region": 3, "process": 1}
        out: dict[tuple[tuple[str, str], ...], tuple[int, int, set[str]]] = {}
        for v in verdicts:
            if v[5] * HOUR > windows[name] or (rule.process and v[1] != rule.process):
                continue
            key = tuple((d, str(v[dims[d]])) for d in rule.group_by)
            good, total, bad = out.get(key, (0, 0, set()))
            hit = v[4] == rule.category.value
            out[key] = (good + (not hit), total + 1, bad | ({v[0]} if hit else set()))
        return out

    for (rule, _), stats in zip(asked, batched, strict=True):
        got = {tuple(g.labels.items()): (g.good, g.total, set(g.examples)) for g in stats.groups}
        assert got == expected(rule.name), rule.name
        # One rule alone reads the same.
        (alone,) = q.verdict_shares(store, [(rule, now - windows[rule.name])], until=now)
        assert alone == stats


def test_verdict_times_are_the_spans_times(store: Store, now: float) -> None:
    """A dirty transaction's verdict (written from Python) carries its first
    span's start and last span's end to the microsecond, like a clean one's
    (written by the store)."""
    insert_spans(store, _workload(now))
    Evaluator(store, builtin_pack(), clock=lambda: now).cycle()
    rows = store.query(
        "SELECT v.CorrelationId, v.Status, toUnixTimestamp64Micro(v.FirstSeen), toUnixTimestamp64Micro(v.LastSeen), "
        "toUnixTimestamp64Micro(s.first), toUnixTimestamp64Micro(s.last), toUnixTimestamp64Milli(v.EvaluatedAt) "
        "FROM (SELECT * FROM revtrace_transactions FINAL) AS v "
        "JOIN (SELECT CorrelationId, min(Timestamp) AS first, max(EndTimestamp) AS last FROM revtrace_spans "
        "GROUP BY CorrelationId) AS s ON s.CorrelationId = v.CorrelationId"
    ).rows
    assert {status for _, status, *_ in rows} >= {"ok", "failed", "held"}
    for cid, _, first, last, span_first, span_last, evaluated in rows:
        assert (first, last) == (span_first, span_last), cid
        assert abs(evaluated / 1000 - time.time()) < 600, cid
