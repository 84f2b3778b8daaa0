"""The canonical model (customer, product, contract, subscription, invoice,
payment, refund), the mappings between it and each system, and field
ownership.

Every system's payload is mapped to the canonical model first and from it to
the target, never system to system; each mapping has a name and a version
that the spans record (``crm_opportunity_to_contract@v1``).

Ownership: each customer field has exactly one owning system. Changes to a
field are propagated only when they come from its owner; everything else is
ignored (and said so on the span), which is what keeps updates from echoing
back and forth between systems forever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sync_engine._reference import (
    LEGAL_ENTITIES,
    PRODUCTS,
    SALES_TEAMS,
    LegalEntity,
    billing_price_id,
    billing_product_id,
    money,
)
from sync_engine._wire import from_minor, to_minor
from tracer.semconv import System

__all__ = [
    "BILLING_CUSTOMER_FIELDS",
    "CRM_ACCOUNT_FIELDS",
    "FIELD_OWNER",
    "MAPPING_VERSION",
    "Address",
    "Contract",
    "ContractLine",
    "Customer",
    "Invoice",
    "InvoiceLine",
    "MappingError",
    "Payment",
    "Refund",
    "Subscription",
    "billing_customer_request",
    "billing_invoice_status",
    "billing_subscription_request",
    "contract_from_crm",
    "customer_from_crm",
    "erp_credit_memo_request",
    "erp_customer_request",
    "erp_invoice_request",
    "erp_invoice_status",
    "erp_payment_request",
    "invoice_from_billing",
    "mapping",
    "owned_changes",
    "payment_from_billing",
    "refund_from_billing",
    "subscription_from_billing",
    "to_json",
]

MAPPING_VERSION: Final = "v1"


def mapping(name: str) -> str:
    """The versioned name a span records for a mapping."""
    return f"{name}@{MAPPING_VERSION}"


class MappingError(ValueError):
    """A payload cannot be mapped: names the field, the value and a code."""

    def __init__(self, code: str, field: str, value: object, message: str) -> None:
        self.code = code
        self.field = field
        self.value = value
        super().__init__(f"{field}: {message}, got {value!r}")


@dataclass(frozen=True)
class Address:
    """A postal address."""

    street: str | None
    city: str | None
    postal_code: str | None
    country: str | None


@dataclass(frozen=True)
class Customer:
    """The legal customer, as the CRM account describes it."""

    account_id: str
    name: str
    email: str | None
    address: Address
    vat_id: str | None


@dataclass(frozen=True)
class ContractLine:
    """One product on a contract."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        """Quantity × unit price."""
        return money(self.unit_price * self.quantity)


@dataclass(frozen=True)
class Contract:
    """An approved order: what was sold, to whom, through which legal entity."""

    opportunity_id: str
    account_id: str
    legal_entity: str
    region: str
    currency: str
    team: str
    close_date: dt.date
    service_start: dt.date
    term_months: int
    lines: tuple[ContractLine, ...]
    customer: Customer

    @property
    def monthly_amount(self) -> Decimal:
        """Sum of the lines (net, per month)."""
        return money(sum((line.amount for line in self.lines), Decimal(0)))


@dataclass(frozen=True)
class Subscription:
    """A billing subscription."""

    id: str
    customer_id: str
    status: str
    currency: str
    monthly_amount: Decimal
    period_start: dt.date
    period_end: dt.date


@dataclass(frozen=True)
class InvoiceLine:
    """One invoice line."""

    sku: str
    description: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    """A finalized (or draft) billing invoice."""

    id: str
    number: str | None
    customer_id: str
    subscription_id: str | None
    currency: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    status: str
    period_start: dt.date
    billing_reason: str
    lines: tuple[InvoiceLine, ...]


@dataclass(frozen=True)
class Payment:
    """A payment attempt on an invoice."""

    id: str
    invoice_id: str
    amount: Decimal
    currency: str
    succeeded: bool
    failure_code: str | None


@dataclass(frozen=True)
class Refund:
    """A refund of a payment."""

    id: str
    payment_id: str
    invoice_id: str | None
    amount: Decimal
    currency: str


def to_json(obj: Any) -> Any:
    """A canonical object as JSON-ready data (for payload snapshots)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return convert(asdict(obj))


