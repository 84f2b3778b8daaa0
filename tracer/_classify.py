"""Failure classification: what an adapter saw → a :class:`FailureCategory`.

The inputs are what adapters actually have in hand: an HTTP status with its
headers and body, an exception, a vendor's error code. Decisions are made in
this order, and the first that decides wins:

1. the user's :class:`ClassificationRule` s, in order;
2. the vendor's error code, read from the body (Stripe ``error.code`` /
   ``error.type``, Salesforce ``errorCode``, NetSuite ``o:errorCode``, OAuth
   ``error``) and looked up in the vendor tables below; NetSuite's generic
   ``USER_ERROR`` is decided by its detail text (closed period, credit hold,
   missing reference);
3. the HTTP status: 429 → rate_limited, 408/5xx → transient, 401/403 → auth,
   400/422 → mapping;
4. the exception type (timeouts and connection errors → transient), following
   ``__cause__``/``__context__`` and the ``response`` of httpx/requests errors.

Anything else is ``unknown``: a category is never guessed. Every result says
which piece of evidence decided it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tracer._errors import ConfigurationError
from tracer._log import logger
from tracer.semconv import FailureCategory

__all__ = ["Classification", "ClassificationRule", "classify", "parse_retry_after"]

_RETRYABLE: Final = frozenset({FailureCategory.TRANSIENT, FailureCategory.RATE_LIMITED})


@dataclass(frozen=True)
class Classification:
    """The verdict on one failure (or non-failure)."""

    category: FailureCategory | None
    """The failure category; ``None`` when what was seen is not a failure (2xx/3xx)."""
    code: str | None = None
    """The vendor's own error code, when the body had one."""
    retry_after: float | None = None
    """Seconds to wait before retrying, from ``Retry-After`` (or a vendor hint)."""
    retryable: bool = False
    """Whether retrying the same request is expected to help."""
    evidence: str = ""
    """What decided: ``http 429``, ``stripe code resource_missing``, ``exception httpx.ReadTimeout``, …"""
    vendor: str | None = None
    """The vendor whose tables applied (given, or recognized from the body)."""
    status_code: int | None = None
    """The HTTP status seen, if any."""
    message: str | None = None
    """The vendor's error message (unredacted: redact before recording it)."""

    @property
    def is_failure(self) -> bool:
        """True unless the input was a success."""
        return self.category is not None


_NO_FAILURE = Classification(category=None, evidence="no failure")


