"""Wire formats shared by the engine and the simulators: Stripe's bracketed
form encoding, webhook signatures, W3C baggage and minor-unit amounts."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from sync_engine._reference import money

__all__ = [
    "SFDC_SIGNATURE_HEADER",
    "STRIPE_SIGNATURE_HEADER",
    "baggage_value",
    "decode_form",
    "encode_form",
    "from_minor",
    "sign_hmac",
    "stripe_signature",
    "to_minor",
    "verify_hmac",
    "verify_stripe_signature",
]

STRIPE_SIGNATURE_HEADER: Final = "Stripe-Signature"
SFDC_SIGNATURE_HEADER: Final = "X-Sfdc-Signature"
_KEY_PART: Final = re.compile(r"\[([^\]]*)\]")


def encode_form(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested mappings and lists become
    ``metadata[key]=v`` and ``items[0][price]=p``; booleans are ``true``/``false``;
    None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs.extend(encode_form(value, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs.extend(encode_form(item, f"{name}[{i}]"))
                else:
                    pairs.append((f"{name}[{i}]", _scalar(item)))
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decode_form(body: bytes | str) -> dict[str, Any]:
    """Inverse of :func:`encode_form`: a nested dict (numeric keys become list indices)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        key = unquote(raw_key)
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if parts[i + 1].isdigit() else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        node[part] = [] if parts[i + 1].isdigit() else {}
                    node = node[part]
    return root


def to_minor(amount: Decimal) -> int:
    """Currency units → minor units (cents), as Stripe sends amounts."""
    return int(money(amount) * 100)


def from_minor(amount: int | str) -> Decimal:
    """Minor units → currency units."""
    return money(Decimal(int(amount)) / 100)


def stripe_signature(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header value: ``t=<ts>,v1=<hex HMAC-SHA256 of "t.payload">``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_stripe_signature(
    secret: str, payload: bytes, header: str | None, tolerance: float = 300.0
) -> bool:
    """Check a ``Stripe-Signature`` header (any ``v1`` may match; timestamp within tolerance)."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        ts = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


def sign_hmac(secret: str, payload: bytes) -> str:
    """``sha256=<hex HMAC>`` (the simulated CRM's event signature)."""
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify_hmac(secret: str, payload: bytes, header: str | None) -> bool:
    """Check a :func:`sign_hmac` header."""
    return header is not None and hmac.compare_digest(sign_hmac(secret, payload), header)


def baggage_value(header: str | None, name: str) -> str | None:
    """One member of a W3C ``baggage`` header (percent-decoded), or None. The
    simulated vendors read the correlation id this way, without our tracer."""
    if not header:
        return None
    for member in header.split(","):
        key, sep, value = member.split(";", 1)[0].partition("=")
        if sep and unquote(key.strip()) == name:
            return unquote(value.strip()) or None
    return None