# --- CRM → canonical ------------------------------------------------------------------


def _date(value: Any, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MappingError("INVALID_DATE", field, value, "must be an ISO date") from None


def customer_from_crm(account: Mapping[str, Any]) -> Customer:
    """``crm_account_to_customer``: a Salesforce Account."""
    name = account.get("Name")
    if not name:
        raise MappingError("MISSING_FIELD", "Account.Name", name, "is required")
    return Customer(
        account_id=str(account["Id"]),
        name=str(name),
        email=account.get("Billing_Email__c"),
        address=Address(
            account.get("BillingStreet"),
            account.get("BillingCity"),
            account.get("BillingPostalCode"),
            account.get("BillingCountry"),
        ),
        vat_id=account.get("VAT_Number__c"),
    )


def contract_from_crm(
    opportunity: Mapping[str, Any], lines: Iterable[Mapping[str, Any]], account: Mapping[str, Any]
) -> Contract:
    """``crm_opportunity_to_contract``: an approved Opportunity with its line
    items. Raises :class:`MappingError` for an unknown SKU, legal entity, sales
    team or currency."""
    entity_code = opportunity.get("Legal_Entity__c")
    entity: LegalEntity | None = LEGAL_ENTITIES.get(str(entity_code))
    if entity is None:
        raise MappingError(
            "UNKNOWN_LEGAL_ENTITY", "Opportunity.Legal_Entity__c", entity_code, "no such legal entity"
        )
    currency = opportunity.get("CurrencyIsoCode")
    if currency != entity.currency:
        raise MappingError(
            "CURRENCY_MISMATCH",
            "Opportunity.CurrencyIsoCode",
            currency,
            f"{entity.code} books in {entity.currency}",
        )
    team = opportunity.get("Sales_Team__c")
    if team not in SALES_TEAMS:
        raise MappingError("UNKNOWN_SALES_TEAM", "Opportunity.Sales_Team__c", team, "no such sales team")
    out: list[ContractLine] = []
    for i, line in enumerate(lines):
        sku = str(line.get("ProductCode"))
        if sku not in PRODUCTS:
            raise MappingError(
                "UNKNOWN_SKU", f"OpportunityLineItem[{i}].ProductCode", sku, "no product mapping for this SKU"
            )
        try:
            quantity = int(line["Quantity"])
            price = money(Decimal(str(line["UnitPrice"])))
        except (KeyError, ValueError, InvalidOperation):
            raise MappingError(
                "INVALID_LINE", f"OpportunityLineItem[{i}]", dict(line), "needs Quantity and UnitPrice"
            ) from None
        if quantity <= 0:
            raise MappingError(
                "INVALID_QUANTITY", f"OpportunityLineItem[{i}].Quantity", quantity, "must be > 0"
            )
        out.append(ContractLine(sku, str(line.get("Name") or PRODUCTS[sku].name), quantity, price))
    if not out:
        raise MappingError(
            "NO_LINES", "Opportunity.OpportunityLineItems", [], "an order needs at least one line"
        )
    return Contract(
        opportunity_id=str(opportunity["Id"]),
        account_id=str(opportunity["AccountId"]),
        legal_entity=entity.code,
        region=entity.region,
        currency=entity.currency,
        team=str(team),
        close_date=_date(opportunity.get("CloseDate"), "Opportunity.CloseDate"),
        service_start=_date(
            opportunity.get("Service_Start_Date__c") or opportunity.get("CloseDate"),
            "Opportunity.Service_Start_Date__c",
        ),
        term_months=int(opportunity.get("Term_Months__c") or 12),
        lines=tuple(out),
        customer=customer_from_crm(account),
    )


# --- canonical → billing -------------------------------------------------------------


def billing_customer_request(
    customer: Customer, legal_entity: str, metadata: Mapping[str, str]
) -> dict[str, Any]:
    """``customer_to_stripe_customer``."""
    return {
        "name": customer.name,
        "email": customer.email,
        "address": {
            "line1": customer.address.street,
            "city": customer.address.city,
            "postal_code": customer.address.postal_code,
            "country": customer.address.country,
        },
        "currency": LEGAL_ENTITIES[legal_entity].currency.lower(),
        "metadata": {"crm_account_id": customer.account_id, "legal_entity": legal_entity, **metadata},
    }


def billing_subscription_request(
    contract: Contract, customer_id: str, tax_rate: str, metadata: Mapping[str, str]
) -> dict[str, Any]:
    """``contract_to_stripe_subscription``: one item per line, the entity's tax rate,
    backdated to the service start when that is in the past."""
    start = dt.datetime.combine(contract.service_start, dt.time(12), dt.UTC)
    request: dict[str, Any] = {
        "customer": customer_id,
        "collection_method": "send_invoice",
        "days_until_due": 30,
        "items": [_subscription_item(line, contract.currency) for line in contract.lines],
        "default_tax_rates": [tax_rate],
        "metadata": {
            "crm_opportunity_id": contract.opportunity_id,
            "legal_entity": contract.legal_entity,
            **metadata,
        },
    }
    if contract.service_start < dt.datetime.now(dt.UTC).date():
        request["backdate_start_date"] = int(start.timestamp())
    return request


def _subscription_item(line: ContractLine, currency: str) -> dict[str, Any]:
    """A catalog price when the line is at list price, else an inline price
    (``price_data``) for the negotiated amount."""
    if PRODUCTS[line.sku].prices[currency] == line.unit_price:
        return {"price": billing_price_id(line.sku, currency), "quantity": line.quantity}
    return {
        "price_data": {
            "currency": currency.lower(),
            "product": billing_product_id(line.sku),
            "unit_amount": to_minor(line.unit_price),
            "recurring": {"interval": "month"},
        },
        "quantity": line.quantity,
    }


_SKU_BY_PRODUCT: Final = {billing_product_id(sku): sku for sku in PRODUCTS}


def _sku(price: Mapping[str, Any]) -> str:
    return str(price.get("lookup_key") or _SKU_BY_PRODUCT.get(str(price.get("product")), ""))


def invoice_from_billing(obj: Mapping[str, Any]) -> Invoice:
    """``stripe_invoice_to_invoice``: minor units to amounts, unix times to dates."""
    lines = []
    for line in (obj.get("lines") or {}).get("data") or []:
        price = line.get("price") or {}
        lines.append(
            InvoiceLine(
                _sku(price),
                str(line.get("description") or ""),
                int(line.get("quantity") or 1),
                from_minor(price.get("unit_amount") or 0),
                from_minor(line.get("amount") or 0),
            )
        )
    return Invoice(
        id=str(obj["id"]),
        number=obj.get("number"),
        customer_id=str(obj.get("customer")),
        subscription_id=obj.get("subscription"),
        currency=str(obj.get("currency", "")).upper(),
        subtotal=from_minor(obj.get("subtotal") or 0),
        tax=from_minor(obj.get("tax") or 0),
        total=from_minor(obj.get("total") or 0),
        status=billing_invoice_status(obj),
        period_start=dt.datetime.fromtimestamp(
            int(obj.get("period_start") or obj.get("created") or 0), dt.UTC
        ).date(),
        billing_reason=str(obj.get("billing_reason") or "manual"),
        lines=tuple(lines),
    )


def subscription_from_billing(obj: Mapping[str, Any]) -> Subscription:
    """``stripe_subscription_to_subscription``."""
    monthly = sum(
        (
            from_minor(i["price"]["unit_amount"]) * int(i["quantity"])
            for i in (obj.get("items") or {}).get("data") or []
        ),
        Decimal(0),
    )
    return Subscription(
        id=str(obj["id"]),
        customer_id=str(obj.get("customer")),
        status=str(obj.get("status")),
        currency=str(obj.get("currency", "")).upper(),
        monthly_amount=money(monthly),
        period_start=dt.datetime.fromtimestamp(int(obj["current_period_start"]), dt.UTC).date(),
        period_end=dt.datetime.fromtimestamp(int(obj["current_period_end"]), dt.UTC).date(),
    )


def payment_from_billing(obj: Mapping[str, Any]) -> Payment:
    """``stripe_payment_intent_to_payment``."""
    error = obj.get("last_payment_error") or {}
    return Payment(
        id=str(obj["id"]),
        invoice_id=str(obj.get("invoice")),
        amount=from_minor(obj.get("amount") or 0),
        currency=str(obj.get("currency", "")).upper(),
        succeeded=obj.get("status") == "succeeded",
        failure_code=error.get("decline_code") or error.get("code"),
    )


def refund_from_billing(obj: Mapping[str, Any]) -> Refund:
    """``stripe_refund_to_refund``."""
    return Refund(
        id=str(obj["id"]),
        payment_id=str(obj.get("payment_intent")),
        invoice_id=(obj.get("metadata") or {}).get("invoice"),
        amount=from_minor(obj.get("amount") or 0),
        currency=str(obj.get("currency", "")).upper(),
    )


# --- canonical → ERP -------------------------------------------------------------------


def erp_customer_request(
    customer: Customer, legal_entity: str, billing_customer: str | None, correlation_id: str
) -> dict[str, Any]:
    """``customer_to_netsuite_customer`` (the primary subsidiary is the first entity)."""
    return {
        "companyName": customer.name,
        "email": customer.email,
        "subsidiary": {"id": LEGAL_ENTITIES[legal_entity].erp_subsidiary_id},
        "defaultAddress": ", ".join(
            p
            for p in (
                customer.address.street,
                customer.address.postal_code,
                customer.address.city,
                customer.address.country,
            )
            if p
        ),
        "custentity_billing_customer": billing_customer,
        "custentity_revtrace_correlation_id": correlation_id,
    }


def erp_invoice_request(
    invoice: Invoice,
    legal_entity: str,
    team: str,
    erp_customer: str,
    opportunity: str | None,
    correlation_id: str,
) -> dict[str, Any]:
    """``invoice_to_netsuite_invoice``: lines without tax (ERP computes tax),
    booked on the first day of the invoice's service period."""
    items = []
    for i, line in enumerate(invoice.lines):
        product = PRODUCTS.get(line.sku)
        if product is None:
            raise MappingError(
                "UNKNOWN_SKU", f"lines[{i}].price.lookup_key", line.sku, "no ERP item for this SKU"
            )
        items.append(
            {
                "item": {"id": product.erp_item_id},
                "quantity": line.quantity,
                "rate": float(line.unit_price),
                "description": line.description,
            }
        )
    return {
        "entity": {"id": erp_customer},
        "subsidiary": {"id": LEGAL_ENTITIES[legal_entity].erp_subsidiary_id},
        "department": {"id": SALES_TEAMS[team].erp_department_id},
        "tranDate": invoice.period_start.isoformat(),
        "currency": {"refName": invoice.currency},
        "otherRefNum": invoice.number,
        "memo": f"Billing invoice {invoice.id}",
        "item": {"items": items},
        "custbody_crm_opportunity": opportunity,
        "custbody_revtrace_correlation_id": correlation_id,
    }


def erp_payment_request(
    payment: Payment, legal_entity: str, erp_customer: str, erp_invoice: str, correlation_id: str
) -> dict[str, Any]:
    """``payment_to_netsuite_customer_payment``."""
    return {
        "customer": {"id": erp_customer},
        "subsidiary": {"id": LEGAL_ENTITIES[legal_entity].erp_subsidiary_id},
        "payment": float(payment.amount),
        "apply": {"items": [{"doc": {"id": erp_invoice}, "apply": True, "amount": float(payment.amount)}]},
        "memo": f"Billing payment {payment.id} ({correlation_id})",
    }


def erp_credit_memo_request(
    refund: Refund, legal_entity: str, erp_customer: str, erp_invoice: str, correlation_id: str
) -> dict[str, Any]:
    """``refund_to_netsuite_credit_memo``."""
    return {
        "entity": {"id": erp_customer},
        "subsidiary": {"id": LEGAL_ENTITIES[legal_entity].erp_subsidiary_id},
        "createdFrom": {"id": erp_invoice},
        "total": float(refund.amount),
        "memo": f"Billing refund {refund.id} ({correlation_id})",
    }


# --- statuses --------------------------------------------------------------------------

_BILLING_STATUS: Final = {
    "draft": "draft",
    "open": "open",
    "paid": "paid",
    "void": "void",
    "uncollectible": "open",
}
_ERP_STATUS: Final = {
    "Open": "open",
    "Paid In Full": "paid",
    "Credited": "refunded",
    "Pending Approval": "draft",
}


def billing_invoice_status(obj: Mapping[str, Any], refunded: bool = False) -> str:
    """A billing invoice's canonical status (``refunded`` when its payment was refunded)."""
    return "refunded" if refunded else _BILLING_STATUS.get(str(obj.get("status")), "open")


def erp_invoice_status(status: str | None) -> str:
    """An ERP invoice's canonical status."""
    return _ERP_STATUS.get(str(status), "open")


# --- ownership -------------------------------------------------------------------------

FIELD_OWNER: Final[Mapping[str, System]] = {
    "customer.name": System.CRM,
    "customer.email": System.CRM,
    "customer.address": System.CRM,
    "customer.vat_id": System.CRM,
    "customer.payment_status": System.BILLING,
    "customer.mrr": System.BILLING,
    "customer.subscription_status": System.BILLING,
    "customer.renewal_date": System.BILLING,
    "customer.billing_customer_id": System.BILLING,
    "customer.erp_customer_id": System.ERP,
    "customer.sync_correlation_id": System.MIDDLEWARE,
}
"""Canonical customer field → the one system that owns it."""

CRM_ACCOUNT_FIELDS: Final[Mapping[str, str]] = {
    "Name": "customer.name",
    "Billing_Email__c": "customer.email",
    "BillingStreet": "customer.address",
    "BillingCity": "customer.address",
    "BillingPostalCode": "customer.address",
    "BillingCountry": "customer.address",
    "VAT_Number__c": "customer.vat_id",
    "Payment_Status__c": "customer.payment_status",
    "MRR__c": "customer.mrr",
    "Subscription_Status__c": "customer.subscription_status",
    "Renewal_Date__c": "customer.renewal_date",
    "Billing_Customer_Id__c": "customer.billing_customer_id",
    "ERP_Customer_Id__c": "customer.erp_customer_id",
    "Last_Sync_Correlation_Id__c": "customer.sync_correlation_id",
}
"""Salesforce Account field → canonical customer field."""

BILLING_CUSTOMER_FIELDS: Final[Mapping[str, str]] = {
    "name": "customer.name",
    "email": "customer.email",
    "address": "customer.address",
    "metadata": "customer.sync_correlation_id",
}
"""Stripe customer field → canonical customer field."""


def owned_changes(
    source: System, fields: Iterable[str], field_map: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """Split changed ``fields`` of a ``source`` payload into those ``source``
    owns (to propagate) and the rest (to ignore)."""
    owned: list[str] = []
    ignored: list[str] = []
    for field in fields:
        canonical = field_map.get(field)
        (owned if canonical is not None and FIELD_OWNER.get(canonical) is source else ignored).append(field)
    return owned, ignored
