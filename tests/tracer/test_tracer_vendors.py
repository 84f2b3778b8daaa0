"""Vendor mappers on sample payloads written from the vendors' documentation.

Golden files: ``in-<name>.json`` is the vendor payload, ``out-<name>.json`` what
the mapper makes of it. Regenerate after an intended change with
``REVTRACE_REGEN_GOLDEN=1 pytest tests/tracer/test_tracer_vendors.py`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tracer
from tests.tracer.conftest import Captured
from tracer import semconv as sc
from tracer.vendors import VendorEvent, netsuite, salesforce, stripe

DATA = Path(__file__).parent / "data" / "vendors"
REGEN = os.environ.get("REVTRACE_REGEN_GOLDEN") == "1"

_PLATFORM = {
    "stage": "crm.order.approve",
    "id_field": "Order_Id__c",
    "amount_field": "Total__c",
    "currency_field": "Currency__c",
}


def _map(path: Path) -> VendorEvent | None:
    payload = json.loads(path.read_text())
    vendor, name = path.parent.name, path.stem.removeprefix("in-")
    if vendor == "stripe":
        return stripe.map_event(payload)
    if vendor == "salesforce":
        if name.startswith("platform."):
            return salesforce.map_platform_event(payload, **_PLATFORM)
        return salesforce.map_change_event(payload)
    record_type = name.split(".")[0]
    return netsuite.map_record(
        record_type, payload, stage=f"erp.{record_type}.post", external_system="billing"
    )


def _as_json(event: VendorEvent | None) -> Any:
    if event is None:
        return None
    data = dataclasses.asdict(event)
    data["amount"] = str(event.amount) if event.amount is not None else None
    data["object_refs"] = list(event.object_refs)
    return data


CASES = sorted(DATA.glob("*/in-*.json"))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_mapper_golden(path: Path) -> None:
    out = path.with_name(path.name.replace("in-", "out-", 1))
    got = _as_json(_map(path))
    if REGEN:
        out.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(out.read_text()), f"{out.name} differs; regenerate with REVTRACE_REGEN_GOLDEN=1"


def test_every_documented_stripe_event_has_a_sample() -> None:
    samples = {p.stem.removeprefix("in-") for p in (DATA / "stripe").glob("in-*.json")}
    assert set(stripe.SUPPORTED_EVENTS) <= samples


@pytest.mark.parametrize(
    ("minor", "currency", "units"),
    [
        (12000, "eur", Decimal("120.00")),
        (15000, "JPY", Decimal(15000)),
        (12345, "kwd", Decimal("12.345")),
        (5, "KRW", Decimal(5)),
        (199, "usd", Decimal("1.99")),
    ],
)
def test_stripe_amounts_respect_currency_exponents(minor: int, currency: str, units: Decimal) -> None:
    assert stripe.to_units(minor, currency) == units


def test_key_facts_of_the_samples() -> None:
    paid = _map(DATA / "stripe" / "in-invoice.paid.json")
    assert paid is not None
    assert (paid.stage, paid.object_type, paid.object_id) == (
        "billing.payment.succeed",
        "payment",
        "pi_3PzQk5LkdIwHu7ix1PayInt0",
    )
    assert "billing:invoice/in_1PzQk2LkdIwHu7ix0aB1cDeF" in paid.object_refs
    assert paid.event_id == "evt_1PzQk6LkdIwHu7ixInvPaid1"
    assert paid.occurred_at == "2024-12-03T10:01:40.000Z"
    jpy = _map(DATA / "stripe" / "in-payment_intent.succeeded.json")
    assert jpy is not None and jpy.amount == Decimal(15000) and jpy.currency == "JPY"
    sub = _map(DATA / "stripe" / "in-customer.subscription.updated.json")
    assert sub is not None and sub.amount == Decimal("200.00")  # 5 seats × 40.00
    refund = _map(DATA / "stripe" / "in-charge.refunded.json")
    assert refund is not None and (refund.object_id, refund.amount) == (
        "re_3PzQkGLkdIwHu7ix1Refund0",
        Decimal("40.00"),
    )
    assert _map(DATA / "stripe" / "in-unsupported.customer.created.json") is None

    cdc = _map(DATA / "salesforce" / "in-opportunity.update.json")
    assert cdc is not None
    assert (cdc.stage, cdc.object_id, cdc.event_sequence) == (
        "crm.opportunity.update",
        "006Dn00000A1b2CIAR",
        1,
    )
    assert cdc.event_id == "0002e4f8-8c2b-5a1c-4b7e-1d2f3a4b5c6d:1"
    assert cdc.occurred_at == "2024-12-03T09:43:20.123Z"
    grouped = _map(DATA / "salesforce" / "in-order.update.grouped.json")
    assert grouped is not None and grouped.object_refs == ("crm:order/801Dn00000C3d4FIAR",)
    custom = _map(DATA / "salesforce" / "in-custom.delete.json")
    assert custom is not None and custom.stage == "crm.billing_account.delete"

    invoice = _map(DATA / "netsuite" / "in-invoice.record.json")
    assert invoice is not None
    assert (invoice.object_id, invoice.legal_entity, invoice.currency) == ("20512", "ACME-DE", "EUR")
    assert invoice.object_refs == ("billing:invoice/in_1PzQk2LkdIwHu7ix0aB1cDeF", "erp:customer/1071")


def test_netsuite_errors_and_locations() -> None:
    body = json.loads(
        (Path(__file__).parent / "data" / "classify" / "netsuite-invalid-key-or-ref.json").read_text()
    )["body"]
    error = netsuite.parse_error(body)
    assert error is not None
    assert (error.status, error.code, error.path) == (400, "INVALID_KEY_OR_REF", "subsidiary")
    assert netsuite.parse_error({"id": "1"}) is None
    location = "https://1234567.suitetalk.api.netsuite.com/services/rest/record/v1/invoice/20513"
    assert netsuite.record_id_from_location(location) == "20513"
    created = netsuite.map_record("invoice", None, location=location)
    assert created is not None and created.object_id == "20513" and created.stage == "erp.invoice.upsert"


def test_malformed_payloads_map_to_none() -> None:
    for bad in (
        {},
        {"type": "invoice.paid"},
        {"type": "invoice.paid", "data": {"object": "x"}},
        {"payload": 3},
    ):
        assert stripe.map_event(bad) is None
        assert salesforce.map_change_event(bad) is None


def test_mapped_event_feeds_a_business_span(captured: Captured) -> None:
    payload = json.loads((DATA / "stripe" / "in-invoice.paid.json").read_text())
    event = stripe.map_event(payload)
    assert event is not None
    remote = tracer.extract_webhook_context(payload, refs=event.all_refs)
    assert remote.correlation_id == "7c1e4a4e-2f55-4b8e-9d43-2b1f6b0c9a11"
    with tracer.business_span(**event.span_arguments(), links=[remote]) as span:
        span.record_payload("source", payload)
    attrs = captured.attrs()
    assert attrs[sc.BIZ_CORRELATION_ID] == "7c1e4a4e-2f55-4b8e-9d43-2b1f6b0c9a11"
    assert attrs[sc.BIZ_PROCESS] == "quote_to_cash"
    assert attrs[sc.BIZ_AMOUNT] == 120.0
    assert attrs[sc.BIZ_EVENT_ID] == "evt_1PzQk6LkdIwHu7ixInvPaid1"
    assert attrs["stripe.event_type"] == "invoice.paid"
    body = dict(captured.one().events[0].attributes or {})[sc.PAYLOAD_BODY]
    assert "billing@acme.example" not in str(body)
