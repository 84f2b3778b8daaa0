"""The engine's business logic: each process as a sequence of steps.

Every step is a business span (one per attempt, ``biz.attempt`` counting up
across in-call retries, the retry queue and replays), with the canonical stage
name, the object and its references in the other systems, the legal entity,
region, amount and idempotency key, and payload snapshots on the mapping
steps. A finished step is checkpointed on the transaction, so a replay resumes
after it; a request body is built once per step and resent unchanged, so the
target's idempotency key (or external-id upsert) makes the effect happen once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, TypeVar

from opentelemetry.trace import SpanKind

from sync_engine._adapters import BillingApi, CrmApi, ErpApi
from sync_engine._canonical import (
    BILLING_CUSTOMER_FIELDS,
    CRM_ACCOUNT_FIELDS,
    Contract,
    Invoice,
    MappingError,
    billing_customer_request,
    billing_subscription_request,
    contract_from_crm,
    customer_from_crm,
    erp_credit_memo_request,
    erp_customer_request,
    erp_invoice_request,
    erp_payment_request,
    invoice_from_billing,
    mapping,
    owned_changes,
    payment_from_billing,
    refund_from_billing,
    subscription_from_billing,
    to_json,
)
from sync_engine._clock import Clock
from sync_engine._config import EngineConfig
from sync_engine._errors import CircuitOpenError, DownstreamError, StepFailed
from sync_engine._metrics import EngineMetrics
from sync_engine._reference import LEGAL_ENTITIES, tax_rate_id
from sync_engine._store import InboundEvent, Observation, Transaction, TxState, XRef
from sync_engine._wire import from_minor
from tracer import BusinessSpan, business_span, inject_webhook_metadata
from tracer.semconv import (
    FailureCategory,
    ObjectType,
    Outcome,
    PayloadKind,
    Process,
    Stage,
    System,
    format_object_ref,
)

__all__ = ["VENDORS", "EngineContext", "Flows", "ReconRun", "StepRejected"]

log = logging.getLogger("sync_engine")

VENDORS: Final = {
    System.CRM: "salesforce",
    System.BILLING: "stripe",
    System.ERP: "netsuite",
    System.MIDDLEWARE: "revtrace-sync-engine",
}
"""The product behind each system (``biz.system.vendor``)."""

PAST_DUE: Final = "Past Due"
CURRENT: Final = "Current"
_OWNERSHIP_IGNORED: Final = "syncengine.ownership.ignored"
_SKIP_REASON: Final = "syncengine.skip_reason"
_UPSERT: Final = "syncengine.upsert"

T = TypeVar("T")


class StepRejected(Exception):
    """The engine itself refuses a step (our own mapping or validation)."""

    def __init__(self, category: FailureCategory, code: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.code = code
        self.retryable = False
        self.retry_after: float | None = None


@dataclass
class ReconRun:
    """One reconciliation run, as the ground truth needs it."""

    started_at: dt.datetime
    started: float
    """``time.monotonic()`` at the start."""
    finished: float | None = None
    """``time.monotonic()`` once every system's snapshot was taken or failed; None while it runs."""
    failure: FailureCategory | None = None
    """Why a system could not be read, when one could not."""


@dataclass
class EngineContext:
    """What the flows share with the rest of the engine."""

    config: EngineConfig
    clock: Clock
    metrics: EngineMetrics
    crm: CrmApi
    billing: BillingApi
    erp: ErpApi
    transactions: dict[str, Transaction] = field(default_factory=dict)
    xref: XRef = field(default_factory=XRef)
    observations: dict[str, list[Observation]] = field(default_factory=dict)
    """What the engine itself absorbed or suffered, per correlation id."""
    spans: int = 0
    recon_runs: dict[str, ReconRun] = field(default_factory=dict)
    """Reconciliation runs by correlation id, in start order."""
    satisfy: Callable[[str], None] = lambda key: None
    """Called when something events may wait for has happened (``invoice:in_…#1``)."""
    requeue: Callable[[Transaction, float], None] = lambda tx, delay: None
    """Put a transaction into the retry queue."""
    on_transaction: Callable[[str], None] = lambda correlation_id: None
    """Called when the engine starts a transaction."""

    def observe(self, correlation_id: str, observation: Observation) -> None:
        """Record an observation for a transaction."""
        self.observations.setdefault(correlation_id, []).append(observation)

    def applied(self, stream: str, sequence: int) -> None:
        """An event of ``stream`` was applied: later ones may go."""
        if sequence > self.xref.stream_applied.get(stream, -1):
            self.xref.stream_applied[stream] = sequence
        self.satisfy(f"{stream}#{sequence}")


def _system(stage: Stage) -> System:
    return System(stage.value.split(".", 1)[0])


def ready_for_invoice(tx: Transaction) -> bool:
    """Whether an ``invoice.finalized`` for this transaction can be handled:
    an order is ready from the start (its steps hold the transaction's lock);
    a renewal once its subscription update was recorded."""
    return tx.process is Process.QUOTE_TO_CASH or Stage.BILLING_SUBSCRIPTION_UPDATE.value in tx.checkpoints


