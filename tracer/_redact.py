"""Redaction of payload snapshots before they leave the process.

Three layers, applied to every payload recorded on a business span:

1. field rules — by key name (``email``, ``api_key``; case, ``-`` and ``_``
   ignored) or by dotted path glob (``customer.address.*``): ``redact``,
   ``hash`` (HMAC-SHA256 with a key from ``REVTRACE_REDACTION_HMAC_KEY``, for
   joining on a value without seeing it), ``drop`` or ``keep`` (verbatim);
2. value detectors on every remaining string (and key, and long integer):
   email addresses, IBANs (mod-97 checked), payment card numbers (13-19
   digits starting with 2-6, Luhn checked), tax ids (EU VAT, US SSN/EIN, BR CPF/CNPJ) and phone numbers;
3. size caps: strings longer than ``max_string_length`` and bodies over
   ``max_body_bytes`` are cut and marked truncated; so is a structure deeper
   than ``max_depth`` or with more than ``max_nodes`` values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import fnmatch
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final
from urllib.parse import parse_qsl

from tracer._errors import ConfigurationError
from tracer._log import logger
from tracer.environment_variables import REVTRACE_PAYLOAD_MAX_BYTES, REVTRACE_REDACTION_HMAC_KEY

__all__ = [
    "DEFAULT_SENSITIVE_FIELDS",
    "DETECTORS",
    "FieldAction",
    "RedactedPayload",
    "RedactionPolicy",
    "Redactor",
    "iban_is_valid",
    "luhn_is_valid",
]

REDACTED: Final = "[REDACTED]"
TRUNCATED: Final = "…[truncated]"


class FieldAction(enum.StrEnum):
    """What a field rule does with a field's value."""

    REDACT = "redact"
    """Replace the value (whole subtree for an object) by ``[REDACTED]``."""
    HASH = "hash"
    """Replace it by ``hmac-sha256:<32 hex>`` of its JSON text (needs a key;
    without one it is redacted)."""
    DROP = "drop"
    """Leave the field out."""
    KEEP = "keep"
    """Keep the value verbatim: no detectors (use for ids you know are safe)."""


DEFAULT_SENSITIVE_FIELDS: Final = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "apikey",
        "xapikey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "sessionid",
        "privatekey",
        "cardnumber",
        "pan",
        "cvc",
        "cvv",
        "cvc2",
        "cvv2",
        "iban",
        "accountnumber",
        "bankaccount",
        "routingnumber",
        "ssn",
        "socialsecuritynumber",
        "taxid",
        "vatnumber",
        "vatid",
        "taxnumber",
        "ein",
        "email",
        "emailaddress",
        "phone",
        "phonenumber",
        "mobile",
        "fax",
        "dateofbirth",
        "dob",
        "birthdate",
        "passport",
        "passportnumber",
        "nationalid",
    }
)
"""Field names redacted by default (normalized: lower case, no ``_``/``-``).
Names ending in ``email``, ``phone``, ``password``, ``secret``, ``apikey``,
``iban`` or ``taxid`` (``receipt_email``, ``billing-phone``) are redacted too."""

_SENSITIVE_SUFFIXES: Final = ("email", "phone", "password", "secret", "apikey", "iban", "taxid")

DETECTORS: Final = ("email", "iban", "card", "tax_id", "phone")
"""Value detectors, in the order they run."""

_STRIP: Final = str.maketrans("", "", "_- ")


_CUSTOM_FIELD: Final = re.compile(r"__[a-z]$", re.IGNORECASE)  # Salesforce's Field__c, Rel__r


def _norm(name: str) -> str:
    return _CUSTOM_FIELD.sub("", name).lower().translate(_STRIP)


# --- detectors ------------------------------------------------------------------

_EMAIL: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,}"
)

# Registered IBAN lengths by country (ISO 13616 registry).
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# A run of at least 15 letters/digits, single spaces allowed between them.
_ALNUM_RUN: Final = re.compile(r"[A-Za-z0-9](?: ?[A-Za-z0-9]){14,}")
_IBAN_START: Final = re.compile(r"(?=[A-Za-z]{2}[0-9]{2})")

