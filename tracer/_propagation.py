"""Carrying trace context and correlation across HTTP, webhooks and queues.

The trace context travels as W3C ``traceparent``/``tracestate`` and the
correlation id and process as W3C Baggage (``baggage`` header). The propagator
is fixed to W3C rather than read from ``OTEL_PROPAGATORS``: revtrace's
correlation is defined on W3C Baggage, so every hop must speak it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, Final, TypeVar

from opentelemetry import context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracer._correlation import current_correlation_id, current_process, valid_id, with_correlation
from tracer._log import logger
from tracer._refindex import RefIndex, default_ref_index
from tracer.semconv import (
    BIZ_LINK_HOP,
    WEBHOOK_METADATA_CORRELATION_ID,
    WEBHOOK_METADATA_PROCESS,
    WEBHOOK_METADATA_TRACEPARENT,
    WEBHOOK_METADATA_TRACESTATE,
    CorrelationSource,
    Hop,
)

__all__ = [
    "RemoteContext",
    "extract_http_context",
    "extract_message_context",
    "extract_webhook_context",
    "inject_http_headers",
    "inject_message_headers",
    "inject_webhook_metadata",
]

PROPAGATOR: Final = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_TRACEPARENT: Final = "traceparent"
_TRACESTATE: Final = "tracestate"

_H = TypeVar("_H")


class RemoteContext:
    """What an incoming request, message or webhook told us: the upstream span
    (if any) and the correlation id and process.

    Use it one of two ways:

    * synchronous hop (an HTTP request we serve while the caller waits):
      ``with remote:`` makes the upstream span the parent and its baggage
      current, so business spans inside continue the caller's trace;
    * asynchronous hop (queue message, webhook): pass it in ``links=`` of
      :func:`tracer.business_span`; the span starts its own trace, links to the
      producer and inherits the correlation id.
    """

    __slots__ = ("_tokens", "context", "correlation_id", "correlation_source", "hop", "process")

    def __init__(
        self,
        ctx: Context,
        hop: Hop,
        correlation_id: str | None,
        process: str | None,
        correlation_source: CorrelationSource | None = None,
    ) -> None:
        self.context: Context = ctx
        """The OpenTelemetry context (upstream span + baggage)."""
        self.hop: Hop = hop
        """The carrier it came through."""
        self.correlation_id: str | None = correlation_id
        """The upstream correlation id, if it sent one (or the ref index knew it)."""
        self.process: str | None = process
        """The upstream process, if it sent one."""
        self.correlation_source: CorrelationSource | None = correlation_source
        """How the correlation id was found (baggage, metadata, ref index)."""
        self._tokens: list[object] = []

    @property
    def span_context(self) -> SpanContext | None:
        """The upstream span, when the carrier had a valid ``traceparent``."""
        span_context = trace.get_current_span(self.context).get_span_context()
        return span_context if span_context.is_valid else None

    def link(self) -> Link | None:
        """A span link to the upstream span, tagged with the hop kind."""
        span_context = self.span_context
        if span_context is None:
            return None
        return Link(span_context, {BIZ_LINK_HOP: self.hop.value})

    def __bool__(self) -> bool:
        return self.span_context is not None or self.correlation_id is not None

    def __repr__(self) -> str:
        return (
            f"RemoteContext(hop={self.hop.value!r}, correlation_id={self.correlation_id!r}, "
            f"process={self.process!r}, span_context={self.span_context!r})"
        )

    def __enter__(self) -> RemoteContext:
        try:
            self._tokens.append(context.attach(self.context))
        except Exception:
            logger.debug("attaching remote context failed", exc_info=True)
            self._tokens.append(None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._tokens.pop() if self._tokens else None
        if token is not None:
            try:
                context.detach(token)  # type: ignore[arg-type]
            except Exception:
                logger.debug("detaching remote context failed", exc_info=True)


def _lower_str_headers(headers: Any) -> dict[str, str]:
    """Headers in any usual shape (mapping, list of pairs, values str or bytes)
    as a lower-cased ``str → str`` dict."""
    out: dict[str, str] = {}
    if headers is None:
        return out
    items: Iterable[Any]
    if isinstance(headers, Mapping) or (hasattr(headers, "items") and callable(headers.items)):
        items = headers.items()
    else:
        items = headers
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, list | tuple):  # multi-valued (e.g. parse_qs style)
            value = ",".join(str(v) for v in value)
        if isinstance(key, str) and isinstance(value, str):
            out[key.lower()] = value
    return out


def _remote_from_carrier(carrier: dict[str, str], hop: Hop) -> RemoteContext:
    ctx = PROPAGATOR.extract(carrier, context=Context())
    cid = current_correlation_id(ctx)
    return RemoteContext(
        ctx,
        hop,
        cid,
        current_process(ctx),
        CorrelationSource.BAGGAGE if cid is not None else None,
    )


def _empty(hop: Hop) -> RemoteContext:
    return RemoteContext(Context(), hop, None, None)


# --- HTTP ---------------------------------------------------------------------


def inject_http_headers(
    headers: MutableMapping[str, str] | None = None, ctx: Context | None = None
) -> MutableMapping[str, str]:
    """Add ``traceparent``, ``tracestate`` and ``baggage`` (correlation id,
    process) for the current (or given) context to ``headers`` and return them
    (a new dict when ``headers`` is None). Never raises."""
    if headers is None:
        headers = {}
    try:
        PROPAGATOR.inject(headers, context=ctx)
    except Exception:
        logger.debug("injecting http headers failed", exc_info=True)
    return headers


def extract_http_context(headers: Any) -> RemoteContext:
    """Read the upstream context from incoming HTTP headers (a mapping, an
    ``http.client.HTTPMessage``, or ``(name, value)`` pairs; any case).
    Never raises: unreadable headers give an empty :class:`RemoteContext`."""
    try:
        return _remote_from_carrier(_lower_str_headers(headers), Hop.HTTP)
    except Exception:
        logger.debug("extracting http context failed", exc_info=True)
        return _empty(Hop.HTTP)


# --- queue messages -------------------------------------------------------------


def inject_message_headers(headers: _H | None = None, ctx: Context | None = None) -> _H | dict[str, str]:
    """Add the W3C context to a queue message's headers and return them.

    Accepts a ``dict`` (values stay ``str``, or become ``bytes`` when the dict
    already holds bytes values, as Kafka clients like) or a ``list`` of
    ``(name, bytes)`` pairs (confluent-kafka, aiokafka); a new dict when None.
    Never raises."""
    carrier: dict[str, str] = {}
    try:
        PROPAGATOR.inject(carrier, context=ctx)
    except Exception:
        logger.debug("injecting message headers failed", exc_info=True)
    if headers is None:
        return carrier
    try:
        if isinstance(headers, list):
            names = set(carrier)
            headers[:] = [h for h in headers if not (isinstance(h, tuple) and h and h[0] in names)]
            headers.extend((k, v.encode()) for k, v in carrier.items())
        elif isinstance(headers, MutableMapping):
            as_bytes = any(isinstance(v, bytes) for v in headers.values())
            for key, value in carrier.items():
                headers[key] = value.encode() if as_bytes else value
    except Exception:
        logger.debug("writing message headers failed", exc_info=True)
    return headers


def extract_message_context(headers: Any) -> RemoteContext:
    """Read the producer's context from a queue message's headers (mapping or
    list of pairs, ``str`` or ``bytes`` values). Pass the result in
    ``links=`` of the consumer's business span. Never raises."""
    try:
        return _remote_from_carrier(_lower_str_headers(headers), Hop.MESSAGE)
    except Exception:
        logger.debug("extracting message context failed", exc_info=True)
        return _empty(Hop.MESSAGE)


