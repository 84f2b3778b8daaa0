"""The middleware patterns, against the simulated systems over real HTTP:
no duplicate invoice under retries and replays, out-of-order events never
corrupt state, dead letters can be replayed, the breaker opens and recovers,
ownership stops update loops, the replay API, the engine's metrics and the
reconciliation snapshots."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from decimal import Decimal
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sync_engine import (
    METRIC_BREAKER_STATE,
    METRIC_DLQ_SIZE,
    METRIC_INFLIGHT,
    METRIC_QUEUE_DEPTH,
    METRIC_RATELIMIT_WAITS,
    METRIC_RETRIES,
    METRIC_TRANSACTIONS,
    Endpoints,
    EngineConfig,
    Runtime,
    Scenario,
    SyncEngine,
    parse_profile,
)
from sync_engine._canonical import CRM_ACCOUNT_FIELDS, owned_changes
from sync_engine._client import BreakerState
from sync_engine._flows import ReconRun
from sync_engine._store import EventStatus, InboundEvent, Transaction, TxState
from tests.sync_engine.conftest import settle, test_engine_config
from tracer.semconv import RECONCILIATION_STAGES, Process, Stage, System


def _profile(name: str, mix: dict[str, int], faults: list[dict[str, Any]] = (), **extra: Any) -> Any:
    return parse_profile(
        {
            "version": "revtrace/v1",
            "kind": "FaultProfile",
            "name": name,
            "mix": mix,
            "latency": {"webhook": {"median": 0.3, "p99": 1.0}},
            "faults": list(faults),
            **extra,
        }
    )


def _orders(runtime: Runtime) -> list[dict[str, Any]]:
    return [line for line in runtime.truth.lines if line["process"] == "quote_to_cash"]


def _api(runtime: Runtime) -> httpx.AsyncClient:
    engine = runtime.engine
    return httpx.AsyncClient(base_url=engine.url, headers={"authorization": f"Bearer {engine.replay_token}"})


def test_no_duplicate_invoice_under_retries_and_replays(world: Any, spans: Any) -> None:
    profile = _profile(
        "held", {"new_sale": 1}, [{"kind": "auth", "rate": 1.0, "system": "erp", "stage": "erp.invoice.post"}]
    )
    held: dict[str, Any] = {}

    async def replay_held_then_lose_checkpoints(runtime: Runtime) -> None:
        engine = runtime.engine
        (cid,) = [c for c, tx in engine.transactions.items() if tx.state is TxState.HELD]
        held["cid"] = cid
        async with _api(runtime) as api:
            answers = await asyncio.gather(
                *(api.post(f"/api/v1/transactions/{cid}/replay") for _ in range(3))
            )
        assert {a.status_code for a in answers} == {202}
        assert {a.json()["status"] for a in answers} <= {"accepted", "in_progress"}
        await settle(runtime)
        assert engine.transactions[cid].state is TxState.COMPLETED
        # A crash between billing's effect and our checkpoint: the checkpoints are
        # gone; re-driving must reuse the idempotency keys, not invoice twice.
        tx = engine.transactions[cid]
        for stage in (Stage.BILLING_INVOICE_CREATE, Stage.ERP_INVOICE_POST):
            del tx.checkpoints[stage.value]
        tx.payload.pop("invoice")
        tx.set_state(TxState.FAILED, "simulated crash")
        assert engine.replay(cid) == "accepted"
        await settle(runtime)
        assert tx.state is TxState.AWAITING_EVENT  # billing answered from its idempotency record
        assert engine.replay(cid) == "accepted"  # now post to ERP from billing's copy of the invoice
        await settle(runtime)
        assert engine.replay(cid) == "completed"

    runtime = world(profile, [Scenario.NEW_SALE], during=replay_held_then_lose_checkpoints)
    cid = held["cid"]
    tx = runtime.engine.transactions[cid]
    assert tx.state is TxState.COMPLETED
    assert len(runtime.sims.billing.invoices) == 1
    assert len(runtime.sims.erp.records["invoice"]) == 1
    (invoice_id,) = runtime.sims.billing.invoices
    assert runtime.sims.erp.find_by_external_id("invoice", invoice_id) is not None
    spans.refresh()
    creates = spans.of(cid, "billing.invoice.create")
    assert [s.attributes["biz.attempt"] for s in creates] == [1, 2]
    assert len({s.attributes["biz.idempotency_key"] for s in creates}) == 1
    posts = spans.of(cid, "erp.invoice.post")
    assert [s.attributes["biz.outcome"] for s in posts] == ["failed", "ok", "ok"]
    assert posts[0].attributes["biz.error.category"] == "auth"
    assert [s.attributes["biz.attempt"] for s in posts] == [1, 2, 3]
    assert len({s.attributes["biz.object.id"] for s in posts[1:]}) == 1  # the same ERP document


def test_out_of_order_events_never_corrupt_state(world: Any, spans: Any) -> None:
    """Three seat changes per subscription, delivered in every possible order:
    each is applied once, in sequence, and the CRM ends with the latest MRR."""
    profile = _profile("orders", {"new_sale": 1})
    orders = list(itertools.permutations([0.5, 3.0, 5.5]))
    outcome: dict[str, Any] = {}

    async def reorder(runtime: Runtime) -> None:
        billing = runtime.sims.billing
        subs = list(billing.subscriptions)
        assert len(subs) == len(orders)
        expected: dict[str, Decimal] = {}
        cids: list[str] = []
        for sub_id, delays in zip(subs, orders, strict=True):
            seats = next(
                i for i in billing.subscriptions[sub_id]["items"]["data"] if "Seat" in i["price"]["nickname"]
            )
            changes = []
            for quantity in (seats["quantity"] + 3, seats["quantity"] + 7, seats["quantity"] + 11):
                cid = runtime.driver._begin(Scenario.SUBSCRIPTION_CHANGE, None)
                changes.append((cid, "subscription_change", quantity))
                cids.append(cid)
            billing.change_seats(sub_id, changes, delays=list(delays))
            items = billing.subscriptions[sub_id]["items"]["data"]
            expected[sub_id] = (
                sum((Decimal(i["price"]["unit_amount"]) * i["quantity"] for i in items), Decimal(0)) / 100
            )
        await settle(runtime)
        outcome.update(expected=expected, cids=cids)

    runtime = world(
        profile, [Scenario.NEW_SALE] * len(orders), during=reorder, engine=test_engine_config(park_ttl=600.0)
    )
    engine = runtime.engine
    for sub_id, mrr in outcome["expected"].items():
        account = engine.ctx.xref.subscription[sub_id]["account"]
        assert Decimal(str(runtime.sims.crm.records["Account"][account]["MRR__c"])) == mrr
        assert engine.ctx.xref.stream_applied[f"subscription:{sub_id}"] == 3
    spans.refresh()
    parked = 0
    for cid in outcome["cids"]:
        assert engine.transactions[cid].state is TxState.COMPLETED
        updates = spans.of(cid, "billing.subscription.update")
        assert updates[-1].attributes["biz.outcome"] == "ok"
        assert sum(s.attributes["biz.outcome"] == "ok" for s in updates) == 1  # applied exactly once
        parked += sum(s.attributes["biz.outcome"] == "parked" for s in updates)
        assert len(spans.of(cid, "crm.account.update")) >= 1
    assert parked >= 4  # every order but the natural one parks something
    lines = {line["correlation_id"]: line for line in runtime.truth.lines}
    assert all(lines[c]["expected"]["outcome"] == "ok" for c in outcome["cids"])


def test_a_dead_lettered_event_can_be_replayed(world: Any, spans: Any) -> None:
    profile = _profile(
        "late",
        {"new_sale": 1, "subscription_change": 1},
        [{"kind": "out_of_order", "rate": 1.0, "delay": 60}],
    )
    seen: dict[str, Any] = {}

    async def replay_dead_letter(runtime: Runtime) -> None:
        async with _api(runtime) as api:
            listing = (await api.get("/api/v1/dlq")).json()
            (letter,) = listing["items"]
            assert letter["status"] == "open" and letter["category"] == "out_of_order"
            assert letter["type"] == "customer.subscription.updated" and listing["open"] == 1
            seen["letter"] = letter
            answer = await api.post(f"/api/v1/dlq/{letter['id']}/replay")
            assert answer.status_code == 202 and answer.json()["status"] == "accepted"
            await settle(runtime)
            seen["after"] = (await api.get("/api/v1/dlq")).json()
            again = await api.post(f"/api/v1/dlq/{letter['id']}/replay")
            assert again.json()["status"] == "already_replayed"
            missing = await api.post("/api/v1/dlq/dlq_999999/replay")
            assert missing.status_code == 404

    runtime = world(profile, [Scenario.NEW_SALE, Scenario.SUBSCRIPTION_CHANGE], during=replay_dead_letter)
    letter = seen["letter"]
    cid = letter["correlation_id"]
    assert seen["after"]["open"] == 0 and seen["after"]["items"][0]["status"] == "replayed"
    tx = runtime.engine.transactions[cid]
    assert tx.state is TxState.COMPLETED
    line = next(line for line in runtime.truth.lines if line["correlation_id"] == cid)
    assert line["expected"]["outcome"] == "failed" and line["expected"]["category"] == "out_of_order"
    outcomes = [s.attributes["biz.outcome"] for s in spans.refresh().of(cid, "billing.subscription.update")]
    assert outcomes == ["parked", "dead_lettered", "ok"]
    sub_id = next(iter(runtime.sims.billing.subscriptions))
    assert runtime.engine.ctx.xref.stream_applied[f"subscription:{sub_id}"] == 2


def test_breaker_opens_during_an_outage_and_recovers(world: Any, spans: Any) -> None:
    # The outage window runs on the simulated clock from the world's start: long enough
    # that the orders reach ERP inside it even on a loaded machine.
    profile = _profile(
        "outage",
        {"new_sale": 1},
        outages=[{"system": "erp", "start": 0, "duration": 120}],
        sla={"invoice_posting_seconds": 900},
    )
    reader = InMemoryMetricReader()
    runtime = world(
        profile,
        4,
        sequential=False,
        meter_provider=MeterProvider(metric_readers=[reader]),
        engine=test_engine_config(requeue_delays=(30.0,) * 6),
    )
    breaker = runtime.engine.breakers[System.ERP]
    assert breaker.opened_count >= 1
    assert breaker.state is BreakerState.CLOSED
    orders = _orders(runtime)
    assert len(orders) == 4 and all(o["expected"]["outcome"] == "ok" for o in orders)
    assert all("transient" in o["expected"]["absorbed"] for o in orders)
    spans.refresh()
    codes = {s.attributes.get("biz.error.code") for o in orders for s in spans.of(o["correlation_id"])}
    assert "circuit_open" in codes
    gauge = _metric(reader, METRIC_BREAKER_STATE)
    assert {p.attributes["biz.system"]: p.value for p in gauge} == {"crm": 0, "billing": 0, "erp": 0}


def _metric(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    points: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def test_ownership_stops_update_loops(world: Any, spans: Any) -> None:
    assert owned_changes(
        System.CRM, ["Name", "Payment_Status__c", "Last_Sync_Correlation_Id__c"], CRM_ACCOUNT_FIELDS
    ) == (["Name"], ["Payment_Status__c", "Last_Sync_Correlation_Id__c"])
    runtime = world("clean", [Scenario.NEW_SALE, Scenario.ACCOUNT_UPDATE, Scenario.PAYMENT_FAILURE], seed=3)
    spans.refresh()
    by_scenario = {line["scenario"]: line for line in runtime.truth.lines}
    update = by_scenario["account_update"]["correlation_id"]
    # CRM → billing and ERP, once; billing's customer.updated echo is not synced back to CRM.
    writes = [s for s in spans.of(update) if s.attributes["biz.outcome"] == "ok" and s.kind.name == "CLIENT"]
    assert [s.name for s in writes] == ["billing.customer.upsert", "erp.customer.upsert"]
    echo = [s for s in spans.of(update, "billing.customer.upsert") if s.kind.name == "CONSUMER"]
    assert len(echo) == 1 and echo[0].attributes["biz.outcome"] == "skipped_duplicate"
    assert echo[0].attributes["syncengine.skip_reason"] == "own change echoed back"
    # A payment failure writes the billing-owned status to CRM; its change event comes back and stops there.
    failures = [
        line["correlation_id"] for line in runtime.truth.lines if line["scenario"] == "payment_failure"
    ]
    assert failures
    for cid in failures:
        crm = spans.of(cid, "crm.account.update")
        assert [(s.kind.name, s.attributes["biz.outcome"]) for s in crm] == [
            ("CLIENT", "ok"),
            ("CONSUMER", "skipped_duplicate"),
        ]
    account = next(iter(runtime.engine.ctx.xref.erp_customer))
    assert len(failures) == 2  # the failed payment, then dunning collects
    # the user's edit, past due, current again: three changes to the account, no echo loop
    assert runtime.sims.crm.record_sequence(account) == 3


def test_replay_api_needs_the_token_and_knows_its_transactions(world: Any, spans: Any) -> None:
    answers: dict[str, Any] = {}

    async def call(runtime: Runtime) -> None:
        cid = (
            _orders(runtime)[0]["correlation_id"]
            if runtime.truth.lines
            else next(iter(runtime.engine.transactions))
        )
        async with httpx.AsyncClient(base_url=runtime.engine.url) as bare, _api(runtime) as api:
            answers["no_token"] = (await bare.post(f"/api/v1/transactions/{cid}/replay")).status_code
            answers["wrong_token"] = (
                await bare.post(
                    f"/api/v1/transactions/{cid}/replay", headers={"authorization": "Bearer nope"}
                )
            ).status_code
            answers["no_token_get"] = (await bare.get(f"/api/v1/transactions/{cid}")).status_code
            answers["health"] = (await bare.get("/healthz")).json()
            answers["unknown"] = (await api.post("/api/v1/transactions/nope/replay")).status_code
            replay = await api.post(f"/api/v1/transactions/{cid}/replay")
            answers["replay"] = (replay.status_code, replay.json())
            answers["get"] = (await api.get(f"/api/v1/transactions/{cid}")).json()
            answers["list"] = (await api.get("/api/v1/transactions", params={"state": "completed"})).json()
            answers["cid"] = cid

    world("clean", [Scenario.NEW_SALE], during=call, engine=test_engine_config(http_client_spans=True))
    cid = answers["cid"]
    # With HTTP client spans on, every call is a CLIENT span inside its business step.
    calls = [s for s in spans.refresh().of(cid) if s.name.startswith(("GET ", "POST ", "PUT ", "PATCH "))]
    assert calls and all(s.attributes["http.response.status_code"] < 300 for s in calls)
    assert {s.parent.span_id for s in calls} <= {s.context.span_id for s in spans.of(cid) if s not in calls}
    assert answers["no_token"] == answers["wrong_token"] == answers["no_token_get"] == 401
    assert answers["unknown"] == 404
    assert answers["replay"] == (202, {"correlation_id": cid, "status": "completed"})
    tx = answers["get"]
    assert tx["correlation_id"] == cid and tx["state"] == "completed" and tx["process"] == "quote_to_cash"
    assert list(tx["checkpoints"]) == [
        s.value
        for s in (
            Stage.CRM_ORDER_APPROVE,
            Stage.MIDDLEWARE_ORDER_VALIDATE,
            Stage.BILLING_CUSTOMER_UPSERT,
            Stage.BILLING_SUBSCRIPTION_CREATE,
            Stage.BILLING_INVOICE_CREATE,
            Stage.ERP_CUSTOMER_UPSERT,
            Stage.ERP_INVOICE_POST,
        )
    ]
    assert any(ref.startswith("erp:invoice/") for ref in tx["refs"])
    assert answers["list"]["total"] == 1
    assert answers["health"]["status"] == "ok" and answers["health"]["breakers"]["erp"] == "closed"


def test_engine_health_metrics(world: Any, spans: Any) -> None:
    profile = _profile(
        "metrics",
        {"new_sale": 1},
        [{"kind": "transient", "rate": 1.0, "system": "erp", "stage": "erp.invoice.post", "count": 1}],
    )
    reader = InMemoryMetricReader()
    world(
        profile,
        2,
        meter_provider=MeterProvider(metric_readers=[reader]),
        engine=test_engine_config(
            rate_limits={System.CRM: (1.0, 1), System.BILLING: (1.0, 1), System.ERP: (1.0, 1)}
        ),
    )
    retries = _metric(reader, METRIC_RETRIES)
    assert {(p.attributes["biz.system"], p.attributes["biz.error.category"]) for p in retries} == {
        ("erp", "transient")
    }
    assert sum(p.value for p in retries) == 2
    finished = _metric(reader, METRIC_TRANSACTIONS)
    assert {(p.attributes["biz.process"], p.attributes["biz.outcome"]): p.value for p in finished} == {
        ("quote_to_cash", "ok"): 2
    }
    assert sum(p.value for p in _metric(reader, METRIC_RATELIMIT_WAITS)) > 0
    for name in (METRIC_QUEUE_DEPTH, METRIC_INFLIGHT, METRIC_DLQ_SIZE):
        assert [p.value for p in _metric(reader, name)] == [0]
    assert len(_metric(reader, METRIC_BREAKER_STATE)) == 3


def test_reconciliation_snapshots_per_system_type_period_and_legal_entity(world: Any, spans: Any) -> None:
    run: dict[str, str] = {}

    async def reconcile(runtime: Runtime) -> None:
        run["cid"] = await runtime.engine.reconcile()

    profile = _profile("recon", {"new_sale": 1}, [{"kind": "tax_rounding", "rate": 0.5}])
    runtime = world(profile, 4, seed=2, during=reconcile)
    snapshots = spans.refresh().of(run["cid"])
    assert {s.name for s in snapshots} == {s.value for s in RECONCILIATION_STAGES}
    for span in snapshots:
        attrs = span.attributes
        assert attrs["biz.process"] == "reconciliation" and attrs["biz.outcome"] == "ok"
        assert {
            "biz.object.type",
            "biz.recon.period",
            "biz.recon.count",
            "biz.recon.amount",
            "biz.recon.statuses",
        } <= set(attrs)
        assert sum(json.loads(attrs["biz.recon.statuses"]).values()) == attrs["biz.recon.count"]
        assert ("biz.legal_entity" in attrs) == (attrs["biz.object.type"] != "account")
        assert ("biz.currency" in attrs) == ("biz.legal_entity" in attrs)
    keys = [
        (
            s.name,
            s.attributes["biz.object.type"],
            s.attributes["biz.recon.period"],
            s.attributes.get("biz.legal_entity"),
        )
        for s in snapshots
    ]
    assert len(keys) == len(set(keys))  # one span per system × object type × period × legal entity

    def figures(system: str, object_type: str) -> dict[tuple[str, str], tuple[int, float]]:
        return {
            (s.attributes["biz.recon.period"], s.attributes["biz.legal_entity"]): (
                s.attributes["biz.recon.count"],
                s.attributes["biz.recon.amount"],
            )
            for s in snapshots
            if s.name.startswith(system) and s.attributes["biz.object.type"] == object_type
        }

    billing, erp = figures("billing", "invoice"), figures("erp", "invoice")
    assert billing.keys() == erp.keys() and sum(c for c, _ in billing.values()) == 4
    mismatched = {
        line["legal_entity"] for line in _orders(runtime) if line["expected"]["category"] == "mismatch"
    }
    assert mismatched
    for (period, entity), (count, amount) in billing.items():
        assert erp[(period, entity)][0] == count
        if entity in mismatched and count:
            assert erp[(period, entity)][1] != amount
        else:
            assert erp[(period, entity)][1] == amount
    assert figures("billing", "customer") == figures("erp", "customer")
    line = next(line for line in runtime.truth.lines if line["correlation_id"] == run["cid"])
    assert line["process"] == "reconciliation" and line["expected"]["outcome"] == "ok"


def test_billing_announces_every_customer_and_the_engine_records_it(world: Any, spans: Any) -> None:
    runtime = world("clean", [Scenario.NEW_SALE])
    (line,) = runtime.truth.lines
    assert line["expected"] == {"outcome": "ok", "category": None, "absorbed": []}
    upserts = spans.refresh().of(line["correlation_id"], "billing.customer.upsert")
    (call,) = [s for s in upserts if s.kind.name == "CLIENT"]
    (notice,) = [s for s in upserts if s.kind.name == "CONSUMER"]
    customer = call.attributes["biz.object.id"]
    assert call.attributes["syncengine.upsert"] == "created"
    expected = {
        "biz.outcome": "ok",
        "biz.process": "quote_to_cash",
        "biz.object.type": "customer",
        "biz.object.id": customer,
        "biz.legal_entity": line["legal_entity"],
        "syncengine.upsert": "webhook",
        "biz.event.sequence": 1,
    }
    assert {k: notice.attributes.get(k) for k in expected} == expected
    (account,) = [
        r for r in runtime.engine.transactions[line["correlation_id"]].refs if r.startswith("crm:account/")
    ]
    assert account in notice.attributes["biz.object.refs"]
    assert not [r for r in notice.attributes["biz.object.refs"] if r.startswith("billing:customer/")]
    event = notice.attributes["biz.event.id"]
    assert runtime.sims.billing.customers[customer]["metadata"]["crm_account_id"] == account.split("/", 1)[1]
    assert notice.attributes["biz.idempotency_key"] == f"billing:{event}"


def test_reconciliation_line_waits_for_the_run_to_end(world: Any, spans: Any) -> None:
    """ERP answers its snapshot query with 503 only after several simulated
    seconds (longer than the ground truth's settle time): the run's line is
    written once the run is over, and says it failed."""
    run: dict[str, Any] = {}

    async def reconcile_while_writing_ground_truth(runtime: Runtime) -> None:
        task = asyncio.create_task(runtime.engine.reconcile())
        while not task.done():  # as the running workload does, every now and then
            runtime.truth.write_settled()
            await asyncio.sleep(0.01)
        run["cid"] = task.result()
        # A run the end of the workload cuts short: its line says so.
        runtime.engine.ctx.recon_runs["cut-short"] = ReconRun(dt.datetime.now(dt.UTC), time.monotonic())

    profile = _profile(
        "recon-erp-down",
        {"new_sale": 1},
        latency={"erp": {"median": 20.0, "p99": 30.0}, "webhook": {"median": 0.3, "p99": 1.0}},
        outages=[{"system": "erp", "start": 0, "duration": 100_000}],
    )
    runtime = world(profile, 0, during=reconcile_while_writing_ground_truth)
    (line,) = [line for line in runtime.truth.lines if line["correlation_id"] == run["cid"]]
    assert line["process"] == "reconciliation"
    assert line["expected"] == {"outcome": "failed", "category": "transient", "absorbed": []}
    failed = [s for s in spans.refresh().of(run["cid"]) if s.attributes["biz.outcome"] == "failed"]
    assert [s.name for s in failed] == ["erp.reconciliation.snapshot"]
    assert failed[0].attributes["biz.error.category"] == "transient"
    (cut,) = [line for line in runtime.truth.lines if line["correlation_id"] == "cut-short"]
    assert cut["expected"] == {"outcome": "ok", "category": None, "absorbed": [], "incomplete": True}


def test_engine_memory_is_bounded_and_keeps_what_the_workbench_needs() -> None:
    async def run() -> tuple[SyncEngine, list[str]]:
        endpoints = Endpoints(
            "http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9", "t", "k", "t", "whsec_x", "s"
        )
        engine = SyncEngine(endpoints, EngineConfig(retain_transactions=100, retain_events=100))
        held: list[str] = []
        for n in range(190):
            tx = Transaction(f"cid-{n}", Process.QUOTE_TO_CASH, "test")
            tx.set_state(TxState.COMPLETED if n < 150 else TxState.HELD, "done")
            tx.updated = 0.0  # finished long ago
            engine.transactions[tx.correlation_id] = tx
            if n >= 150:
                held.append(tx.correlation_id)
        for n in range(130):
            entry = engine.inbox.add(
                InboundEvent(
                    f"evt_{n}",
                    System.BILLING,
                    "invoice.finalized",
                    {},
                    tx.started_at,
                    tx.started_at,
                    1,
                    None,
                    None,
                    None,
                )
            )
            entry.status = EventStatus.PROCESSED
            engine.inbox.effects[f"post:in_{n}"] = f"evt_{n}"
        engine._evict()
        await engine.stop()
        return engine, held

    engine, held = asyncio.run(run())
    assert len(engine.transactions) == 90
    assert all(cid in engine.transactions for cid in held)
    assert "cid-149" in engine.transactions and "cid-0" not in engine.transactions
    assert len(engine.inbox.entries) == 100 and "evt_129" in engine.inbox.entries
    assert len(engine.inbox.effects) == 100
