"""Salesforce Change Data Capture and platform events → :class:`~tracer.vendors.VendorEvent`.

A change event (as the Pub/Sub API or CometD deliver it, or its ``payload``
alone) carries a ``ChangeEventHeader`` with ``entityName``, ``recordIds``,
``changeType`` (``CREATE``, ``UPDATE``, ``DELETE``, ``UNDELETE``, ``GAP_*``,
``GAP_OVERFLOW``), ``commitTimestamp`` (epoch milliseconds), ``sequenceNumber``
(order within the transaction) and ``transactionKey``. Platform events are the
org's own schema, so :func:`map_platform_event` is told which field is what.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from tracer._log import logger
from tracer._span import rfc3339
from tracer.semconv import ObjectType, System, format_object_ref
from tracer.vendors import VendorEvent

__all__ = ["ENTITY_TYPES", "map_change_event", "map_platform_event", "object_type_for"]

_VENDOR: Final = "salesforce"
_CRM: Final = System.CRM.value

ENTITY_TYPES: Final[Mapping[str, str]] = {
    "Account": ObjectType.ACCOUNT,
    "Opportunity": ObjectType.OPPORTUNITY,
    "Order": ObjectType.ORDER,
    "Contract": ObjectType.CONTRACT,
    "Product2": ObjectType.PRODUCT,
    "Quote": "quote",
    "Contact": "contact",
    "Lead": "lead",
    "OpportunityLineItem": "opportunity_line",
    "OrderItem": "order_line",
}
"""Salesforce object API names → canonical object types. Others become lower
snake case of their name (``Billing_Account__c`` → ``billing_account``)."""


def object_type_for(entity_name: str) -> str:
    """The canonical object type for a Salesforce object API name."""
    known = ENTITY_TYPES.get(entity_name)
    if known is not None:
        return str(known)
    name = re.sub(r"__(c|e|ChangeEvent)$", "", entity_name)
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return re.sub(r"[^a-z0-9_]+", "_", name).strip("_") or "record"


def _payload(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    payload = message.get("payload")
    if isinstance(payload, Mapping):
        return payload
    return message if "ChangeEventHeader" in message or "CreatedDate" in message else None


def _replay_id(message: Mapping[str, Any]) -> int | None:
    event = message.get("event")
    replay = event.get("replayId") if isinstance(event, Mapping) else message.get("replayId")
    if isinstance(replay, int) and not isinstance(replay, bool):
        return replay
    if isinstance(replay, str) and replay.isdigit():
        return int(replay)
    return None


def _amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def map_change_event(message: Mapping[str, Any]) -> VendorEvent | None:
    """Map one Change Data Capture event. The stage is
    ``crm.<object type>.<change type>`` (``crm.opportunity.update``); for a
    grouped change (several ``recordIds``) the first is the object and the
    others are references. ``None`` if it is not a change event."""
    try:
        return _map_change(message)
    except Exception:
        logger.debug("salesforce change event not mappable", exc_info=True)
        return None


def _map_change(message: Mapping[str, Any]) -> VendorEvent | None:
    payload = _payload(message)
    header = payload.get("ChangeEventHeader") if payload is not None else None
    if payload is None or not isinstance(header, Mapping):
        return None
    entity = header.get("entityName")
    change_type = header.get("changeType")
    if not isinstance(entity, str) or not isinstance(change_type, str):
        return None
    object_type = object_type_for(entity)
    record_ids = [r for r in header.get("recordIds") or () if isinstance(r, str) and r]
    object_id = record_ids[0] if record_ids else None
    refs = tuple(format_object_ref(_CRM, object_type, r) for r in record_ids[1:])
    action = change_type.lower()
    sequence = header.get("sequenceNumber")
    transaction_key = header.get("transactionKey")
    event_id = None
    if isinstance(transaction_key, str) and isinstance(sequence, int):
        event_id = f"{transaction_key}:{sequence}"
    commit = header.get("commitTimestamp")
    attributes: dict[str, str | int] = {"salesforce.change_type": change_type, "salesforce.entity": entity}
    replay = _replay_id(message)
    if replay is not None:
        attributes["salesforce.replay_id"] = replay
    changed = header.get("changedFields")
    if isinstance(changed, list) and changed:
        attributes["salesforce.changed_fields"] = ",".join(str(f) for f in changed[:50])
    currency = payload.get("CurrencyIsoCode")
    return VendorEvent(
        vendor=_VENDOR,
        event_type=f"{entity}ChangeEvent.{change_type}",
        stage=f"{_CRM}.{object_type}.{action}",
        system=_CRM,
        object_type=object_type,
        object_id=object_id,
        object_refs=refs,
        amount=_amount(payload.get("Amount") if "Amount" in payload else payload.get("TotalAmount")),
        currency=currency.upper() if isinstance(currency, str) and len(currency) == 3 else None,
        event_id=event_id,
        event_sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        occurred_at=rfc3339(commit) if isinstance(commit, int) else None,
        attributes=attributes,
    )


def map_platform_event(
    message: Mapping[str, Any],
    *,
    stage: str,
    id_field: str,
    object_type: str | None = None,
    amount_field: str | None = None,
    currency_field: str | None = None,
) -> VendorEvent | None:
    """Map one platform event. The org defines its fields, so name them:
    ``stage`` (``crm.order.approve``), ``id_field`` (``Order_Id__c``), and
    optionally the amount and currency fields. The event id is ``EventUuid``,
    the sequence the ``replayId`` and the time ``CreatedDate``."""
    try:
        payload = _payload(message)
        if payload is None:
            return None
        parts = stage.split(".")
        obj_type = object_type or (parts[1] if len(parts) == 3 else "record")
        object_id = payload.get(id_field)
        event = message.get("event")
        uuid = payload.get("EventUuid") or (event.get("EventUuid") if isinstance(event, Mapping) else None)
        currency = payload.get(currency_field) if currency_field else None
        created = payload.get("CreatedDate")
        return VendorEvent(
            vendor=_VENDOR,
            event_type=str(message.get("schema") or "platform_event"),
            stage=stage,
            system=parts[0] if len(parts) == 3 else _CRM,
            object_type=obj_type,
            object_id=object_id if isinstance(object_id, str) and object_id else None,
            amount=_amount(payload.get(amount_field)) if amount_field else None,
            currency=currency.upper() if isinstance(currency, str) and len(currency) == 3 else None,
            event_id=uuid if isinstance(uuid, str) else None,
            event_sequence=_replay_id(message),
            occurred_at=rfc3339(created) if isinstance(created, str | int) else None,
        )
    except Exception:
        logger.debug("salesforce platform event not mappable", exc_info=True)
        return None