# --- webhooks ---------------------------------------------------------------------


def inject_webhook_metadata(
    metadata: MutableMapping[str, str] | None = None, ctx: Context | None = None
) -> MutableMapping[str, str]:
    """Add the context to an object's metadata that a vendor will echo back in
    its webhooks (Stripe ``metadata``, a Salesforce custom field, …) and return
    it: ``revtrace_traceparent``, ``revtrace_tracestate`` (when non-empty),
    ``revtrace_correlation_id`` and ``revtrace_process`` (when known). Values are
    short ASCII strings, within Stripe's metadata limits (40-character keys,
    500-character values). Never raises."""
    if metadata is None:
        metadata = {}
    try:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=ctx)
        if _TRACEPARENT in carrier:
            metadata[WEBHOOK_METADATA_TRACEPARENT] = carrier[_TRACEPARENT]
        if carrier.get(_TRACESTATE):
            metadata[WEBHOOK_METADATA_TRACESTATE] = carrier[_TRACESTATE][:500]
        cid = current_correlation_id(ctx)
        if cid is not None:
            metadata[WEBHOOK_METADATA_CORRELATION_ID] = cid
        process = current_process(ctx)
        if process is not None:
            metadata[WEBHOOK_METADATA_PROCESS] = process
    except Exception:
        logger.debug("injecting webhook metadata failed", exc_info=True)
    return metadata


