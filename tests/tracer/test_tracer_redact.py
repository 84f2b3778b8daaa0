"""Redaction: field rules, value detectors, caps and hashing; and the property
that no email, card number or IBAN ever leaves the process in a span."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracer
from tests.tracer.conftest import Captured
from tracer import ConfigurationError, RedactionPolicy, Redactor
from tracer._redact import iban_is_valid, luhn_is_valid

CARDS = [
    "4242424242424242",
    "4000 0566 5566 5556",
    "5555-5555-5555-4444",
    "378282246310005",
    "6011111111111117",
]
IBANS = [
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
]


@pytest.mark.parametrize("card", CARDS)
def test_card_numbers_are_detected_with_luhn(card: str) -> None:
    assert luhn_is_valid("".join(ch for ch in card if ch.isdigit()))
    text = Redactor().redact_text(f"paid with {card}, thanks")
    assert text == "paid with [REDACTED:card], thanks"


def test_luhn_failures_and_epoch_millis_are_not_cards() -> None:
    redactor = Redactor()
    assert redactor.redact_text("card 4242 4242 4242 4242 123") == "card [REDACTED:card]"
    assert redactor.redact_text("order 4242424242424241") == "order 4242424242424241"
    assert redactor.redact_text("ts 1733219000123") == "ts 1733219000123"


@pytest.mark.parametrize("iban", IBANS)
def test_ibans_are_detected_with_mod97(iban: str) -> None:
    assert iban_is_valid(iban.replace(" ", ""))
    assert Redactor().redact_text(f"iban: {iban}.") == "iban: [REDACTED:iban]."


def test_invalid_iban_checksum_is_left_alone() -> None:
    assert not iban_is_valid("DE89370400440532013001")
    assert Redactor().redact_text("DE89370400440532013001") == "DE89370400440532013001"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail jane.doe+billing@acme-corp.example.com now", "email"),
        ("VAT DE123456789 applies", "tax_id"),
        ("SSN 078-05-1120", "tax_id"),
        ("EIN 12-3456789", "tax_id"),
        ("CNPJ 11.222.333/0001-81", "tax_id"),
        ("call +49 30 1234567", "phone"),
        ("call (555) 123-4567", "phone"),
        ("call 030 12345678", "phone"),
    ],
)
def test_value_detectors(text: str, kind: str) -> None:
    redacted = Redactor().redact_text(text)
    assert f"[REDACTED:{kind}]" in redacted, redacted


@pytest.mark.parametrize(
    "text",
    [
        "2024-12-03T10:00:00Z",
        "amount 1234.56 EUR",
        "invoice in_1PzQk2LkdIwHu7ix0aB1cDeF",
        "qty 3, 12 lines",
        "v1.2.3",
    ],
)
def test_ordinary_values_survive(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_field_rules_paths_and_defaults() -> None:
    policy = RedactionPolicy(
        fields={
            "description": "redact",
            "customer.tax_ids": "drop",
            "metadata.*": "keep",
            "lines.sku": "keep",
        }
    )
    redacted = Redactor(policy).redact(
        {
            "password": "hunter2",
            "customer": {"name": "ACME", "tax_ids": ["DE123456789"], "receipt_email": "ap@acme.example"},
            "description": "Renewal",
            "metadata": {"note": "mail ops@acme.example"},
            "lines": [{"sku": "4242424242424242", "memo": "card 4242424242424242"}],
            "Api-Key": "sk_live_123",
        }
    )
    assert json.loads(redacted.body) == {
        "password": "[REDACTED]",
        "customer": {"name": "ACME", "receipt_email": "[REDACTED]"},
        "description": "[REDACTED]",
        "metadata": {"note": "mail ops@acme.example"},
        "lines": [{"sku": "4242424242424242", "memo": "card [REDACTED:card]"}],
        "Api-Key": "[REDACTED]",
    }
    assert set(redacted.redacted_fields) == {
        "password",
        "customer.tax_ids",
        "customer.receipt_email",
        "description",
        "lines[0].memo",
        "Api-Key",
    }


def test_hash_needs_a_key_and_is_joinable(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RedactionPolicy(fields={"customer_ref": "hash"}, hash_payload=True)
    monkeypatch.delenv("REVTRACE_REDACTION_HMAC_KEY", raising=False)
    without_key = Redactor(policy).redact({"customer_ref": "cus_1"})
    assert json.loads(without_key.body) == {"customer_ref": "[REDACTED]"}
    assert without_key.hash is None
    monkeypatch.setenv("REVTRACE_REDACTION_HMAC_KEY", "s3cret")
    first = Redactor(policy).redact({"customer_ref": "cus_1"})
    second = Redactor(policy).redact({"customer_ref": "cus_1", "other": 1})
    value = json.loads(first.body)["customer_ref"]
    assert value.startswith("hmac-sha256:") and len(value) == len("hmac-sha256:") + 32
    assert value == json.loads(second.body)["customer_ref"]
    assert (
        Redactor(RedactionPolicy(fields={"customer_ref": "hash"}, hash_key="other"))
        .redact({"customer_ref": "cus_1"})
        .body
        != first.body
    )
    assert first.hash is not None and first.hash != second.hash


def test_size_caps_mark_truncation() -> None:
    redactor = Redactor(RedactionPolicy(max_body_bytes=100, max_string_length=10, max_depth=3, max_nodes=50))
    long_string = redactor.redact({"a": "x" * 50})
    assert json.loads(long_string.body) == {"a": "x" * 10 + "…[truncated]"}
    assert long_string.truncated
    big = redactor.redact({"items": list(range(40))})
    assert big.truncated and big.body.endswith("…[truncated]") and big.size > 100
    deep = redactor.redact({"a": {"b": {"c": {"d": {"e": 1}}}}})
    assert "[TRUNCATED]" in deep.body and deep.truncated
    many = redactor.redact(list(range(100)))
    assert many.truncated


def test_text_form_and_odd_payloads() -> None:
    redactor = Redactor()
    form = redactor.redact("email=jane%40acme.example&amount=1200&currency=eur")
    assert json.loads(form.body) == {"email": "[REDACTED]", "amount": "1200", "currency": "eur"}
    text = redactor.redact("plain text from jane@acme.example")
    assert text.body == "plain text from [REDACTED:email]" and text.redacted_fields == ("$",)
    raw = redactor.redact(b'{"iban": "x", "note": "DE89370400440532013000"}')
    assert json.loads(raw.body) == {"iban": "[REDACTED]", "note": "[REDACTED:iban]"}

    class Weird:
        def __str__(self) -> str:
            return "weird jane@acme.example"

    assert "jane@acme.example" not in redactor.redact({"w": Weird(), 1: {4242424242424242}}).body


def test_invalid_policy_reports_every_problem() -> None:
    with pytest.raises(ConfigurationError) as raised:
        RedactionPolicy(fields={"a": "scramble"}, detectors=frozenset({"dna"}), max_body_bytes=1, max_depth=0)
    problems = raised.value.problems
    assert len(problems) == 4
    assert any("fields['a']" in p for p in problems)


def test_env_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVTRACE_PAYLOAD_MAX_BYTES", "128")
    assert Redactor().redact({"a": "b" * 500}).truncated
    monkeypatch.setenv("REVTRACE_PAYLOAD_MAX_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="REVTRACE_PAYLOAD_MAX_BYTES"):
        Redactor()


# --- the property ---------------------------------------------------------------

_IBAN_BBANS = {"DE": 18, "NL": 14, "GB": 18, "FR": 23, "ES": 20, "IT": 23, "BE": 12, "AT": 16}


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(_IBAN_BBANS)))
    bban = draw(st.text(alphabet=string.digits, min_size=_IBAN_BBANS[country], max_size=_IBAN_BBANS[country]))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    assert iban_is_valid(iban)
    if draw(st.booleans()):
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "34", "37", "6011", "65", "3528", "62"]))
    length = draw(st.sampled_from([15, 16, 19] if prefix in ("34", "37") else [16, 19, 13]))
    length = 15 if prefix in ("34", "37") else length
    body = prefix + draw(
        st.text(alphabet=string.digits, min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1)
    )
    for check in string.digits:
        if luhn_is_valid(body + check):
            number = body + check
            break
    sep = draw(st.sampled_from(["", " ", "-"]))
    if sep:
        number = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


secrets_ = st.one_of(st.emails(), cards(), ibans())
filler = st.text(alphabet=string.ascii_letters + string.digits + " .,:;-_/", max_size=20)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[Any, list[str]]:
    planted: list[str] = []

    def text() -> str:
        secret = draw(secrets_)
        planted.append(secret)
        return (
            draw(filler)
            + draw(st.sampled_from([" ", "\n", "(", ": ", "="]))
            + secret
            + draw(st.sampled_from([" ", ".", ")", ",", "\t"]))
            + draw(filler)
        )

    keys = st.sampled_from(["note", "memo", "description", "customer", "lines", "ref", "x"])
    payload: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.integers(0, 2))
        if shape == 0:
            payload[draw(keys)] = text()
        elif shape == 1:
            payload[draw(keys)] = [text(), {draw(keys): text()}]
        else:
            payload[draw(keys)] = {"nested": {draw(keys): text()}}
    as_text = draw(st.booleans())
    return (json.dumps(payload) if as_text else payload), planted


def _exported_text(captured: Captured) -> str:
    parts = []
    for span in captured.spans():
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        parts.append(span.status.description or "")
        for event in span.events:
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
    captured.exporter.clear()
    return "\n".join(parts)


def _forms(secret: str) -> list[str]:
    forms = {secret, json.dumps(secret)[1:-1]}
    if "@" not in secret:
        forms.add(secret.replace(" ", "").replace("-", ""))
    return sorted(forms)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=payloads(), message_secret=secrets_)
def test_no_email_card_or_iban_ever_leaves_in_a_span(
    captured: Captured, case: tuple[Any, list[str]], message_secret: str
) -> None:
    payload, planted = case
    with pytest.raises(RuntimeError), tracer.business_span("middleware.order.validate") as span:
        span.record_payload("source", payload)
        span.fail("mapping", message=f"bad payload for {message_secret}")
        raise RuntimeError(f"could not map {message_secret}")
    exported = _exported_text(captured)
    for secret in [*planted, message_secret]:
        for form in _forms(secret):
            assert form not in exported, (form, exported)
