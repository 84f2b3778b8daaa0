"""The sync engine service: webhook intake, the event pipeline (deduplication,
ordering, parking, dead-lettering), timers (retry queue, parking deadlines,
reconciliation), the replay API and its lifecycle.

Every inbound event goes through the same pipeline, under a lock per object
stream (so events of one invoice, subscription or account are handled one at
a time):

1. a delivery of an event id already received is a duplicate: skipped;
2. a different event id for a business effect already applied (the same
   payment, the same order approval) is a duplicate too;
3. an event older than what was already applied for its object is stale: skipped;
4. an event whose predecessor has not been applied (or that continues a
   transaction that has not started) is parked, and dead-lettered as
   ``out_of_order`` when its predecessor does not come within ``park_ttl``;
5. otherwise it is applied, which may release parked events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from enum import Enum
from typing import Any, Final

import orjson
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_engine._adapters import BillingApi, CrmApi, ErpApi
from sync_engine._client import CircuitBreaker, RateLimiter, SystemClient
from sync_engine._clock import Clock
from sync_engine._config import ENV_REPLAY_TOKEN, Endpoints, EngineConfig
from sync_engine._errors import ReplayError, StepFailed
from sync_engine._flows import VENDORS, EngineContext, Flows, ready_for_invoice
from sync_engine._metrics import EngineMetrics
from sync_engine._recon import reconcile
from sync_engine._reference import LEGAL_ENTITIES
from sync_engine._server import HttpServer, JsonResponse
from sync_engine._store import (
    TERMINAL_STATES,
    DeadLetterQueue,
    EventStatus,
    InboundEvent,
    Inbox,
    Observation,
    ParkingLot,
    RetryQueue,
    Transaction,
    TxState,
)
from sync_engine._wire import (
    SFDC_SIGNATURE_HEADER,
    STRIPE_SIGNATURE_HEADER,
    verify_hmac,
    verify_stripe_signature,
)
from tracer import business_span, extract_webhook_context, instrument_httpx, new_correlation_id
from tracer.semconv import FailureCategory, ObjectType, Outcome, Process, Stage, System

__all__ = ["EVENT_STAGE", "SyncEngine"]

log = logging.getLogger("sync_engine")

APPROVAL: Final = "/event/Order_Approved__e"
ACCOUNT_CHANGE: Final = "/data/AccountChangeEvent"
EVENT_STAGE: Final[dict[str, Stage]] = {
    APPROVAL: Stage.CRM_ORDER_APPROVE,
    ACCOUNT_CHANGE: Stage.CRM_ACCOUNT_UPDATE,
    "invoice.finalized": Stage.ERP_INVOICE_POST,
    "payment_intent.succeeded": Stage.BILLING_PAYMENT_SUCCEED,
    "payment_intent.payment_failed": Stage.BILLING_PAYMENT_FAIL,
    "refund.created": Stage.BILLING_REFUND_CREATE,
    "customer.subscription.updated": Stage.BILLING_SUBSCRIPTION_UPDATE,
    "customer.subscription.deleted": Stage.BILLING_SUBSCRIPTION_CANCEL,
    "customer.updated": Stage.BILLING_CUSTOMER_UPSERT,
    "customer.created": Stage.BILLING_CUSTOMER_UPSERT,
}
"""The stage that handles each event type (the stage of its dedup, park and dead-letter spans)."""
_WAITING_FOR: Final = "syncengine.parked.waiting_for"


class _Result(Enum):
    APPLIED = "applied"
    PENDING = "pending"
    FAILED = "failed"


def _ts(seconds: float | int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(seconds or 0), dt.UTC)


class SyncEngine:
    """The reference quote-to-cash sync engine.

    ``async with``-free lifecycle: ``await start()`` binds the webhook
    receiver and API (``url``), ``await stop()`` drains and closes. Webhooks go
    to ``{url}/webhooks/billing`` and ``{url}/webhooks/crm``; the API is under
    ``{url}/api/v1`` (bearer ``replay_token``)."""

    def __init__(
        self,
        endpoints: Endpoints,
        config: EngineConfig | None = None,
        *,
        clock: Clock | None = None,
        meter_provider: Any = None,
        seed: int | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.config.validate()
        self.clock = clock or Clock()
        self.endpoints = endpoints
        self.replay_token: str = (
            self.config.replay_token or os.environ.get(ENV_REPLAY_TOKEN) or secrets.token_urlsafe(24)
        )
        """The bearer token ``/api/v1`` requires."""
        self.metrics = EngineMetrics(meter_provider)
        self.breakers: dict[System, CircuitBreaker] = {}
        self._clients: dict[System, SystemClient] = {}
        urls = {
            System.CRM: (endpoints.crm_url, endpoints.crm_token),
            System.BILLING: (endpoints.billing_url, endpoints.billing_key),
            System.ERP: (endpoints.erp_url, endpoints.erp_token),
        }
        for system, (url, token) in urls.items():
            rate, burst = self.config.rate_limits[system]
            breaker = CircuitBreaker(
                system, self.clock, self.config.breaker_threshold, self.config.breaker_open_seconds
            )
            self.breakers[system] = breaker
            self._clients[system] = SystemClient(
                system,
                VENDORS[system],
                url,
                token,
                self.clock,
                timeout=self.config.timeouts[system],
                limiter=RateLimiter(self.clock, rate, burst),
                breaker=breaker,
                on_wait=self.metrics.rate_limit_wait,
                extra_headers={"sforce-call-options": f"client={self.config.client_id}"}
                if system is System.CRM
                else None,
                transport_wrapper=instrument_httpx if self.config.http_client_spans else None,
            )
        self.ctx = EngineContext(
            self.config,
            self.clock,
            self.metrics,
            CrmApi(self._clients[System.CRM]),
            BillingApi(self._clients[System.BILLING]),
            ErpApi(self._clients[System.ERP]),
        )
        self.ctx.satisfy = self._satisfy
        self.ctx.requeue = self._requeue
        self.flows = Flows(self.ctx, seed)
        self.inbox = Inbox()
        self.dlq = DeadLetterQueue()
        self.parking = ParkingLot()
        self.retry_queue = RetryQueue()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        """One lock per object stream, with how many events hold or wait for it."""
        self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        self._queued = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.server = HttpServer(self._app(), host=self.config.host, port=self.config.port, name="engine")
        gauges = self.metrics.gauges
        gauges.queue_depth = lambda: self._queued + len(self.retry_queue)
        gauges.inflight = lambda: sum(
            1 for t in list(self.transactions.values()) if t.state not in TERMINAL_STATES
        )
        gauges.dlq_size = lambda: self.dlq.open_count
        gauges.parked = lambda: len(self.parking)
        gauges.breakers = lambda: {s: int(b.state) for s, b in self.breakers.items()}

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def transactions(self) -> dict[str, Transaction]:
        """Every transaction the engine knows, by correlation id."""
        return self.ctx.transactions

    @property
    def url(self) -> str:
        """Where the engine listens (webhooks and API)."""
        return self.server.url

    @property
    def spans_emitted(self) -> int:
        """Business spans started so far."""
        return self.ctx.spans

    async def start(self) -> None:
        """Listen and start the timers."""
        await self.server.start()
        self._timers = [asyncio.create_task(self._timer_loop(), name="engine-timers")]
        if self.config.reconcile_every > 0:
            self._timers.append(asyncio.create_task(self._reconcile_loop(), name="engine-reconcile"))

    async def stop(self) -> None:
        """Stop the timers and running work, close connections and the listener.
        Each transaction whose work is cut short gets one log line (and its
        spans say where it stopped); nothing else is logged."""
        for tx in list(self.transactions.values()):
            if tx.running:
                doing = tx.history[-1]["note"] if tx.history else tx.state.value
                log.warning(
                    "sync engine stopping: transaction %s (%s) cancelled in flight, last: %s",
                    tx.correlation_id,
                    tx.process.value,
                    doing,
                )
        for timer in self._timers:
            timer.cancel()
        for task in [*self._timers, *self._tasks]:
            if not task.done():
                task.cancel()
        for task in [*self._timers, *list(self._tasks)]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._timers = []
        await self.server.stop()
        for client in self._clients.values():
            await client.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run work in the background, kept until done."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sync engine task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def busy(self) -> int:
        """Work in progress or scheduled (events, tasks, retry queue, parked events)."""
        return len(self._tasks) + self._queued + len(self.retry_queue) + len(self.parking)

    def stats(self) -> dict[str, Any]:
        """Health figures (``/healthz``)."""
        states: dict[str, int] = {}
        for tx in list(self.transactions.values()):
            states[tx.state.value] = states.get(tx.state.value, 0) + 1
        return {
            "transactions": states,
            "queue_depth": self._queued + len(self.retry_queue),
            "parked": len(self.parking),
            "dlq": self.dlq.open_count,
            "spans": self.ctx.spans,
            "retries": self.metrics.retries_total,
            "ratelimit_waits": self.metrics.waits_total,
            "breakers": {s.value: b.state.name.lower() for s, b in self.breakers.items()},
        }

    # -- intake -------------------------------------------------------------------------------------
    def _normalize_billing(self, body: dict[str, Any]) -> InboundEvent:
        obj = body["data"]["object"]
        type_ = str(body["type"])
        if type_.startswith("invoice."):
            stream: str | None = f"invoice:{obj['id']}"
        elif type_.startswith("payment_intent."):
            stream = f"invoice:{obj.get('invoice')}"
        elif type_.startswith("refund."):
            stream = f"invoice:{(obj.get('metadata') or {}).get('invoice')}"
        elif type_.startswith("customer.subscription."):
            stream = f"subscription:{obj['id']}"
        else:
            stream = f"customer:{obj['id']}" if type_ in ("customer.created", "customer.updated") else None
        remote = extract_webhook_context(body)
        sequence = body.get("sequence")
        return InboundEvent(
            id=str(body["id"]),
            source=System.BILLING,
            type=type_,
            payload=body,
            received_at=dt.datetime.now(dt.UTC),
            occurred_at=_ts(body.get("created")),
            sequence=int(sequence) if sequence is not None else None,
            stream=stream,
            correlation_id=remote.correlation_id,
            process=remote.process,
            remote=remote,
        )

    def _normalize_crm(self, body: dict[str, Any]) -> InboundEvent:
        channel = str(body["channel"])
        data = body["data"]
        payload = data["payload"]
        remote = extract_webhook_context(payload)
        if channel == ACCOUNT_CHANGE:
            header = payload["ChangeEventHeader"]
            stream: str | None = f"account:{header['recordIds'][0]}"
            sequence: int | None = int(header["sequenceNumber"])
            occurred = _ts(int(header["commitTimestamp"]) / 1000)
        else:
            stream = None
            sequence = int(data["event"]["replayId"])
            occurred = dt.datetime.fromisoformat(str(payload.get("CreatedDate")).replace("Z", "+00:00"))
        return InboundEvent(
            id=str(data["event"]["EventUuid"]),
            source=System.CRM,
            type=channel,
            payload=body,
            received_at=dt.datetime.now(dt.UTC),
            occurred_at=occurred,
            sequence=sequence,
            stream=stream,
            correlation_id=remote.correlation_id,
            process=remote.process,
            remote=remote,
        )

    async def _webhook(
        self,
        request: Request,
        verify: Callable[[bytes, str | None], bool],
        header: str,
        normalize: Callable[[dict[str, Any]], InboundEvent],
    ) -> Response:
        body = await request.body()
        if not verify(body, request.headers.get(header)):
            return JsonResponse({"error": "invalid signature"}, status_code=400)
        try:
            event = normalize(orjson.loads(body))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return JsonResponse({"error": f"malformed event: {exc!r}"[:200]}, status_code=400)
        if event.type not in EVENT_STAGE:
            return JsonResponse({"received": True, "ignored": event.type})
        if self._queued >= self.config.inbound_capacity:
            return JsonResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "5"})
        return JsonResponse({"received": True, "status": self.receive(event)})

    def receive(self, event: InboundEvent) -> str:
        """Take an event in: a duplicate delivery is answered and recorded at
        once; anything else is queued for the pipeline."""
        entry = self.inbox.get(event.id)
        if entry is not None:
            entry.deliveries += 1
            self.spawn(
                self._skip_duplicate(
                    entry.event,
                    entry.correlation_id or event.correlation_id,
                    "same event id delivered again",
                    event,
                ),
                name="duplicate",
            )
            return "duplicate"
        self.inbox.add(event).correlation_id = event.correlation_id
        self._queued += 1
        self.spawn(self._process(event, queued=True), name=f"event:{event.type}")
        return "accepted"

    async def _process(self, event: InboundEvent, *, queued: bool = False) -> None:
        try:
            async with self._semaphore:
                if queued:
                    self._queued -= 1
                    queued = False
                key = event.stream or f"event:{event.id}"
                lock, users = self._locks.get(key, (asyncio.Lock(), 0))
                self._locks[key] = (lock, users + 1)
                try:
                    async with lock:
                        await self._handle(event)
                finally:
                    lock, users = self._locks[key]
                    if users <= 1:
                        del self._locks[key]
                    else:
                        self._locks[key] = (lock, users - 1)
        finally:
            if queued:
                self._queued -= 1

    @staticmethod
    def _effect_key(event: InboundEvent) -> str | None:
        obj = event.payload.get("data", {}).get("object") if event.source is System.BILLING else None
        if event.type == APPROVAL:
            return f"approve:{event.payload['data']['payload'].get('Opportunity_Id__c')}"
        if obj is None:
            return None
        if event.type == "invoice.finalized":
            return f"post:{obj['id']}"
        if event.type == "customer.created":
            return f"created:{obj['id']}"
        if event.type.startswith("payment_intent.") or event.type.startswith("refund."):
            return f"{event.type.split('.')[0]}:{obj['id']}"
        return None

    def _dependency(self, event: InboundEvent) -> str | None:
        """What the event waits for, if it cannot be applied yet."""
        if event.type == "invoice.finalized":
            tx = self.transactions.get(event.correlation_id or "")
            return None if tx is not None and ready_for_invoice(tx) else f"ready:{event.correlation_id}"
        if event.stream is None or event.sequence is None:
            return None
        applied = self.ctx.xref.stream_applied.get(event.stream)
        if applied is None:
            # Invoice histories start with invoice.finalized (1); account streams start wherever we join them.
            if event.stream.startswith("invoice:") and event.sequence > 1:
                return f"{event.stream}#{event.sequence - 1}"
            return None
        if event.sequence > applied + 1:
            return f"{event.stream}#{event.sequence - 1}"
        return None

    def _stale(self, event: InboundEvent) -> bool:
        if event.stream is None or event.sequence is None or event.type == "invoice.finalized":
            return False
        applied = self.ctx.xref.stream_applied.get(event.stream)
        return applied is not None and event.sequence <= applied

    async def _handle(self, event: InboundEvent) -> None:
        entry = self.inbox.get(event.id)
        if entry is None:
            entry = self.inbox.add(event)
        effect = self._effect_key(event)
        if effect is not None and self.inbox.effects.get(effect, event.id) != event.id:
            original = self.inbox.get(self.inbox.effects[effect])
            cid = (original.correlation_id if original else None) or event.correlation_id
            entry.correlation_id = cid
            entry.status = EventStatus.PROCESSED
            self._replayed(event, ok=True)
            await self._skip_duplicate(event, cid, f"business effect {effect} already applied")
            return
        if self._stale(event):
            entry.status = EventStatus.PROCESSED
            self._replayed(event, ok=True)
            await self._skip_duplicate(
                event, entry.correlation_id or event.correlation_id, "older than the state already applied"
            )
            return
        waiting_for = self._dependency(event)
        if waiting_for is not None:
            self._park(event, entry.correlation_id or event.correlation_id, waiting_for)
            entry.status = EventStatus.PARKED
            return
        entry.status = EventStatus.PROCESSING
        if effect is not None:
            self.inbox.effects[effect] = event.id
        try:
            result = await self._dispatch(event)
        except Exception:  # a bug must not take the pipeline down
            log.exception("sync engine: handling %s %s failed", event.type, event.id)
            result = _Result.FAILED
            cid = self.inbox.entries[event.id].correlation_id
            self._dead_letter(event, cid, EVENT_STAGE[event.type], FailureCategory.UNKNOWN, "engine error")
        entry.status = EventStatus.PROCESSED if result is not _Result.FAILED else EventStatus.DEAD_LETTERED
        # Deduplication needs the id, type and order of a handled event, not its body
        # (the transaction and the dead letter keep that for replays).
        entry.event = replace(entry.event, payload={})
        self._replayed(event, ok=result is not _Result.FAILED)
        if result is not _Result.PENDING and event.stream and event.sequence is not None:
            self.ctx.applied(event.stream, event.sequence)

    def _replayed(self, event: InboundEvent, *, ok: bool) -> None:
        if event.replay_of is not None and ok:
            letter = self.dlq.items.get(event.replay_of)
            if letter is not None:
                letter.status = "replayed"

    # -- dispatch to the flows ------------------------------------------------------------------------
    def _tx_for(self, event: InboundEvent, process: Process, trigger: str | None = None) -> Transaction:
        cid = event.correlation_id or new_correlation_id()
        tx = self.transactions.get(cid)
        if tx is None:
            tx = Transaction(cid, process, trigger or f"{event.source.value}:event/{event.id}")
            tx.payload["event"] = event.payload
            self.transactions[cid] = tx
            self.ctx.on_transaction(cid)
        if event.id not in tx.events:
            tx.events.append(event.id)
        if tx.legal_entity is None:
            self._enrich(tx, event)
        entry = self.inbox.get(event.id)
        if entry is not None:
            entry.correlation_id = cid
        return tx

    def _enrich(self, tx: Transaction, event: InboundEvent) -> None:
        """The legal entity of an event's transaction, from what the engine knows
        of the object (so even a parked event's span carries it)."""
        xref = self.ctx.xref
        obj = event.payload.get("data", {}).get("object") or {}
        info: dict[str, Any] | None = None
        if event.type.startswith("customer.subscription."):
            info = xref.subscription.get(str(obj.get("id")))
        elif event.type.startswith("payment_intent."):
            info = xref.invoice.get(str(obj.get("invoice")))
        elif event.type.startswith("refund."):
            info = xref.invoice.get(str((obj.get("metadata") or {}).get("invoice")))
        elif event.type == ACCOUNT_CHANGE and event.stream is not None:
            info = {"legal_entity": xref.account_entity.get(event.stream.split(":", 1)[1])}
        entity = LEGAL_ENTITIES.get(str((info or {}).get("legal_entity")))
        if entity is not None:
            tx.legal_entity, tx.region, tx.currency = entity.code, entity.region, entity.currency

    @staticmethod
    def _process_of(event: InboundEvent) -> Process:
        if event.type.startswith("payment_intent."):
            return Process.PAYMENT_UPDATE
        if event.type.startswith("refund."):
            return Process.REFUND
        if event.type.startswith("customer.subscription."):
            previous = event.payload["data"].get("previous_attributes") or {}
            return Process.RENEWAL if "current_period_start" in previous else Process.SUBSCRIPTION_CHANGE
        if event.type == APPROVAL:
            return Process.QUOTE_TO_CASH
        return Process.CUSTOMER_SYNC

    async def _dispatch(self, event: InboundEvent) -> _Result:
        if event.type == APPROVAL:
            payload = event.payload["data"]["payload"]
            tx = self._tx_for(event, Process.QUOTE_TO_CASH, f"crm:opportunity/{payload['Opportunity_Id__c']}")
            tx.payload["opportunity_id"] = payload["Opportunity_Id__c"]
            entity = LEGAL_ENTITIES.get(str(payload.get("Legal_Entity__c")))
            if entity is not None:
                tx.legal_entity, tx.region, tx.currency = entity.code, entity.region, entity.currency
            tx.add_ref(System.CRM, ObjectType.OPPORTUNITY, str(payload["Opportunity_Id__c"]))
            self._satisfy(f"ready:{tx.correlation_id}")
            await self.flows.run_order(tx, event)
            return _Result.APPLIED
        if event.type == "invoice.finalized":
            await self.flows.post_invoice(self.transactions[str(event.correlation_id)], event)
            return _Result.PENDING
        if event.type == "customer.updated":
            return self._billing_echo(event)
        if event.type == "customer.created":
            return self._billing_customer_created(event)
        if event.type == ACCOUNT_CHANGE:
            owned, ignored = self.flows.split_crm_change(event)
            origin = str(event.payload["data"]["payload"]["ChangeEventHeader"].get("changeOrigin", ""))
            if origin.endswith(f"client={self.config.client_id}") or not owned:
                tx = self._tx_for(event, Process.CUSTOMER_SYNC)
                own = origin.endswith(f"client={self.config.client_id}")
                self.flows.ignore_echo(
                    tx,
                    Stage.CRM_ACCOUNT_UPDATE,
                    event,
                    ObjectType.ACCOUNT,
                    str(event.stream).split(":", 1)[1],
                    owned + ignored,
                    ignored,
                    "own change echoed back" if own else "fields not owned by the CRM",
                )
                if tx.state is TxState.RUNNING and not tx.checkpoints:
                    self.flows.finish(tx, TxState.COMPLETED)
                return _Result.APPLIED
            tx = self._tx_for(event, Process.CUSTOMER_SYNC)
            return await self._run(tx, event, lambda: self.flows.run_account_change(tx, event, owned))
        process = self._process_of(event)
        tx = self._tx_for(event, process)
        if process is Process.PAYMENT_UPDATE:
            return await self._run(tx, event, lambda: self.flows.run_payment(tx, event))
        if process is Process.REFUND:
            return await self._run(tx, event, lambda: self.flows.run_refund(tx, event))
        return await self._run(
            tx,
            event,
            lambda: self.flows.run_subscription_update(tx, event),
            then=TxState.AWAITING_EVENT if process is Process.RENEWAL else TxState.COMPLETED,
        )

    def _billing_echo(self, event: InboundEvent) -> _Result:
        fields = self.flows.changed_billing_fields(event)
        _owned, ignored = self.flows.split_billing_change(fields)
        tx = self._tx_for(event, Process.CUSTOMER_SYNC)
        obj = event.payload["data"]["object"]
        key = (event.payload.get("request") or {}).get("idempotency_key") or ""
        reason = (
            "own change echoed back" if key.startswith(tx.correlation_id) else "fields not owned by billing"
        )
        self.flows.ignore_echo(
            tx,
            Stage.BILLING_CUSTOMER_UPSERT,
            event,
            ObjectType.CUSTOMER,
            str(obj["id"]),
            fields,
            ignored or fields,
            reason,
        )
        if tx.state is TxState.RUNNING and not tx.checkpoints:
            self.flows.finish(tx, TxState.COMPLETED)
        return _Result.APPLIED

    def _billing_customer_created(self, event: InboundEvent) -> _Result:
        known = self.transactions.get(event.correlation_id or "")
        if known is None:
            # Not created by a transaction this engine knows (or still remembers): nothing to record it on.
            log.debug("sync engine: customer.created %s for no known transaction", event.id)
            return _Result.APPLIED
        self.flows.record_billing_customer(self._tx_for(event, known.process), event)
        return _Result.APPLIED

    async def _run(
        self,
        tx: Transaction,
        event: InboundEvent,
        work: Callable[[], Awaitable[None]],
        then: TxState = TxState.COMPLETED,
    ) -> _Result:
        async with tx.lock:
            tx.running = True
            tx.set_state(TxState.RUNNING, f"handling {event.type} {event.id}")
            try:
                await work()
            except StepFailed as failure:
                self.flows.finish(tx, TxState.FAILED, failure)
                self._dead_letter(event, tx.correlation_id, failure.stage, failure.category, str(failure))
                return _Result.FAILED
            finally:
                tx.running = False
            if then is TxState.COMPLETED:
                self.flows.finish(tx, TxState.COMPLETED)
            else:
                tx.set_state(then, "waiting for the renewal invoice")
            return _Result.APPLIED

    # -- duplicates, parking, dead letters ---------------------------------------------------------------
    def _event_span(
        self,
        event: InboundEvent,
        cid: str | None,
        outcome: Outcome,
        *,
        note: str,
        category: FailureCategory | None = None,
        code: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        tx = self.transactions.get(cid or "")
        stage = EVENT_STAGE[event.type]
        self.ctx.spans += 1
        with business_span(
            stage.value,
            process=(tx.process.value if tx else event.process),
            vendor=VENDORS[event.source],
            legal_entity=tx.legal_entity if tx else None,
            region=tx.region if tx else None,
            object_refs=tx.refs_except() if tx else (),
            event_id=event.id,
            event_sequence=event.sequence,
            event_occurred_at=event.occurred_at,
            correlation_id=cid,
            links=(event.remote,) if event.remote is not None else (),
            kind=SpanKind.CONSUMER,
            idempotency_key=f"{event.source.value}:{event.id}",
        ) as span:
            span.set_attribute("syncengine.note", note)
            for key, value in (attributes or {}).items():
                span.set_attribute(key, value)
            if category is not None:
                span.fail(category, code=code, message=note)
            span.set_outcome(outcome)

    async def _skip_duplicate(
        self, event: InboundEvent, cid: str | None, why: str, delivery: InboundEvent | None = None
    ) -> None:
        shown = delivery or event
        self._event_span(shown, cid, Outcome.SKIPPED_DUPLICATE, note=why)
        if cid is not None:
            self.ctx.observe(
                cid, Observation("skipped_duplicate", FailureCategory.DUPLICATE, EVENT_STAGE[event.type], why)
            )

    def _park(self, event: InboundEvent, cid: str | None, waiting_for: str) -> None:
        deadline = time.monotonic() + self.clock.real(self.config.park_ttl)
        self.parking.park(event, waiting_for, deadline)
        self._wake.set()
        if event.type != "invoice.finalized":
            tx = self._tx_for(event, self._process_of(event))
            cid = tx.correlation_id
            if tx.state is TxState.RUNNING:
                tx.set_state(TxState.PARKED, f"{event.type} {event.id} waits for {waiting_for}")
        if event.replay_of is not None and event.replay_of in self.dlq.items:
            self.dlq.items[event.replay_of].status = "parked"
        self._event_span(
            event,
            cid,
            Outcome.PARKED,
            note=f"waiting for {waiting_for}",
            attributes={_WAITING_FOR: waiting_for},
        )
        if cid is not None:
            self.ctx.observe(
                cid, Observation("parked", FailureCategory.OUT_OF_ORDER, EVENT_STAGE[event.type], waiting_for)
            )

    def _satisfy(self, key: str) -> None:
        for event in self.parking.release(key):
            self.spawn(self._process(event), name=f"released:{event.type}")

    def _dead_letter(
        self, event: InboundEvent, cid: str | None, stage: Stage, category: FailureCategory, reason: str
    ) -> None:
        if event.replay_of is not None and event.replay_of in self.dlq.items:
            letter = self.dlq.items[event.replay_of]
            letter.status, letter.category, letter.reason = "open", category, reason
        else:
            self.dlq.add(event, cid, stage, category, reason)
        entry = self.inbox.get(event.id)
        if entry is not None:
            entry.status = EventStatus.DEAD_LETTERED
        self._event_span(
            event, cid, Outcome.DEAD_LETTERED, note=reason, category=category, code="DEAD_LETTERED"
        )

    def _expire_parked(self) -> None:
        for event, waiting_for in self.parking.expired(time.monotonic()):
            entry = self.inbox.get(event.id)
            cid = (entry.correlation_id if entry else None) or event.correlation_id
            reason = f"{waiting_for} did not arrive within {self.config.park_ttl:g}s"
            self._dead_letter(event, cid, EVENT_STAGE[event.type], FailureCategory.OUT_OF_ORDER, reason)
            tx = self.transactions.get(cid or "")
            if tx is not None and tx.state not in TERMINAL_STATES and not tx.running:
                tx.fail(
                    TxState.FAILED,
                    EVENT_STAGE[event.type],
                    FailureCategory.OUT_OF_ORDER,
                    "PREDECESSOR_MISSING",
                    reason,
                )
                self.metrics.finished_transaction(tx.process, "failed")

    # -- timers ------------------------------------------------------------------------------------------------
    def _requeue(self, tx: Transaction, delay: float) -> None:
        self.retry_queue.push(time.monotonic() + self.clock.real(delay), tx.correlation_id)
        self._wake.set()

    def _evict(self) -> None:
        """Bound memory: drop the oldest finished transactions (a minute after
        they finished) and the oldest event ids beyond the configured retention."""
        txs = self.transactions
        limit = self.config.retain_transactions
        if len(txs) > limit:
            now = time.monotonic()
            # Completed ones go first; failed and held ones (what the workbench replays) only past twice the limit.
            evictable = {TxState.COMPLETED} if len(txs) <= 2 * limit else TERMINAL_STATES
            for cid in list(itertools.islice(txs, len(txs) - limit + limit // 10)):
                tx = txs[cid]
                if tx.state in evictable and not tx.running and now - tx.updated > 60:
                    del txs[cid]
                    self.ctx.observations.pop(cid, None)
        entries = self.inbox.entries
        excess = len(entries) - self.config.retain_events
        if excess > 0:
            for event_id in list(itertools.islice(entries, excess)):
                if entries[event_id].status in (EventStatus.PROCESSED, EventStatus.DEAD_LETTERED):
                    del entries[event_id]
        effects = self.inbox.effects
        for key in list(itertools.islice(effects, max(0, len(effects) - self.config.retain_events))):
            del effects[key]

    async def _timer_loop(self) -> None:
        last_eviction = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_eviction > 5.0:
                self._evict()
                last_eviction = now
            for cid in self.retry_queue.pop_due(now):
                tx = self.transactions.get(cid)
                if tx is not None and tx.state is TxState.QUEUED:
                    self.spawn(self.flows.post_invoice(tx, None), name="requeued")
            self._expire_parked()
            due = [d for d in (self.retry_queue.next_due(), self.parking.next_deadline()) if d is not None]
            timeout = min(5.0, max(0.0, min(due) - time.monotonic())) if due else 5.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _reconcile_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.reconcile_every)
            await reconcile(self.ctx)

    async def reconcile(self) -> str:
        """Take reconciliation snapshots now; returns the run's correlation id."""
        return await reconcile(self.ctx)

    # -- replay ------------------------------------------------------------------------------------------------
    def replay(self, correlation_id: str) -> str:
        """Re-drive a transaction from its preserved payload and checkpoints,
        with the same idempotency keys. Returns the status: ``accepted``,
        ``in_progress`` or ``completed`` (nothing to do). Raises
        :class:`ReplayError` for an unknown id."""
        tx = self.transactions.get(correlation_id)
        if tx is None:
            raise ReplayError(f"unknown transaction {correlation_id!r}")
        if tx.running or tx.state is TxState.RUNNING:
            return "in_progress"
        if tx.state is TxState.COMPLETED:
            return "completed"
        tx.note("replay requested")
        invoice_started = Stage.BILLING_INVOICE_CREATE.value in tx.checkpoints or "invoice" in tx.payload
        if tx.process in (Process.QUOTE_TO_CASH, Process.RENEWAL) and invoice_started:
            tx.requeues = 0
            tx.set_state(TxState.RUNNING, "replay: posting to ERP")
            self.spawn(self.flows.post_invoice(tx, None), name="replay")
            return "accepted"
        if tx.process is Process.QUOTE_TO_CASH:
            tx.set_state(TxState.RUNNING, "replay: order")
            self.spawn(self.flows.run_order(tx, None), name="replay")
            return "accepted"
        letter = next(
            (d for d in self.dlq.items.values() if d.correlation_id == correlation_id and d.status == "open"),
            None,
        )
        if letter is not None:
            return self.replay_dead_letter(letter.id)
        return tx.state.value

    def replay_dead_letter(self, letter_id: str) -> str:
        """Put a dead-lettered event through the pipeline again (deduplication
        skipped). Returns ``accepted`` or ``already_replayed``."""
        letter = self.dlq.items.get(letter_id)
        if letter is None:
            raise ReplayError(f"unknown dead letter {letter_id!r}")
        if letter.status == "replayed":
            return "already_replayed"
        if letter.status == "replaying":
            return "in_progress"
        letter.status = "replaying"
        letter.replays += 1
        event = replace(letter.event, replay_of=letter.id, received_at=dt.datetime.now(dt.UTC))
        self.spawn(self._process(event), name="dlq-replay")
        return "accepted"

    # -- HTTP API ----------------------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        secret_billing = self.endpoints.billing_webhook_secret
        secret_crm = self.endpoints.crm_webhook_secret

        async def billing(request: Request) -> Response:
            return await self._webhook(
                request,
                lambda b, h: verify_stripe_signature(secret_billing, b, h),
                STRIPE_SIGNATURE_HEADER,
                self._normalize_billing,
            )

        async def crm(request: Request) -> Response:
            return await self._webhook(
                request,
                lambda b, h: verify_hmac(secret_crm, b, h),
                SFDC_SIGNATURE_HEADER,
                self._normalize_crm,
            )

        return Starlette(
            routes=[
                Route("/webhooks/billing", billing, methods=["POST"]),
                Route("/webhooks/crm", crm, methods=["POST"]),
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/api/v1/transactions", self._authorized(self._list_transactions), methods=["GET"]),
                Route("/api/v1/transactions/{cid}", self._authorized(self._get_transaction), methods=["GET"]),
                Route(
                    "/api/v1/transactions/{cid}/replay",
                    self._authorized(self._replay_transaction),
                    methods=["POST"],
                ),
                Route("/api/v1/dlq", self._authorized(self._list_dlq), methods=["GET"]),
                Route("/api/v1/dlq/{id}/replay", self._authorized(self._replay_dlq), methods=["POST"]),
            ]
        )

    def _authorized(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        expected = f"Bearer {self.replay_token}".encode()

        async def guarded(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JsonResponse(
                    {"error": "unauthorized"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="revtrace-sync-engine"'},
                )
            return await handler(request)

        return guarded

    async def _healthz(self, request: Request) -> Response:
        return JsonResponse({"status": "ok", **self.stats()})

    async def _list_transactions(self, request: Request) -> Response:
        state = request.query_params.get("state")
        process = request.query_params.get("process")
        try:
            limit = max(1, min(1000, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return JsonResponse({"error": "limit: must be an integer"}, status_code=400)
        items = [
            tx.to_json(payload=False)
            for tx in list(self.transactions.values())
            if (state is None or tx.state.value == state) and (process is None or tx.process.value == process)
        ]
        return JsonResponse({"items": items[-limit:], "total": len(items)})

    async def _get_transaction(self, request: Request) -> Response:
        tx = self.transactions.get(request.path_params["cid"])
        if tx is None:
            return JsonResponse({"error": "unknown correlation id"}, status_code=404)
        body = tx.to_json()
        body["dead_letters"] = [
            d.id for d in self.dlq.items.values() if d.correlation_id == tx.correlation_id
        ]
        return JsonResponse(body)

    async def _replay_transaction(self, request: Request) -> Response:
        cid = request.path_params["cid"]
        try:
            status = self.replay(cid)
        except ReplayError:
            return JsonResponse({"error": "unknown correlation id"}, status_code=404)
        return JsonResponse({"correlation_id": cid, "status": status}, status_code=202)

    async def _list_dlq(self, request: Request) -> Response:
        status = request.query_params.get("status")
        items = [d.to_json() for d in self.dlq.items.values() if status is None or d.status == status]
        return JsonResponse({"items": items, "open": self.dlq.open_count})

    async def _replay_dlq(self, request: Request) -> Response:
        letter_id = request.path_params["id"]
        try:
            status = self.replay_dead_letter(letter_id)
        except ReplayError:
            return JsonResponse({"error": "unknown dead letter"}, status_code=404)
        letter = self.dlq.items[letter_id]
        return JsonResponse(
            {"id": letter_id, "correlation_id": letter.correlation_id, "status": status}, status_code=202
        )
