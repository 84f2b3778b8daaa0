"""OTLP traces into ``otel_traces``, decoded and flattened by the store's engine.

The collector spools trace requests as the protobuf bytes it received
(screened and deduplicated, :func:`collector.otlp.screen_traces`). The writer
hands a batch of them to the engine in one statement::

    INSERT INTO otel_traces (…)
    SELECT … FROM file('<batch>', 'Protobuf', '<structure>')
    ARRAY JOIN resource_spans … ARRAY JOIN scope_spans … ARRAY JOIN spans

with the message schema (``schema/otlp_trace.proto``) passed as a setting,
so the per-span work — ids to hex, attribute values to strings, resource and
scope onto every span — runs in the engine's vectorized C++ instead of a
Python loop per attribute (measured: about 50 µs a span with 20 attributes,
holding the GIL — more than the engine's whole insert).

The rows are the ones :func:`collector.otlp.traces_to_rows` makes — the same
rendering of attribute values as the contrib exporter's ``AsString`` — and a
test holds the two paths equal. Where SQL cannot render a span exactly as the
Python converter does (an array nested in an array, a double that ClickHouse
would print with an exponent, a map with a repeated key, a JSON string with
U+2028), the statement stops before it writes anything (``throwIf`` on the
batch's one block) and the batch is converted in Python instead, with the
same deduplication token. A ClickHouse server cannot read the writer's files,
so for a server the batch is converted in Python too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from collector.otlp import TRACES_TABLE, Limits, traces_to_rows
from collector.store import Store, StoreError

__all__ = [
    "INPUT_BLOCK_BYTES",
    "TRACE_COLUMNS",
    "engine_settings",
    "insert_traces",
    "python_rows",
    "remove_batch_files",
    "select_sql",
    "varint",
]

log = logging.getLogger(__name__)

# Marks the error that sends a batch to the Python converter.
FALLBACK_MARK: Final = "revtrace: batch needs the Python converter"

# The batch file handed to the engine: <workdir>/.flatten-<pid>-<uuid>.pb
_BATCH_FILE_PREFIX: Final = ".flatten-"

TRACE_COLUMNS: Final = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

# The oneof presence column (input_format_protobuf_oneof_presence): which
# member of AnyValue.value was on the wire, by field number.
_ONEOF: Final = (
    "Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, "
    "'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7)"
)
_INNER: Final = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
    f"array_value String, kvlist_value String, bytes_value String, value {_ONEOF})"
)
_VALUE: Final = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
    f"array_value Tuple(values Array({_INNER})), "
    f"kvlist_value Tuple(values Array(Tuple(key String, value {_INNER}))), "
    f"bytes_value String, value {_ONEOF})"
)
_ATTRS: Final = f"Array(Tuple(key String, value {_VALUE}))"
STRUCTURE: Final = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_ATTRS}), "
    "scope_spans Array(Tuple(scope Tuple(name String, version String), "
    "spans Array(Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, "
    "name String, kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {_ATTRS}, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {_ATTRS})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {_ATTRS})), "
    "status Tuple(message String, code Int32)))))))"
)

# A value SQL cannot render exactly as the Python converter does. Valid UTF-8
# (protobuf strings are checked on the way in) never holds byte 0xFF.
_UNSAFE: Final = "'\\xFF'"


# Characters ClickHouse escapes differently from orjson in a JSON string:
# U+2028 and U+2029 (escaped, orjson keeps them), and controls whose \\u00XX
# escape has a letter (ClickHouse writes it upper case, orjson lower case).
_JSON_ODD: Final = (
    "['\\xE2\\x80\\xA8', '\\xE2\\x80\\xA9', "
    + ", ".join(f"'\\x{c:02X}'" for c in (0x0B, 0x0E, 0x0F, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F))
    + "]"
)


def _json_string(text: str) -> str:
    return f"if(multiSearchAny({text}, {_JSON_ODD}), {_UNSAFE}, toJSONString({text}))"


def _inner_json(v: str) -> str:
    """An element of an array or key-value list as the JSON orjson writes for it."""
    d = f"{v}.double_value"
    s = f"{v}.string_value"
    return (
        f"multiIf({v}.value = 'string_value', "
        f"{_json_string(s)}, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', multiIf(isNaN({d}), '\"NaN\"', isInfinite({d}), if({d} > 0, '\"+Inf\"', '\"-Inf\"'), "
        # orjson writes 1e-06 and 1e+16 with an exponent, 100.0 with its .0.
        f"{d} = 0 OR (abs({d}) >= 1e-5 AND abs({d}) < 1e16), "
        f"if(position(toString({d}), '.') > 0, toString({d}), concat(toString({d}), '.0')), {_UNSAFE}), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'bytes_value', concat('\"', base64Encode({v}.bytes_value), '\"'), "
        f"{v}.value = 'none', 'null', {_UNSAFE})"
    )


def _value_string(v: str) -> str:
    """An attribute value as the contrib exporter's ``AsString`` renders it
    (byte 0xFF somewhere in it where SQL cannot render it exactly).

    Every sub-expression appears once: the statement is analysed on every
    insert, and its size is most of that cost.
    """
    d = f"{v}.double_value"
    pairs = f"{v}.kvlist_value.values"
    members = f"arrayMap(kv -> concat({_json_string('kv.key')}, ':', {_inner_json('kv.value')}), {pairs})"
    return (
        f"multiIf({v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', multiIf(isNaN({d}), 'NaN', isInfinite({d}), if({d} > 0, '+Inf', '-Inf'), "
        f"position(toString({d}), 'e') > 0, {_UNSAFE}, toString({d})), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), "
        f"{v}.value = 'array_value', "
        f"concat('[', arrayStringConcat(arrayMap(x -> {_inner_json('x')}, {v}.array_value.values), ','), ']'), "
        f"{v}.value = 'kvlist_value', concat(if(arrayUniq(arrayMap(kv -> kv.key, {pairs})) != length({pairs}), "
        f"{_UNSAFE}, ''), '{{', arrayStringConcat({members}, ','), '}}'), "
        "'')"
    )


def _attribute_map(a: str) -> str:
    """An attribute list as a map.

    String values are taken as they are; only the others (a few of a span's
    attributes) go through the rendering, which computes every branch of its
    multiIf. The map holds the string-valued attributes first, then the
    rest, each in request order — as :func:`collector.otlp.traces_to_rows` does.
    """
    strings = f"arrayFilter(kv -> kv.value.value = 'string_value', {a})"
    others = f"arrayFilter(kv -> kv.value.value != 'string_value', {a})"
    return (
        f"mapFromArrays(arrayConcat(arrayMap(kv -> kv.key, {strings}), arrayMap(kv -> kv.key, {others})), "
        f"arrayConcat(arrayMap(kv -> kv.value.string_value, {strings}), "
        f"arrayMap(kv -> {_value_string('kv.value')}, {others})))"
    )


def _map_unsafe(m: str) -> str:
    """True when a rendered map needs the Python converter: a value SQL could
    not render, or a repeated key (Python keeps the last value only)."""
    return f"(arrayExists(x -> position(x, {_UNSAFE}) > 0, mapValues({m})) OR arrayUniq(mapKeys({m})) != length({m}))"


def _hex_id(raw: str, size: int) -> str:
    """Optional id: empty or all zeros → '' (required ids were checked on the way in)."""
    return f"if({raw} = '' OR {raw} = repeat('\\0', {size}), '', lower(hex({raw})))"


@cache
def select_sql(source: str) -> str:
    """The SELECT of ``otel_traces`` rows from ``source`` (a table function
    reading ExportTraceServiceRequest messages in ``STRUCTURE``), with a last
    column ``unsafe``: the row needs the Python converter.

    ``unsafe`` is computed in an outer query from the finished columns: an
    expression naming an alias of the same SELECT has the aliased expression
    analysed again, which for the attribute maps costs a fifth of a second on
    every insert."""
    unsafe = (
        f"resource_unsafe OR {_map_unsafe('SpanAttributes')} "
        f"OR arrayExists(m -> {_map_unsafe('m')}, arrayConcat(`Events.Attributes`, `Links.Attributes`))"
    )
    columns = ", ".join(f"`{c}`" for c in TRACE_COLUMNS)
    return f"SELECT {columns}, {unsafe} AS unsafe FROM ({_rows_sql(source)})"  # noqa: S608 - no input


def _rows_sql(source: str) -> str:
    kinds = "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']"
    codes = "['Unset', 'Ok', 'Error']"
    return f"""
