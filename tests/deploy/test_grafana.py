"""Grafana: the provisioning files, the generated dashboards, and every panel's SQL
run against the real schema with a known workload — with the plugin's macros and
the template variables filled in, both with "All" and with one value selected."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.migrations import RenderOptions, migrate
from collector.service import Collector, CollectorConfig
from collector.store import Store, StoreError, open_store
from grafana import generate
from sla_rules import Evaluator, builtin_pack
from tests.deploy import workload
from tests.deploy.grafana_macros import ALL, Context, expand

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"


@pytest.fixture(scope="module")
def filled(chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, float]]:
    """A migrated database holding the workload (through a real collector) and the evaluator's verdicts."""
    database = f"g_{uuid.uuid4().hex[:10]}"
    store = open_store(f"chdb://{chdb_path}", database=database)
    migrate(store, RenderOptions(ttl_days=0))
    collector = Collector(
        CollectorConfig(
            host="127.0.0.1",
            http_port=0,
            grpc_port=-1,
            data_dir=tmp_path_factory.mktemp("grafana-collector"),
            batch_ms=100,
            self_telemetry_s=0,
            ttl_days=0,
        ),
        store=store,
    )
    collector.start()
    now = time.time()
    try:
        workload.send(collector.http_endpoint, now)
        deadline = time.monotonic() + 30
        while int(store.query("SELECT count() FROM revtrace_spans").scalar()) < workload.span_count():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        collector.record_self_telemetry()
        deadline = time.monotonic() + 30
        while not store.query(
            "SELECT count() FROM otel_metrics_gauge WHERE ServiceName = 'revtrace-collector'"
        ).scalar():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        collector.stop()
    Evaluator(store, builtin_pack("demo")).cycle(now, notify=False)
    yield store, now
    store.command(f"DROP DATABASE IF EXISTS `{database}`")


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(d.uid, p) for d in generate.DASHBOARDS for p in d.json()["panels"]]


def _context(store: Store, now: float, scenario: str, correlation_id: str = "q2c-stuck") -> Context:
    entities = [str(r[0]) for r in store.query("SELECT DISTINCT LegalEntity FROM revtrace_spans").rows]
    variables: dict[str, list[str]] = {
        "correlation_id": [correlation_id],
        "pair": [generate.PAIR.default],
        "sla_s": ["600"],
        "invoice_sla_s": [generate.INVOICE_SLA.default],
        "payment_sla_s": [generate.PAYMENT_SLA.default],
        "entity": [ALL] if scenario == "all" else ["US01"],
    }
    return Context(
        start=now - 3 * 3600, end=now + 60, interval_s=300, variables=variables, options={"entity": entities}
    )


def _run(store: Store, sql: str, ctx: Context) -> list[dict[str, Any]]:
    return store.query(expand(sql, ctx)).dicts()


def test_the_committed_dashboards_are_the_generated_ones() -> None:
    generated = generate.build()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == generated, "run: python grafana/generate.py"
    assert generate.main(["--check"]) == 0


