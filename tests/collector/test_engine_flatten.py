"""The engine's flattening of OTLP protobuf (collector/engine_flatten.py) writes
the rows the Python converter writes — for golden payloads, for every kind of
attribute value, and for whatever hypothesis makes up — and falls back to the
Python converter for what SQL cannot render exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector.engine_flatten import insert_traces, python_rows
from collector.otlp import Limits, decode_traces, screen_traces, traces_to_rows
from collector.store import Store

DATA = Path(__file__).parent / "testdata"
NO_DEDUP = {"insert_deduplicate": 0}


def _rows(store: Store) -> list[str]:
    return sorted(repr(row) for row in store.query("SELECT * FROM otel_traces").rows)


def _both_paths(
    store: Store, request: ExportTraceServiceRequest, tmp_path: Path
) -> tuple[str, list[str], list[str]]:
    """Insert ``request`` through the engine, then through Python; (path taken, engine rows, python rows)."""
    payload = request.SerializeToString()
    store.command("TRUNCATE TABLE otel_traces")
    path = insert_traces(store, [payload, payload], dict(NO_DEDUP), tmp_path)
    engine = _rows(store)
    store.command("TRUNCATE TABLE otel_traces")
    data, count = python_rows([payload, payload])
    if count:
        store.insert_raw("otel_traces", data, settings=dict(NO_DEDUP))
    python = _rows(store)
    return path, engine, python


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request(spans: list[Span], resource: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    rs.scope_spans[0].scope.name = "tests"
    rs.scope_spans[0].scope.version = "1.0"
    rs.resource.attributes.extend(resource or [_kv("service.name", AnyValue(string_value="svc"))])
    return ExportTraceServiceRequest(resource_spans=[rs])


def _span(attributes: list[KeyValue], n: int = 1, **extra: Any) -> Span:
    fields: dict[str, Any] = {
        "name": "billing.invoice.create",
        "kind": Span.SPAN_KIND_CLIENT,
        "start_time_unix_nano": 1_780_000_000_123_456_789,
        "end_time_unix_nano": 1_780_000_000_223_456_789,
        **extra,
    }
    return Span(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), attributes=attributes, **fields)


def test_golden_payload_gives_the_golden_rows_through_the_engine(store: Store, tmp_path: Path) -> None:
    request = decode_traces((DATA / "in-traces.json").read_bytes(), "application/json")
    path, engine, python = _both_paths(store, request, tmp_path)
    assert path == "engine"
    assert engine == python
    assert len(engine) == 2 * traces_to_rows(request).accepted


def test_every_kind_of_value_renders_as_the_python_converter_does(store: Store, tmp_path: Path) -> None:
    values = [
        _kv("s", AnyValue(string_value='quote " back\\ slash / é € 😀 \n\t\x01')),
        _kv("empty", AnyValue(string_value="")),
        _kv("unset", AnyValue()),
        _kv("i", AnyValue(int_value=-(2**63))),
        _kv("d", AnyValue(double_value=0.125)),
        _kv("d_int", AnyValue(double_value=1200.0)),
        _kv("d_big", AnyValue(double_value=1e20)),
        _kv("d_neg0", AnyValue(double_value=-0.0)),
        _kv("nan", AnyValue(double_value=math.nan)),
        _kv("inf", AnyValue(double_value=-math.inf)),
        _kv("b", AnyValue(bool_value=True)),
        _kv("bytes", AnyValue(bytes_value=b"\x00\x01\xfe")),
        _kv(
            "array",
            AnyValue(
                array_value=ArrayValue(
                    values=[
                        AnyValue(string_value='a"/\x02'),
                        AnyValue(int_value=7),
                        AnyValue(double_value=100.0),
                        AnyValue(double_value=0.5),
                        AnyValue(double_value=math.inf),
                        AnyValue(bool_value=False),
                        AnyValue(bytes_value=b"xyz"),
                        AnyValue(),
                    ]
                )
            ),
        ),
        _kv(
            "map",
            AnyValue(
                kvlist_value=KeyValueList(
                    values=[_kv("k/1", AnyValue(string_value="v")), _kv("k2", AnyValue(double_value=2.0))]
                )
            ),
        ),
    ]
    span = _span(values, parent_span_id=b"\x00" * 8, status=Status(code=2, message="boom"))
    span.events.add(time_unix_nano=1_780_000_000_200_000_000, name="retry", attributes=values[:4])
    span.links.add(trace_id=b"\x00" * 16, span_id=b"\x09" * 8, trace_state="x=1", attributes=values[4:6])
    odd = _span([], n=2, kind=9)  # an unknown kind, no attributes
    odd.status.code = 7
    request = _request(
        [span, odd], [_kv("service.name", AnyValue(int_value=5)), _kv("r", AnyValue(bool_value=True))]
    )
    path, engine, python = _both_paths(store, request, tmp_path)
    assert path == "engine"
    assert engine == python


@pytest.mark.parametrize(
    "value",
    [
        AnyValue(
            array_value=ArrayValue(values=[AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))])
        ),
        AnyValue(double_value=1e-7),  # ClickHouse would write 1e-7, the exporter 0.0000001
        AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=1e16)])),  # orjson: 1e+16
        AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="line\u2028separator")])),
        AnyValue(kvlist_value=KeyValueList(values=[_kv("k", AnyValue()), _kv("k", AnyValue(int_value=1))])),
    ],
    ids=["nested array", "tiny double", "huge double in array", "U+2028 in JSON", "repeated map key"],
)
def test_what_sql_cannot_render_exactly_goes_to_the_python_converter(
    store: Store, tmp_path: Path, value: AnyValue
) -> None:
    request = _request([_span([_kv("plain", AnyValue(string_value="x")), _kv("odd", value)])])
    path, engine, python = _both_paths(store, request, tmp_path)
    assert path == "python"
    assert engine == python and len(engine) == 2


def test_a_repeated_attribute_key_keeps_the_last_value_either_way(store: Store, tmp_path: Path) -> None:
    request = _request(
        [_span([_kv("k", AnyValue(string_value="first")), _kv("k", AnyValue(string_value="last"))])]
    )
    path, engine, python = _both_paths(store, request, tmp_path)
    assert path == "python"
    assert engine == python
    assert store.query("SELECT SpanAttributes['k'] FROM otel_traces LIMIT 1").scalar() == "last"


def test_a_value_in_the_last_parsing_block_stops_the_batch_before_anything_is_written(
    store: Store, tmp_path: Path
) -> None:
    """The engine parses in blocks (memory) but writes one block at the end, so
    an unsafe value late in the batch leaves nothing written by the engine: the
    Python converter writes the batch once, as one part."""
    fine = [
        _request([_span([_kv("k", AnyValue(string_value=f"v{n}"))], n=n)]).SerializeToString()
        for n in range(1, 9)
    ]
    odd = _request([_span([_kv("k", AnyValue(double_value=1e-300))], n=9)]).SerializeToString()
    settings = {"insert_deduplicate": 1, "insert_deduplication_token": "late"}
    assert insert_traces(store, [*fine, odd], settings, tmp_path, block_bytes=1) == "python"
    assert store.query("SELECT count(), uniqExact(SpanId) FROM otel_traces").rows == [(9, 9)]
    parts = "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'otel_traces'"
    assert store.query(parts).scalar() == 1
    # Without the odd value, the same small blocks are flattened and written as one part too.
    assert insert_traces(store, fine, {"insert_deduplicate": 0}, tmp_path, block_bytes=1) == "engine"
    assert store.query("SELECT count() FROM otel_traces").scalar() == 17
    assert store.query(parts).scalar() == 2


def test_a_batch_file_that_cannot_be_written_goes_to_the_python_converter(
    store: Store, tmp_path: Path
) -> None:
    """A full (or missing) spool disk must not stop the writer: writing is what frees it."""
    request = _request([_span([_kv("plain", AnyValue(string_value="x"))])])
    missing = tmp_path / "gone"
    assert insert_traces(store, [request.SerializeToString()], {}, missing) == "python"
    assert store.query("SELECT count() FROM otel_traces").scalar() == 1


# --- made up by hypothesis -------------------------------------------------------------------

_scalars = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), st.text(max_size=12)),
    st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda d: AnyValue(double_value=d), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=8)),
    st.just(AnyValue()),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[_kv(k, v) for k, v in kvs])),
            st.lists(st.tuples(st.text(max_size=4), inner), max_size=3),
        ),
    ),
    max_leaves=6,
)
_attributes = st.lists(st.builds(_kv, st.text(max_size=6), _values), max_size=4)
_ids8 = st.sampled_from([b"", b"\x00" * 8, b"\x01\x02\x03\x04\x05\x06\x07\x08"])


@st.composite
def _requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    spans = []
    for n in range(draw(st.integers(1, 3))):
        start = draw(st.integers(1, 2**63 - 2))
        span = _span(
            draw(_attributes),
            n=n + 1,
            parent_span_id=draw(_ids8),
            trace_state=draw(st.text(max_size=4)),
            kind=draw(st.integers(-1, 7)),
            start_time_unix_nano=start,
            end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        )
        span.name = draw(st.text(max_size=8))
        span.status.code = draw(st.integers(-1, 4))
        span.status.message = draw(st.text(max_size=6))
        for _ in range(draw(st.integers(0, 2))):
            span.events.add(
                time_unix_nano=draw(st.integers(0, 2**63 - 1)),
                name=draw(st.text(max_size=5)),
                attributes=draw(_attributes),
            )
        for _ in range(draw(st.integers(0, 1))):
            span.links.add(
                trace_id=draw(st.sampled_from([b"", b"\x00" * 16, b"\x0a" * 16])),
                span_id=draw(_ids8),
                attributes=draw(_attributes),
            )
        spans.append(span)
    return _request(spans, draw(_attributes))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_requests())
def test_any_request_gives_the_same_rows_both_ways(
    store: Store, tmp_path: Path, request: ExportTraceServiceRequest
) -> None:
    limits = Limits(max_attributes=10_000)
    expected = traces_to_rows(request, limits)
    screened = screen_traces(request, limits)
    assert (screened.accepted, screened.rejected) == (expected.accepted, expected.rejected)
    restored = ExportTraceServiceRequest()
    restored.ParseFromString(screened.payload)
    _, engine, python = _both_paths(store, restored, tmp_path)
    assert engine == python
    assert len(engine) == 2 * expected.accepted