@dataclass(frozen=True)
class ClassificationRule:
    """A user rule, tried before the built-in tables. Every condition given must
    hold; at least one must be given::

        ClassificationRule(FailureCategory.MASTER_DATA, vendor="netsuite",
                           message=r"cost cent(er|re)", name="missing cost center")
        ClassificationRule(FailureCategory.BUSINESS_RULE, status=409, code={"invoice_locked"})
        ClassificationRule(FailureCategory.TRANSIENT, exception="grpc.RpcError")
    """

    category: FailureCategory | str
    vendor: str | None = None
    """Only when the vendor is this one (case-insensitive)."""
    status: int | range | Collection[int] | None = None
    """HTTP status, a range (``range(500, 600)``) or a set."""
    code: str | Collection[str] | None = None
    """Vendor error code(s), compared case-insensitively."""
    message: str | re.Pattern[str] | None = None
    """Regex searched (case-insensitively) in the error message and body text."""
    exception: type[BaseException] | tuple[type[BaseException], ...] | str | None = None
    """Exception class(es), or a class name (``"ReadTimeout"`` or ``"httpx.ReadTimeout"``)
    matched against the exception's class and its bases."""
    retryable: bool | None = None
    """Override the category's default (transient and rate_limited retry)."""
    name: str = ""
    """Shown in the evidence (default: the conditions)."""
    _message_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            object.__setattr__(self, "category", FailureCategory(self.category))
        except ValueError:
            allowed = ", ".join(c.value for c in FailureCategory)
            problems.append(f"category: must be one of {allowed}, got {self.category!r}")
        if all(v is None for v in (self.status, self.code, self.message, self.exception)):
            problems.append("a rule needs at least one of status, code, message, exception")
        if isinstance(self.message, str):
            try:
                object.__setattr__(self, "_message_re", re.compile(self.message, re.IGNORECASE))
            except re.error as exc:
                problems.append(f"message: invalid regex {self.message!r}: {exc}")
        elif isinstance(self.message, re.Pattern):
            object.__setattr__(self, "_message_re", self.message)
        if problems:
            raise ConfigurationError(
                [f"ClassificationRule {self.name or ''}: {p}".replace(" : ", ": ") for p in problems]
            )

    def _describe(self) -> str:
        if self.name:
            return f"rule {self.name!r}"
        parts = [
            f"{k}={v!r}"
            for k, v in (
                ("vendor", self.vendor),
                ("status", self.status),
                ("code", self.code),
                ("message", self.message if isinstance(self.message, str | None) else self.message.pattern),
                ("exception", self.exception),
            )
            if v is not None
        ]
        return "rule " + ", ".join(parts)

    def matches(self, seen: _Seen) -> bool:
        """Whether every condition of the rule holds for what was seen."""
        if self.vendor is not None and (seen.vendor or "").lower() != self.vendor.lower():
            return False
        if self.status is not None:
            if seen.status is None:
                return False
            if isinstance(self.status, int):
                if seen.status != self.status:
                    return False
            elif seen.status not in self.status:
                return False
        if self.code is not None:
            codes = {self.code} if isinstance(self.code, str) else set(self.code)
            if seen.code is None or seen.code.lower() not in {c.lower() for c in codes}:
                return False
        if self._message_re is not None and not self._message_re.search(seen.text):
            return False
        return self.exception is None or (
            seen.exception is not None and _exception_matches(seen.exception, self.exception)
        )

    def verdict(self, seen: _Seen) -> Classification:
        category = FailureCategory(self.category)
        retryable = self.retryable if self.retryable is not None else category in _RETRYABLE
        return seen.result(category, self._describe(), retryable=retryable)


def _exception_matches(
    exc: BaseException, spec: type[BaseException] | tuple[type[BaseException], ...] | str
) -> bool:
    if isinstance(spec, str):
        names = {spec}
        for cls in type(exc).__mro__:
            if cls.__qualname__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
                return True
        return False
    return isinstance(exc, spec)


# --- what was seen --------------------------------------------------------------


