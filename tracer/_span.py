"""Business spans: one step of a business transaction, as an OpenTelemetry span
with ``biz.*`` attributes, an outcome and a failure category."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import math
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, cast

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tracer._classify import Classification, classify
from tracer._correlation import new_correlation_id, valid_id
from tracer._log import RateLimitedLog, logger
from tracer._propagation import RemoteContext
from tracer._refindex import default_ref_index
from tracer._state import state
from tracer.semconv import (
    BAGGAGE_CORRELATION_ID,
    BAGGAGE_PROCESS,
    BIZ_AMOUNT,
    BIZ_ATTEMPT,
    BIZ_CORRELATION_ID,
    BIZ_CORRELATION_SOURCE,
    BIZ_CURRENCY,
    BIZ_ERROR_CATEGORY,
    BIZ_ERROR_CODE,
    BIZ_ERROR_EVIDENCE,
    BIZ_ERROR_RETRY_AFTER,
    BIZ_ERROR_RETRYABLE,
    BIZ_EVENT_ID,
    BIZ_EVENT_OCCURRED_AT,
    BIZ_EVENT_SEQUENCE,
    BIZ_IDEMPOTENCY_KEY,
    BIZ_LEGAL_ENTITY,
    BIZ_OBJECT_ID,
    BIZ_OBJECT_REFS,
    BIZ_OBJECT_TYPE,
    BIZ_OUTCOME,
    BIZ_PROCESS,
    BIZ_REGION,
    BIZ_STAGE,
    BIZ_SYSTEM,
    BIZ_SYSTEM_VENDOR,
    EVENT_PAYLOAD,
    EVENT_TRANSFORM,
    PAYLOAD_BODY,
    PAYLOAD_HASH,
    PAYLOAD_KIND,
    PAYLOAD_REDACTED_FIELDS,
    PAYLOAD_SIZE,
    PAYLOAD_SYSTEM,
    PAYLOAD_TRUNCATED,
    TRANSFORM_FROM,
    TRANSFORM_MAPPING,
    TRANSFORM_TO,
    CorrelationSource,
    FailureCategory,
    Outcome,
    PayloadKind,
    format_object_ref,
    parse_stage,
)

__all__ = ["BusinessSpan", "business_span", "current_business_span", "stage"]

_ERROR_TYPE: Final = "error.type"  # OpenTelemetry semantic convention
_HTTP_STATUS: Final = "http.response.status_code"
_BUSINESS_SPAN_KEY: Final = context.create_key("revtrace-business-span")
_INT64: Final = 2**63
_FAILURE_OUTCOMES: Final = frozenset({Outcome.FAILED, Outcome.DEAD_LETTERED, Outcome.RETRYING})
_warn = RateLimitedLog(interval=60.0)

_stage_cache: dict[str, tuple[str, str, str] | None] = {}


def _parse_stage(name: str) -> tuple[str, str, str] | None:
    try:
        return _stage_cache[name]
    except KeyError:
        parsed = parse_stage(name)
        if parsed is None:
            _warn.log(f"stage:{name}", 30, "stage %.80r does not follow <system>.<object>.<action>", name)
        if len(_stage_cache) < 4096:  # stage names are a small vocabulary; never grow without bound
            _stage_cache[name] = parsed
        return parsed


_trusted_ids: dict[str, None] = {}


def _trusted(value: object) -> str | None:
    """``valid_id`` with a memory: a transaction's id is checked once, not on
    every span (the regex is a measurable part of a span's cost)."""
    if value is None:
        return None
    if value in _trusted_ids:
        return value
    checked = valid_id(value)
    if checked is not None:
        if len(_trusted_ids) >= 4096:
            _trusted_ids.clear()
        _trusted_ids[checked] = None
    return checked


def _invalid(field: str, value: object) -> None:
    _warn.log(f"invalid:{field}", 30, "business span: ignoring invalid %s %.80r", field, value)


# --- value normalization (invalid input is logged and left out, never raised) -----


def _amount(value: object) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float | Decimal):
            number = float(value)
        elif isinstance(value, str):
            number = float(Decimal(value.strip().replace("_", "")))
        else:
            raise TypeError
    except (TypeError, ValueError, InvalidOperation):
        _invalid("amount", value)
        return None
    if not math.isfinite(number):
        _invalid("amount", value)
        return None
    return number