_METADATA_KEYS: Final = (WEBHOOK_METADATA_TRACEPARENT, WEBHOOK_METADATA_CORRELATION_ID)
_MAX_SEARCH_NODES: Final = 200


def _find_metadata(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first mapping, breadth-first within a few levels, that holds our
    metadata keys: top level, ``metadata``, Stripe's ``data.object.metadata``,
    a platform event's fields, …"""
    queue: list[tuple[Mapping[str, Any], int]] = [(payload, 0)]
    seen = 0
    while queue and seen < _MAX_SEARCH_NODES:
        node, depth = queue.pop(0)
        seen += 1
        if any(key in node for key in _METADATA_KEYS):
            return node
        if depth >= 4:
            continue
        for value in node.values():
            if isinstance(value, Mapping):
                queue.append((value, depth + 1))
    return None


def extract_webhook_context(
    payload: Mapping[str, Any] | None,
    *,
    refs: Iterable[str] = (),
    index: RefIndex | None = None,
) -> RemoteContext:
    """Read the context a webhook carries back in its object's metadata (see
    :func:`inject_webhook_metadata`). When the payload has none, look the
    business object ``refs`` up in the ref index (default: the process-wide one)
    to re-associate the webhook with its transaction. Pass the result in
    ``links=`` of the handler's business span. Never raises."""
    try:
        metadata = _find_metadata(payload) if isinstance(payload, Mapping) else None
        if metadata is not None:
            carrier: dict[str, str] = {}
            traceparent = metadata.get(WEBHOOK_METADATA_TRACEPARENT)
            if isinstance(traceparent, str):
                carrier[_TRACEPARENT] = traceparent
                tracestate = metadata.get(WEBHOOK_METADATA_TRACESTATE)
                if isinstance(tracestate, str):
                    carrier[_TRACESTATE] = tracestate
            ctx = TraceContextTextMapPropagator().extract(carrier, context=Context())
            cid = valid_id(metadata.get(WEBHOOK_METADATA_CORRELATION_ID))
            process = valid_id(metadata.get(WEBHOOK_METADATA_PROCESS))
            ctx = with_correlation(ctx, cid, process)
            return RemoteContext(
                ctx, Hop.WEBHOOK, cid, process, CorrelationSource.LINK if cid is not None else None
            )
        match = (index if index is not None else default_ref_index).lookup(refs)
        if match is not None:
            ctx = with_correlation(Context(), match.correlation_id, match.process)
            return RemoteContext(
                ctx, Hop.WEBHOOK, match.correlation_id, match.process, CorrelationSource.REF_INDEX
            )
    except Exception:
        logger.debug("extracting webhook context failed", exc_info=True)
    return _empty(Hop.WEBHOOK)