# A run of at least 13 digits, single spaces or dashes allowed between them.
_DIGIT_RUN: Final = re.compile(r"\d(?:[ -]?\d){12,}")
_CARD_STARTS: Final = frozenset("23456")

_TAX_ID: Final = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"ATU ?\d{8}|BE ?[01]\d{9}|BG ?\d{9,10}|CY ?\d{8}[A-Z]|CZ ?\d{8,10}|DE ?\d{9}|DK ?\d{8}|"
    r"EE ?\d{9}|EL ?\d{9}|ES ?[A-Z0-9]\d{7}[A-Z0-9]|FI ?\d{8}|FR ?[A-HJ-NP-Z0-9]{2}\d{9}|HR ?\d{11}|"
    r"HU ?\d{8}|IE ?\d[A-Z0-9+*]\d{5}[A-W][A-I]?|IT ?\d{11}|LT ?(?:\d{12}|\d{9})|LU ?\d{8}|LV ?\d{11}|"
    r"MT ?\d{8}|NL ?\d{9}B\d{2}|PL ?\d{10}|PT ?\d{9}|RO ?\d{6,10}|SE ?\d{12}|SI ?\d{8}|SK ?\d{10}|"
    r"XI ?\d{9}|GB ?(?:\d{12}|\d{9})|CHE[-. ]?\d{3}\.?\d{3}\.?\d{3}|"
    r"\d{3}-\d{2}-\d{4}|\d{2}-\d{7}|"  # US SSN, EIN
    r"\d{3}\.\d{3}\.\d{3}-\d{2}|\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}"  # BR CPF, CNPJ
    r")(?![A-Za-z0-9])"
)

_PHONE: Final = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international, +49 30 1234567
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}"  # North American, (555) 123-4567
    r"|0\d{2,4}[ /-]\d{3,8}(?:[ -]\d{1,5})?"  # national trunk prefix, 030 1234567
    r")(?!\w)"
)


