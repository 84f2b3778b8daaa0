"""Wire formats and identifiers: Stripe form encoding, signatures, baggage,
Salesforce ids, amounts, and the SOQL/SuiteQL subset."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_engine._ids import IdFactory, salesforce_checksum, salesforce_id
from sync_engine._query import QueryError, parse_query, run_query
from sync_engine._wire import (
    baggage_value,
    decode_form,
    encode_form,
    from_minor,
    sign_hmac,
    stripe_signature,
    to_minor,
    verify_hmac,
    verify_stripe_signature,
)

_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_values = st.text(max_size=12).filter(lambda s: "\x00" not in s)
_leaf = st.dictionaries(_keys, _values, min_size=1, max_size=3)  # Stripe cannot encode an empty map
_forms = st.dictionaries(
    _keys, st.one_of(_values, _leaf, st.lists(_leaf, min_size=1, max_size=3)), max_size=4
)


def _strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return str(value)


@given(_forms)
def test_form_encoding_round_trips(form: dict[str, Any]) -> None:
    assert decode_form(urlencode(encode_form(form))) == _strings(form)


def test_form_encoding_is_stripes() -> None:
    pairs = encode_form(
        {
            "items": [{"price": "price_1", "quantity": 3}],
            "auto_advance": True,
            "skip": None,
            "metadata": {"crm_account_id": "001"},
        }
    )
    assert pairs == [
        ("items[0][price]", "price_1"),
        ("items[0][quantity]", "3"),
        ("auto_advance", "true"),
        ("metadata[crm_account_id]", "001"),
    ]


def test_stripe_signatures() -> None:
    payload = b'{"id":"evt_1"}'
    header = stripe_signature("whsec_x", payload)
    assert verify_stripe_signature("whsec_x", payload, header)
    assert not verify_stripe_signature("whsec_x", payload + b" ", header)
    assert not verify_stripe_signature("whsec_y", payload, header)
    assert not verify_stripe_signature(
        "whsec_x", payload, stripe_signature("whsec_x", payload, int(time.time()) - 3600)
    )
    assert not verify_stripe_signature("whsec_x", payload, None)
    rotated = f"{header},v1=deadbeef"
    assert verify_stripe_signature("whsec_x", payload, rotated)
    assert verify_hmac("k", payload, sign_hmac("k", payload)) and not verify_hmac(
        "k", payload, sign_hmac("j", payload)
    )


def test_baggage_members() -> None:
    header = "biz.correlation_id=abc%2D1,biz.process=quote_to_cash;prop=1, other=x"
    assert baggage_value(header, "biz.correlation_id") == "abc-1"
    assert baggage_value(header, "biz.process") == "quote_to_cash"
    assert baggage_value(header, "missing") is None
    assert baggage_value(None, "biz.process") is None


def test_salesforce_ids_carry_the_case_checksum() -> None:
    assert salesforce_checksum("0015000000Gv7qJ") == "AAR"
    ident = salesforce_id("006", 123_456)
    assert len(ident) == 18 and ident.startswith("006") and ident[15:] == salesforce_checksum(ident[:15])
    ids = IdFactory(7)
    accounts = {ids.salesforce("Account") for _ in range(50)}
    assert len(accounts) == 50 and all(a.startswith("001") and len(a) == 18 for a in accounts)
    assert IdFactory(7).salesforce("Account") == IdFactory(7).salesforce("Account")
    assert ids.stripe("cus").startswith("cus_") and len(ids.stripe("cus")) == 18
    assert ids.netsuite("invoice").isdigit()


@given(st.decimals(min_value=Decimal("0"), max_value=Decimal("1000000"), places=2))
def test_minor_units_round_trip(amount: Decimal) -> None:
    assert from_minor(to_minor(amount)) == amount


def test_query_subset() -> None:
    query = parse_query(
        "SELECT Id, Amount FROM Opportunity WHERE CloseDate >= 2026-12-01 AND StageName = 'Closed Won'"
        " AND Amount > 100 LIMIT 5"
    )
    rows = [
        {"Id": "1", "Amount": 500, "CloseDate": "2026-12-03", "StageName": "Closed Won"},
        {"Id": "2", "Amount": 50, "CloseDate": "2026-12-03", "StageName": "Closed Won"},
        {"Id": "3", "Amount": 500, "CloseDate": "2026-11-30", "StageName": "Closed Won"},
        {"Id": "4", "Amount": 500, "closedate": "2026-12-09", "stagename": "Closed Won"},
    ]
    assert run_query(query, rows) == [{"Id": "1", "Amount": 500}, {"Id": "4", "Amount": 500}]
    for bad in (
        "DELETE FROM Account",
        "SELECT Id FROM Account WHERE Name LIKE 'x%'",
        "SELECT * FROM Account",
    ):
        with pytest.raises(QueryError):
            parse_query(bad)
