"""OTLP → rows: decoding requests and turning them into ClickHouse rows.

Pure functions, no I/O: :func:`decode_traces` / :func:`decode_metrics` turn a
request body (protobuf or OTLP/JSON) into the protobuf message;
:func:`traces_to_rows` / :func:`metrics_to_rows` turn a message into
``JSONEachRow`` lines per table, in the exact shape the OpenTelemetry Collector
contrib ClickHouse exporter writes (attribute values stringified as its
``pcommon.Value.AsString`` does: arrays and maps as JSON, doubles without a
trailing ``.0``, bytes as base64).

A span that cannot be stored (bad ids, absurd attribute counts or sizes) is
rejected on its own and counted; the valid spans beside it are kept (OTLP
partial success).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "Limits",
    "OTLPDecodeError",
    "RowBatch",
    "Screened",
    "decode_metrics",
    "decode_traces",
    "drop_spans",
    "format_timestamp",
    "is_protobuf",
    "metrics_to_rows",
    "request_span_keys",
    "screen_traces",
    "traces_to_rows",
]

CONTENT_PROTOBUF: Final = "application/x-protobuf"
CONTENT_JSON: Final = "application/json"

TRACES_TABLE: Final = "otel_traces"
TRACES_PROTOBUF: Final = "otlp.traces.protobuf"
"""Spool block kind: one serialized ExportTraceServiceRequest of screened spans,
flattened into ``otel_traces`` by the writer (collector/engine_flatten.py)."""
METRICS_TABLES: Final = {
    "gauge": "otel_metrics_gauge",
    "sum": "otel_metrics_sum",
    "histogram": "otel_metrics_histogram",
    "exponential_histogram": "otel_metrics_exponential_histogram",
    "summary": "otel_metrics_summary",
}

_SPAN_KIND: Final = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_CODE: Final = ("Unset", "Ok", "Error")


class OTLPDecodeError(ValueError):
    """The request body is not a valid OTLP message (→ HTTP 400 / gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Limits:
    """What one span or data point may carry before it is rejected."""

    max_attributes: int = 1024
    max_attribute_bytes: int = 1024 * 1024
    max_events: int = 1024
    max_links: int = 1024


@dataclass
class RowBatch:
    """Rows for the store, per table, plus what was rejected and why."""

    rows: dict[str, list[bytes]] = field(default_factory=dict)
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    span_keys: list[bytes] = field(default_factory=list)
    """For traces: trace id + span id of each ``otel_traces`` row, in row order
    (what the collector deduplicates client retries by)."""

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        """Append one row (as a JSON line) for ``table``."""
        self.rows.setdefault(table, []).append(orjson.dumps(row))

    def reject(self, reason: str) -> None:
        """Count one rejected item; keep the first few reasons for the response."""
        self.rejected += 1
        if len(self.errors) < 5 and reason not in self.errors:
            self.errors.append(reason)

    @property
    def message(self) -> str:
        """The partial-success error message (empty when nothing was rejected)."""
        if not self.rejected:
            return ""
        return f"{self.rejected} rejected: " + "; ".join(self.errors)

    def payload(self, table: str) -> bytes:
        """The table's rows as one JSONEachRow body."""
        return b"\n".join(self.rows.get(table, ()))


# --- decoding ---------------------------------------------------------------------


def _media_type(content_type: str | None) -> str:
    return (content_type or CONTENT_PROTOBUF).split(";", 1)[0].strip().lower()


def is_protobuf(content_type: str | None) -> bool:
    """True when ``content_type`` names OTLP protobuf (the default)."""
    return _media_type(content_type) == CONTENT_PROTOBUF


def decode_traces(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP traces body (protobuf or JSON)."""
    message = ExportTraceServiceRequest()
    _decode(message, body, content_type, _fix_trace_json)
    return message


def decode_metrics(body: bytes, content_type: str | None) -> ExportMetricsServiceRequest:
    """Parse an OTLP/HTTP metrics body (protobuf or JSON)."""
    message = ExportMetricsServiceRequest()
    _decode(message, body, content_type, _fix_metrics_json)
    return message


def _decode(message: Message, body: bytes, content_type: str | None, fix_json: Any) -> None:
    media = _media_type(content_type)
    if media == CONTENT_PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OTLPDecodeError(f"malformed protobuf: {exc}") from None
        return
    if media == CONTENT_JSON:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise OTLPDecodeError(f"invalid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise OTLPDecodeError("invalid OTLP/JSON: the body must be a JSON object")
        try:
            fix_json(document)
            json_format.ParseDict(document, message, ignore_unknown_fields=True, max_recursion_depth=64)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise OTLPDecodeError(f"invalid OTLP/JSON: {exc}") from None
        return
    raise OTLPDecodeError(
        f"unsupported content type {content_type!r}; use {CONTENT_PROTOBUF} or {CONTENT_JSON}"
    )


def _hex_to_b64(value: Any, what: str) -> Any:
    """OTLP/JSON carries trace and span ids as hex, where the protobuf JSON
    mapping expects base64: convert so the generic parser gets them right."""
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} must be hex, got {value[:40]!r}") from None
    return base64.b64encode(raw).decode("ascii")


def _fix_trace_json(document: dict[str, Any]) -> None:
    for resource_spans in _list(document.get("resourceSpans", document.get("resource_spans"))):
        for scope_spans in _list(_get(resource_spans, "scopeSpans", "scope_spans")):
            for span in _list(_get(scope_spans, "spans")):
                if not isinstance(span, dict):
                    continue
                for key in ("traceId", "trace_id"):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], "traceId")
                for key in ("spanId", "span_id"):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], "spanId")
                for key in ("parentSpanId", "parent_span_id"):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], "parentSpanId")
                for link in _list(span.get("links")):
                    if isinstance(link, dict):
                        for key in ("traceId", "trace_id"):
                            if key in link:
                                link[key] = _hex_to_b64(link[key], "links.traceId")
                        for key in ("spanId", "span_id"):
                            if key in link:
                                link[key] = _hex_to_b64(link[key], "links.spanId")


def _fix_metrics_json(document: dict[str, Any]) -> None:
    for resource_metrics in _list(document.get("resourceMetrics", document.get("resource_metrics"))):
        for scope_metrics in _list(_get(resource_metrics, "scopeMetrics", "scope_metrics")):
            for metric in _list(_get(scope_metrics, "metrics")):
                if not isinstance(metric, dict):
                    continue
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram"):
                    data = metric.get(kind)
                    if not isinstance(data, dict):
                        continue
                    for point in _list(_get(data, "dataPoints", "data_points")):
                        for exemplar in _list(point.get("exemplars") if isinstance(point, dict) else None):
                            if isinstance(exemplar, dict):
                                for key in ("traceId", "trace_id"):
                                    if key in exemplar:
                                        exemplar[key] = _hex_to_b64(exemplar[key], "exemplar.traceId")
                                for key in ("spanId", "span_id"):
                                    if key in exemplar:
                                        exemplar[key] = _hex_to_b64(exemplar[key], "exemplar.spanId")


def _get(obj: Any, *keys: str) -> Any:
    if not isinstance(obj, dict):
        return None
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- values -----------------------------------------------------------------------


def _format_double(value: float) -> str:
    """A double as Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _raw(value: Any) -> Any:
    """An AnyValue as a JSON-ready Python value (for arrays and maps)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else _format_double(number)
    if which == "bool_value":
        return value.bool_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    return None


def _as_string(value: Any) -> str:
    """An AnyValue as the exporter's ``AsString`` renders it."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return str(value.string_value)
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return _format_double(value.double_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which in ("array_value", "kvlist_value"):
        return orjson.dumps(_raw(value)).decode("utf-8")
    return ""


class _LimitError(Exception):
    pass


def _attributes(kvs: Iterable[Any], limits: Limits, count: int) -> dict[str, str]:
    if count > limits.max_attributes:
        raise _LimitError(f"{count} attributes (limit {limits.max_attributes})")
    # Most attributes are strings: read the field directly before asking which
    # member of the oneof is set.
    # String-valued attributes first, then the others, each in request order:
    # the order the store's engine writes them in (collector/engine_flatten.py).
    # A repeated key keeps its last value, in the group of that value's kind.
    out: dict[str, str] = {}
    others: dict[str, str] = {}
    for kv in kvs:
        value = kv.value
        text = value.string_value
        if text or value.WhichOneof("value") == "string_value":
            out[kv.key] = text
            if others:
                others.pop(kv.key, None)
        else:
            others[kv.key] = _as_string(value)
            out.pop(kv.key, None)
    if others:
        out.update(others)
    cap = limits.max_attribute_bytes
    if out and max(map(len, out.values())) > cap:
        for key, text in out.items():
            if len(text) > cap and len(text.encode("utf-8")) > cap:
                raise _LimitError(f"attribute {key[:60]!r} is {len(text)} characters (limit {cap} bytes)")
    return out


# DateTime64(9) ends in April 2262 (signed 64-bit nanoseconds).
_MAX_NANOS: Final = 2**63 - 1


def _ts(nanos: int) -> str:
    if nanos > _MAX_NANOS:
        raise _LimitError(f"timestamp {nanos} ns is past what DateTime64(9) holds (2262)")
    seconds, rest = divmod(int(nanos), 1_000_000_000)
    # Ten digits of seconds: ClickHouse reads a shorter number before the dot
    # as a date ("5.000000001" fails), a zero-padded one as a Unix time.
    return f"{seconds:010d}.{rest:09d}"


def _hex_id(raw: bytes, size: int, what: str, required: bool) -> str:
    if not raw:
        if required:
            raise _LimitError(f"{what} is empty")
        return ""
    if len(raw) != size:
        raise _LimitError(f"{what} has {len(raw)} bytes, expected {size}")
    if raw == b"\x00" * size:
        if required:
            raise _LimitError(f"{what} is all zeros")
        return ""
    return binascii.hexlify(raw).decode("ascii")


def _resource_info(resource: Any, limits: Limits) -> tuple[dict[str, str], str]:
    attrs = _attributes(resource.attributes, limits, len(resource.attributes))
    return attrs, attrs.get("service.name", "")


def format_timestamp(nanos: int) -> str:
    """Unix nanoseconds as ClickHouse reads a ``DateTime64(9)`` from JSON text."""
    return _ts(nanos)


# --- traces -----------------------------------------------------------------------


def traces_to_rows(request: ExportTraceServiceRequest, limits: Limits | None = None) -> RowBatch:
    """``otel_traces`` rows for every valid span of the request."""
    limits = limits or Limits()
    batch = RowBatch()
    rows = batch.rows.setdefault(TRACES_TABLE, [])
    dumps = orjson.dumps
    for resource_spans in request.resource_spans:
        try:
            resource_attrs, service_name = _resource_info(resource_spans.resource, limits)
        except _LimitError as exc:
            for scope_spans in resource_spans.scope_spans:
                for _ in scope_spans.spans:
                    batch.reject(f"resource: {exc}")
            continue
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            scope_version = scope_spans.scope.version
            for span in scope_spans.spans:
                try:
                    row = _span_row(span, limits)
                except _LimitError as exc:
                    batch.reject(f"span {span.name[:60]!r}: {exc}")
                    continue
                row["ServiceName"] = service_name
                row["ResourceAttributes"] = resource_attrs
                row["ScopeName"] = scope_name
                row["ScopeVersion"] = scope_version
                rows.append(dumps(row))
                batch.span_keys.append(span.trace_id + span.span_id)
                batch.accepted += 1
    return batch


@dataclass(frozen=True)
class Screened:
    """A traces request whose spans were checked: what to spool and what to answer."""

    payload: bytes
    """The request serialized, without the rejected spans."""
    accepted: int
    rejected: int
    message: str
    span_keys: list[bytes]
    """Trace id + span id of each accepted span, in request order."""


def screen_traces(
    request: ExportTraceServiceRequest, limits: Limits | None = None, body: bytes | None = None
) -> Screened:
    """Check every span as :func:`traces_to_rows` does, without converting it.

    The rows are made later by the store's engine from the protobuf bytes
    (collector/engine_flatten.py), so here only what decides acceptance is
    read: ids, times, and the counts of attributes, events and links — not
    each attribute value, unless the request is big enough to hold one over
    ``max_attribute_bytes`` (measured as encoded on the wire). Rejected spans
    are removed from ``request`` (which is changed) and the rest serialized
    again; with nothing rejected, ``body`` (the bytes ``request`` was parsed
    from) is spooled as it came.
    """
    limits = limits or Limits()
    batch = RowBatch()
    size = len(body) if body is not None else request.ByteSize()
    check_sizes = size > limits.max_attribute_bytes
    keys: list[bytes] = []
    changed = False
    dead: list[int] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = resource_spans.resource
        try:
            _screen_attributes(
                resource.attributes, limits, check_sizes and resource.ByteSize() > limits.max_attribute_bytes
            )
        except _LimitError as exc:
            for scope_spans in resource_spans.scope_spans:
                for _ in scope_spans.spans:
                    batch.reject(f"resource: {exc}")
            dead.append(r)
            continue
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            bad: list[int] = []
            for i, span in enumerate(spans):
                try:
                    _screen_span(span, limits, check_sizes)
                except _LimitError as exc:
                    batch.reject(f"span {span.name[:60]!r}: {exc}")
                    bad.append(i)
                    continue
                keys.append(span.trace_id + span.span_id)
            for i in reversed(bad):
                del spans[i]
            changed = changed or bool(bad)
    for r in reversed(dead):
        del request.resource_spans[r]
    changed = changed or bool(dead)
    payload = body if body is not None and not changed else bytes(request.SerializeToString())
    return Screened(payload, len(keys), batch.rejected, batch.message, keys)


def _screen_attributes(kvs: Any, limits: Limits, check_sizes: bool) -> None:
    count = len(kvs)
    if count > limits.max_attributes:
        raise _LimitError(f"{count} attributes (limit {limits.max_attributes})")
    if check_sizes:
        cap = limits.max_attribute_bytes
        for kv in kvs:
            encoded = kv.value.ByteSize()
            if encoded > cap:
                raise _LimitError(f"attribute {kv.key[:60]!r} is {encoded} bytes (limit {cap} bytes)")


def _screen_span(span: Any, limits: Limits, check_sizes: bool) -> None:
    trace_id = span.trace_id
    span_id = span.span_id
    if len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_16 or span_id == _ZERO_8:
        _hex_id(trace_id, 16, "traceId", True)
        _hex_id(span_id, 8, "spanId", True)
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        _hex_id(parent, 8, "parentSpanId", False)
    start = span.start_time_unix_nano
    if start <= 0:
        raise _LimitError("startTimeUnixNano is missing")
    if start > _MAX_NANOS:
        _ts(start)
    events, links = _events_and_links(span, limits)
    big = check_sizes and span.ByteSize() > limits.max_attribute_bytes
    _screen_attributes(span.attributes, limits, big)
    for event in events:
        if event.time_unix_nano > _MAX_NANOS:
            _ts(event.time_unix_nano)
        _screen_attributes(event.attributes, limits, big)
    for link in links:
        _hex_id(link.trace_id, 16, "links.traceId", False)
        _hex_id(link.span_id, 8, "links.spanId", False)
        _screen_attributes(link.attributes, limits, big)


_ZERO_16: Final = b"\x00" * 16
_ZERO_8: Final = b"\x00" * 8


def request_span_keys(payload: bytes) -> list[bytes]:
    """Trace id + span id of every span of a serialized traces request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    return [
        span.trace_id + span.span_id
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def drop_spans(payload: bytes, keep: set[int]) -> bytes:
    """``payload`` (a serialized traces request) with only the spans whose
    position (in request order) is in ``keep``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    position = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            drop = [i for i in range(len(spans)) if position + i not in keep]
            position += len(spans)
            for i in reversed(drop):
                del spans[i]
    return bytes(request.SerializeToString())


def _events_and_links(span: Any, limits: Limits) -> tuple[Any, Any]:
    """The span's events and links, within their count limits."""
    events, links = span.events, span.links
    if len(events) > limits.max_events:
        raise _LimitError(f"{len(events)} events (limit {limits.max_events})")
    if len(links) > limits.max_links:
        raise _LimitError(f"{len(links)} links (limit {limits.max_links})")
    return events, links


def _span_row(span: Any, limits: Limits) -> dict[str, Any]:
    trace_id = _hex_id(span.trace_id, 16, "traceId", True)
    span_id = _hex_id(span.span_id, 8, "spanId", True)
    parent = _hex_id(span.parent_span_id, 8, "parentSpanId", False)
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start <= 0:
        raise _LimitError("startTimeUnixNano is missing")
    events, links = _events_and_links(span, limits)
    kind = span.kind
    status = span.status
    row: dict[str, Any] = {
        "Timestamp": _ts(start),
        "TraceId": trace_id,
        "SpanId": span_id,
        "ParentSpanId": parent,
        "TraceState": span.trace_state,
        "SpanName": span.name,
        "SpanKind": _SPAN_KIND[kind] if 0 <= kind < len(_SPAN_KIND) else "Unspecified",
        "SpanAttributes": _attributes(span.attributes, limits, len(span.attributes)),
        "Duration": max(0, end - start),
        "StatusCode": _STATUS_CODE[status.code] if 0 <= status.code < len(_STATUS_CODE) else "Unset",
        "StatusMessage": status.message,
    }
    if events:
        row["Events.Timestamp"] = [_ts(e.time_unix_nano) for e in events]
        row["Events.Name"] = [e.name for e in events]
        row["Events.Attributes"] = [_attributes(e.attributes, limits, len(e.attributes)) for e in events]
    if links:
        row["Links.TraceId"] = [_hex_id(lk.trace_id, 16, "links.traceId", False) for lk in links]
        row["Links.SpanId"] = [_hex_id(lk.span_id, 8, "links.spanId", False) for lk in links]
        row["Links.TraceState"] = [lk.trace_state for lk in links]
        row["Links.Attributes"] = [_attributes(lk.attributes, limits, len(lk.attributes)) for lk in links]
    return row


# --- metrics ----------------------------------------------------------------------


def metrics_to_rows(request: ExportMetricsServiceRequest, limits: Limits | None = None) -> RowBatch:
    """Rows for the five ``otel_metrics_*`` tables; counts data points."""
    limits = limits or Limits()
    batch = RowBatch()
    for resource_metrics in request.resource_metrics:
        try:
            resource_attrs, service_name = _resource_info(resource_metrics.resource, limits)
        except _LimitError as exc:
            batch.reject(f"resource: {exc}")
            continue
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            try:
                scope_attrs = _attributes(scope.attributes, limits, len(scope.attributes))
            except _LimitError as exc:
                batch.reject(f"scope: {exc}")
                continue
            base = {
                "ResourceAttributes": resource_attrs,
                "ResourceSchemaUrl": resource_metrics.schema_url,
                "ScopeName": scope.name,
                "ScopeVersion": scope.version,
                "ScopeAttributes": scope_attrs,
                "ScopeDroppedAttrCount": scope.dropped_attributes_count,
                "ScopeSchemaUrl": scope_metrics.schema_url,
                "ServiceName": service_name,
            }
            for metric in scope_metrics.metrics:
                _metric_rows(batch, base, metric, limits)
    return batch


def _point_base(base: dict[str, Any], metric: Any, point: Any, limits: Limits) -> dict[str, Any]:
    row = dict(base)
    row["MetricName"] = metric.name
    row["MetricDescription"] = metric.description
    row["MetricUnit"] = metric.unit
    row["Attributes"] = _attributes(point.attributes, limits, len(point.attributes))
    row["StartTimeUnix"] = _ts(point.start_time_unix_nano)
    row["TimeUnix"] = _ts(point.time_unix_nano)
    row["Flags"] = point.flags
    return row


def _exemplars(row: dict[str, Any], exemplars: Any, limits: Limits) -> None:
    if not exemplars:
        return
    row["Exemplars.FilteredAttributes"] = [
        _attributes(e.filtered_attributes, limits, len(e.filtered_attributes)) for e in exemplars
    ]
    row["Exemplars.TimeUnix"] = [_ts(e.time_unix_nano) for e in exemplars]
    row["Exemplars.Value"] = [_number(e) for e in exemplars]
    row["Exemplars.SpanId"] = [_hex_id(e.span_id, 8, "exemplar.spanId", False) for e in exemplars]
    row["Exemplars.TraceId"] = [_hex_id(e.trace_id, 16, "exemplar.traceId", False) for e in exemplars]


def _number(point: Any) -> float:
    which = point.WhichOneof("value")
    if which == "as_int":
        return float(point.as_int)
    if which == "as_double":
        return _finite(point.as_double)
    return 0.0


def _finite(value: float) -> float:
    # JSON has no NaN/Inf; ClickHouse would reject the row. Store 0 and keep the row.
    return value if math.isfinite(value) else 0.0


def _metric_rows(batch: RowBatch, base: dict[str, Any], metric: Any, limits: Limits) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        batch.reject(f"metric {metric.name[:60]!r}: no data")
        return
    table = METRICS_TABLES[kind]
    data = getattr(metric, kind)
    for point in data.data_points:
        try:
            row = _point_base(base, metric, point, limits)
            if kind in ("gauge", "sum"):
                row["Value"] = _number(point)
                _exemplars(row, point.exemplars, limits)
                if kind == "sum":
                    row["AggregationTemporality"] = data.aggregation_temporality
                    row["IsMonotonic"] = data.is_monotonic
            elif kind == "histogram":
                row["Count"] = point.count
                row["Sum"] = _finite(point.sum)
                row["BucketCounts"] = list(point.bucket_counts)
                row["ExplicitBounds"] = [_finite(b) for b in point.explicit_bounds]
                row["Min"] = _finite(point.min) if point.HasField("min") else 0.0
                row["Max"] = _finite(point.max) if point.HasField("max") else 0.0
                row["AggregationTemporality"] = data.aggregation_temporality
                _exemplars(row, point.exemplars, limits)
            elif kind == "exponential_histogram":
                row["Count"] = point.count
                row["Sum"] = _finite(point.sum)
                row["Scale"] = point.scale
                row["ZeroCount"] = point.zero_count
                row["PositiveOffset"] = point.positive.offset
                row["PositiveBucketCounts"] = list(point.positive.bucket_counts)
                row["NegativeOffset"] = point.negative.offset
                row["NegativeBucketCounts"] = list(point.negative.bucket_counts)
                row["Min"] = _finite(point.min) if point.HasField("min") else 0.0
                row["Max"] = _finite(point.max) if point.HasField("max") else 0.0
                row["AggregationTemporality"] = data.aggregation_temporality
                _exemplars(row, point.exemplars, limits)
            else:  # summary
                row["Count"] = point.count
                row["Sum"] = _finite(point.sum)
                row["ValueAtQuantiles.Quantile"] = [_finite(q.quantile) for q in point.quantile_values]
                row["ValueAtQuantiles.Value"] = [_finite(q.value) for q in point.quantile_values]
        except _LimitError as exc:
            batch.reject(f"metric {metric.name[:60]!r}: {exc}")
            continue
        batch.add(table, row)
        batch.accepted += 1