@dataclass
class _Seen:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    exception: BaseException | None = None
    vendor: str | None = None
    code: str | None = None
    secondary_code: str | None = None
    message: str | None = None
    text: str = ""

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))

    def result(
        self, category: FailureCategory, evidence: str, *, retryable: bool | None = None
    ) -> Classification:
        return Classification(
            category=category,
            code=self.code,
            retry_after=self.retry_after(),
            retryable=category in _RETRYABLE if retryable is None else retryable,
            evidence=evidence,
            vendor=self.vendor,
            status_code=self.status,
            message=self.message,
        )


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _headers(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if headers is None:
        return out
    items = headers.items() if hasattr(headers, "items") else headers
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(key, str) and isinstance(value, str):
            out[key.lower()] = value
    return out


def _parse_body(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        stripped = body.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except ValueError:
                return body
    return body


def _read_vendor_error(body: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(vendor, code, secondary code, message) from a recognizable error body."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and ("type" in error or "code" in error):  # Stripe
            code = error.get("code") or error.get("type")
            secondary = error.get("decline_code") or (error.get("type") if error.get("code") else None)
            return "stripe", _str(code), _str(secondary), _str(error.get("message"))
        details = body.get("o:errorDetails")
        if isinstance(details, list) and details and isinstance(details[0], Mapping):  # NetSuite REST
            first = details[0]
            return (
                "netsuite",
                _str(first.get("o:errorCode")),
                None,
                _str(first.get("detail") or body.get("title")),
            )
        if isinstance(error, str):  # OAuth 2 (Salesforce, NetSuite, HubSpot token endpoints)
            return None, error, None, _str(body.get("error_description"))
        if "errorCode" in body:  # Salesforce, single error
            return "salesforce", _str(body.get("errorCode")), None, _str(body.get("message"))
        if "api_error_code" in body:  # Chargebee
            return (
                "chargebee",
                _str(body.get("api_error_code")),
                _str(body.get("error_code")),
                _str(body.get("message")),
            )
    if isinstance(body, list) and body and isinstance(body[0], Mapping) and "errorCode" in body[0]:
        first = body[0]  # Salesforce REST: a list of errors
        return "salesforce", _str(first.get("errorCode")), None, _str(first.get("message"))
    return None, None, None, None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- vendor tables (from each vendor's public error documentation) ------------------

_C = FailureCategory

_STRIPE_CODES: Final[Mapping[str, FailureCategory]] = {
    "rate_limit": _C.RATE_LIMITED,
    "lock_timeout": _C.TRANSIENT,
    "idempotency_key_in_use": _C.TRANSIENT,
    "processing_error": _C.TRANSIENT,
    "api_connection_error": _C.TRANSIENT,
    "api_error": _C.TRANSIENT,
    "api_key_expired": _C.AUTH,
    "platform_api_key_expired": _C.AUTH,
    "secret_key_required": _C.AUTH,
    "testmode_charges_only": _C.AUTH,
    "resource_missing": _C.MASTER_DATA,
    "customer_tax_location_invalid": _C.MASTER_DATA,
    "tax_id_invalid": _C.MASTER_DATA,
    "account_invalid": _C.MASTER_DATA,
    "parameter_invalid_empty": _C.MAPPING,
    "parameter_invalid_integer": _C.MAPPING,
    "parameter_invalid_string_blank": _C.MAPPING,
    "parameter_invalid_string_empty": _C.MAPPING,
    "parameter_missing": _C.MAPPING,
    "parameter_unknown": _C.MAPPING,
    "parameters_exclusive": _C.MAPPING,
    "amount_too_small": _C.MAPPING,
    "amount_too_large": _C.MAPPING,
    "invalid_charge_amount": _C.MAPPING,
    "url_invalid": _C.MAPPING,
    "email_invalid": _C.MAPPING,
    "card_declined": _C.BUSINESS_RULE,
    "expired_card": _C.BUSINESS_RULE,
    "incorrect_cvc": _C.BUSINESS_RULE,
    "insufficient_funds": _C.BUSINESS_RULE,
    "authentication_required": _C.BUSINESS_RULE,
    "balance_insufficient": _C.BUSINESS_RULE,
    "charge_already_refunded": _C.BUSINESS_RULE,
    "charge_disputed": _C.BUSINESS_RULE,
    "customer_max_subscriptions": _C.BUSINESS_RULE,
    "invoice_no_customer_line_items": _C.BUSINESS_RULE,
    "invoice_not_editable": _C.BUSINESS_RULE,
    "invoice_payment_intent_requires_action": _C.BUSINESS_RULE,
    "payment_intent_unexpected_state": _C.BUSINESS_RULE,
    "resource_already_exists": _C.DUPLICATE,
    "idempotency_error": _C.DUPLICATE,
    "card_error": _C.BUSINESS_RULE,
    "invalid_request_error": _C.MAPPING,
}

_SALESFORCE_CODES: Final[Mapping[str, FailureCategory]] = {
    "REQUEST_LIMIT_EXCEEDED": _C.RATE_LIMITED,
    "UNABLE_TO_LOCK_ROW": _C.TRANSIENT,
    "SERVER_UNAVAILABLE": _C.TRANSIENT,
    "INVALID_SESSION_ID": _C.AUTH,
    "INSUFFICIENT_ACCESS": _C.AUTH,
    "INSUFFICIENT_ACCESS_OR_READONLY": _C.AUTH,
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": _C.AUTH,
    "API_DISABLED_FOR_ORG": _C.AUTH,
    "INVALID_FIELD": _C.MAPPING,
    "INVALID_TYPE": _C.MAPPING,
    "INVALID_FIELD_FOR_INSERT_UPDATE": _C.MAPPING,
    "REQUIRED_FIELD_MISSING": _C.MAPPING,
    "STRING_TOO_LONG": _C.MAPPING,
    "MALFORMED_QUERY": _C.MAPPING,
    "JSON_PARSER_ERROR": _C.MAPPING,
    "NUMBER_OUTSIDE_VALID_RANGE": _C.MAPPING,
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": _C.MAPPING,
    "FIELD_INTEGRITY_EXCEPTION": _C.MAPPING,
    "INVALID_CROSS_REFERENCE_KEY": _C.MASTER_DATA,
    "ENTITY_IS_DELETED": _C.MASTER_DATA,
    "NOT_FOUND": _C.MASTER_DATA,
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": _C.BUSINESS_RULE,
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": _C.BUSINESS_RULE,
    "ENTITY_IS_LOCKED": _C.BUSINESS_RULE,
    "DUPLICATE_VALUE": _C.DUPLICATE,
    "DUPLICATES_DETECTED": _C.DUPLICATE,
}

_NETSUITE_CODES: Final[Mapping[str, FailureCategory]] = {
    "INVALID_LOGIN": _C.AUTH,
    "INVALID_LOGIN_ATTEMPT": _C.AUTH,
    "INSUFFICIENT_PERMISSION": _C.AUTH,
    "FEATURE_DISABLED": _C.AUTH,
    "CONCURRENCY_LIMIT_EXCEEDED": _C.RATE_LIMITED,
    "SSS_REQUEST_LIMIT_EXCEEDED": _C.RATE_LIMITED,
    "INVALID_KEY_OR_REF": _C.MASTER_DATA,
    "NONEXISTENT_ID": _C.MASTER_DATA,
    "RCRD_DSNT_EXIST": _C.MASTER_DATA,
    "INVALID_CONTENT": _C.MAPPING,
    "INVALID_VALUE": _C.MAPPING,
    "INVALID_FLD_VALUE": _C.MAPPING,
    "INVALID_PARAMETER": _C.MAPPING,
    "INVALID_HEADER": _C.MAPPING,
    "DUP_RCRD": _C.DUPLICATE,
    "UNEXPECTED_ERROR": _C.TRANSIENT,
}

_CHARGEBEE_CODES: Final[Mapping[str, FailureCategory]] = {
    "api_request_limit_exceeded": _C.RATE_LIMITED,
    "lock_timeout": _C.TRANSIENT,
    "site_not_ready": _C.TRANSIENT,
    "internal_error": _C.TRANSIENT,
    "api_authentication_failed": _C.AUTH,
    "api_authorization_failed": _C.AUTH,
    "resource_not_found": _C.MASTER_DATA,
    "param_wrong_value": _C.MAPPING,
    "invalid_request": _C.MAPPING,
    "duplicate_entry": _C.DUPLICATE,
    "invalid_state_for_request": _C.BUSINESS_RULE,
    "payment_processing_failed": _C.BUSINESS_RULE,
}

_OAUTH_CODES: Final[Mapping[str, FailureCategory]] = {
    "invalid_grant": _C.AUTH,
    "invalid_client": _C.AUTH,
    "invalid_token": _C.AUTH,
    "unauthorized_client": _C.AUTH,
    "expired_token": _C.AUTH,
}

_VENDOR_TABLES: Final[Mapping[str, Mapping[str, FailureCategory]]] = {
    "stripe": _STRIPE_CODES,
    "salesforce": _SALESFORCE_CODES,
    "netsuite": _NETSUITE_CODES,
    "chargebee": _CHARGEBEE_CODES,
}

_BAD: Final = r"invalid|missing|unknown|does not exist|not found|inactive"
_REFERENCED: Final = (
    r"customer|subsidiary|entity|department|class|location|cost cent(er|re)|tax (code|registration)"
)

# NetSuite reports most record-logic refusals as USER_ERROR (or INVALID_CONTENT)
# with the reason only in the detail text; these patterns read it.
_MESSAGE_RULES: Final = (
    (
        re.compile(r"(period\b.*\b(closed|locked)|(closed|locked)\b.*\bperiod)", re.I),
        _C.BUSINESS_RULE,
        "closed period",
    ),
    (re.compile(r"credit (limit|hold)|on hold", re.I), _C.BUSINESS_RULE, "credit hold"),
    (
        re.compile(
            rf"({_BAD}).{{0,40}}\b({_REFERENCED}|currency)|\b({_REFERENCED})\b.{{0,40}}({_BAD})",
            re.I,
        ),
        _C.MASTER_DATA,
        "missing reference",
    ),
)
_MESSAGE_CODES: Final = frozenset({"USER_ERROR", "INVALID_CONTENT", "FIELD_CUSTOM_VALIDATION_EXCEPTION"})

# Exception classes by name (module root, qualname): no import of httpx/requests needed.
_TRANSIENT_EXCEPTIONS: Final = {
    ("builtins", "TimeoutError"),
    ("builtins", "ConnectionError"),
    ("socket", "timeout"),
    ("socket", "gaierror"),
    ("ssl", "SSLEOFError"),
    ("http", "RemoteDisconnected"),
    ("http", "IncompleteRead"),
    ("httpx", "TimeoutException"),
    ("httpx", "NetworkError"),
    ("httpx", "RemoteProtocolError"),
    ("httpx", "ProxyError"),
    ("requests", "Timeout"),
    ("requests", "ConnectionError"),
    ("requests", "ChunkedEncodingError"),
    ("urllib3", "TimeoutError"),
    ("urllib3", "ProtocolError"),
    ("urllib3", "NewConnectionError"),
    ("urllib3", "MaxRetryError"),
    ("stripe", "APIConnectionError"),
    ("grpc", "RpcError"),
}
_TRANSIENT_NAMES: Final = {name for _, name in _TRANSIENT_EXCEPTIONS}


def _transient_exception(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        if cls.__qualname__ in _TRANSIENT_NAMES:
            root = cls.__module__.split(".", 1)[0]
            if (root, cls.__qualname__) in _TRANSIENT_EXCEPTIONS:
                return f"{root}.{cls.__qualname__}" if root != "builtins" else cls.__qualname__
    return None


def _exception_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _from_exception(exc: BaseException, seen: _Seen) -> None:
    """Fill ``seen`` from an exception and what it carries: an HTTP response
    (httpx ``HTTPStatusError``, requests ``HTTPError``), vendor SDK fields
    (``http_status``, ``code``, ``json_body``, ``headers``)."""
    response = getattr(exc, "response", None)
    if response is not None and seen.status is None:
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            seen.status = status
            seen.headers = seen.headers or _headers(getattr(response, "headers", None))
            if seen.body is None:
                try:
                    seen.body = _parse_body(getattr(response, "text", None))
                except Exception:
                    seen.body = None
    if seen.status is None:
        for name in ("http_status", "status_code", "status"):
            status = getattr(exc, name, None)
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                seen.status = status
                break
    if seen.body is None:
        for name in ("json_body", "body"):
            body = getattr(exc, name, None)
            if isinstance(body, Mapping | list):
                seen.body = body
                break
    if not seen.headers:
        headers = getattr(exc, "headers", None)
        if headers is not None and hasattr(headers, "items"):
            seen.headers = _headers(headers)
    if seen.code is None:
        code = getattr(exc, "code", None)
        if isinstance(code, str) and code:
            seen.code = code


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen_ids: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen_ids and len(seen_ids) < 8:
        seen_ids.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(
    *,
    status_code: int | None = None,
    headers: Any = None,
    body: Any = None,
    exception: BaseException | None = None,
    vendor: str | None = None,
    rules: Iterable[ClassificationRule] = (),
) -> Classification:
    """Classify what an adapter saw. ``headers`` may be any mapping or list of
    pairs; ``body`` a dict/list or JSON text or bytes. ``vendor`` selects the
    vendor's code table (it is also recognized from the body's shape).
    Never raises; a failure it cannot explain is ``unknown``."""
    try:
        return _classify(status_code, headers, body, exception, vendor, tuple(rules))
    except Exception:
        logger.exception("revtrace tracer: classification failed")
        return Classification(category=FailureCategory.UNKNOWN, evidence="classifier error")


def _classify(
    status_code: int | None,
    headers: Any,
    body: Any,
    exception: BaseException | None,
    vendor: str | None,
    rules: tuple[ClassificationRule, ...],
) -> Classification:
    seen = _Seen(status=status_code, headers=_headers(headers), body=_parse_body(body))
    if exception is not None:
        seen.exception = exception
        for exc in _chain(exception):
            _from_exception(exc, seen)
    body_vendor, code, secondary, message = _read_vendor_error(seen.body)
    seen.vendor = (vendor or body_vendor or "").lower() or None
    seen.code = code or seen.code
    seen.secondary_code = secondary
    seen.message = message or (str(exception) if exception is not None else None)
    text_parts = [seen.message or ""]
    if isinstance(seen.body, str):
        text_parts.append(seen.body[:4096])
    seen.text = "\n".join(text_parts)

    if exception is None and seen.status is not None and seen.status < 400 and seen.code is None:
        return Classification(
            category=None, evidence=f"http {seen.status}", status_code=seen.status, vendor=seen.vendor
        )

    for rule in rules:
        if rule.matches(seen):
            return rule.verdict(seen)

    by_code = _by_vendor_code(seen)
    if by_code is not None:
        return by_code

    by_status = _by_status(seen)
    if by_status is not None:
        return by_status

    if exception is not None:
        for exc in _chain(exception):
            name = _transient_exception(exc)
            if name is not None:
                return seen.result(FailureCategory.TRANSIENT, f"exception {name}")
        return seen.result(FailureCategory.UNKNOWN, f"exception {_exception_name(exception)} not recognized")
    if seen.status is not None:
        return seen.result(FailureCategory.UNKNOWN, f"http {seen.status} not recognized")
    return seen.result(FailureCategory.UNKNOWN, "no evidence")


def _by_vendor_code(seen: _Seen) -> Classification | None:
    code = seen.code
    if code is None:
        return None
    vendor = seen.vendor or ""
    if code.upper() in _MESSAGE_CODES and seen.message:
        for pattern, category, label in _MESSAGE_RULES:
            if pattern.search(seen.message):
                return seen.result(category, f"{vendor or 'vendor'} code {code} + message: {label}")
    tables: list[tuple[str, Mapping[str, FailureCategory]]] = []
    if vendor in _VENDOR_TABLES:
        tables.append((vendor, _VENDOR_TABLES[vendor]))
    tables.append(("oauth", _OAUTH_CODES))
    for label, table in tables:
        for candidate in (code, seen.secondary_code) if label == "stripe" else (code,):
            if candidate is None:
                continue
            found = table.get(candidate) or table.get(candidate.upper()) or table.get(candidate.lower())
            if found is not None:
                return seen.result(found, f"{label} code {candidate}")
    return None


def _by_status(seen: _Seen) -> Classification | None:
    status = seen.status
    if status is None:
        return None
    if status == 429:
        ra = seen.retry_after()
        return seen.result(
            FailureCategory.RATE_LIMITED, "http 429" + (" + Retry-After" if ra is not None else "")
        )
    if status == 408 or 500 <= status <= 599:
        ra = seen.retry_after()
        return seen.result(
            FailureCategory.TRANSIENT, f"http {status}" + (" + Retry-After" if ra is not None else "")
        )
    if status in (401, 403):
        return seen.result(FailureCategory.AUTH, f"http {status}")
    if status in (400, 422):
        if seen.message:
            for pattern, category, label in _MESSAGE_RULES:
                if pattern.search(seen.message):
                    return seen.result(category, f"http {status} + message: {label}")
        return seen.result(FailureCategory.MAPPING, f"http {status}")
    return None
