"""Faults, and the exact count after each: what was accepted against what is stored
and notified — nothing lost, nothing doubled.

The collector killed with SIGKILL mid-stream, a crash between insert and commit,
a torn spool tail, a short store outage and a full spool are proven in
``tests/collector/test_durability.py``; a full disk in ``test_disk_full.py``.
This module adds the store unavailable for minutes while real adapters stream,
clock skew between adapters, an alert receiver down for an hour, and the
evaluator killed at every write of a cycle.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml

from collector.service import Collector, CollectorConfig
from collector.store import Store
from dashboard.commands import trace as trace_command
from sla_rules import Evaluator, builtin_pack, parse_rules
from tests.collector.helpers import body_of, make_spans, wait_for_count
from tests.resilience import spans
from tests.resilience.conftest import Figures
from tests.resilience.harness import EXPORTER_ENV, Producers, Server, WebhookReceiver, free_port, query_store

PB = {"content-type": "application/x-protobuf"}


@pytest.fixture
def collector_for_adapters(store: Store, tmp_path: Path) -> Iterator[Collector]:
    """A collector in this process (its store is the test's), OTLP/HTTP only."""
    config = CollectorConfig(
        http_port=0,
        grpc_port=-1,
        data_dir=tmp_path / "collector",
        batch_ms=200,
        self_telemetry_s=0,
        ttl_days=0,
    )
    with Collector(config, store=store) as c:
        assert c.writer is not None
        c.writer.max_backoff_s = 1.0
        yield c


def _stored(store: Store, services: list[str]) -> dict[str, tuple[int, int]]:
    rows = store.query(
        "SELECT ServiceName, count(), uniqExact(TraceId, SpanId) FROM otel_traces "
        "WHERE ServiceName IN {s:Array(String)} GROUP BY ServiceName",
        {"s": services},
    ).rows
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


# --- the store unavailable for minutes ---------------------------------------------------------


def _store_outage(store: Store, c: Collector, tmp_path: Path, figures: Figures, outage_s: float) -> None:
    services = ["outage-0", "outage-1"]
    producers = Producers(
        c.http_endpoint, services, f"100x{outage_s + 5}", env=EXPORTER_ENV, log_dir=tmp_path
    ).start()
    assert c.writer is not None and c.spool is not None
    backlog_max = 0
    not_ready = 0
    try:
        time.sleep(2)
        store.command("DETACH TABLE otel_traces")  # every write to the store fails from now on
        try:
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline:
                backlog_max = max(backlog_max, c.spool.backlog_bytes)
                not_ready += httpx.get(f"{c.http_endpoint}/readyz", timeout=5).status_code == 503
                time.sleep(0.5)
            figures["writer_errors_during_outage"] = c.writer.stats.insert_errors
            assert not c.writer.stats.healthy
        finally:
            store.command("ATTACH TABLE otel_traces")
        results = producers.wait(timeout=outage_s + 300)
    finally:
        producers.kill()
    produced = sum(r["produced"] for r in results.values())
    dropped = sum(r["dropped"] for r in results.values())
    assert wait_for_count(
        store, "SELECT count() FROM otel_traces WHERE ServiceName LIKE 'outage-%'", produced, 120
    )
    assert c.writer.flush(30)
    stored = _stored(store, services)
    total, distinct = sum(v[0] for v in stored.values()), sum(v[1] for v in stored.values())
    business = int(
        store.query("SELECT count() FROM revtrace_spans WHERE ServiceName LIKE 'outage-%'").scalar()
    )
    figures.update(
        outage_s=outage_s,
        accepted=int(c.ingest.stats.accepted.get("traces", 0)) if c.ingest else 0,
        stored=total,
        lost=produced - dropped - distinct,
        doubled=total - distinct,
        dropped_counted=dropped,
        spool_backlog_max_kib=round(backlog_max / 1024),
        readyz_503=not_ready,
    )
    assert not_ready > 0  # readiness said so while the store was away
    assert dropped == 0 and total == distinct == produced == business, (results, stored, business)
    assert c.writer.stats.records_rejected == 0


def test_store_unavailable_while_adapters_stream(
    store: Store, collector_for_adapters: Collector, tmp_path: Path, figures: Figures
) -> None:
    """The store goes away for 8 s (its span table detached) while two adapters
    send 100 spans/s each through the real tracer: the collector keeps answering
    2xx from its spool, readiness says 503, and when the store is back every span
    is in ``otel_traces`` and ``revtrace_spans`` exactly once; no adapter dropped any."""
    _store_outage(store, collector_for_adapters, tmp_path, figures, outage_s=8)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_store_unavailable_for_minutes(
    store: Store, collector_for_adapters: Collector, tmp_path: Path, figures: Figures
) -> None:
    """The same with the store away for three minutes (36,000 spans spooled)."""
    _store_outage(store, collector_for_adapters, tmp_path, figures, outage_s=180)


# --- revtrace up killed mid-stream ----------------------------------------------------------------


def test_revtrace_up_killed_mid_stream_with_real_exporters(tmp_path: Path, figures: Figures) -> None:
    """Two adapters send 150 spans/s each through the real tracer into ``revtrace
    up``; once it has accepted a thousand spans, ``up`` is killed with SIGKILL and started again on the
    same port and data directory. The adapters' exporters retry through the outage
    (connection refused, then 2xx), the restarted collector writes what its spool
    held and drops the re-sent spans it had already spooled: every span is in the
    store exactly once, and no adapter dropped any."""
    services = ["killed-0", "killed-1"]
    server = Server(tmp_path / "up", http_port=free_port())
    producers = Producers("", services, "150x10", env=EXPORTER_ENV, log_dir=tmp_path)
    with server:
        producers.endpoint = server.endpoint
        producers.start()
        try:
            killed_at = 0
            deadline = time.monotonic() + 30
            while killed_at < 1000 and time.monotonic() < deadline:  # mid-stream: some accepted, most not
                time.sleep(0.2)
                killed_at = server.status()["ingest"]["accepted"].get("traces", 0)
            server.kill()
            down_from = time.monotonic()
            server.start()
            figures["down_s"] = round(time.monotonic() - down_from, 1)
            results = producers.wait()
        finally:
            producers.kill()
        status = server.wait_drained()
        assert server.stop() == 0
    counts = query_store(
        server.store_url,
        {
            "traces": "SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces "
            "WHERE ServiceName LIKE 'killed-%'",
            "business": "SELECT count() FROM revtrace_spans WHERE ServiceName LIKE 'killed-%'",
        },
    )
    stored, distinct = (int(x) for x in counts["traces"][0])
    produced = sum(r["produced"] for r in results.values())
    dropped = sum(r["dropped"] for r in results.values())
    figures.update(
        accepted_before_kill=int(killed_at),
        accepted=produced - dropped,
        stored=stored,
        lost=produced - dropped - distinct,
        doubled=stored - distinct,
        dropped_counted=dropped,
        duplicates_dropped_on_restart=int(status["ingest"]["duplicates"].get("traces", 0)),
        exporter_retries=sum(producers.log(s).count("retrying in") for s in services),
    )
    assert 0 < killed_at < produced
    assert dropped == 0, results
    assert stored == distinct == produced == int(counts["business"][0][0]), (counts, produced)


# --- the spool limit ------------------------------------------------------------------------------


def test_request_larger_than_the_spool_limit_is_taken_into_an_empty_spool(
    store: Store, tmp_path: Path, figures: Figures
) -> None:
    """A request whose rows exceed the whole spool limit used to be answered 503
    forever (the exporter retried until it gave up, losing the batch). Into an
    empty spool it is accepted; behind a backlog it waits like any other."""
    config = CollectorConfig(
        http_port=0,
        grpc_port=-1,
        data_dir=tmp_path,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
        spool_max_bytes=16 * 1024,
    )
    big = body_of(make_spans(100, "big", attributes=5))  # ≈ 30 KiB spooled (as protobuf)
    with Collector(config, store=store) as c:
        url = f"{c.http_endpoint}/v1/traces"
        store.command("DETACH TABLE otel_traces")  # keep the first one waiting in the spool
        try:
            first = httpx.post(url, content=big, headers=PB)
            behind = httpx.post(url, content=body_of(make_spans(100, "behind", attributes=5)), headers=PB)
        finally:
            store.command("ATTACH TABLE otel_traces")
        assert first.status_code == 200
        assert (
            c.spool is not None and c.spool.backlog_bytes > config.spool_max_bytes
        )  # one record, over the limit
        figures["record_kib"] = round(c.spool.backlog_bytes / 1024)
        assert behind.status_code == 503 and behind.headers["retry-after"]
        assert wait_for_count(store, "SELECT count() FROM otel_traces", 100) == 100
        assert c.writer is not None and c.writer.flush(20)
        again = httpx.post(url, content=body_of(make_spans(100, "behind", attributes=5)), headers=PB)
        assert again.status_code == 200
        assert c.writer.flush(20)
    figures.update(request_kib=round(len(big) / 1024), spool_limit_kib=16, accepted=200)
    assert store.query("SELECT count(), uniqExact(SpanId) FROM otel_traces").rows == [(200, 200)]


# --- clock skew between adapters -------------------------------------------------------------------

SKEWED_ADAPTERS = {
    # adapter: (its stages of each order, its clock's error in seconds)
    "crm-adapter": ("crm.order.approve,middleware.order.validate", -120.0),
    "billing-adapter": ("billing.customer.upsert,billing.subscription.create,billing.invoice.create", 0.0),
    "erp-adapter": ("erp.customer.upsert,erp.invoice.post", -300.0),
}


def test_clock_skew_between_adapters(
    store: Store, collector_for_adapters: Collector, tmp_path: Path, figures: Figures
) -> None:
    """Three adapters do the steps of the same 60 orders, each with its own clock:
    CRM's is 2 minutes slow, billing's right, ERP's 5 minutes slow (so an invoice is
    "posted" before it was created), and a fourth adapter's clock is a day ahead.
    Nothing is dropped or rejected, every transaction's trace has all 7 steps, and
    the evaluator judges them without error. What the views then show (negative
    posting latency, steps ordered by their own clocks) is recorded, not hidden."""
    c = collector_for_adapters
    orders, rate = 60, 20.0  # orders per second, per adapter
    per_service_args = {
        name: ["--stages", stages, "--cid-prefix", "skew", "--skew-s", str(skew)]
        for name, (stages, skew) in SKEWED_ADAPTERS.items()
    }
    per_service_args["ahead-adapter"] = ["--skew-s", str(86_400)]
    steps_of = {name: len(stages.split(",")) for name, (stages, _) in SKEWED_ADAPTERS.items()}
    steps_of["ahead-adapter"] = 7
    results: dict[str, dict[str, Any]] = {}
    producers = [  # one process per adapter, all at once, each at its own span rate
        Producers(
            c.http_endpoint,
            [name],
            f"{rate * steps}x{orders / rate}",
            env=EXPORTER_ENV,
            per_service_args=per_service_args,
            log_dir=tmp_path,
        ).start()
        for name, steps in steps_of.items()
    ]
    try:
        for p in producers:
            results.update(p.wait(timeout=300))
    finally:
        for p in producers:
            p.kill()
    produced = sum(r["produced"] for r in results.values())
    assert wait_for_count(
        store, "SELECT count() FROM otel_traces WHERE ServiceName LIKE '%-adapter'", produced, 60
    )
    assert c.writer is not None and c.writer.flush(20)
    stored = _stored(store, sorted(results))
    assert {s: v[0] for s, v in stored.items()} == {s: r["produced"] for s, r in results.items()}
    assert all(v[0] == v[1] for v in stored.values())
    assert c.ingest is not None and c.ingest.stats.rejected.get("traces", 0) == 0

    # Every order's trace holds all seven steps, wherever each adapter's clock was.
    steps_per_order = store.query(
        "SELECT CorrelationId, uniqExact(Stage) FROM revtrace_spans WHERE CorrelationId LIKE 'skew-%' "
        "GROUP BY CorrelationId"
    ).rows
    assert len(steps_per_order) == orders and {r[1] for r in steps_per_order} == {7}
    shown = json.loads(trace_command(store, "skew-7", format="json").text)
    order_shown = [str(s["stage"]) for s in shown["spans"]]
    # What the latency view computes from the adapters' own clocks.
    latency = store.query(
        "SELECT min(d), max(d) FROM (SELECT CorrelationId, "
        "dateDiff('millisecond', minIf(Timestamp, Stage = 'billing.invoice.create'), "
        "maxIf(Timestamp, Stage = 'erp.invoice.post')) / 1000 AS d "
        "FROM revtrace_spans WHERE CorrelationId LIKE 'skew-%' GROUP BY CorrelationId)"
    ).rows[0]
    ahead = store.query("SELECT min(Timestamp) FROM otel_traces WHERE ServiceName = 'ahead-adapter'").scalar()
    # The evaluator over the last 7 days (the ahead adapter's spans are tomorrow's).
    judged = Evaluator(store, builtin_pack()).transactions(time.time() + 60, write=False)
    skew_verdicts = Counter(
        f"{v.status}/{v.category}" if v.category else str(v.status)
        for v in judged.verdicts
        if v.correlation_id.startswith("skew-")
    )
    skew_verdicts["ok"] += judged.clean
    figures.update(
        adapters=len(results),
        accepted=produced,
        stored=sum(v[0] for v in stored.values()),
        lost=produced - sum(v[1] for v in stored.values()),
        doubled=sum(v[0] - v[1] for v in stored.values()),
        posting_latency_min_s=round(float(latency[0]), 1),
        posting_latency_max_s=round(float(latency[1]), 1),
        ahead_adapter_first_span=str(ahead),
        trace_order=" → ".join(order_shown[:7]),
        verdicts=dict(skew_verdicts),
    )
    assert sum(skew_verdicts.values()) == orders


# --- an alert receiver down for an hour ----------------------------------------------------------------

RULES = """
version: revtrace/v1
name: resilience
evaluator: {{lookback: 1d, lateness: 1m, interval: 30s, alert_horizon: {horizon}}}
rules:
  - name: stuck-invoice-posting
    kind: completeness
    after: billing.invoice.create
    expect: erp.invoice.post
    within: 10m
alerting:
  route:
    receiver: oncall
    group_by: [alertname, category, legal_entity]
    group_wait: {group_wait}
    group_interval: {group_interval}
    repeat_interval: 4h
  receivers:
    - name: oncall
      webhook:
        - url: {url}
"""

STUCK = [
    spans.Step("billing.invoice.create", f"stuck-{i}", legal_entity=entity)
    for i, entity in enumerate(["DE01", "DE01", "DE01", "US01", "US01"])
]


def _outbox(store: Store) -> dict[str, tuple[str, int]]:
    rows = store.query("SELECT Id, Status, Attempts FROM revtrace_notifications FINAL").rows
    return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}


