"""Stripe webhook events → :class:`~tracer.vendors.VendorEvent`.

From Stripe's documented Event object: ``id``, ``type``, ``created`` (epoch
seconds), ``livemode`` and ``data.object`` (the Invoice, Subscription,
PaymentIntent or Charge). Amounts are in the currency's smallest unit; zero-
decimal currencies (JPY, KRW, …) are already whole units and three-decimal
ones (BHD, KWD, …) are thousandths.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from tracer._log import logger
from tracer._span import rfc3339
from tracer.semconv import ObjectType, Process, Stage, System, format_object_ref
from tracer.vendors import VendorEvent

__all__ = ["SUPPORTED_EVENTS", "THREE_DECIMAL_CURRENCIES", "ZERO_DECIMAL_CURRENCIES", "map_event", "to_units"]

ZERO_DECIMAL_CURRENCIES: Final = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
"""Currencies Stripe expresses in whole units (its "zero-decimal" list)."""
THREE_DECIMAL_CURRENCIES: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Currencies Stripe expresses in thousandths."""

_VENDOR: Final = "stripe"
_BILLING: Final = System.BILLING.value

# event type → (stage, object type, process hint, amount field of data.object)
SUPPORTED_EVENTS: Final[Mapping[str, tuple[str, str, str, str | None]]] = {
    "invoice.created": (
        Stage.BILLING_INVOICE_CREATE,
        ObjectType.INVOICE,
        Process.QUOTE_TO_CASH,
        "amount_due",
    ),
    "invoice.finalized": (
        "billing.invoice.finalize",
        ObjectType.INVOICE,
        Process.QUOTE_TO_CASH,
        "amount_due",
    ),
    "invoice.paid": (
        Stage.BILLING_PAYMENT_SUCCEED,
        ObjectType.PAYMENT,
        Process.PAYMENT_UPDATE,
        "amount_paid",
    ),
    "invoice.payment_failed": (
        Stage.BILLING_PAYMENT_FAIL,
        ObjectType.PAYMENT,
        Process.PAYMENT_UPDATE,
        "amount_due",
    ),
    "customer.subscription.created": (
        Stage.BILLING_SUBSCRIPTION_CREATE,
        ObjectType.SUBSCRIPTION,
        Process.QUOTE_TO_CASH,
        None,
    ),
    "customer.subscription.updated": (
        Stage.BILLING_SUBSCRIPTION_UPDATE,
        ObjectType.SUBSCRIPTION,
        Process.SUBSCRIPTION_CHANGE,
        None,
    ),
    "customer.subscription.deleted": (
        Stage.BILLING_SUBSCRIPTION_CANCEL,
        ObjectType.SUBSCRIPTION,
        Process.SUBSCRIPTION_CHANGE,
        None,
    ),
    "payment_intent.succeeded": (
        Stage.BILLING_PAYMENT_SUCCEED,
        ObjectType.PAYMENT,
        Process.PAYMENT_UPDATE,
        "amount_received",
    ),
    "payment_intent.payment_failed": (
        Stage.BILLING_PAYMENT_FAIL,
        ObjectType.PAYMENT,
        Process.PAYMENT_UPDATE,
        "amount",
    ),
    "charge.refunded": (Stage.BILLING_REFUND_CREATE, ObjectType.REFUND, Process.REFUND, "amount_refunded"),
}
"""The event types :func:`map_event` understands: type → (stage, object type,
process hint, amount field)."""


def to_units(minor: int, currency: str) -> Decimal:
    """Stripe's smallest-unit integer → a Decimal in currency units."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return Decimal(minor)
    return Decimal(minor).scaleb(-3 if code in THREE_DECIMAL_CURRENCIES else -2)


def _id(value: Any) -> str | None:
    """An id field, which Stripe sends as a string or, when expanded, an object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        inner = value.get("id")
        return inner if isinstance(inner, str) and inner else None
    return None