class Flows:
    """The processes and the step runner."""

    def __init__(self, ctx: EngineContext, seed: int | None = None) -> None:
        self.ctx = ctx
        self._rng = random.Random(seed)

    # -- spans and steps ----------------------------------------------------------------------------
    def span(
        self,
        tx: Transaction,
        stage: Stage,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attempt: int | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        event: InboundEvent | None = None,
        idempotency_key: str | None = None,
        object_refs: Sequence[str] | None = None,
    ) -> BusinessSpan:
        """A business span for one step (or one attempt of it) of ``tx``; its
        ``object_refs`` are the transaction's unless given."""
        self.ctx.spans += 1
        system = _system(stage)
        return business_span(
            stage.value,
            process=tx.process.value,
            vendor=VENDORS.get(system),
            object_type=object_type,
            object_id=object_id,
            object_refs=tx.refs_except() if object_refs is None else object_refs,
            amount=amount,
            currency=currency or tx.currency,
            legal_entity=tx.legal_entity,
            region=tx.region,
            idempotency_key=idempotency_key or self.idempotency_key(tx, stage),
            attempt=attempt,
            event_id=event.id if event else None,
            event_sequence=event.sequence if event else None,
            event_occurred_at=event.occurred_at if event else None,
            correlation_id=tx.correlation_id,
            links=(event.remote,) if event is not None and event.remote is not None else (),
            kind=kind,
        )

    @staticmethod
    def idempotency_key(tx: Transaction, stage: Stage, suffix: str = "") -> str:
        """The key that makes a step's effect happen once: the same on every
        attempt, requeue and replay of the step."""
        return f"{tx.correlation_id}:{stage.value}{':' + suffix if suffix else ''}"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds (simulated) before the next attempt: exponential with
        jitter, and never less than what ``Retry-After`` asked for."""
        policy = self.ctx.config.retry
        delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        delay *= 1 + policy.jitter * self._rng.random()
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return float(delay)

    @staticmethod
    def _record(span: BusinessSpan, error: DownstreamError | StepRejected) -> None:
        if isinstance(error, DownstreamError) and error.response is not None:
            response = error.response
            span.classify_response(response.status_code, response.headers, response.content)
        elif isinstance(error, DownstreamError) and isinstance(error.__cause__, Exception):
            span.classify_response(exception=error.__cause__)
        else:
            span.fail(
                error.category,
                code=error.code,
                message=str(error),
                retryable=error.retryable,
                retry_after=error.retry_after,
            )

    async def step(
        self,
        tx: Transaction,
        stage: Stage,
        work: Callable[[BusinessSpan], Awaitable[T]],
        *,
        kind: SpanKind = SpanKind.CLIENT,
        object_type: str | None = None,
        object_id: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        event: InboundEvent | None = None,
        requeued: Callable[[], bool] | None = None,
    ) -> T:
        """Run one step: an attempt per span, retried while the failure is
        retryable and attempts remain. Raises :class:`StepFailed` when it
        ends without success. ``requeued`` says whether the transaction will be
        retried later (retry queue) when this step gives up on a retryable
        failure: then its last attempt is ``retrying``, not ``failed``."""
        system = _system(stage)
        policy = self.ctx.config.retry
        calls = 0  # failed calls: they use up the retry budget
        breaker_waits = 0  # rejections by an open circuit: no call was made, the budget is kept
        while True:
            attempt = tx.attempts[stage.value] = tx.attempts.get(stage.value, 0) + 1
            error: DownstreamError | StepRejected | None = None
            retrying = False
            with self.span(
                tx,
                stage,
                kind=kind,
                attempt=attempt,
                object_type=object_type,
                object_id=object_id,
                amount=amount,
                currency=currency,
                event=event,
            ) as span:
                try:
                    result = await work(span)
                except (DownstreamError, StepRejected) as exc:
                    error = exc
                    if isinstance(exc, CircuitOpenError):
                        breaker_waits += 1
                        retrying = breaker_waits <= self.ctx.config.breaker_waits
                    else:
                        calls += 1
                        retrying = exc.retryable and calls < policy.max_attempts
                    self._record(span, exc)
                    if retrying or (exc.retryable and requeued is not None and requeued()):
                        span.set_outcome(Outcome.RETRYING)
            if error is None:
                return result
            if isinstance(error, CircuitOpenError):
                self.ctx.observe(
                    tx.correlation_id,
                    Observation("circuit_open", FailureCategory.TRANSIENT, stage, error.system.value),
                )
            if not retrying:
                downstream = error if isinstance(error, DownstreamError) else None
                failure = StepFailed(stage, downstream, error.category, error.code or error.category.value)
                failure.retryable = error.retryable
                raise failure
            self.ctx.metrics.retry(
                error.system if isinstance(error, DownstreamError) else system, error.category
            )
            await self.ctx.clock.sleep(self.backoff(max(calls, 1), error.retry_after))

    def finish(self, tx: Transaction, state: TxState, failure: StepFailed | None = None) -> None:
        """End a transaction (COMPLETED, FAILED or HELD) and count it."""
        if failure is not None:
            message = failure.error.message if failure.error is not None else str(failure)
            tx.fail(state, failure.stage, failure.category, failure.code, message)
        else:
            tx.set_state(state, "completed" if state is TxState.COMPLETED else state.value)
        outcome = {TxState.COMPLETED: "ok", TxState.HELD: "held"}.get(state, "failed")
        self.ctx.metrics.finished_transaction(tx.process, outcome)

    @contextlib.contextmanager
    def consume(
        self,
        tx: Transaction,
        stage: Stage,
        event: InboundEvent,
        *,
        object_type: str,
        object_id: str,
        canonical: Any,
        mapping_name: str,
        amount: Decimal | None = None,
        currency: str | None = None,
    ) -> Iterator[BusinessSpan]:
        """The span of receiving an event, with its source payload, the mapping
        and the canonical result."""
        attempt = tx.attempts[stage.value] = tx.attempts.get(stage.value, 0) + 1
        with self.span(
            tx,
            stage,
            kind=SpanKind.CONSUMER,
            attempt=attempt,
            object_type=object_type,
            object_id=object_id,
            amount=amount,
            currency=currency,
            event=event,
            idempotency_key=f"{event.source.value}:{event.id}",
        ) as span:
            span.record_payload(PayloadKind.SOURCE, event.payload, system=event.source.value)
            span.record_transform(PayloadKind.SOURCE, PayloadKind.CANONICAL, mapping=mapping(mapping_name))
            span.record_payload(PayloadKind.CANONICAL, canonical, system=System.MIDDLEWARE.value)
            yield span

    # -- quote to cash: the order, up to the invoice in billing ------------------------------------
    def contract(self, tx: Transaction) -> Contract:
        """The canonical contract of an order (mapped again from the preserved source if needed)."""
        contract = tx.cache.get("contract")
        if contract is None:
            source = tx.checkpoints[Stage.CRM_ORDER_APPROVE.value]
            contract = tx.cache["contract"] = contract_from_crm(
                source["opportunity"], source["lines"], source["account"]
            )
        assert isinstance(contract, Contract)
        return contract

    async def run_order(self, tx: Transaction, event: InboundEvent | None) -> None:
        """Approve → validate → billing customer → subscription → invoice.
        ERP posting follows when billing reports the invoice finalized."""
        async with tx.lock:
            tx.running = True
            if tx.state is not TxState.RUNNING:
                tx.set_state(TxState.RUNNING, "order processing (re)started")
            try:
                await self._approve(tx, event)
                await self._validate(tx)
                contract = self.contract(tx)
                customer_id = await self._billing_customer(tx, contract)
                subscription_id = await self._billing_subscription(tx, contract, customer_id)
                await self._billing_invoice(tx, contract, customer_id, subscription_id)
            except StepFailed as failure:
                self.finish(tx, TxState.FAILED, failure)
                return
            finally:
                tx.running = False
            if Stage.ERP_INVOICE_POST.value not in tx.checkpoints:
                tx.set_state(TxState.AWAITING_EVENT, "waiting for invoice.finalized from billing")

    async def _approve(self, tx: Transaction, event: InboundEvent | None) -> None:
        stage = Stage.CRM_ORDER_APPROVE
        if stage.value in tx.checkpoints:
            return
        opp_id = str(tx.payload["opportunity_id"])

        async def work(span: BusinessSpan) -> dict[str, Any]:
            opportunity = await self.ctx.crm.record("Opportunity", opp_id)
            lines = await self.ctx.crm.line_items(opp_id)
            account = await self.ctx.crm.record("Account", str(opportunity["AccountId"]))
            source = {"opportunity": opportunity, "lines": lines, "account": account}
            span.record_payload(PayloadKind.SOURCE, source, system=System.CRM.value)
            span.update(
                amount=Decimal(str(opportunity.get("Amount") or 0)),
                currency=opportunity.get("CurrencyIsoCode"),
                object_refs=[f"crm:account/{opportunity['AccountId']}"],
            )
            return source

        source = await self.step(
            tx,
            stage,
            work,
            kind=SpanKind.CONSUMER,
            object_type=ObjectType.OPPORTUNITY,
            object_id=opp_id,
            event=event,
        )
        tx.add_ref(System.CRM, ObjectType.ACCOUNT, str(source["opportunity"]["AccountId"]))
        tx.checkpoint(stage, **source)

    async def _validate(self, tx: Transaction) -> None:
        stage = Stage.MIDDLEWARE_ORDER_VALIDATE
        if stage.value in tx.checkpoints:
            return
        source = tx.checkpoints[Stage.CRM_ORDER_APPROVE.value]

        async def work(span: BusinessSpan) -> Contract:
            span.record_payload(PayloadKind.SOURCE, source, system=System.CRM.value)
            try:
                contract = contract_from_crm(source["opportunity"], source["lines"], source["account"])
            except MappingError as exc:
                raise StepRejected(FailureCategory.MAPPING, exc.code, str(exc)) from exc
            span.record_transform(
                PayloadKind.SOURCE, PayloadKind.CANONICAL, mapping=mapping("crm_opportunity_to_contract")
            )
            span.record_payload(PayloadKind.CANONICAL, to_json(contract), system=System.MIDDLEWARE.value)
            span.update(amount=contract.monthly_amount, currency=contract.currency)
            return contract

        contract = await self.step(
            tx,
            stage,
            work,
            kind=SpanKind.INTERNAL,
            object_type=ObjectType.ORDER,
            object_id=str(tx.payload["opportunity_id"]),
        )
        tx.cache["contract"] = contract
        tx.currency = contract.currency
        tx.checkpoint(stage, contract=to_json(contract))

    async def _billing_customer(self, tx: Transaction, contract: Contract) -> str:
        stage = Stage.BILLING_CUSTOMER_UPSERT
        done = tx.checkpoints.get(stage.value)
        if done is not None:
            return str(done["customer_id"])
        xref_key = (contract.account_id, contract.legal_entity)
        key = self.idempotency_key(tx, stage)

        async def work(span: BusinessSpan) -> str:
            body = tx.requests.get(stage.value)
            if body is None:
                body = tx.requests[stage.value] = billing_customer_request(
                    contract.customer, contract.legal_entity, dict(inject_webhook_metadata({}))
                )
            span.record_payload(
                PayloadKind.CANONICAL, to_json(contract.customer), system=System.MIDDLEWARE.value
            )
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("customer_to_stripe_customer"),
            )
            known = self.ctx.xref.billing_customer.get(xref_key)
            if known is not None:
                span.set_attribute(_UPSERT, "known")
                span.update(object_id=known)
                return known
            found = await self.ctx.billing.search_customers(contract.account_id, contract.legal_entity)
            if found:
                customer = found[0]
                span.set_attribute(_UPSERT, "matched")
            else:
                span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.BILLING.value)
                customer = await self.ctx.billing.post("/v1/customers", body, key)
                span.set_attribute(_UPSERT, "created")
            span.record_payload(PayloadKind.TARGET_RESPONSE, customer, system=System.BILLING.value)
            span.update(object_id=str(customer["id"]))
            return str(customer["id"])

        customer_id = await self.step(tx, stage, work, object_type=ObjectType.CUSTOMER)
        self.ctx.xref.billing_customer[xref_key] = customer_id
        self.ctx.xref.account_entity.setdefault(contract.account_id, contract.legal_entity)
        tx.add_ref(System.BILLING, ObjectType.CUSTOMER, customer_id)
        tx.checkpoint(stage, customer_id=customer_id)
        return customer_id

    def record_billing_customer(self, tx: Transaction, event: InboundEvent) -> None:
        """Billing announced a customer it created for ``tx`` (``customer.created``):
        a business span of the customer upsert with the customer billing holds and
        the CRM account it belongs to. This is how a customer whose creating call
        timed out (so the engine never learned its id) becomes visible: a second
        customer for one account and entity shows as two objects of the stage."""
        customer = event.payload["data"]["object"]
        account = (customer.get("metadata") or {}).get("crm_account_id")
        own = f"{System.BILLING.value}:{ObjectType.CUSTOMER.value}/"
        refs = [
            r for r in tx.refs_except() if not r.startswith(own)
        ]  # the engine's own customer may be another
        if account:
            refs.append(format_object_ref(System.CRM.value, ObjectType.ACCOUNT.value, str(account)))
        with self.span(
            tx,
            Stage.BILLING_CUSTOMER_UPSERT,
            kind=SpanKind.CONSUMER,
            object_type=ObjectType.CUSTOMER,
            object_id=str(customer["id"]),
            event=event,
            idempotency_key=f"{event.source.value}:{event.id}",
            object_refs=list(dict.fromkeys(refs)),
        ) as span:
            span.set_attribute(_UPSERT, "webhook")
            span.record_payload(PayloadKind.SOURCE, event.payload, system=System.BILLING.value)

    async def _billing_subscription(self, tx: Transaction, contract: Contract, customer_id: str) -> str:
        stage = Stage.BILLING_SUBSCRIPTION_CREATE
        done = tx.checkpoints.get(stage.value)
        if done is not None:
            return str(done["subscription_id"])
        key = self.idempotency_key(tx, stage)

        async def work(span: BusinessSpan) -> dict[str, Any]:
            body = tx.requests.get(stage.value)
            if body is None:
                body = tx.requests[stage.value] = billing_subscription_request(
                    contract,
                    customer_id,
                    tax_rate_id(contract.legal_entity),
                    dict(inject_webhook_metadata({})),
                )
            span.record_payload(PayloadKind.CANONICAL, to_json(contract), system=System.MIDDLEWARE.value)
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("contract_to_stripe_subscription"),
            )
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.BILLING.value)
            subscription = await self.ctx.billing.post("/v1/subscriptions", body, key)
            span.record_payload(PayloadKind.TARGET_RESPONSE, subscription, system=System.BILLING.value)
            span.update(object_id=str(subscription["id"]))
            return subscription

        subscription = await self.step(
            tx, stage, work, object_type=ObjectType.SUBSCRIPTION, amount=contract.monthly_amount
        )
        sub_id = str(subscription["id"])
        self.ctx.xref.subscription[sub_id] = {
            "account": contract.account_id,
            "legal_entity": contract.legal_entity,
            "team": contract.team,
            "opportunity": contract.opportunity_id,
            "correlation_id": tx.correlation_id,
        }
        self.ctx.xref.stream_applied.setdefault(f"subscription:{sub_id}", 0)
        tx.add_ref(System.BILLING, ObjectType.SUBSCRIPTION, sub_id)
        tx.checkpoint(stage, subscription_id=sub_id)
        return sub_id

    async def _billing_invoice(
        self, tx: Transaction, contract: Contract, customer_id: str, subscription_id: str
    ) -> None:
        stage = Stage.BILLING_INVOICE_CREATE
        if stage.value in tx.checkpoints:
            return
        key = self.idempotency_key(tx, stage)

        async def work(span: BusinessSpan) -> dict[str, Any]:
            body = tx.requests.get(stage.value)
            if body is None:
                body = tx.requests[stage.value] = {
                    "customer": customer_id,
                    "subscription": subscription_id,
                    "auto_advance": True,
                    "collection_method": "send_invoice",
                    "metadata": dict(
                        inject_webhook_metadata({"crm_opportunity_id": contract.opportunity_id})
                    ),
                }
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.BILLING.value)
            invoice = await self.ctx.billing.post("/v1/invoices", body, key)
            span.record_payload(PayloadKind.TARGET_RESPONSE, invoice, system=System.BILLING.value)
            span.update(
                object_id=str(invoice["id"]),
                amount=from_minor(invoice["total"]),
                currency=str(invoice["currency"]).upper(),
            )
            return invoice

        invoice = await self.step(tx, stage, work, object_type=ObjectType.INVOICE)
        self._remember_invoice(
            tx,
            invoice_from_billing(invoice),
            contract.account_id,
            contract.legal_entity,
            contract.team,
            contract.opportunity_id,
        )
        tx.posting_started = time.monotonic()
        tx.checkpoint(stage, invoice_id=str(invoice["id"]), total=str(from_minor(invoice["total"])))

    def _remember_invoice(
        self, tx: Transaction, invoice: Invoice, account: str, entity: str, team: str, opportunity: str | None
    ) -> None:
        self.ctx.xref.invoice.setdefault(invoice.id, {}).update(
            account=account,
            legal_entity=entity,
            team=team,
            opportunity=opportunity,
            currency=invoice.currency,
            total=str(invoice.total),
            correlation_id=tx.correlation_id,
        )
        tx.add_ref(System.BILLING, ObjectType.INVOICE, invoice.id)

    # -- quote to cash and renewal: posting the invoice in ERP ---------------------------------------
    async def post_invoice(self, tx: Transaction, event: InboundEvent | None) -> None:
        """Post a finalized billing invoice to ERP (customer first). Retryable
        failures go to the retry queue; anything else, or too many requeues,
        holds the transaction for finance review. Never a second invoice: the
        ERP upsert is keyed by the billing invoice id.

        Without the ``invoice.finalized`` event (a replay of a stuck
        transaction) the invoice is read from billing."""
        async with tx.lock:
            tx.running = True
            tx.set_state(TxState.RUNNING, "posting invoice to ERP")
            if event is not None:
                tx.payload["invoice"] = event.payload["data"]["object"]
                if event.id not in tx.events:
                    tx.events.append(event.id)
            obj = tx.payload.get("invoice")
            invoice_id = (
                str(obj["id"])
                if obj
                else str(tx.checkpoints[Stage.BILLING_INVOICE_CREATE.value]["invoice_id"])
            )
            try:
                info = self._invoice_info(tx, invoice_id, obj)
                if Stage.BILLING_INVOICE_CREATE.value not in tx.checkpoints and obj is not None:
                    await self._record_billing_invoice(tx, invoice_from_billing(obj), info, event)
                erp_customer = await self._erp_customer(tx, info, event)
                await self._erp_invoice(tx, invoice_id, info, erp_customer, event)
            except StepFailed as failure:
                self._posting_failed(tx, failure)
                return
            finally:
                tx.running = False
            tx.posting_finished = time.monotonic()
            self.finish(tx, TxState.COMPLETED)
        self.ctx.applied(f"invoice:{invoice_id}", 1)

    def _invoice_info(self, tx: Transaction, invoice_id: str, obj: dict[str, Any] | None) -> dict[str, Any]:
        info = self.ctx.xref.invoice.get(invoice_id)
        if info is None:
            invoice = invoice_from_billing(obj or {"id": invoice_id})
            sub = self.ctx.xref.subscription.get(invoice.subscription_id or "", {})
            if not sub:
                raise StepFailed(
                    Stage.ERP_INVOICE_POST, None, FailureCategory.MASTER_DATA, "UNKNOWN_SUBSCRIPTION"
                )
            self._remember_invoice(
                tx, invoice, sub["account"], sub["legal_entity"], sub["team"], sub["opportunity"]
            )
            info = self.ctx.xref.invoice[invoice_id]
        tx.legal_entity = tx.legal_entity or str(info["legal_entity"])
        tx.region = tx.region or LEGAL_ENTITIES[str(info["legal_entity"])].region
        tx.currency = tx.currency or str(info["currency"])
        return info

    async def _record_billing_invoice(
        self, tx: Transaction, invoice: Invoice, info: dict[str, Any], event: InboundEvent | None
    ) -> None:
        """A renewal invoice billing created on its own: record it (the posting SLA starts here)."""
        stage = Stage.BILLING_INVOICE_CREATE
        canonical = to_json(invoice)
        if event is not None:
            with self.consume(
                tx,
                stage,
                event,
                object_type=ObjectType.INVOICE,
                object_id=invoice.id,
                canonical=canonical,
                mapping_name="stripe_invoice_to_invoice",
                amount=invoice.total,
                currency=invoice.currency,
            ):
                pass
        tx.posting_started = time.monotonic()
        tx.checkpoint(stage, invoice_id=invoice.id, total=str(invoice.total), account=info["account"])

    def _requeue_left(self, tx: Transaction) -> Callable[[], bool]:
        return lambda: tx.requeues < len(self.ctx.config.requeue_delays)

    def _posting_failed(self, tx: Transaction, failure: StepFailed) -> None:
        delays = self.ctx.config.requeue_delays
        if failure.retryable and tx.requeues < len(delays):
            delay = delays[tx.requeues]
            tx.requeues += 1
            tx.fail(
                TxState.QUEUED,
                failure.stage,
                failure.category,
                failure.code,
                failure.error.message if failure.error else None,
            )
            tx.note(f"retry queue: next attempt in {delay:g}s", requeue=tx.requeues)
            self.ctx.requeue(tx, delay)
            return
        self.finish(tx, TxState.HELD, failure)
        tx.note("held for finance review")

    async def _erp_customer(self, tx: Transaction, info: dict[str, Any], event: InboundEvent | None) -> str:
        stage = Stage.ERP_CUSTOMER_UPSERT
        xref = self.ctx.xref
        account, entity = str(info["account"]), str(info["legal_entity"])
        known = xref.erp_customer.get(account)
        if known is not None and entity in xref.erp_subsidiaries.get(account, set()):
            return known
        existed = known is not None
        subsidiary = LEGAL_ENTITIES[entity].erp_subsidiary_id

        async def work(span: BusinessSpan) -> str:
            customer = (
                self.contract(tx).customer
                if Stage.CRM_ORDER_APPROVE.value in tx.checkpoints
                else customer_from_crm(await self.ctx.crm.record("Account", account))
            )
            body = tx.requests.get(stage.value)
            if body is None:
                body = tx.requests[stage.value] = erp_customer_request(
                    customer, entity, xref.billing_customer.get((account, entity)), tx.correlation_id
                )
            span.record_payload(PayloadKind.CANONICAL, to_json(customer), system=System.MIDDLEWARE.value)
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("customer_to_netsuite_customer"),
            )
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.ERP.value)
            internal = await self.ctx.erp.upsert("customer", account, body)
            if existed:
                # An existing customer buys through another entity: link it to that subsidiary.
                await self.ctx.erp.upsert(
                    "customerSubsidiaryRelationship",
                    f"{account}-{entity}",
                    {"entity": {"id": internal}, "subsidiary": {"id": subsidiary}},
                )
                span.set_attribute(_UPSERT, "linked_subsidiary")
            span.update(object_id=internal)
            return internal

        internal = await self.step(
            tx, stage, work, object_type=ObjectType.CUSTOMER, event=event, requeued=self._requeue_left(tx)
        )
        xref.erp_customer[account] = internal
        xref.erp_subsidiaries.setdefault(account, set()).add(entity)
        tx.add_ref(System.ERP, ObjectType.CUSTOMER, internal)
        tx.checkpoint(stage, erp_customer=internal)
        return internal

    async def _erp_invoice(
        self,
        tx: Transaction,
        invoice_id: str,
        info: dict[str, Any],
        erp_customer: str,
        event: InboundEvent | None,
    ) -> None:
        stage = Stage.ERP_INVOICE_POST

        async def work(span: BusinessSpan) -> dict[str, Any]:
            obj = tx.payload.get("invoice")
            if obj is None:  # re-driving without the event: billing is the source of truth
                obj = await self.ctx.billing.get(f"/v1/invoices/{invoice_id}")
                if obj.get("status") == "draft":
                    raise StepRejected(
                        FailureCategory.STUCK,
                        "INVOICE_NOT_FINALIZED",
                        f"billing invoice {invoice_id} is still a draft",
                    )
                tx.payload["invoice"] = obj
            invoice = invoice_from_billing(obj)
            span.update(currency=invoice.currency)
            body = tx.requests.get(stage.value)
            if body is None:
                try:
                    body = erp_invoice_request(
                        invoice,
                        str(info["legal_entity"]),
                        str(info["team"]),
                        erp_customer,
                        info.get("opportunity"),
                        tx.correlation_id,
                    )
                except MappingError as exc:
                    raise StepRejected(FailureCategory.MAPPING, exc.code, str(exc)) from exc
                tx.requests[stage.value] = body
            span.record_payload(PayloadKind.CANONICAL, to_json(invoice), system=System.MIDDLEWARE.value)
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("invoice_to_netsuite_invoice"),
            )
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.ERP.value)
            internal = await self.ctx.erp.upsert("invoice", invoice_id, body)
            record = await self.ctx.erp.get("invoice", internal)
            span.record_payload(PayloadKind.TARGET_RESPONSE, record, system=System.ERP.value)
            span.update(
                object_id=internal,
                amount=Decimal(str(record["total"])),
                object_refs=[f"billing:invoice/{invoice_id}"],
            )
            return record

        record = await self.step(
            tx, stage, work, object_type=ObjectType.INVOICE, event=event, requeued=self._requeue_left(tx)
        )
        self.ctx.xref.invoice[invoice_id]["erp_invoice"] = str(record["id"])
        self.ctx.xref.invoice[invoice_id]["erp_total"] = str(record["total"])
        tx.add_ref(System.ERP, ObjectType.INVOICE, str(record["id"]))
        tx.checkpoint(
            stage, erp_invoice=str(record["id"]), total=str(record["total"]), tran_id=record.get("tranId")
        )

    # -- payments and refunds --------------------------------------------------------------------------
    async def run_payment(self, tx: Transaction, event: InboundEvent) -> None:
        """``payment_intent.succeeded`` → apply the payment in ERP (and clear a past-due
        flag in CRM); ``payment_intent.payment_failed`` → flag the account past due."""
        payment = payment_from_billing(event.payload["data"]["object"])
        info = self.ctx.xref.invoice[payment.invoice_id]
        account = str(info["account"])
        tx.legal_entity = str(info["legal_entity"])
        tx.region = LEGAL_ENTITIES[tx.legal_entity].region
        tx.currency = payment.currency
        tx.add_ref(System.BILLING, ObjectType.INVOICE, payment.invoice_id)
        tx.add_ref(System.CRM, ObjectType.ACCOUNT, account)
        if info.get("erp_invoice"):
            tx.add_ref(System.ERP, ObjectType.INVOICE, str(info["erp_invoice"]))
        stage = Stage.BILLING_PAYMENT_SUCCEED if payment.succeeded else Stage.BILLING_PAYMENT_FAIL
        with self.consume(
            tx,
            stage,
            event,
            object_type=ObjectType.PAYMENT,
            object_id=payment.id,
            canonical=to_json(payment),
            mapping_name="stripe_payment_intent_to_payment",
            amount=payment.amount,
            currency=payment.currency,
        ):
            pass
        tx.add_ref(System.BILLING, ObjectType.PAYMENT, payment.id)
        tx.checkpoint(stage, payment=payment.id)
        if not payment.succeeded:
            await self.crm_account_update(tx, account, {"Payment_Status__c": PAST_DUE})
            return
        apply = Stage.ERP_PAYMENT_APPLY

        async def work(span: BusinessSpan) -> str:
            body = erp_payment_request(
                payment,
                tx.legal_entity or "",
                str(self.ctx.xref.erp_customer[account]),
                str(info["erp_invoice"]),
                tx.correlation_id,
            )
            span.record_payload(PayloadKind.CANONICAL, to_json(payment), system=System.MIDDLEWARE.value)
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("payment_to_netsuite_customer_payment"),
            )
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.ERP.value)
            internal = await self.ctx.erp.upsert("customerPayment", payment.id, body)
            span.update(object_id=internal)
            return internal

        erp_payment = await self.step(tx, apply, work, object_type=ObjectType.PAYMENT, amount=payment.amount)
        tx.add_ref(System.ERP, ObjectType.PAYMENT, erp_payment)
        tx.checkpoint(apply, erp_payment=erp_payment)
        if self.ctx.xref.payment_status.get(account) == PAST_DUE:
            await self.crm_account_update(tx, account, {"Payment_Status__c": CURRENT})

    async def run_refund(self, tx: Transaction, event: InboundEvent) -> None:
        """``refund.created`` → a credit memo against the ERP invoice."""
        refund = refund_from_billing(event.payload["data"]["object"])
        info = self.ctx.xref.invoice[refund.invoice_id or ""]
        account = str(info["account"])
        tx.legal_entity = str(info["legal_entity"])
        tx.region = LEGAL_ENTITIES[tx.legal_entity].region
        tx.currency = refund.currency
        tx.add_ref(System.BILLING, ObjectType.INVOICE, refund.invoice_id)
        tx.add_ref(System.BILLING, ObjectType.PAYMENT, refund.payment_id)
        tx.add_ref(System.ERP, ObjectType.INVOICE, str(info.get("erp_invoice") or ""))
        with self.consume(
            tx,
            Stage.BILLING_REFUND_CREATE,
            event,
            object_type=ObjectType.REFUND,
            object_id=refund.id,
            canonical=to_json(refund),
            mapping_name="stripe_refund_to_refund",
            amount=refund.amount,
            currency=refund.currency,
        ):
            pass
        tx.add_ref(System.BILLING, ObjectType.REFUND, refund.id)
        stage = Stage.ERP_REFUND_POST

        async def work(span: BusinessSpan) -> str:
            body = erp_credit_memo_request(
                refund,
                tx.legal_entity or "",
                str(self.ctx.xref.erp_customer[account]),
                str(info["erp_invoice"]),
                tx.correlation_id,
            )
            span.record_payload(PayloadKind.CANONICAL, to_json(refund), system=System.MIDDLEWARE.value)
            span.record_transform(
                PayloadKind.CANONICAL,
                PayloadKind.TARGET_REQUEST,
                mapping=mapping("refund_to_netsuite_credit_memo"),
            )
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.ERP.value)
            internal = await self.ctx.erp.upsert("creditMemo", refund.id, body)
            span.update(object_id=internal)
            return internal

        memo = await self.step(tx, stage, work, object_type=ObjectType.REFUND, amount=refund.amount)
        tx.add_ref(System.ERP, ObjectType.REFUND, memo)
        tx.checkpoint(stage, credit_memo=memo)

    # -- subscriptions and accounts -------------------------------------------------------------------
    async def run_subscription_update(self, tx: Transaction, event: InboundEvent) -> None:
        """``customer.subscription.updated``: seats changed or the period renewed.
        The CRM account gets the billing-owned figures (MRR, renewal date)."""
        obj = event.payload["data"]["object"]
        previous = event.payload["data"].get("previous_attributes") or {}
        subscription = subscription_from_billing(obj)
        info = self.ctx.xref.subscription[subscription.id]
        account = str(info["account"])
        tx.legal_entity = str(info["legal_entity"])
        tx.region = LEGAL_ENTITIES[tx.legal_entity].region
        tx.currency = subscription.currency
        tx.add_ref(System.BILLING, ObjectType.SUBSCRIPTION, subscription.id)
        tx.add_ref(System.CRM, ObjectType.ACCOUNT, account)
        stage = Stage.BILLING_SUBSCRIPTION_UPDATE
        with self.consume(
            tx,
            stage,
            event,
            object_type=ObjectType.SUBSCRIPTION,
            object_id=subscription.id,
            canonical=to_json(subscription),
            mapping_name="stripe_subscription_to_subscription",
            amount=subscription.monthly_amount,
            currency=subscription.currency,
        ):
            pass
        renewal = "current_period_start" in previous
        tx.checkpoint(
            stage,
            subscription=subscription.id,
            renewal=renewal,
            period_start=subscription.period_start.isoformat(),
        )
        if renewal:
            self.ctx.satisfy(f"ready:{tx.correlation_id}")
        fields: dict[str, Any] = {
            "MRR__c": float(subscription.monthly_amount),
            "Subscription_Status__c": "Active",
        }
        if renewal:
            fields["Renewal_Date__c"] = subscription.period_end.isoformat()
        await self.crm_account_update(tx, account, fields)

    async def crm_account_update(self, tx: Transaction, account: str, fields: dict[str, Any]) -> None:
        """Write billing-owned figures to the CRM account (with our correlation id,
        so the change's echo is recognized)."""
        stage = Stage.CRM_ACCOUNT_UPDATE
        body = {**fields, "Last_Sync_Correlation_Id__c": tx.correlation_id}

        async def work(span: BusinessSpan) -> None:
            span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.CRM.value)
            await self.ctx.crm.update_account(account, body)

        await self.step(tx, stage, work, object_type=ObjectType.ACCOUNT, object_id=account)
        if "Payment_Status__c" in fields:
            self.ctx.xref.payment_status[account] = str(fields["Payment_Status__c"])
        tx.checkpoint(stage, account=account, fields=sorted(fields))

    def ignore_echo(
        self,
        tx: Transaction,
        stage: Stage,
        event: InboundEvent,
        object_type: str,
        object_id: str,
        changed: list[str],
        ignored: list[str],
        reason: str,
    ) -> None:
        """A change that must not be propagated (our own write coming back, or a
        field the source does not own): a span that says so, and nothing else."""
        with self.consume(
            tx,
            stage,
            event,
            object_type=object_type,
            object_id=object_id,
            canonical={"changed_fields": changed, "ignored_fields": ignored},
            mapping_name="ownership_filter",
        ) as span:
            span.set_attribute(_OWNERSHIP_IGNORED, ignored)
            span.set_attribute(_SKIP_REASON, reason)
            span.set_outcome(Outcome.SKIPPED_DUPLICATE)
        self.ctx.observe(tx.correlation_id, Observation("ownership", None, stage, reason))

    async def run_account_change(self, tx: Transaction, event: InboundEvent, owned: list[str]) -> None:
        """A user changed CRM-owned account fields: push them to billing and ERP."""
        header = event.payload["data"]["payload"]["ChangeEventHeader"]
        account_id = str(header["recordIds"][0])
        tx.add_ref(System.CRM, ObjectType.ACCOUNT, account_id)
        stage = Stage.CRM_ACCOUNT_UPDATE

        async def fetch(span: BusinessSpan) -> dict[str, Any]:
            span.record_payload(PayloadKind.SOURCE, event.payload, system=System.CRM.value)
            account = await self.ctx.crm.record("Account", account_id)  # fetch on notify: the full record
            span.record_transform(
                PayloadKind.SOURCE, PayloadKind.CANONICAL, mapping=mapping("crm_account_to_customer")
            )
            span.record_payload(
                PayloadKind.CANONICAL, to_json(customer_from_crm(account)), system=System.MIDDLEWARE.value
            )
            span.set_attribute("syncengine.ownership.propagated", owned)
            return account

        account = await self.step(
            tx,
            stage,
            fetch,
            kind=SpanKind.CONSUMER,
            object_type=ObjectType.ACCOUNT,
            object_id=account_id,
            event=event,
        )
        customer = customer_from_crm(account)
        tx.checkpoint(stage, account=account_id, fields=owned)
        billing_ids = sorted(
            (entity, cus)
            for (acct, entity), cus in self.ctx.xref.billing_customer.items()
            if acct == account_id
        )
        if billing_ids:
            update = Stage.BILLING_CUSTOMER_UPSERT

            async def push_billing(span: BusinessSpan) -> None:
                span.record_payload(PayloadKind.CANONICAL, to_json(customer), system=System.MIDDLEWARE.value)
                span.record_transform(
                    PayloadKind.CANONICAL,
                    PayloadKind.TARGET_REQUEST,
                    mapping=mapping("customer_to_stripe_customer"),
                )
                for entity, cus in billing_ids:
                    body = billing_customer_request(customer, entity, {})
                    body.pop("currency")
                    body["metadata"] = {}
                    span.record_payload(PayloadKind.TARGET_REQUEST, body, system=System.BILLING.value)
                    await self.ctx.billing.post(
                        f"/v1/customers/{cus}", body, self.idempotency_key(tx, update, cus)
                    )
                    tx.add_ref(System.BILLING, ObjectType.CUSTOMER, cus)

            await self.step(
                tx, update, push_billing, object_type=ObjectType.CUSTOMER, object_id=billing_ids[0][1]
            )
            tx.checkpoint(update, customers=[c for _, c in billing_ids])
        erp_customer = self.ctx.xref.erp_customer.get(account_id)
        if erp_customer is not None:
            erp_stage = Stage.ERP_CUSTOMER_UPSERT

            async def push_erp(span: BusinessSpan) -> None:
                body = erp_customer_request(
                    customer, billing_ids[0][0] if billing_ids else "ACME-DE", None, tx.correlation_id
                )
                patch = {k: body[k] for k in ("companyName", "email", "defaultAddress")}
                span.record_transform(
                    PayloadKind.CANONICAL,
                    PayloadKind.TARGET_REQUEST,
                    mapping=mapping("customer_to_netsuite_customer"),
                )
                span.record_payload(PayloadKind.TARGET_REQUEST, patch, system=System.ERP.value)
                await self.ctx.erp.patch("customer", erp_customer, patch)

            tx.add_ref(System.ERP, ObjectType.CUSTOMER, erp_customer)
            await self.step(tx, erp_stage, push_erp, object_type=ObjectType.CUSTOMER, object_id=erp_customer)
            tx.checkpoint(erp_stage, erp_customer=erp_customer)

    @staticmethod
    def changed_billing_fields(event: InboundEvent) -> list[str]:
        """The customer fields a ``customer.updated`` changed."""
        return sorted((event.payload["data"].get("previous_attributes") or {}).keys())

    @staticmethod
    def split_crm_change(event: InboundEvent) -> tuple[list[str], list[str]]:
        """(CRM-owned, other) fields an account change event changed."""
        header = event.payload["data"]["payload"]["ChangeEventHeader"]
        return owned_changes(System.CRM, header.get("changedFields") or [], CRM_ACCOUNT_FIELDS)

    @staticmethod
    def split_billing_change(fields: list[str]) -> tuple[list[str], list[str]]:
        """(billing-owned, other) customer fields."""
        return owned_changes(System.BILLING, fields, BILLING_CUSTOMER_FIELDS)