def test_provisioning_points_every_panel_at_the_provisioned_data_source() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/revtrace.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"]) == (generate.DATASOURCE["uid"], generate.DATASOURCE["type"])
    json_data = source["jsonData"]
    assert json_data["protocol"] == "http"
    for key in ("host", "port", "username", "defaultDatabase"):
        assert json_data[key].startswith("${REVTRACE_"), key
    assert json_data["traces"]["defaultTable"] == "otel_traces" and json_data["traces"]["otelEnabled"] is True
    assert set(source["secureJsonData"]) == {"password"}
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/revtrace.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/revtrace"
    uids = [d.uid for d in generate.DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for uid, panel in _panels():
        assert panel["datasource"] == generate.DATASOURCE, (uid, panel["title"])
        for target in panel["targets"]:
            assert target["editorType"] == "sql" and target["rawSql"].strip(), (uid, panel["title"])
            assert target["format"] in (0, 1, 3) and target["datasource"] == generate.DATASOURCE
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (uid, panel["title"])


@pytest.mark.parametrize("scenario", ["all", "one entity"])
def test_every_panel_and_variable_query_runs_against_the_schema(
    filled: tuple[Store, float], scenario: str
) -> None:
    store, now = filled
    ctx = _context(store, now, scenario)
    failures: list[str] = []
    ran = 0
    for dashboard in generate.DASHBOARDS:
        queries = [(f"variable {v.name}", v.query) for v in dashboard.variables if v.kind == "query"]
        queries += [(p.title, p.sql) for p in dashboard.panels]
        for title, sql in queries:
            try:
                store.query(expand(sql, ctx))
                ran += 1
            except (StoreError, ValueError) as exc:
                failures.append(f"{dashboard.uid} / {title}: {exc}")
    assert failures == []
    assert ran == sum(
        len(d.panels) + sum(v.kind == "query" for v in d.variables) for d in generate.DASHBOARDS
    )


def _panel(uid: str, title: str) -> generate.Panel:
    dashboard = next(d for d in generate.DASHBOARDS if d.uid == uid)
    return next(p for p in dashboard.panels if p.title == title)


def test_overview_kpis_have_the_workloads_answers(filled: tuple[Store, float]) -> None:
    store, now = filled
    ctx = _context(store, now, "all")
    # Invoice posting took 120 s, 3000 s and 70 s (the retried one): p95 interpolates to 2712 s.
    (p95,) = _run(store, _panel("revtrace-overview", "Invoice posting p95").sql, ctx)
    assert p95["p95"] == pytest.approx(2712, rel=0.01)
    (dup,) = _run(store, _panel("revtrace-overview", "Duplicate transactions").sql, ctx)
    assert dup["duplicate_pct"] == pytest.approx(100 / len(workload.transactions()))
    (sync,) = _run(store, _panel("revtrace-overview", "Customer-sync success").sql, ctx)
    assert sync["success"] == pytest.approx(100.0)
    categories = {
        r["category"]: r["failed_spans"]
        for r in _run(store, _panel("revtrace-overview", "Failed spans by category").sql, ctx)
    }
    assert categories == {"master_data": 1}
    us_only = _context(store, now, "one entity")
    (p95_us,) = _run(store, _panel("revtrace-overview", "Invoice posting p95").sql, us_only)
    assert p95_us["p95"] == pytest.approx(70 + 0.95 * 50)  # US01: 70 s and 120 s


def test_latency_counts_breaches_and_the_stuck_invoice(filled: tuple[Store, float]) -> None:
    store, now = filled
    ctx = _context(store, now, "all")  # SLA 600 s
    (row,) = _run(store, _panel("revtrace-latency", "Breaches and waiting").sql, ctx)
    assert (row["breaches"], row["waiting_past_sla"], row["completed"]) == (1, 1, 3)
    slowest = _run(store, _panel("revtrace-latency", "Slowest and still waiting").sql, ctx)
    assert slowest[0]["correlation_id"] == "q2c-stuck" and slowest[0]["state"] == "waiting"
    assert slowest[1]["correlation_id"] == "q2c-ok-2"


def test_the_trace_panel_returns_grafanas_trace_frame_for_a_correlation_id(
    filled: tuple[Store, float],
) -> None:
    store, now = filled
    spans = _run(store, _panel("revtrace-trace", "Trace").sql, _context(store, now, "all"))
    expected = next(len(tx.steps) for tx in workload.transactions() if tx.correlation_id == "q2c-stuck")
    assert len(spans) == expected
    required = {
        "traceID",
        "spanID",
        "parentSpanID",
        "operationName",
        "serviceName",
        "startTime",
        "duration",
        "tags",
    }
    assert required <= set(spans[0])
    assert {s["traceID"] for s in spans} == {"q2c-stuck"}
    roots = [s for s in spans if not s["parentSpanID"]]
    assert len(roots) == 1 and roots[0]["operationName"] == "crm.order.approve"
    failed = next(s for s in spans if s["operationName"] == "erp.invoice.post")
    assert failed["statusCode"] == 2
    assert {"key": "biz.error.code", "value": "MISSING_COST_CENTER"} in failed["tags"]
    assert failed["logs"] and failed["logs"][0]["name"] == "biz.payload"
    # A hostile correlation id stays a string (Grafana's singlequote escaping).
    hostile = _context(store, now, "all", correlation_id="x' OR 1=1 --")
    assert _run(store, _panel("revtrace-trace", "Trace").sql, hostile) == []


def test_sync_engine_panels_read_the_engines_metrics(filled: tuple[Store, float]) -> None:
    store, now = filled
    ctx = _context(store, now, "all")
    breakers = _run(
        store, _panel("revtrace-sync-engine", "Circuit breakers now (0 closed, 1 half-open, 2 open)").sql, ctx
    )
    assert {r["system"] for r in breakers} == {"billing", "erp"}
    levels = _run(store, _panel("revtrace-sync-engine", "Queue, in flight, dead letters, parked").sql, ctx)
    assert {r["series"] for r in levels} >= {"syncengine.queue.depth", "syncengine.dlq.size"}
    retries = _run(
        store, _panel("revtrace-sync-engine", "Retries, transactions and rate-limit waits").sql, ctx
    )
    assert sum(r["increase"] for r in retries) > 0
    accepted = _run(store, _panel("revtrace-sync-engine", "Collector: spool backlog").sql, ctx)
    assert accepted, "the collector's own gauges"


def test_alert_panels_show_the_evaluators_verdicts(filled: tuple[Store, float]) -> None:
    store, now = filled
    ctx = _context(store, now, "all")
    slos = _run(
        store, _panel("revtrace-latency", "SLOs as the evaluator measures them (value vs objective)").sql, ctx
    )
    assert slos and {"rule", "value", "objective", "breached"} <= set(slos[0])
    verdicts = _run(
        store, _panel("revtrace-alerts", "Failing transactions (the evaluator's verdicts)").sql, ctx
    )
    assert "q2c-stuck" in {r["correlation_id"] for r in verdicts}