def _ref(object_type: str, value: Any) -> str | None:
    ident = _id(value)
    return format_object_ref(_BILLING, object_type, ident) if ident else None


def _subscription_amount(obj: Mapping[str, Any]) -> int | None:
    items = obj.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    if not isinstance(data, list) or not data:
        return None
    total = 0
    for item in data:
        price = item.get("price") if isinstance(item, Mapping) else None
        unit = price.get("unit_amount") if isinstance(price, Mapping) else None
        quantity = item.get("quantity", 1) if isinstance(item, Mapping) else None
        if not isinstance(unit, int) or not isinstance(quantity, int):
            return None
        total += unit * quantity
    return total


def map_event(event: Mapping[str, Any]) -> VendorEvent | None:
    """Map one Stripe webhook Event (the parsed JSON body). ``None`` for other
    event types or a payload that is not a Stripe event."""
    try:
        return _map(event)
    except Exception:
        logger.debug("stripe event not mappable", exc_info=True)
        return None


def _map(event: Mapping[str, Any]) -> VendorEvent | None:
    event_type = event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_type, str) or not isinstance(obj, Mapping):
        return None
    spec = SUPPORTED_EVENTS.get(event_type)
    if spec is None:
        return None
    stage, object_type, process, amount_field = spec
    currency = obj.get("currency")
    currency = currency.upper() if isinstance(currency, str) and len(currency) == 3 else None

    object_id = _id(obj.get("id"))
    refs: list[str | None] = []
    kind = obj.get("object")
    if kind == "invoice":
        if object_type == ObjectType.PAYMENT:  # invoice.paid / payment_failed: the payment of this invoice
            refs.append(_ref(ObjectType.INVOICE, obj))
            payment = _id(obj.get("payment_intent")) or _id(obj.get("charge"))
            object_id = payment or object_id
        refs += [
            _ref(ObjectType.SUBSCRIPTION, obj.get("subscription")),
            _ref(ObjectType.CUSTOMER, obj.get("customer")),
        ]
    elif kind == "subscription":
        refs.append(_ref(ObjectType.CUSTOMER, obj.get("customer")))
        refs.append(_ref(ObjectType.INVOICE, obj.get("latest_invoice")))
    elif kind == "payment_intent":
        refs += [_ref(ObjectType.INVOICE, obj.get("invoice")), _ref(ObjectType.CUSTOMER, obj.get("customer"))]
    elif kind == "charge":
        refunds = obj.get("refunds")
        refund_list = refunds.get("data") if isinstance(refunds, Mapping) else None
        if isinstance(refund_list, list) and refund_list:
            object_id = _id(refund_list[0]) or object_id  # newest first, per Stripe's list ordering
        refs.append(_ref(ObjectType.PAYMENT, obj.get("payment_intent") or obj.get("id")))
        refs += [_ref(ObjectType.INVOICE, obj.get("invoice")), _ref(ObjectType.CUSTOMER, obj.get("customer"))]
    else:
        return None

    minor = obj.get(amount_field) if amount_field else _subscription_amount(obj)
    amount = to_units(minor, currency) if isinstance(minor, int) and currency else None
    attributes: dict[str, str | bool] = {"stripe.event_type": event_type}
    livemode = event.get("livemode")
    if isinstance(livemode, bool):
        attributes["stripe.livemode"] = livemode
    status = obj.get("status")
    if isinstance(status, str):
        attributes["stripe.object_status"] = status
    created = event.get("created")
    own = format_object_ref(_BILLING, object_type, object_id) if object_id else None
    return VendorEvent(
        vendor=_VENDOR,
        event_type=event_type,
        stage=str(stage),
        system=_BILLING,
        object_type=str(object_type),
        object_id=object_id,
        object_refs=tuple(dict.fromkeys(r for r in refs if r and r != own)),
        amount=amount,
        currency=currency,
        event_id=_id(event.get("id")),
        occurred_at=rfc3339(created) if isinstance(created, int) else None,
        process=str(process),
        attributes=attributes,
    )
