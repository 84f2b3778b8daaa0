"""Fuzzing the OTLP decoders and converters: whatever the bytes, the answer is
rows or a clear client error — never another exception, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ingest import BadRequest, IngestError, convert_request
from collector.otlp import TRACES_PROTOBUF, Limits, request_span_keys
from collector.writer import write_blocks
from tests.collector.helpers import body_of, make_spans
from tests.resilience.conftest import Figures

SEED_BODY = body_of(make_spans(3, "fuzz", attributes=3))
LIMITS = Limits(max_attributes=64, max_attribute_bytes=4096)
# The figures fixture only counts inputs; sharing it across examples is intended.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _convert(figures: Figures, body: bytes, content_type: str, signal: str = "traces") -> None:
    figures.add("inputs")
    try:
        converted = convert_request(signal, body, None, content_type, 1 << 20, LIMITS)  # type: ignore[arg-type]
    except IngestError as exc:
        assert exc.status in (400, 413, 415)
        assert str(exc)
        figures.add("rejected")
        return
    figures.add("accepted")
    # What converts is a traces request of exactly the accepted spans, or
    # loadable JSON lines for known tables.
    for table, count, payload in converted.blocks:
        if table == TRACES_PROTOBUF:
            assert len(request_span_keys(payload)) == count == converted.accepted
            continue
        assert table.startswith("otel_")
        lines = payload.split(b"\n")
        assert len(lines) == count
        for line in lines:
            json.loads(line)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_protobuf(figures: Figures, body: bytes) -> None:
    """Random bytes as OTLP protobuf traces and metrics."""
    _convert(figures, body, "application/x-protobuf")
    _convert(figures, body, "application/x-protobuf", "metrics")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SEED_BODY) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_valid_protobuf(figures: Figures, flips: list[tuple[int, int]]) -> None:
    """A valid request of three business spans with up to eight bytes changed."""
    body = bytearray(SEED_BODY)
    for position, value in flips:
        body[position] = value
    _convert(figures, bytes(body), "application/x-protobuf")


@FUZZ
@given(st.integers(0, len(SEED_BODY)))
def test_truncated_valid_protobuf(figures: Figures, cut: int) -> None:
    """A valid request cut at every possible length."""
    _convert(figures, SEED_BODY[:cut], "application/x-protobuf")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _otlp_like() -> st.SearchStrategy[dict[str, Any]]:
    # Mostly well-formed ids (so spans get as far as the store), sometimes not.
    hexes = st.one_of(
        st.binary(min_size=16, max_size=16).map(bytes.hex),
        st.binary(min_size=8, max_size=8).map(bytes.hex),
        st.text("0123456789abcdef", min_size=0, max_size=34),
    )
    attribute = st.fixed_dictionaries(
        {
            "key": st.text(max_size=12),
            "value": st.dictionaries(
                st.sampled_from(
                    [
                        "stringValue",
                        "intValue",
                        "doubleValue",
                        "boolValue",
                        "arrayValue",
                        "kvlistValue",
                        "bytesValue",
                    ]
                ),
                _json_values,
                max_size=2,
            ),
        }
    )
    span = st.fixed_dictionaries(
        {},
        optional={
            "traceId": hexes,
            "spanId": hexes,
            "parentSpanId": hexes,
            "name": _json_values,
            "kind": st.integers(-2, 9),
            "startTimeUnixNano": st.one_of(
                st.integers(0, 2**64 - 1),
                st.integers(0, 10**12),
                st.integers(-(2**63), 2**64),
                st.text(max_size=22),
            ),
            "endTimeUnixNano": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 10**10)),
            "attributes": st.lists(attribute, max_size=5),
            "events": st.lists(
                st.fixed_dictionaries(
                    {"name": st.text(max_size=8), "attributes": st.lists(attribute, max_size=3)}
                ),
                max_size=3,
            ),
            "links": st.lists(st.fixed_dictionaries({"traceId": hexes, "spanId": hexes}), max_size=2),
            "status": st.fixed_dictionaries(
                {}, optional={"code": st.integers(-1, 5), "message": _json_values}
            ),
        },
    )
    return st.fixed_dictionaries(
        {
            "resourceSpans": st.lists(
                st.fixed_dictionaries(
                    {
                        "scopeSpans": st.lists(
                            st.fixed_dictionaries({"spans": st.lists(span, max_size=3)}), max_size=2
                        )
                    }
                ),
                max_size=2,
            )
        }
    )


@FUZZ
@given(_otlp_like())
def test_otlp_shaped_json(figures: Figures, document: dict[str, Any]) -> None:
    """OTLP/JSON-shaped documents with random ids, kinds, times, attributes, events and links."""
    _convert(figures, json.dumps(document).encode(), "application/json")


@FUZZ
@given(_json_values)
def test_any_json(figures: Figures, document: Any) -> None:
    """Any JSON value as traces and metrics."""
    _convert(figures, json.dumps(document).encode(), "application/json")
    _convert(figures, json.dumps(document).encode(), "application/json", "metrics")


def test_a_fuzzed_rejection_names_the_problem() -> None:
    """A rejection found by fuzzing says what is wrong (malformed protobuf)."""
    try:
        convert_request(
            "traces", b"\x0a\x05\x0a\x03\xff\xfe", None, "application/x-protobuf", 1 << 20, LIMITS
        )
    except BadRequest as exc:
        assert "malformed protobuf" in str(exc)
    else:
        raise AssertionError("expected a BadRequest")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(_otlp_like())
def test_whatever_converts_is_accepted_by_the_store(
    store: Any, figures: Figures, tmp_path: Path, document: dict[str, Any]
) -> None:
    """No accepted request can turn into rows the store refuses (they would be set aside, unseen)."""
    figures.add("inputs")
    try:
        converted = convert_request(
            "traces", json.dumps(document).encode(), None, "application/json", 1 << 20, LIMITS
        )
    except IngestError:
        figures.add("rejected")
        return
    before = int(store.query("SELECT count() FROM otel_traces").scalar())
    # engine_min_spans=0: the engine flattens even this small batch (or hands it back to Python).
    write_blocks(store, converted.blocks, None, tmp_path, engine_min_spans=0)
    assert int(store.query("SELECT count() FROM otel_traces").scalar()) == before + converted.accepted
    figures.add("accepted")
