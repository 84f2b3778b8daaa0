"""Scheduled reconciliation snapshots: per system, object type, period (month)
and legal entity (which fixes the currency), how many objects there are, their
total amount and their canonical statuses, each as one span (stage
``<system>.reconciliation.snapshot``) that revtrace compares across systems."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any, Final

import orjson

from sync_engine._canonical import billing_invoice_status, erp_invoice_status
from sync_engine._errors import DownstreamError
from sync_engine._flows import VENDORS, EngineContext, ReconRun
from sync_engine._reference import LEGAL_ENTITIES, money
from sync_engine._wire import from_minor
from tracer import business_span, new_correlation_id
from tracer.semconv import (
    BIZ_RECON_AMOUNT,
    BIZ_RECON_COUNT,
    BIZ_RECON_PERIOD,
    BIZ_RECON_STATUSES,
    ObjectType,
    Process,
    Stage,
    System,
)

__all__ = ["Row", "reconcile"]

Row = tuple[str, str | None, Decimal | None, str]
"""(period ``YYYY-MM``, legal entity or None, amount or None, canonical status)."""

_STAGE = {
    System.CRM: Stage.CRM_RECONCILIATION_SNAPSHOT,
    System.BILLING: Stage.BILLING_RECONCILIATION_SNAPSHOT,
    System.ERP: Stage.ERP_RECONCILIATION_SNAPSHOT,
}


def _month(value: dt.date) -> str:
    return f"{value.year:04d}-{value.month:02d}"


def _month_of_ts(ts: int) -> str:
    return _month(dt.datetime.fromtimestamp(ts, dt.UTC).date())


def _periods(today: dt.date) -> tuple[dt.date, dt.date, list[str]]:
    """The window [first day of last month, first day of next month) and its months."""
    first = today.replace(day=1)
    previous = (first - dt.timedelta(days=1)).replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return previous, following, [_month(previous), _month(first)]


def _slug(status: str) -> str:
    return status.strip().lower().replace(" ", "_").replace("/", "_")


def _window(table: str, fields: str, date_field: str, start: dt.date, end: dt.date, *, quoted: bool) -> str:
    """A SOQL/SuiteQL query for rows whose ``date_field`` is in [start, end).
    Only dates computed here go into the text, never input."""
    low, high = (
        (f"'{start.isoformat()}'", f"'{end.isoformat()}'") if quoted else (start.isoformat(), end.isoformat())
    )
    return f"SELECT {fields} FROM {table} WHERE {date_field} >= {low} AND {date_field} < {high}"  # noqa: S608


_ENTITY_BY_CURRENCY: Final = {e.currency: e.code for e in LEGAL_ENTITIES.values()}
_ENTITY_BY_SUBSIDIARY: Final = {e.erp_subsidiary_id: e.code for e in LEGAL_ENTITIES.values()}


def _by_currency(currency: object) -> str | None:
    return _ENTITY_BY_CURRENCY.get(str(currency).upper())


async def _crm(ctx: EngineContext, start: dt.date, end: dt.date) -> dict[ObjectType, list[Row]]:
    opportunities = await ctx.crm.query(
        _window(
            "Opportunity",
            "Id, Amount, Legal_Entity__c, StageName, CloseDate",
            "CloseDate",
            start,
            end,
            quoted=False,
        )
    )
    accounts = await ctx.crm.query(
        _window("Account", "Id, CreatedDate", "CreatedDate", start, end, quoted=False)
    )
    return {
        ObjectType.OPPORTUNITY: [
            (
                str(o["CloseDate"])[:7],
                o["Legal_Entity__c"],
                money(Decimal(str(o["Amount"] or 0))),
                _slug(str(o["StageName"])),
            )
            for o in opportunities
        ],
        ObjectType.ACCOUNT: [(str(a["CreatedDate"])[:7], None, None, "active") for a in accounts],
    }


async def _billing(ctx: EngineContext, start: dt.date, end: dt.date) -> dict[ObjectType, list[Row]]:
    gte = int(dt.datetime.combine(start, dt.time(), dt.UTC).timestamp())
    # Backdated invoices are created now for an earlier period: list everything created since the window began.
    lt = int(dt.datetime.now(dt.UTC).timestamp()) + 86_400
    end_month = _month(end)
    customers = await ctx.billing.list_all("customers", gte, lt)
    subscriptions = await ctx.billing.list_all("subscriptions", gte, lt)
    invoices = await ctx.billing.list_all("invoices", gte, lt)
    payments = await ctx.billing.list_all("payment_intents", gte, lt)
    refunds = await ctx.billing.list_all("refunds", gte, lt)
    refunded = {r["payment_intent"] for r in refunds}
    refunded_invoices = {p["invoice"] for p in payments if p["id"] in refunded}
    rows: dict[ObjectType, list[Row]] = {
        ObjectType.CUSTOMER: [
            (_month_of_ts(c["created"]), (c.get("metadata") or {}).get("legal_entity"), None, "active")
            for c in customers
        ],
        ObjectType.SUBSCRIPTION: [
            (
                _month_of_ts(s["created"]),
                (s.get("metadata") or {}).get("legal_entity"),
                None,
                str(s["status"]),
            )
            for s in subscriptions
        ],
        ObjectType.INVOICE: [
            (
                _month_of_ts(i["period_start"]),
                _by_currency(i["currency"]),
                from_minor(i["total"]),
                billing_invoice_status(i, i["id"] in refunded_invoices),
            )
            for i in invoices
            if i["status"] != "draft"
        ],
        ObjectType.PAYMENT: [
            (
                _month_of_ts(p["created"]),
                _by_currency(p["currency"]),
                from_minor(p["amount_received"]),
                "succeeded",
            )
            for p in payments
            if p["status"] == "succeeded"
        ],
        ObjectType.REFUND: [
            (
                _month_of_ts(r["created"]),
                _by_currency(r["currency"]),
                from_minor(r["amount"]),
                str(r["status"]),
            )
            for r in refunds
        ],
    }
    return {k: [r for r in v if r[0] < end_month] for k, v in rows.items()}


async def _erp(ctx: EngineContext, start: dt.date, end: dt.date) -> dict[ObjectType, list[Row]]:
    invoices = await ctx.erp.suiteql(
        _window("invoice", "id, total, subsidiary, status, tranDate", "tranDate", start, end, quoted=True)
    )
    customers = await ctx.erp.suiteql(
        _window("customer", "id, subsidiary, createdDate", "createdDate", start, end, quoted=True)
    )
    # A customer buying through a second entity is linked to that subsidiary, not duplicated.
    links = await ctx.erp.suiteql(
        _window(
            "customerSubsidiaryRelationship",
            "id, subsidiary, createdDate",
            "createdDate",
            start,
            end,
            quoted=True,
        )
    )
    payments = await ctx.erp.suiteql(
        _window("customerPayment", "id, payment, subsidiary, tranDate", "tranDate", start, end, quoted=True)
    )
    memos = await ctx.erp.suiteql(
        _window("creditMemo", "id, total, subsidiary, tranDate", "tranDate", start, end, quoted=True)
    )

    def entity(row: dict[str, Any]) -> str | None:
        return _ENTITY_BY_SUBSIDIARY.get(str(row["subsidiary"]))

    return {
        ObjectType.CUSTOMER: [
            (str(c["createdDate"])[:7], entity(c), None, "active") for c in (*customers, *links)
        ],
        ObjectType.INVOICE: [
            (
                str(i["tranDate"])[:7],
                entity(i),
                money(Decimal(str(i["total"]))),
                erp_invoice_status(i["status"]),
            )
            for i in invoices
        ],
        ObjectType.PAYMENT: [
            (str(p["tranDate"])[:7], entity(p), money(Decimal(str(p["payment"]))), "succeeded")
            for p in payments
        ],
        ObjectType.REFUND: [
            (str(m["tranDate"])[:7], entity(m), money(Decimal(str(m["total"]))), "succeeded") for m in memos
        ],
    }


def _emit(
    ctx: EngineContext,
    cid: str,
    system: System,
    object_type: ObjectType,
    periods: Iterable[str],
    rows: list[Row],
) -> None:
    """One span per period and legal entity (every entity, zeros included, so
    systems can be compared key by key); accounts have no entity: one span."""
    groups: dict[tuple[str, str | None], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row[0], row[1])].append(row)
    entities: list[str | None] = [None] if object_type is ObjectType.ACCOUNT else [*sorted(LEGAL_ENTITIES)]
    for period in periods:
        for entity in entities:
            items = groups.get((period, entity), [])
            statuses: dict[str, int] = defaultdict(int)
            for item in items:
                statuses[item[3]] += 1
            amount = money(sum((item[2] or Decimal(0) for item in items), Decimal(0)))
            ctx.spans += 1
            with business_span(
                _STAGE[system].value,
                process=Process.RECONCILIATION.value,
                vendor=VENDORS[system],
                object_type=object_type.value,
                correlation_id=cid,
                legal_entity=entity,
                region=LEGAL_ENTITIES[entity].region if entity else None,
                currency=LEGAL_ENTITIES[entity].currency if entity else None,
                attributes={
                    BIZ_RECON_PERIOD: period,
                    BIZ_RECON_COUNT: len(items),
                    BIZ_RECON_AMOUNT: float(amount),
                    BIZ_RECON_STATUSES: orjson.dumps(dict(sorted(statuses.items()))).decode(),
                },
            ):
                pass


async def reconcile(ctx: EngineContext, today: dt.date | None = None) -> str:
    """One reconciliation run over last month and this month; returns its correlation id."""
    cid = new_correlation_id()
    run = ctx.recon_runs[cid] = ReconRun(dt.datetime.now(dt.UTC), time.monotonic())
    start, end, periods = _periods(today or dt.datetime.now(dt.UTC).date())
    collectors: dict[
        System, Callable[[EngineContext, dt.date, dt.date], Awaitable[dict[ObjectType, list[Row]]]]
    ] = {System.CRM: _crm, System.BILLING: _billing, System.ERP: _erp}
    for system, collect in collectors.items():
        try:
            snapshot = await collect(ctx, start, end)
        except DownstreamError as exc:
            ctx.spans += 1
            with business_span(
                _STAGE[system].value,
                process=Process.RECONCILIATION.value,
                vendor=VENDORS[system],
                correlation_id=cid,
                attributes={BIZ_RECON_PERIOD: periods[-1]},
            ) as span:
                span.fail(exc.category, code=exc.code, message=exc.message, retryable=exc.retryable)
            run.failure = exc.category
            continue
        for object_type, rows in snapshot.items():
            _emit(ctx, cid, system, object_type, periods, rows)
    # Only now is the run's outcome known (a slow system may fail long after the others answered).
    run.finished = time.monotonic()
    return cid