SELECT
    fromUnixTimestamp64Nano(toInt64(s.start_time_unix_nano), 'UTC') AS Timestamp,
    lower(hex(s.trace_id)) AS TraceId,
    lower(hex(s.span_id)) AS SpanId,
    {_hex_id("s.parent_span_id", 8)} AS ParentSpanId,
    s.trace_state AS TraceState,
    s.name AS SpanName,
    if(s.kind >= 0 AND s.kind < 6, arrayElement({kinds}, s.kind + 1), 'Unspecified') AS SpanKind,
    resource_attributes['service.name'] AS ServiceName,
    resource_attributes AS ResourceAttributes,
    scope_name AS ScopeName,
    scope_version AS ScopeVersion,
    {_attribute_map("s.attributes")} AS SpanAttributes,
    if(s.end_time_unix_nano > s.start_time_unix_nano, s.end_time_unix_nano - s.start_time_unix_nano, 0) AS Duration,
    if(s.status.code >= 0 AND s.status.code < 3, arrayElement({codes}, s.status.code + 1), 'Unset') AS StatusCode,
    s.status.message AS StatusMessage,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano), 'UTC'), s.events) AS `Events.Timestamp`,
    arrayMap(e -> e.name, s.events) AS `Events.Name`,
    arrayMap(x -> {_attribute_map("x.attributes")}, s.events) AS `Events.Attributes`,
    arrayMap(l -> {_hex_id("l.trace_id", 16)}, s.links) AS `Links.TraceId`,
    arrayMap(l -> {_hex_id("l.span_id", 8)}, s.links) AS `Links.SpanId`,
    arrayMap(l -> l.trace_state, s.links) AS `Links.TraceState`,
    arrayMap(x -> {_attribute_map("x.attributes")}, s.links) AS `Links.Attributes`,
    resource_unsafe
