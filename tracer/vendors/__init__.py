"""Vendor payload mappers: a vendor's webhook, change event or record response
→ a :class:`VendorEvent` holding the business span's arguments.

Built from each vendor's public documented formats:

* :mod:`tracer.vendors.stripe` — webhook events (``invoice.*``,
  ``customer.subscription.*``, ``payment_intent.*``, ``charge.refunded``);
* :mod:`tracer.vendors.salesforce` — Change Data Capture events
  (``ChangeEventHeader``) and platform events;
* :mod:`tracer.vendors.netsuite` — REST record responses and error bodies.

Mappers never raise: a payload they do not understand gives ``None`` (logged
at debug level)::

    event = stripe.map_event(payload)
    if event is not None:
        remote = tracer.extract_webhook_context(payload, refs=event.all_refs)
        with tracer.business_span(**event.span_arguments(), links=[remote]) as span:
            ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry.util.types import AttributeValue

from tracer.semconv import format_object_ref

__all__ = ["VendorEvent"]


@dataclass(frozen=True)
class VendorEvent:
    """What a vendor payload says about one business step."""

    vendor: str
    """``stripe``, ``salesforce``, ``netsuite``."""
    event_type: str
    """The vendor's own name for what happened (``invoice.paid``, ``UPDATE``)."""
    stage: str
    """The stage this event records, ``<system>.<object>.<action>``."""
    system: str
    """The system kind (``billing``, ``crm``, ``erp``)."""
    object_type: str
    """The canonical object type."""
    object_id: str | None = None
    """The object's id in the vendor's system."""
    object_refs: tuple[str, ...] = ()
    """Related objects, as ``<system>:<type>/<id>``."""
    amount: Decimal | None = None
    """Amount in currency units (minor units converted; zero-decimal currencies respected)."""
    currency: str | None = None
    """ISO 4217, upper case."""
    legal_entity: str | None = None
    """Subsidiary / company the record books into, when the payload says."""
    event_id: str | None = None
    """The vendor's event id (for replay and duplicate detection)."""
    event_sequence: int | None = None
    """The event's position for ordering (Salesforce ``sequenceNumber``/``replayId``)."""
    occurred_at: str | None = None
    """When it happened at the vendor, RFC 3339 UTC."""
    process: str | None = None
    """The process this event usually belongs to (a hint: the upstream
    correlation's process wins)."""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    """Vendor-specific extras (``stripe.livemode``, ``salesforce.change_type``…)."""

    @property
    def own_ref(self) -> str | None:
        """This object's reference, ``<system>:<type>/<id>``."""
        if self.object_id is None:
            return None
        return format_object_ref(self.system, self.object_type, self.object_id)

    @property
    def all_refs(self) -> tuple[str, ...]:
        """:attr:`own_ref` and :attr:`object_refs`, for ref index lookups."""
        own = self.own_ref
        return (own, *self.object_refs) if own else self.object_refs

    def span_arguments(self) -> dict[str, Any]:
        """Keyword arguments for :func:`tracer.business_span` (without
        ``process``: pass ``event.process`` yourself if nothing upstream has one)."""
        return {
            "stage": self.stage,
            "system": self.system,
            "vendor": self.vendor,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_refs": self.object_refs,
            "amount": self.amount,
            "currency": self.currency,
            "legal_entity": self.legal_entity,
            "event_id": self.event_id,
            "event_sequence": self.event_sequence,
            "event_occurred_at": self.occurred_at,
            "attributes": dict(self.attributes),
        }
