"""Client spans for adapters' outbound HTTP calls (httpx and requests).

The hooks are written on the OpenTelemetry API alone (no
``opentelemetry-instrumentation-*`` package): each request gets a CLIENT span
named ``<METHOD> <host>`` with ``http.request.method``, ``url.full`` (query
values that look like secrets removed), ``server.address``/``server.port`` and
``http.response.status_code``; it carries the ``biz.*`` attributes of the
current business span, the W3C headers go out with the request, and a failed
response or transport error is classified (``biz.error.category`` …) on the
client span. The business span is left alone: a 503 that a retry then gets
past is not the step's failure (call ``span.classify_response`` for that).
httpx and requests are imported only
when their hook is used.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tracer._classify import Classification, classify
from tracer._log import logger
from tracer._propagation import PROPAGATOR
from tracer._span import current_business_span
from tracer._state import state
from tracer.semconv import (
    ATTRIBUTE_KEYS,
    BIZ_ERROR_CATEGORY,
    BIZ_ERROR_CODE,
    BIZ_ERROR_EVIDENCE,
    BIZ_ERROR_RETRY_AFTER,
    BIZ_ERROR_RETRYABLE,
    BIZ_OUTCOME,
    BIZ_STAGE,
)

__all__ = [
    "MAX_ERROR_BODY",
    "ClientCall",
    "finish_call",
    "instrument_httpx",
    "instrument_requests",
    "sanitize_url",
    "start_call",
    "wants_body",
]

_SECRET_PARAMS: Final = (
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "signature",
    "sig",
    "auth",
    "code",
    "credential",
    "session",
)
# A client span carries its business span's dimensions but not biz.stage or
# biz.outcome: "has biz.stage" is how downstream tells business spans apart, and
# one API call is not a business step.
_INHERITED: Final = tuple(
    k for k in ATTRIBUTE_KEYS if k not in (BIZ_STAGE, BIZ_OUTCOME, BIZ_ERROR_CATEGORY, BIZ_ERROR_CODE)
)


def sanitize_url(url: str) -> str:
    """``url`` without user info and with the values of query parameters whose
    name suggests a secret (``api_key``, ``access_token``, ``sig``…) replaced by
    ``REDACTED``; values that look like emails, cards or IBANs are redacted too."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
        query = parts.query
        if query:
            pairs = []
            for name, value in parse_qsl(query, keep_blank_values=True):
                lowered = name.lower()
                if any(word in lowered for word in _SECRET_PARAMS):
                    value = "REDACTED"
                else:
                    value = state.redactor.redact_text(value)
                pairs.append((name, value))
            query = urlencode(pairs, safe="[]:")
        path = "/".join(state.redactor.redact_text(segment) for segment in parts.path.split("/"))
        return urlunsplit((parts.scheme, netloc, path, query, ""))
    except Exception:
        return "[unparseable url]"


class ClientCall:
    """One outbound call's client span; the hooks create one per request."""

    __slots__ = ("_span", "_token", "vendor")

    def __init__(self, method: str, url: str, headers: MutableMapping[str, str] | None) -> None:
        self._token: object | None = None
        self.vendor: str | None = None
        parts = urlsplit(url)
        method = method.upper()
        attrs: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.full": sanitize_url(url),
        }
        if parts.hostname:
            attrs["server.address"] = parts.hostname
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        if port:
            attrs["server.port"] = port
        business = current_business_span()
        if business is not None and business.is_recording:
            inherited = getattr(business.span, "attributes", None) or {}
            for key in _INHERITED:
                value = inherited.get(key)
                if value is not None:
                    attrs[key] = value
            self.vendor = business.vendor
        self._span: Span = state.tracer.start_span(
            f"{method} {parts.hostname or ''}".strip(), kind=SpanKind.CLIENT, attributes=attrs
        )
        ctx = trace.set_span_in_context(self._span)
        if headers is not None:
            PROPAGATOR.inject(headers, context=ctx)
        self._token = context.attach(ctx)

    def response(self, status_code: int, headers: Any = None, body: Any = None) -> Classification | None:
        """Record the response; classify it when it is a failure."""
        span = self._span
        span.set_attribute("http.response.status_code", status_code)
        if status_code < 400:
            return None
        classification = classify(
            status_code=status_code, headers=headers, body=body, vendor=self.vendor, rules=state.rules
        )
        self._record(classification, str(status_code))
        return classification

    def error(self, exc: BaseException) -> Classification:
        """Record a transport error (timeout, connection refused…)."""
        classification = classify(exception=exc, vendor=self.vendor, rules=state.rules)
        self._span.record_exception(exc)
        self._record(classification, type(exc).__qualname__)
        return classification

    def _record(self, classification: Classification, error_type: str) -> None:
        span = self._span
        if classification.category is None:
            return
        attrs: dict[str, AttributeValue] = {
            "error.type": error_type,
            BIZ_ERROR_CATEGORY: classification.category.value,
            BIZ_ERROR_RETRYABLE: classification.retryable,
            BIZ_ERROR_EVIDENCE: classification.evidence,
        }
        if classification.code:
            attrs[BIZ_ERROR_CODE] = classification.code
        if classification.retry_after is not None:
            attrs[BIZ_ERROR_RETRY_AFTER] = classification.retry_after
        span.set_attributes(attrs)
        span.set_status(Status(StatusCode.ERROR))

    def end(self) -> None:
        """End the span and restore the context. Never raises."""
        token, self._token = self._token, None
        try:
            self._span.end()
        finally:
            if token is not None:
                context.detach(token)  # type: ignore[arg-type]


def start_call(method: str, url: str, headers: MutableMapping[str, str] | None) -> ClientCall | None:
    """A :class:`ClientCall`, or None if the tracer failed (logged)."""
    try:
        return ClientCall(method, url, headers)
    except Exception:
        logger.exception("revtrace tracer: starting a client span failed")
        return None


def finish_call(
    call: ClientCall | None,
    *,
    status_code: int | None = None,
    headers: Any = None,
    body: Any = None,
    error: BaseException | None = None,
) -> None:
    """Record the response or error on ``call`` and end it. Never raises."""
    if call is None:
        return
    try:
        if error is not None:
            call.error(error)
        elif status_code is not None:
            call.response(status_code, headers, body)
    except Exception:
        logger.exception("revtrace tracer: recording an http response failed")
    finally:
        try:
            call.end()
        except Exception:
            logger.exception("revtrace tracer: ending a client span failed")


MAX_ERROR_BODY: Final = 65536
"""Error bodies up to this size (JSON only) are read to find vendor error codes."""


def wants_body(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether an error response's body should be read for classification."""
    if status_code < 400:
        return False
    content_type = headers.get("content-type", "")
    length = headers.get("content-length")
    small = length is None or (length.isdigit() and int(length) <= MAX_ERROR_BODY)
    return "json" in content_type.lower() and small


# --- httpx --------------------------------------------------------------------------


def instrument_httpx(client: Any) -> Any:
    """Wrap an ``httpx.Client`` or ``httpx.AsyncClient``'s transport so every
    request is a client span (see module doc). Returns the client. Call it
    once at set-up; it raises ``TypeError`` for anything but an httpx client."""
    from tracer import _httpx

    return _httpx.instrument(client)


# --- requests -----------------------------------------------------------------------


def instrument_requests(session: Any) -> Any:
    """Mount a tracing adapter on a ``requests.Session`` for http and https so
    every request is a client span (see module doc). Returns the session.
    Call it once at set-up; it raises ``TypeError`` for anything but a Session."""
    from tracer import _requests

    return _requests.instrument(session)