def luhn_is_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_is_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check (and registered length) of an IBAN without spaces."""
    iban = iban.upper()
    if len(iban) < 15 or _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _looks_like_card(run: str) -> bool:
    """True if the run, or a sequence of its space/dash separated groups, is
    13-19 digits starting with 2-6 (the card industries' major identifiers)
    and passes Luhn. Groups are the unit: digits glued to other digits make a
    different number, but ``4242 4242 4242 4242 123`` still holds a card."""
    groups = re.split(r"[ -]", run)
    for i in range(len(groups)):
        if groups[i][:1] not in _CARD_STARTS:
            continue
        digits = ""
        for group in groups[i:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_is_valid(digits):
                return True
    return False


def _iban_spans(run: str) -> list[tuple[int, int]]:
    """(start, end) of every valid IBAN inside an alnum run (spaces allowed)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for start_match in _IBAN_START.finditer(run):
        start = start_match.start()
        if start < pos:
            continue
        length = _IBAN_LENGTHS.get(run[start : start + 2].upper())
        if length is None:
            continue
        chars: list[str] = []
        end = start
        while end < len(run) and len(chars) < length:
            if run[end] != " ":
                chars.append(run[end])
            end += 1
        if len(chars) == length and iban_is_valid("".join(chars)):
            spans.append((start, end))
            pos = end
    return spans


# --- policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class RedactionPolicy:
    """How payload snapshots are redacted. Frozen; validated when built::

    RedactionPolicy(fields={"customer.tax_ids": "hash", "description": "redact",
                            "metadata.*": "keep"}, max_body_bytes=16384)
    """

    fields: Mapping[str, FieldAction | str] = field(default_factory=dict)
    """Per-field rules: a key name (any depth) or a dotted path glob (contains
    ``.`` or ``*``; list indices are left out: ``lines.email``; ``*`` spans dots) → action.
    Paths win over names, these win over :data:`DEFAULT_SENSITIVE_FIELDS`."""
    default_fields: bool = True
    """Redact :data:`DEFAULT_SENSITIVE_FIELDS` too."""
    detectors: frozenset[str] = frozenset(DETECTORS)
    """Which value detectors run (names from :data:`DETECTORS`)."""
    max_body_bytes: int | None = None
    """Cap of one snapshot's JSON text; None: ``REVTRACE_PAYLOAD_MAX_BYTES`` or 8192."""
    max_string_length: int = 2048
    """Cap of one string value, in characters."""
    max_depth: int = 32
    """Deeper structure is replaced by ``[TRUNCATED]``."""
    max_nodes: int = 10_000
    """Values walked per snapshot; the rest is replaced by ``[TRUNCATED]``."""
    hash_key: bytes | str | None = None
    """HMAC key for ``hash`` fields; None: ``REVTRACE_REDACTION_HMAC_KEY``."""
    hash_payload: bool = False
    """Also record ``biz.payload.hash``: the HMAC of the whole unredacted payload."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name, action in self.fields.items():
            if not isinstance(name, str) or not name:
                problems.append(f"fields: keys must be non-empty strings, got {name!r}")
            try:
                FieldAction(action)
            except ValueError:
                allowed = ", ".join(a.value for a in FieldAction)
                problems.append(f"fields[{name!r}]: must be one of {allowed}, got {action!r}")
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown:
            problems.append(f"detectors: unknown {sorted(unknown)}, known are {list(DETECTORS)}")
        if self.max_body_bytes is not None and self.max_body_bytes < 64:
            problems.append(f"max_body_bytes: must be >= 64, got {self.max_body_bytes}")
        for name in ("max_string_length", "max_depth", "max_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name}: must be a positive integer, got {value!r}")
        if problems:
            raise ConfigurationError(problems)


@dataclass(frozen=True)
class RedactedPayload:
    """A payload after redaction, ready to be a span event."""

    body: str
    """JSON text (or the redacted text of a non-JSON payload)."""
    redacted_fields: tuple[str, ...]
    """Paths of the values that were redacted, hashed or dropped (``$`` is the root)."""
    truncated: bool
    """True if anything was cut by a size cap."""
    size: int
    """Bytes of the body before truncation."""
    hash: str | None = None
    """HMAC of the unredacted payload, when the policy asks and a key exists."""


class _Walk:
    """State of one redaction pass."""

    __slots__ = ("nodes", "redacted", "truncated")

    def __init__(self) -> None:
        self.nodes = 0
        self.redacted: list[str] = []
        self.truncated = False


_MAX_REPORTED_FIELDS: Final = 100


class Redactor:
    """Applies a :class:`RedactionPolicy`. Building one validates the policy and
    reads the environment; :meth:`redact` never raises (a payload it cannot
    handle becomes ``[UNREDACTABLE]``)."""

    def __init__(self, policy: RedactionPolicy | None = None) -> None:
        self.policy = policy if policy is not None else RedactionPolicy()
        p = self.policy
        problems: list[str] = []
        max_body = p.max_body_bytes
        if max_body is None:
            raw = os.environ.get(REVTRACE_PAYLOAD_MAX_BYTES, "").strip()
            max_body = 8192
            if raw:
                try:
                    max_body = int(raw)
                    if max_body < 64:
                        raise ValueError
                except ValueError:
                    problems.append(f"{REVTRACE_PAYLOAD_MAX_BYTES}: must be an integer >= 64, got {raw!r}")
        key = p.hash_key if p.hash_key is not None else os.environ.get(REVTRACE_REDACTION_HMAC_KEY) or None
        if problems:
            raise ConfigurationError(problems)
        self._max_body = max_body
        self._key: bytes | None = key.encode() if isinstance(key, str) else key
        self._names: dict[str, FieldAction] = {}
        self._paths: list[tuple[str, FieldAction]] = []
        for name, action in p.fields.items():
            if any(ch in name for ch in ".*?["):
                pattern = ".".join(_norm(part) if part != "*" else "*" for part in name.split("."))
                self._paths.append((pattern, FieldAction(action)))
            else:
                self._names[_norm(name)] = FieldAction(action)
        self._defaults = p.default_fields
        self._detectors: tuple[Callable[[str, list[str]], str], ...] = tuple(
            getattr(self, f"_detect_{name}") for name in DETECTORS if name in p.detectors
        )
        self._warned_no_key = False

    # -- detectors on one string ------------------------------------------------

    @staticmethod
    def _detect_email(text: str, kinds: list[str]) -> str:
        if "@" not in text:
            return text

        def sub(_: re.Match[str]) -> str:
            kinds.append("email")
            return "[REDACTED:email]"

        return _EMAIL.sub(sub, text)

    @staticmethod
    def _detect_iban(text: str, kinds: list[str]) -> str:
        def sub(match: re.Match[str]) -> str:
            run = match.group()
            spans = _iban_spans(run)
            if not spans:
                return run
            kinds.append("iban")
            out, last = [], 0
            for start, end in spans:
                out.append(run[last:start])
                out.append("[REDACTED:iban]")
                last = end
            out.append(run[last:])
            return "".join(out)

        return _ALNUM_RUN.sub(sub, text)

    @staticmethod
    def _detect_card(text: str, kinds: list[str]) -> str:
        def sub(match: re.Match[str]) -> str:
            run = match.group()
            if _looks_like_card(run):
                kinds.append("card")
                return "[REDACTED:card]"
            return run

        return _DIGIT_RUN.sub(sub, text)

    @staticmethod
    def _detect_tax_id(text: str, kinds: list[str]) -> str:
        def sub(_: re.Match[str]) -> str:
            kinds.append("tax_id")
            return "[REDACTED:tax_id]"

        return _TAX_ID.sub(sub, text)

    @staticmethod
    def _detect_phone(text: str, kinds: list[str]) -> str:
        def sub(match: re.Match[str]) -> str:
            digits = sum(ch.isdigit() for ch in match.group())
            if not 8 <= digits <= 15:
                return match.group()
            kinds.append("phone")
            return "[REDACTED:phone]"

        return _PHONE.sub(sub, text)

    def redact_text(self, text: str) -> str:
        """``text`` with every detected email, IBAN, card number, tax id and
        phone number replaced by ``[REDACTED:<kind>]``. Never raises."""
        try:
            return self._scan(text, [])
        except Exception:
            logger.exception("revtrace tracer: redacting text failed")
            return "[UNREDACTABLE]"

    def _scan(self, text: str, kinds: list[str]) -> str:
        for detect in self._detectors:
            text = detect(text, kinds)
        return text

    # -- structure ------------------------------------------------------------------

    def _action(self, key: str, path: str) -> FieldAction | None:
        if self._paths:
            for pattern, action in self._paths:
                if fnmatch.fnmatchcase(path, pattern):
                    return action
        name = _norm(key)
        by_name = self._names.get(name)
        if by_name is not None:
            return by_name
        if self._defaults and (name in DEFAULT_SENSITIVE_FIELDS or name.endswith(_SENSITIVE_SUFFIXES)):
            return FieldAction.REDACT
        return None

    def _hash(self, value: Any) -> str | None:
        if self._key is None:
            if not self._warned_no_key:
                self._warned_no_key = True
                logger.warning(
                    "revtrace tracer: a redaction rule asks to hash but %s is not set; redacting instead",
                    REVTRACE_REDACTION_HMAC_KEY,
                )
            return None
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        return "hmac-sha256:" + hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _string(self, text: str, path: str, walk: _Walk) -> str:
        kinds: list[str] = []
        text = self._scan(text, kinds)
        if kinds:
            walk.redacted.append(path or "$")
        if len(text) > self.policy.max_string_length:
            walk.truncated = True
            text = text[: self.policy.max_string_length] + TRUNCATED
        return text

    def _value(self, value: Any, path: str, norm_path: str, depth: int, walk: _Walk) -> Any:
        walk.nodes += 1
        if walk.nodes > self.policy.max_nodes or depth > self.policy.max_depth:
            walk.truncated = True
            return "[TRUNCATED]"
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, str):
            return self._string(value, path, walk)
        if isinstance(value, int):
            if abs(value) >= 10**12:  # long enough to be a card number
                text = self._string(str(value), path, walk)
                return value if text == str(value) else text
            return value
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for raw_key, item in value.items():
                key = raw_key if isinstance(raw_key, str) else str(raw_key)
                child = f"{path}.{key}" if path else key
                child_norm = f"{norm_path}.{_norm(key)}" if norm_path else _norm(key)
                action = self._action(key, child_norm)
                safe_key = self._scan(key, []) if self._detectors else key
                if action is None:
                    out[safe_key] = self._value(item, child, child_norm, depth + 1, walk)
                elif action is FieldAction.KEEP:
                    out[safe_key] = _plain(item)
                elif action is FieldAction.DROP:
                    walk.redacted.append(child)
                elif action is FieldAction.HASH and (hashed := self._hash(_plain(item))) is not None:
                    walk.redacted.append(child)
                    out[safe_key] = hashed
                else:
                    walk.redacted.append(child)
                    out[safe_key] = REDACTED
            return out
        if isinstance(value, list | tuple | set | frozenset):
            return [
                self._value(item, f"{path}[{i}]", norm_path, depth + 1, walk) for i, item in enumerate(value)
            ]
        converted = _convert(value)
        if converted is value:
            return self._string(str(value), path, walk)
        return self._value(converted, path, norm_path, depth, walk)

    def redact(self, payload: Any) -> RedactedPayload:
        """Redact one payload: a dict/list (or dataclass, pydantic model), JSON
        text, form-encoded text, other text or bytes. Never raises."""
        try:
            return self._redact(payload)
        except Exception:
            logger.exception("revtrace tracer: redacting a payload failed; recording a placeholder")
            return RedactedPayload(body='"[UNREDACTABLE]"', redacted_fields=("$",), truncated=False, size=0)

    def _redact(self, payload: Any) -> RedactedPayload:
        walk = _Walk()
        structured, text = _parse(payload)
        if structured is not None:
            body = json.dumps(
                self._value(structured, "", "", 0, walk), ensure_ascii=False, separators=(",", ":")
            )
        else:
            kinds: list[str] = []
            body = self._scan(text or "", kinds)
            if kinds:
                walk.redacted.append("$")
        encoded = body.encode()
        size = len(encoded)
        if size > self._max_body:
            walk.truncated = True
            body = encoded[: self._max_body].decode(errors="ignore") + TRUNCATED
        digest = None
        if self.policy.hash_payload:
            digest = self._hash(_plain(structured) if structured is not None else (text or ""))
        fields = tuple(dict.fromkeys(walk.redacted))[:_MAX_REPORTED_FIELDS]
        return RedactedPayload(
            body=body, redacted_fields=fields, truncated=walk.truncated, size=size, hash=digest
        )


def _convert(value: Any) -> Any:
    """A JSON-friendly form of a non-JSON value (or ``value`` itself when there
    is none: the caller then redacts its ``str()``)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        try:
            dumped = dump(mode="json")
        except Exception:
            return value
        return dumped
    return value


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data (for ``keep`` and ``hash``)."""
    if depth > 64:
        return "[TRUNCATED]"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    converted = _convert(value)
    return str(value) if converted is value else _plain(converted, depth + 1)


_FORM: Final = re.compile(r"^[\w.\-~%+\[\]]+=[^&\s]*(?:&[\w.\-~%+\[\]]+=[^&\s]*)*$")


def _parse(payload: Any) -> tuple[Any, str | None]:
    """(structure, None) for structured payloads and JSON/form text;
    (None, text) for any other text."""
    if isinstance(payload, bytes | bytearray):
        payload = bytes(payload).decode("utf-8", errors="replace")
    if isinstance(payload, str):
        stripped = payload.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped), None
            except ValueError:
                return None, payload
        if _FORM.match(stripped):
            return dict(_group(parse_qsl(stripped, keep_blank_values=True))), None
        return None, payload
    return payload, None


def _group(pairs: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str | list[str]]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        yield key, values[0] if len(values) == 1 else values
