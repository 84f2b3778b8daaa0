"""NetSuite REST web services → :class:`~tracer.vendors.VendorEvent` and error details.

A record response (``GET /services/rest/record/v1/<type>/<id>``) has ``id``,
``externalId``, ``tranId``, ``entity``/``subsidiary``/``currency`` as
``{"id", "refName"}`` references and ``total``/``amount``; a create returns
204 with the new record's URL in ``Location``. An error body carries
``type``, ``title``, ``status`` and ``o:errorDetails`` (``detail``,
``o:errorCode`` such as ``INVALID_KEY_OR_REF``, ``USER_ERROR``,
``o:errorPath``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from tracer._log import logger
from tracer._span import rfc3339
from tracer.semconv import ObjectType, System, format_object_ref
from tracer.vendors import VendorEvent

__all__ = ["RECORD_TYPES", "NetSuiteError", "map_record", "parse_error", "record_id_from_location"]

_VENDOR: Final = "netsuite"
_ERP: Final = System.ERP.value

RECORD_TYPES: Final[Mapping[str, str]] = {
    "invoice": ObjectType.INVOICE,
    "customer": ObjectType.CUSTOMER,
    "customerPayment": ObjectType.PAYMENT,
    "customerRefund": ObjectType.REFUND,
    "creditMemo": ObjectType.REFUND,
    "salesOrder": ObjectType.ORDER,
    "journalEntry": ObjectType.JOURNAL,
    "subscription": ObjectType.SUBSCRIPTION,
    "inventoryItem": ObjectType.PRODUCT,
    "nonInventorySaleItem": ObjectType.PRODUCT,
}
"""NetSuite record types → canonical object types."""


@dataclass(frozen=True)
class NetSuiteError:
    """The first entry of an error body's ``o:errorDetails``."""

    status: int | None
    title: str | None
    code: str | None
    detail: str | None
    path: str | None


def parse_error(body: Mapping[str, Any]) -> NetSuiteError | None:
    """The error in a REST error body, or None if it is not one."""
    details = body.get("o:errorDetails") if isinstance(body, Mapping) else None
    if not isinstance(details, list) or not details or not isinstance(details[0], Mapping):
        return None
    first = details[0]
    status = body.get("status")

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    return NetSuiteError(
        status=status if isinstance(status, int) else None,
        title=text(body.get("title")),
        code=text(first.get("o:errorCode")),
        detail=text(first.get("detail")),
        path=text(first.get("o:errorPath")),
    )


def record_id_from_location(location: str) -> str | None:
    """The internal id at the end of a create's ``Location`` header."""
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return tail if tail.isdigit() else None


def _ref_field(record: Mapping[str, Any], name: str) -> tuple[str | None, str | None]:
    value = record.get(name)
    if isinstance(value, Mapping):
        ident, ref_name = value.get("id"), value.get("refName")
        return (
            str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None,
            ref_name if isinstance(ref_name, str) else None,
        )
    return None, None


def map_record(
    record_type: str,
    record: Mapping[str, Any] | None = None,
    *,
    stage: str | None = None,
    location: str | None = None,
    external_system: str | None = None,
) -> VendorEvent | None:
    """Map a record response (or a create's ``Location``). ``stage`` defaults
    to ``erp.<object type>.upsert``; ``external_system`` names the system whose
    id the record keeps in ``externalId`` (``billing``: Stripe's ``in_…``), which
    becomes a reference. ``entity`` becomes ``erp:customer/<id>`` and the
    subsidiary the legal entity."""
    try:
        record = record or {}
        object_type = str(RECORD_TYPES.get(record_type, record_type.lower()))
        ident = record.get("id")
        object_id = str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None
        if object_id is None and location:
            object_id = record_id_from_location(location)
        refs: list[str] = []
        external = record.get("externalId")
        if external_system and isinstance(external, str) and external:
            refs.append(format_object_ref(external_system, object_type, external))
        entity_id, _ = _ref_field(record, "entity")
        if entity_id and object_type != ObjectType.CUSTOMER:
            refs.append(format_object_ref(_ERP, ObjectType.CUSTOMER, entity_id))
        subsidiary_id, subsidiary_name = _ref_field(record, "subsidiary")
        _, currency_name = _ref_field(record, "currency")
        total = record.get("total", record.get("amount"))
        amount = None
        if isinstance(total, int | float | str) and not isinstance(total, bool):
            try:
                amount = Decimal(str(total))
            except InvalidOperation:
                amount = None
        currency = currency_name.upper() if currency_name and len(currency_name) == 3 else None
        modified = record.get("lastModifiedDate")
        attributes: dict[str, str] = {"netsuite.record_type": record_type}
        tran_id = record.get("tranId")
        if isinstance(tran_id, str):
            attributes["netsuite.tran_id"] = tran_id
        return VendorEvent(
            vendor=_VENDOR,
            event_type=record_type,
            stage=stage or f"{_ERP}.{object_type}.upsert",
            system=_ERP,
            object_type=object_type,
            object_id=object_id,
            object_refs=tuple(refs),
            amount=amount,
            currency=currency,
            legal_entity=subsidiary_name or subsidiary_id,
            occurred_at=rfc3339(modified) if isinstance(modified, str) else None,
            attributes=attributes,
        )
    except Exception:
        logger.debug("netsuite record not mappable", exc_info=True)
        return None