FROM
(
    -- Only small columns may be repeated per span: ARRAY JOIN copies every
    -- other column onto each row it makes, and a scope's or a resource's
    -- whole tuple holds all of its spans.
    SELECT resource_attributes, resource_unsafe, ss.scope.name AS scope_name, ss.scope.version AS scope_version,
        ss.spans AS spans
    FROM
    (
        SELECT rs.scope_spans AS scopes, {_attribute_map("rs.resource.attributes")} AS resource_attributes,
            {_map_unsafe("resource_attributes")} AS resource_unsafe
        FROM {source}
        ARRAY JOIN resource_spans AS rs
    )
    ARRAY JOIN scopes AS ss
)
ARRAY JOIN spans AS s
"""  # noqa: S608 - built from constants; the file path and structure are bound parameters


@cache
def _insert_sql(source: str) -> str:
    # throwIf rides on one column (it returns 0): a WHERE around the SELECT
    # would cost a third of a second of query analysis on every insert.
    columns = ", ".join(
        f"Duration + throwIf(unsafe, '{FALLBACK_MARK}')" if c == "Duration" else f"`{c}`"
        for c in TRACE_COLUMNS
    )
    names = ", ".join(f"`{c}`" for c in TRACE_COLUMNS)
    return f"INSERT INTO {TRACES_TABLE} ({names}) SELECT {columns} FROM ({select_sql(source)})"  # noqa: S608


@cache
def _schema_path() -> str:
    # A file, not format_schema_source='string': chDB caches a schema given
    # as a string in a __cache__ directory under the working directory.
    path = Path(str(files("collector.schema") / "otlp_trace.proto"))
    if not path.is_file():  # pragma: no cover - only for a zipped install
        raise FileNotFoundError(f"the OTLP schema is not a file on disk: {path}")
    return str(path.resolve())


# The engine parses the batch file in blocks of about this much data (the
# parsed messages are the statement's largest transient memory); the blocks
# are squashed back into one before anything is written.
INPUT_BLOCK_BYTES: Final = 16 << 20


def engine_settings(block_bytes: int = INPUT_BLOCK_BYTES) -> dict[str, Any]:
    """Settings that let the engine read the messages."""
    return {
        "format_schema": f"{_schema_path()}:ExportTraceServiceRequest",
        "input_format_protobuf_oneof_presence": 1,
        "output_format_json_escape_forward_slashes": 0,
        # Parsed in blocks of ``block_bytes`` (memory)...
        "max_block_size": 1_000_000,
        "input_format_max_block_size_bytes": block_bytes,
        # ...written as one block, only after the last was flattened: throwIf
        # (a value SQL cannot render) stops the statement before anything is
        # written, and the batch is one part with one deduplication token.
        "max_insert_block_size": 100_000_000,
        "min_insert_block_size_rows": 100_000_000,
        "min_insert_block_size_bytes": 1 << 40,
        # Computing every branch of multiIf over the whole block is cheaper
        # here than masking rows per branch (measured: 1.8x).
        "short_circuit_function_evaluation": "disable",
    }


def varint(value: int) -> bytes:
    """Protobuf base-128 varint (the length prefix of delimited messages)."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_PERMISSIVE: Final = Limits(
    max_attributes=2**31, max_attribute_bytes=2**62, max_events=2**31, max_links=2**31
)