def _int(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        _invalid(field, value)
        return None
    if not -_INT64 <= number < _INT64:
        _invalid(field, value)
        return None
    return number


def rfc3339(value: object) -> str | None:
    """An RFC 3339 UTC timestamp (``2026-12-03T10:00:00.123Z``) from a datetime,
    an ISO string or epoch seconds (numbers above 10^11 are milliseconds)."""
    if value is None:
        return None
    try:
        if isinstance(value, dt.datetime):
            when = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) > 1e11 else value
            when = dt.datetime.fromtimestamp(seconds, dt.UTC)
        elif isinstance(value, str):
            when = dt.datetime.fromisoformat(value.strip())
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        _invalid("event_occurred_at", value)
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # naive means UTC, as in most vendor payloads
    when = when.astimezone(dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _str(field: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    _invalid(field, value)
    return None


def _refs(value: object) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    if type(value) is tuple and all(type(ref) is str and ref for ref in value):
        return value
    try:
        return tuple(ref for ref in cast(Iterable[object], value) if isinstance(ref, str) and ref)
    except TypeError:
        _invalid("object_refs", value)
        return ()


def _currency(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value.strip()) == 3 and value.strip().isalpha():
        return value.strip().upper()
    _invalid("currency", value)
    return None


def _enum_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return str(value.value) if hasattr(value, "value") else value
    return None


class BusinessSpan:
    """One step of a business transaction, as a context manager (sync or
    async); made by :func:`business_span` (the same thing) or :func:`stage`
    (a decorator)::

        with business_span("billing.invoice.create", process="quote_to_cash", vendor="stripe",
                           object_refs=[crm_ref], amount=Decimal("120.00"), currency="EUR") as span:
            invoice = stripe_client.create_invoice(...)
            span.update(object_id=invoice.id)

    ``system`` and ``object_type`` default from the stage name. The correlation
    id is, in order: ``correlation_id``, the current baggage's, a linked
    upstream context's, the ref index's for this object, or a new one; it is put
    into the baggage for everything inside the block. On an exception the span
    records outcome ``failed``, status ERROR, ``error.type`` and the
    classified category, and the exception propagates untouched.

    Everything here is safe to call in any state (before ``configure()``, after
    the span ended, with odd values): the tracer logs and carries on, it never
    raises into adapter code.
    """

    __slots__ = (
        "_args",
        "_attributes",
        "_classification",
        "_ended",
        "_failure_recorded",
        "_kind",
        "_links",
        "_outcome",
        "_refs",
        "_span",
        "_token",
        "correlation_id",
        "correlation_source",
        "object_id",
        "object_type",
        "process",
        "stage",
        "system",
        "vendor",
    )

    def __init__(
        self,
        stage: str,
        *,
        process: str | None = None,
        system: str | None = None,
        vendor: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        object_refs: Iterable[str] = (),
        amount: Decimal | float | int | str | None = None,
        currency: str | None = None,
        legal_entity: str | None = None,
        region: str | None = None,
        idempotency_key: str | None = None,
        attempt: int | None = None,
        event_id: str | None = None,
        event_sequence: int | None = None,
        event_occurred_at: dt.datetime | str | float | None = None,
        correlation_id: str | None = None,
        links: Iterable[RemoteContext | Link | SpanContext | None] = (),
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        self.stage: str = stage if isinstance(stage, str) else str(stage)
        """The stage name, ``<system>.<object>.<action>``."""
        self.process: str | None = _enum_value(process)
        """The business process (argument, else inherited from baggage)."""
        self.system: str | None = _enum_value(system)
        """The system (argument, else the stage's first part)."""
        self.vendor: str | None = vendor
        """The vendor, if given."""
        self.object_type: str | None = _enum_value(object_type)
        """The object type (argument, else the stage's second part)."""
        self.object_id: str | None = _str("object_id", object_id)
        """The object's id in this step's system."""
        self.correlation_id: str = ""
        """The transaction's correlation id (set when the span starts)."""
        self.correlation_source: CorrelationSource | None = None
        """Where the correlation id came from (set when the span starts)."""
        self._args = (
            correlation_id,
            amount,
            currency,
            legal_entity,
            region,
            idempotency_key,
            attempt,
            event_id,
            event_sequence,
            event_occurred_at,
        )
        self._refs: tuple[str, ...] = _refs(object_refs)
        self._links = links
        self._kind = kind
        self._attributes = attributes
        self._span: Span = INVALID_SPAN
        self._token: object | None = None
        self._outcome: Outcome | None = None
        self._classification: Classification | None = None
        self._failure_recorded = False
        self._ended = False

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> BusinessSpan:
        try:
            self._start()
        except Exception:
            logger.exception("revtrace tracer: starting business span %.80r failed", self.stage)
        return self

    async def __aenter__(self) -> BusinessSpan:
        return self.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._finish(exc)
        except Exception:
            logger.exception("revtrace tracer: ending business span %.80r failed", self.stage)
        finally:
            token, self._token = self._token, None
            if token is not None:
                try:
                    context.detach(token)  # type: ignore[arg-type]
                except Exception:
                    logger.debug("detach failed", exc_info=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _own_ref(self) -> str | None:
        if self.system and self.object_type and self.object_id:
            return format_object_ref(self.system, self.object_type, self.object_id)
        return None

    def _start(self) -> None:
        (cid_arg, amount, currency, legal_entity, region, idem, attempt, event_id, seq, occurred) = self._args
        parsed = _parse_stage(self.stage)
        if parsed is not None:
            if self.system is None:
                self.system = parsed[0]
            if self.object_type is None:
                self.object_type = parsed[1]
        ctx = context.get_current()
        members = baggage.get_all(ctx)
        baggage_cid = _trusted(members.get(BAGGAGE_CORRELATION_ID))
        baggage_process = _trusted(members.get(BAGGAGE_PROCESS))
        inherited_process = baggage_process

        links: list[Link] = []
        link_cid: tuple[str, CorrelationSource, str | None] | None = None
        for item in self._links:
            if item is None:
                continue
            if isinstance(item, RemoteContext):
                link = item.link()
                if link_cid is None and item.correlation_id is not None:
                    source = (
                        CorrelationSource.REF_INDEX
                        if item.correlation_source is CorrelationSource.REF_INDEX
                        else CorrelationSource.LINK
                    )
                    link_cid = (item.correlation_id, source, item.process)
                if link is not None:
                    links.append(link)
            elif isinstance(item, Link):
                links.append(item)
            elif isinstance(item, SpanContext):
                if item.is_valid:
                    links.append(Link(item))
            else:
                _invalid("link", item)

        cid = valid_id(cid_arg) if cid_arg is not None else None
        if cid is not None:
            source = CorrelationSource.ARGUMENT
        elif cid_arg is not None:
            _invalid("correlation_id", cid_arg)
        if cid is None and baggage_cid is not None:
            cid, source = baggage_cid, CorrelationSource.BAGGAGE
        if cid is None and link_cid is not None:
            cid, source = link_cid[0], link_cid[1]
            baggage_process = baggage_process or link_cid[2]
        if cid is None:
            own = self._own_ref()
            match = default_ref_index.lookup((own, *self._refs) if own else self._refs)
            if match is not None:
                cid, source = match.correlation_id, CorrelationSource.REF_INDEX
                baggage_process = baggage_process or match.process
        if cid is None:
            cid, source = new_correlation_id(), CorrelationSource.MINTED
        self.correlation_id = cid
        self.correlation_source = source
        if self.process is None:
            self.process = baggage_process

        attrs: dict[str, AttributeValue] = {
            BIZ_STAGE: self.stage,
            BIZ_CORRELATION_ID: cid,
            BIZ_CORRELATION_SOURCE: source.value,
            # provisional: a span is exported only once ended, and _finish
            # overwrites this whenever the outcome is anything but ok
            BIZ_OUTCOME: Outcome.OK.value,
        }
        if self.process is not None:
            attrs[BIZ_PROCESS] = self.process
        if self.system is not None:
            attrs[BIZ_SYSTEM] = self.system
        if self.vendor is not None:
            attrs[BIZ_SYSTEM_VENDOR] = self.vendor
        if self.object_type is not None:
            attrs[BIZ_OBJECT_TYPE] = self.object_type
        if self.object_id is not None:
            attrs[BIZ_OBJECT_ID] = self.object_id
        if self._refs:
            attrs[BIZ_OBJECT_REFS] = self._refs
        self._business_attrs(
            attrs, amount, currency, legal_entity, region, idem, attempt, event_id, seq, occurred
        )
        if self._attributes:
            for key, value in self._attributes.items():
                attrs.setdefault(key, value)

        span = state.tracer.start_span(
            self.stage, context=ctx, kind=self._kind, attributes=attrs, links=links
        )
        self._span = span
        new_ctx = trace.set_span_in_context(span, ctx)
        if cid != baggage_cid:
            new_ctx = _set_baggage(new_ctx, BAGGAGE_CORRELATION_ID, cid)
        if self.process is not None and self.process != inherited_process:
            new_ctx = _set_baggage(new_ctx, BAGGAGE_PROCESS, self.process)
        new_ctx = context.set_value(_BUSINESS_SPAN_KEY, self, new_ctx)
        self._token = context.attach(new_ctx)

    @staticmethod
    def _business_attrs(
        attrs: dict[str, AttributeValue],
        amount: object,
        currency: object,
        legal_entity: object,
        region: object,
        idem: object,
        attempt: object,
        event_id: object,
        seq: object,
        occurred: object,
    ) -> None:
        if amount is not None and (number := _amount(amount)) is not None:
            attrs[BIZ_AMOUNT] = number
        if currency is not None and (code := _currency(currency)) is not None:
            attrs[BIZ_CURRENCY] = code
        if legal_entity is not None and (entity := _str("legal_entity", legal_entity)) is not None:
            attrs[BIZ_LEGAL_ENTITY] = entity
        if region is not None and (reg := _str("region", region)) is not None:
            attrs[BIZ_REGION] = reg
        if idem is not None and (key := _str("idempotency_key", idem)) is not None:
            attrs[BIZ_IDEMPOTENCY_KEY] = key
        if attempt is not None and (n := _int("attempt", attempt)) is not None:
            attrs[BIZ_ATTEMPT] = n
        if event_id is not None and (eid := _str("event_id", event_id)) is not None:
            attrs[BIZ_EVENT_ID] = eid
        if seq is not None and (sequence := _int("event_sequence", seq)) is not None:
            attrs[BIZ_EVENT_SEQUENCE] = sequence
        if occurred is not None and (when := rfc3339(occurred)) is not None:
            attrs[BIZ_EVENT_OCCURRED_AT] = when

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        if exc is not None and not isinstance(exc, GeneratorExit):
            if not self._failure_recorded:
                classification = classify(exception=exc, vendor=self.vendor, rules=state.rules)
                self._record_classification(classification, exc)
            if span.is_recording():
                span.set_attribute(_ERROR_TYPE, type(exc).__qualname__)
                self._record_exception(exc)
            self._failure_recorded = True
        outcome = self._outcome
        if outcome is None or (outcome is Outcome.OK and self._failure_recorded):
            outcome = Outcome.FAILED if self._failure_recorded else Outcome.OK
        if span.is_recording():
            if outcome is not Outcome.OK:  # "ok" was set at start: most spans end ok, one call saved
                span.set_attribute(BIZ_OUTCOME, outcome.value)
            if self._failure_recorded or outcome in _FAILURE_OUTCOMES:
                description = None
                if exc is not None:
                    description = state.redactor.redact_text(f"{type(exc).__qualname__}: {exc}")[:256]
                elif self._classification is not None and self._classification.message:
                    description = state.redactor.redact_text(self._classification.message)[:256]
                span.set_status(Status(StatusCode.ERROR, description))
        span.end()
        own = self._own_ref()
        refs = (own, *self._refs) if own else self._refs
        if refs:
            default_ref_index.remember(refs, self.correlation_id, self.process)

    def _record_exception(self, exc: BaseException) -> None:
        """The ``exception`` event, with message and stack trace redacted (an
        exception message is a common place for a customer's email)."""
        redact = state.redactor.redact_text
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._span.add_event(
            "exception",
            {
                "exception.type": _qualified_name(exc),
                "exception.message": redact(str(exc))[:4096],
                "exception.stacktrace": redact(stack)[-16384:],
            },
        )

    def _record_classification(
        self, classification: Classification, exc: BaseException | None = None
    ) -> None:
        self._classification = classification
        self._failure_recorded = True
        span = self._span
        if not span.is_recording():
            return
        category = classification.category or FailureCategory.UNKNOWN
        attrs: dict[str, AttributeValue] = {
            BIZ_ERROR_CATEGORY: category.value,
            BIZ_ERROR_RETRYABLE: classification.retryable,
        }
        if classification.evidence:
            attrs[BIZ_ERROR_EVIDENCE] = classification.evidence
        if classification.code:
            attrs[BIZ_ERROR_CODE] = classification.code
        if classification.retry_after is not None:
            attrs[BIZ_ERROR_RETRY_AFTER] = classification.retry_after
        if classification.status_code is not None:
            attrs[_HTTP_STATUS] = classification.status_code
        if exc is None:
            attrs[_ERROR_TYPE] = classification.code or category.value
        span.set_attributes(attrs)

    # -- what adapters call --------------------------------------------------------------

    @property
    def span(self) -> Span:
        """The underlying OpenTelemetry span (a non-recording one before start
        or when the tracer is not configured)."""
        return self._span

    @property
    def outcome(self) -> Outcome | None:
        """The outcome set explicitly so far (None: decided at exit)."""
        return self._outcome

    @property
    def is_recording(self) -> bool:
        """Whether anything recorded on this span will be exported."""
        return self._span.is_recording()

    def set_outcome(self, outcome: Outcome | str) -> None:
        """Say how the step ended (``skipped_duplicate``, ``retrying``,
        ``dead_lettered``, ``compensated``, ``parked``…). An exception escaping
        the block still makes an ``ok`` outcome ``failed``."""
        try:
            self._outcome = Outcome(outcome)
        except ValueError:
            _invalid("outcome", outcome)

    def fail(
        self,
        category: FailureCategory | str,
        *,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Record a failure without raising: outcome ``failed`` (unless another
        outcome was set), span status ERROR, ``error.type`` (``error_type``, else
        the code, else the category), the category and the system's code. The
        message is redacted before it is recorded."""
        try:
            try:
                cat = FailureCategory(category)
            except ValueError:
                _invalid("category", category)
                cat = FailureCategory.UNKNOWN
            self._record_classification(
                Classification(
                    category=cat,
                    code=code,
                    retry_after=retry_after,
                    retryable=retryable if retryable is not None else cat in _RETRYABLE_CATEGORIES,
                    evidence="set by adapter",
                    vendor=self.vendor,
                    message=message,
                )
            )
            if error_type is not None and self._span.is_recording():
                self._span.set_attribute(_ERROR_TYPE, error_type)
        except Exception:
            logger.exception("revtrace tracer: fail() failed")

    def classify_response(
        self,
        status_code: int | None = None,
        headers: Any = None,
        body: Any = None,
        *,
        vendor: str | None = None,
        exception: BaseException | None = None,
    ) -> Classification:
        """Classify a response (or exception) with the configured rules and, when
        it is a failure, record it on the span as :meth:`fail` would. Returns the
        classification (``category`` None for a success)."""
        try:
            classification = classify(
                status_code=status_code,
                headers=headers,
                body=body,
                exception=exception,
                vendor=vendor or self.vendor,
                rules=state.rules,
            )
            if classification.is_failure:
                self._record_classification(classification)
            elif status_code is not None and self._span.is_recording():
                self._span.set_attribute(_HTTP_STATUS, status_code)
            return classification
        except Exception:
            logger.exception("revtrace tracer: classify_response failed")
            return Classification(category=FailureCategory.UNKNOWN, evidence="classifier error")

    def record_payload(self, kind: PayloadKind | str, payload: Any, *, system: str | None = None) -> None:
        """Record a redacted snapshot of a payload (source, canonical, target
        request or response) as a ``biz.payload`` span event. Nothing is done
        (not even redaction) when the span is not recorded."""
        if not self._span.is_recording():
            return
        try:
            redacted = state.redactor.redact(payload)
            attrs: dict[str, AttributeValue] = {
                PAYLOAD_KIND: _enum_value(kind) or str(kind),
                PAYLOAD_BODY: redacted.body,
                PAYLOAD_TRUNCATED: redacted.truncated,
                PAYLOAD_REDACTED_FIELDS: redacted.redacted_fields,
                PAYLOAD_SIZE: redacted.size,
            }
            payload_system = _enum_value(system) or self.system
            if payload_system:
                attrs[PAYLOAD_SYSTEM] = payload_system
            if redacted.hash is not None:
                attrs[PAYLOAD_HASH] = redacted.hash
            self._span.add_event(EVENT_PAYLOAD, attrs)
        except Exception:
            logger.exception("revtrace tracer: record_payload failed")

    def record_transform(
        self, from_kind: PayloadKind | str, to_kind: PayloadKind | str, *, mapping: str | None = None
    ) -> None:
        """Record one mapping step (``source`` → ``canonical`` with
        ``crm_to_canonical@v3``) as a ``biz.transform`` span event."""
        if not self._span.is_recording():
            return
        try:
            attrs: dict[str, AttributeValue] = {
                TRANSFORM_FROM: _enum_value(from_kind) or str(from_kind),
                TRANSFORM_TO: _enum_value(to_kind) or str(to_kind),
            }
            if mapping:
                attrs[TRANSFORM_MAPPING] = mapping
            self._span.add_event(EVENT_TRANSFORM, attrs)
        except Exception:
            logger.exception("revtrace tracer: record_transform failed")

    def update(
        self,
        *,
        object_id: str | None = None,
        object_refs: Iterable[str] = (),
        amount: Decimal | float | int | str | None = None,
        currency: str | None = None,
        legal_entity: str | None = None,
        region: str | None = None,
        idempotency_key: str | None = None,
        attempt: int | None = None,
        event_id: str | None = None,
        event_sequence: int | None = None,
        event_occurred_at: dt.datetime | str | float | None = None,
    ) -> None:
        """Set business attributes learned during the step (the id the target
        system assigned, a reference found in the response…). ``object_refs``
        are added to those given at start."""
        try:
            attrs: dict[str, AttributeValue] = {}
            if object_id is not None and (oid := _str("object_id", object_id)) is not None:
                self.object_id = oid
                attrs[BIZ_OBJECT_ID] = oid
            new_refs = _refs(object_refs)
            if new_refs:
                self._refs = tuple(dict.fromkeys((*self._refs, *new_refs)))
                attrs[BIZ_OBJECT_REFS] = self._refs
            self._business_attrs(
                attrs,
                amount,
                currency,
                legal_entity,
                region,
                idempotency_key,
                attempt,
                event_id,
                event_sequence,
                event_occurred_at,
            )
            if attrs and self._span.is_recording():
                self._span.set_attributes(attrs)
        except Exception:
            logger.exception("revtrace tracer: update failed")

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set any other span attribute."""
        try:
            self._span.set_attribute(key, value)
        except Exception:
            logger.exception("revtrace tracer: set_attribute failed")

    def __repr__(self) -> str:
        return f"BusinessSpan(stage={self.stage!r}, correlation_id={self.correlation_id!r})"


_RETRYABLE_CATEGORIES: Final = frozenset({FailureCategory.TRANSIENT, FailureCategory.RATE_LIMITED})


def _set_baggage(ctx: Context, name: str, value: str) -> Context:
    return baggage.set_baggage(name, value, ctx)


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


business_span: Final = BusinessSpan
"""One step of a business transaction, as a context manager (sync or async):
``business_span(stage, **business_arguments)`` is :class:`BusinessSpan`
(an alias, so the hot path is one call). See :class:`BusinessSpan`."""


def current_business_span(ctx: Context | None = None) -> BusinessSpan | None:
    """The innermost business span of the current (or given) context."""
    value = context.get_value(_BUSINESS_SPAN_KEY, ctx)
    return value if isinstance(value, BusinessSpan) else None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def stage(name: str, **options: Any) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: run each call of the function inside ``business_span(name,
    **options)``; works on sync and ``async`` functions. Inside, the span is
    :func:`current_business_span`::

        @stage("erp.invoice.post", process="quote_to_cash", vendor="netsuite")
        def post_invoice(invoice: CanonicalInvoice) -> str:
            current_business_span().update(object_id=invoice.number)
            ...
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[_P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                async with business_span(name, **options):
                    return await async_fn(*args, **kwargs)

            return cast(Callable[_P, _R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with business_span(name, **options):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