def test_alert_receiver_down_for_an_hour(store: Store, figures: Figures) -> None:
    """Five invoices never reach the ERP; their stuck alerts (two groups, by legal
    entity) fire while the on-call webhook is down for an hour of evaluator time
    (the evaluator's clock is driven: a cycle every 5 minutes, notifications
    every minute). The alerts resolve during the outage too. When the receiver
    is back, each group gets its firing notification and then its resolved one:
    each exactly once, in order; nothing is left in the outbox."""
    spans.insert(store, STUCK)
    t_spans = time.time()
    with WebhookReceiver() as receiver:
        rules = parse_rules(
            yaml.safe_load(
                RULES.format(horizon="40m", group_wait="30s", group_interval="5m", url=receiver.url)
            )
        )
        evaluator = Evaluator(store, rules)
        receiver.up = False
        start = t_spans + 11 * 60  # the invoices are stuck from here on
        up_at = start + 3600
        queued: list[str] = []
        first_delivery_after_up: float | None = None
        minute = 0
        while True:
            now = start + 60 * minute
            if now >= up_at:
                receiver.up = True
            if minute % 5 == 0:
                result = evaluator.cycle(now)
                queued += result.queued
            else:
                queued += evaluator.notify(now)[0]
            if receiver.received and first_delivery_after_up is None:
                first_delivery_after_up = now - up_at
            outbox = _outbox(store)
            if now >= up_at and outbox and all(status == "sent" for status, _ in outbox.values()):
                break
            assert now < up_at + 3600, f"not delivered an hour after the receiver came back: {outbox}"
            minute += 1
    deliveries = receiver.deliveries()
    per_group: dict[str, list[str]] = {}
    for group, status, _ in deliveries:
        per_group.setdefault(group, []).append(status)
    doubled = sum(n - 1 for n in Counter(deliveries).values() if n > 1)
    outbox = _outbox(store)
    figures.update(
        outage_s=3600,
        notifications_queued=len(set(queued)),
        delivered=len(deliveries),
        lost=len(set(queued)) - len(set(deliveries)),
        doubled=doubled,
        attempts_refused=receiver.refused,
        first_delivery_after_up_s=round(first_delivery_after_up or 0),
    )
    assert per_group and all(statuses == ["firing", "resolved"] for statuses in per_group.values()), per_group
    assert len(per_group) == 2  # DE01 and US01
    assert doubled == 0 and len(deliveries) == len(set(queued)) == len(outbox) == 4
    assert receiver.refused > 0
    assert first_delivery_after_up is not None and first_delivery_after_up <= 600  # the backoff's cap