def python_rows(messages: Sequence[bytes]) -> tuple[bytes, int]:
    """The batch as ``otel_traces`` JSON lines, converted in Python (and the row count).

    The spans were screened on the way in, so nothing is rejected here.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    lines: list[bytes] = []
    for payload in messages:
        request = ExportTraceServiceRequest()
        request.ParseFromString(payload)
        lines.extend(traces_to_rows(request, _PERMISSIVE).rows.get(TRACES_TABLE, ()))
    return b"\n".join(lines), len(lines)


def insert_traces(
    store: Store,
    messages: Sequence[bytes],
    settings: dict[str, Any],
    workdir: Path,
    *,
    engine: bool = True,
    block_bytes: int = INPUT_BLOCK_BYTES,
) -> str:
    """Insert the spans of ``messages`` (serialized ExportTraceServiceRequest)
    into ``otel_traces``; ``settings`` carry the deduplication token.
    ``engine=False`` converts in Python (as for a server store);
    ``block_bytes`` is the engine's parsing block (see :func:`engine_settings`).

    Returns which path wrote them: ``"engine"`` or ``"python"``.
    """
    if not messages:
        return "engine"
    if engine and store.config.kind == "embedded":
        path = workdir / f"{_BATCH_FILE_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.pb"
        try:
            try:
                with open(path, "wb") as handle:
                    for payload in messages:
                        handle.write(varint(len(payload)))
                        handle.write(payload)
            except OSError as exc:
                # A full disk must not stop the writer (writing is what frees it).
                log.warning("cannot write the batch file for the engine (%s); converting in Python", exc)
                return _python_insert(store, messages, settings)
            source = "file({path:String}, 'Protobuf', {structure:String})"
            try:
                store.command(
                    _insert_sql(source),
                    {"path": str(path), "structure": STRUCTURE},
                    settings={**engine_settings(block_bytes), **settings},
                )
                return "engine"
            except StoreError as exc:
                if FALLBACK_MARK not in str(exc):
                    raise
                log.debug("batch has values only the Python converter renders exactly; converting in Python")
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    return _python_insert(store, messages, settings)


def remove_batch_files(workdir: Path) -> int:
    """Delete the batch files left in ``workdir`` by a writer that was killed
    mid-insert (each up to a batch's size); returns how many."""
    removed = 0
    for path in workdir.glob(f"{_BATCH_FILE_PREFIX}*.pb"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    if removed:
        log.info("removed %d batch file(s) left by an earlier writer in %s", removed, workdir)
    return removed


def _python_insert(store: Store, messages: Sequence[bytes], settings: dict[str, Any]) -> str:
    data, count = python_rows(messages)
    if count:
        store.insert_raw(TRACES_TABLE, data, fmt="JSONEachRow", settings=settings)
    return "python"
