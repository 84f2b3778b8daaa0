"""Rules that look across transactions (events out of sequence, keys applied
twice, per-object latency), the evaluator role and the CLI."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import sla_rules
from collector.store import Store
from revtrace.cli import cli
from sla_rules import Evaluator, EvaluatorRole, parse_rules
from tests.sla_rules.conftest import TESTDATA
from tests.sla_rules.spans import insert_spans, span

NOW = float(int(time.time()))


def _rules(*rules: dict[str, object]) -> sla_rules.RuleSet:
    return parse_rules({"version": "revtrace/v1", "rules": list(rules)})


def _verdicts(store: Store) -> dict[str, tuple[str, str]]:
    rows = store.query("SELECT CorrelationId, Status, Category FROM revtrace_transactions FINAL")
    return {cid: (status, category) for cid, status, category in rows}


def test_events_applied_out_of_sequence(store: Store) -> None:
    stage = "billing.subscription.update"
    insert_spans(
        store,
        [
            span("seat-1", stage, NOW - 300, object_type="subscription", object_id="sub_1", sequence=1),
            span("seat-3", stage, NOW - 200, object_type="subscription", object_id="sub_1", sequence=3),
            span("seat-2", stage, NOW - 100, object_type="subscription", object_id="sub_1", sequence=2),
            span("other", stage, NOW - 100, object_type="subscription", object_id="sub_2", sequence=1),
        ],
    )
    rules = _rules({"name": "ordering", "kind": "ordering", "stages": [stage]})
    Evaluator(store, rules, clock=lambda: NOW).transactions()
    verdicts = _verdicts(store)
    assert verdicts["seat-2"] == ("failed", "out_of_order")
    assert verdicts["seat-1"] == verdicts["seat-3"] == verdicts["other"] == ("ok", "")


def test_an_idempotency_key_applied_by_two_transactions(store: Store) -> None:
    stage = "billing.invoice.create"
    insert_spans(
        store,
        [
            span(
                "first",
                stage,
                NOW - 300,
                idempotency_key="order-9:invoice",
                object_type="invoice",
                object_id="in_1",
            ),
            span(
                "second",
                stage,
                NOW - 200,
                idempotency_key="order-9:invoice",
                object_type="invoice",
                object_id="in_2",
            ),
            span("skipped", stage, NOW - 100, idempotency_key="order-9:invoice", outcome="skipped_duplicate"),
        ],
    )
    rules = _rules({"name": "dup", "kind": "duplicate", "stages": [stage], "key": "idempotency_key"})
    result = Evaluator(store, rules, clock=lambda: NOW).transactions()
    assert _verdicts(store) == {"first": ("ok", ""), "second": ("failed", "duplicate"), "skipped": ("ok", "")}
    (second,) = [v for v in result.verdicts if v.correlation_id == "second"]
    assert second.evidence["finding"]["keys"] == ["order-9:invoice"]


def test_latency_per_object_follows_object_refs(store: Store) -> None:
    # Two transactions: the ERP posting names the billing invoice it posts in biz.object.refs.
    insert_spans(
        store,
        [
            span("bill", "billing.invoice.create", NOW - 7200, object_type="invoice", object_id="in_7"),
            span("post", "erp.invoice.post", NOW - 3600, object_type="invoice", object_id="INV-7",
                 refs='["billing:invoice/in_7"]'),
        ],
    )  # fmt: skip
    rules = _rules(
        {"name": "posting", "kind": "latency", "from": "billing.invoice.create", "to": "erp.invoice.post",
         "per": "object", "objectives": [{"percentile": 50, "threshold": "30m", "window": "1d"}]}
    )  # fmt: skip
    findings, points = Evaluator(store, rules, clock=lambda: NOW).window(rules.rules[0])
    assert [p.value for p in points] == [pytest.approx(3600.0, abs=2)]
    assert findings[0].correlation_ids == ("billing:invoice/in_7",)


def test_evaluator_role_runs_on_a_schedule(store: Store) -> None:
    role = EvaluatorRole(store, None, rules=sla_rules.builtin_pack("demo"))
    insert_spans(store, [span("r1", "billing.invoice.create", time.time() - 5)])
    role.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and role.evaluator.watermark() is None:
            time.sleep(0.1)
    finally:
        role.stop()
    assert role.evaluator.watermark() is not None
    assert _verdicts(store)["r1"] == ("in_progress", "")
    assert (role.name, role.url) == ("evaluator", "")
    assert role.description.startswith("15 rules")


def test_cli_validate() -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["sla", "validate", str(TESTDATA / "in-full.yaml")])
    assert ok.exit_code == 0 and "ok — 10 rules" in ok.output
    bad = runner.invoke(cli, ["sla", "validate", str(TESTDATA / "bad" / "objective-out-of-range.yaml")])
    assert bad.exit_code == 1
    assert "rules[2].objective: must be in (0, 100], got 120" in bad.output


def test_cli_check_runs_against_the_store(
    store: Store, chdb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"cli_{uuid.uuid4().hex[:8]}"
    from collector.migrations import RenderOptions, migrate
    from collector.store import open_store

    other = open_store(f"chdb://{chdb_path}", database=database)
    migrate(other, RenderOptions(ttl_days=0))
    insert_spans(
        other, [span("late", "billing.invoice.create", NOW - 600), span("late", "erp.invoice.post", NOW - 60)]
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"version": "revtrace/v1", "rules": [
        {"name": "fast", "kind": "latency", "from": "billing.invoice.create", "to": "erp.invoice.post", "deadline": "1m"}]}))  # fmt: skip
    monkeypatch.setenv("REVTRACE_CLICKHOUSE_URL", f"chdb://{chdb_path}")
    monkeypatch.setenv("REVTRACE_DATABASE", database)
    monkeypatch.setenv("REVTRACE_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(
        cli, ["sla", "check", "--rules", str(rules), "--format", "json", "--at", str(NOW)]
    )
    assert result.exit_code == 1, result.output
    assert '"category": "latency"' in result.output and '"late"' in result.output
    assert store.query("SELECT count() FROM revtrace_transactions").scalar() == 0


def test_exported_members() -> None:
    assert sla_rules.__all__ == sorted(
        sla_rules.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n)
    )
    for name in sla_rules.__all__:
        assert getattr(sla_rules, name).__doc__, name


def test_status_vocabularies_are_the_shared_ones() -> None:
    from sla_rules._alerting import FIRING, RESOLVED, SUPPRESSED
    from sla_rules._model import TxStatus
    from tracer import semconv

    assert sla_rules.TransactionStatus is semconv.TransactionStatus
    assert sla_rules.AlertStatus is semconv.AlertStatus
    assert sla_rules.ReconStatus is semconv.ReconStatus
    assert TxStatus.ALL == ("ok", "in_progress", "failed", "stuck", "held")
    assert tuple(semconv.TransactionStatus) == TxStatus.ALL
    assert TxStatus.OPEN == (semconv.TransactionStatus.IN_PROGRESS,)
    assert (
        (FIRING, RESOLVED, SUPPRESSED) == tuple(semconv.AlertStatus) == ("firing", "resolved", "suppressed")
    )
    assert tuple(semconv.ReconStatus) == ("ok", "mismatch", "missing")