# --- the evaluator killed at every write of a cycle --------------------------------------------------------


class Crashed(BaseException):
    """The evaluator's process died here (a BaseException: no handler catches it)."""


class DyingStore:
    """The store as seen by an evaluator process that dies just before its
    ``crash_at``-th write (a SIGKILL there): that write and everything after it
    never happen. With ``crash_at`` None it only records the writes."""

    def __init__(self, store: Store, crash_at: int | None = None) -> None:
        self._store = store
        self.crash_at = crash_at
        self.writes: list[str] = []
        self.dead = False

    def _write(self, what: str) -> None:
        if self.dead:
            raise Crashed(what)
        if self.crash_at is not None and len(self.writes) + 1 == self.crash_at:
            self.dead = True
            raise Crashed(what)
        self.writes.append(what)

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._write(" ".join(sql.split()[:3]))
        return self._store.command(sql, *args, **kwargs)

    def insert_rows(self, table: str, *args: Any, **kwargs: Any) -> None:
        self._write(f"insert {table}")
        self._store.insert_rows(table, *args, **kwargs)

    def insert_raw(self, table: str, *args: Any, **kwargs: Any) -> None:
        self._write(f"insert {table}")
        self._store.insert_raw(table, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if self.dead:
            raise Crashed(name)
        return getattr(self._store, name)


EVALUATOR_TABLES = (
    "revtrace_transactions",
    "revtrace_evaluator_state",
    "revtrace_alerts",
    "revtrace_alert_groups",
    "revtrace_notifications",
    "revtrace_sla_points",
    "revtrace_recon_runs",
    "revtrace_recon_items",
)


def _reset_evaluator_state(store: Store) -> None:
    for table in EVALUATOR_TABLES:
        store.command(f"TRUNCATE TABLE IF EXISTS {table}")


def _final_state(store: Store, receiver: WebhookReceiver) -> dict[str, Any]:
    return {
        "verdicts": dict(store.query("SELECT CorrelationId, Status FROM revtrace_transactions FINAL").rows),
        "alerts": dict(store.query("SELECT Fingerprint, Status FROM revtrace_alerts FINAL").rows),
        "outbox": {k: v[0] for k, v in _outbox(store).items()},
        "deliveries": Counter(receiver.deliveries()),
    }


# The scenario's cycles, in minutes after the spans: the alerts fire (11), a quiet
# cycle (12), they resolve past the 20-minute horizon (32), a quiet cycle (33).
ALL_CYCLES = (11, 12, 32, 33)
FIRE_AND_RESOLVE = (11, 32)


def _run_scenario(
    store: Store,
    receiver: WebhookReceiver,
    t_spans: float,
    crash: tuple[int, int] | None,
    schedule: tuple[int, ...],
) -> tuple[dict[str, Any], list[list[str]]]:
    rules = parse_rules(
        yaml.safe_load(RULES.format(horizon="20m", group_wait="0s", group_interval="1m", url=receiver.url))
    )
    writes: list[list[str]] = []
    for index, minutes in enumerate(schedule):
        now = t_spans + minutes * 60
        dying = DyingStore(store, crash[1] if crash and crash[0] == index else None)
        try:
            Evaluator(cast(Store, dying), rules).cycle(now)
        except Crashed:
            # Restarted: a new process runs the next tick (the scheduler's interval later).
            Evaluator(store, rules).cycle(now + 5)
        writes.append(dying.writes)
    return _final_state(store, receiver), writes


def _crash_points(store: Store, figures: Figures, schedule: tuple[int, ...], cycles: tuple[int, ...]) -> None:
    spans.insert(store, STUCK)
    t_spans = time.time()
    with WebhookReceiver() as receiver:
        reference, writes = _run_scenario(store, receiver, t_spans, None, schedule)
    assert set(reference["deliveries"].values()) == {1} and len(reference["deliveries"]) == 4, reference
    lost = doubled = 0
    points = 0
    delivered = len(reference["deliveries"])
    doubled_at: list[str] = []
    for cycle in cycles:
        for k in range(1, len(writes[cycle]) + 1):
            _reset_evaluator_state(store)
            with WebhookReceiver() as receiver:
                state, _ = _run_scenario(store, receiver, t_spans, (cycle, k), schedule)
            points += 1
            assert state["verdicts"] == reference["verdicts"], (cycle, k)
            assert state["alerts"] == reference["alerts"], (cycle, k)
            assert state["outbox"] == reference["outbox"], (cycle, k)
            got, want = state["deliveries"], reference["deliveries"]
            assert set(got) == set(want), (cycle, k, got)  # nothing lost
            lost += len(set(want) - set(got))
            delivered = min(delivered, len(set(got)))
            extra = sum(got.values()) - sum(want.values())
            if extra:
                doubled += extra
                doubled_at.append(f"cycle {cycle + 1}, before write {k} ({writes[cycle][k - 1]})")
    leftovers = store.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE '_revtrace_eval_%'"
    ).scalar()
    figures.update(
        crash_points=points,
        notifications_queued=len(reference["deliveries"]),
        delivered=delivered,
        lost=lost,
        doubled=doubled,
        doubled_at="; ".join(doubled_at),
        scratch_tables_left=int(leftovers),
    )
    # A crash between a send and its record re-sends that one notification when the
    # evaluator restarts (at least once); any other crash point doubles nothing.
    assert all("revtrace_notifications" in where for where in doubled_at), doubled_at


def test_evaluator_killed_at_every_write_of_the_alerting_cycle(store: Store, figures: Figures) -> None:
    """The cycle that fires two alert groups and notifies them makes a dozen writes
    (scratch facts, verdicts, watermark, alerts, outbox, group state, delivery
    records). The evaluator is killed before each one in turn and restarted, then
    the alerts resolve in a later cycle; each time the verdicts, alerts, outbox and
    notifications received (firing and resolved) end up as in an uninterrupted run:
    nothing lost. Only a kill between a send and its record sends that
    notification again."""
    _crash_points(store, figures, FIRE_AND_RESOLVE, cycles=(0,))


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_evaluator_killed_at_every_write_of_every_cycle(store: Store, figures: Figures) -> None:
    """The same for every write of all four cycles (firing, quiet, resolving, quiet)."""
    _crash_points(store, figures, ALL_CYCLES, cycles=(0, 1, 2, 3))
