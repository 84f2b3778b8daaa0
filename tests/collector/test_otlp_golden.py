"""Golden OTLP payloads → expected rows, for protobuf and OTLP/JSON alike.

``in-*.json`` are OTLP/JSON requests (hex ids, as the specification writes
them); ``out-*.json`` the rows revtrace writes. Regenerate after an intended
change with ``REVTRACE_REGEN_GOLDEN=1 pytest tests/collector/test_otlp_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.otlp import decode_metrics, decode_traces, metrics_to_rows, traces_to_rows
from collector.store import Store

DATA = Path(__file__).parent / "testdata"
REGEN = os.environ.get("REVTRACE_REGEN_GOLDEN") == "1"


def _golden(name: str, actual: Any) -> None:
    path = DATA / name
    if REGEN or not path.exists():
        path.write_text(json.dumps(actual, indent=2, sort_keys=True, default=str) + "\n")
    expected = json.loads(path.read_text())
    assert json.loads(json.dumps(actual, sort_keys=True, default=str)) == expected


def _rows(batch_rows: dict[str, list[bytes]]) -> dict[str, list[dict[str, Any]]]:
    return {table: [orjson.loads(r) for r in rows] for table, rows in sorted(batch_rows.items())}


def test_traces_json_and_protobuf_give_the_golden_rows() -> None:
    body = (DATA / "in-traces.json").read_bytes()
    from_json = decode_traces(body, "application/json")
    # The hex ids were decoded as ids, not as base64 text.
    span = from_json.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    from_proto = decode_traces(from_json.SerializeToString(), "application/x-protobuf")
    json_batch = traces_to_rows(from_json)
    proto_batch = traces_to_rows(from_proto)
    assert json_batch.rows == proto_batch.rows
    assert (json_batch.accepted, json_batch.rejected) == (2, 0)
    _golden("out-traces.json", _rows(json_batch.rows))


def test_attribute_values_are_stringified_like_the_contrib_exporter() -> None:
    batch = traces_to_rows(decode_traces((DATA / "in-traces.json").read_bytes(), "application/json"))
    attrs = orjson.loads(batch.rows["otel_traces"][0])["SpanAttributes"]
    assert attrs["biz.amount"] == "1200"  # doubles without a trailing .0
    assert attrs["ratio"] == "0.125"
    assert attrs["biz.attempt"] == "2"
    assert attrs["retryable"] == "true"
    assert attrs["blob"] == "AAEC"  # bytes as base64
    assert json.loads(attrs["biz.object.refs"]) == [
        "crm:opportunity/006Dn00000A1b2CIAR",
        "billing:subscription/sub_1PzX2kLkdIwHu7ix",
    ]
    assert json.loads(attrs["nested"]) == {"a": 1}


def test_metrics_json_and_protobuf_give_the_golden_rows() -> None:
    body = (DATA / "in-metrics.json").read_bytes()
    from_json = decode_metrics(body, "application/json")
    from_proto = decode_metrics(from_json.SerializeToString(), "application/x-protobuf")
    json_batch = metrics_to_rows(from_json)
    assert json_batch.rows == metrics_to_rows(from_proto).rows
    assert json_batch.accepted == 5
    assert sorted(json_batch.rows) == [
        "otel_metrics_exponential_histogram",
        "otel_metrics_gauge",
        "otel_metrics_histogram",
        "otel_metrics_sum",
        "otel_metrics_summary",
    ]
    _golden("out-metrics.json", _rows(json_batch.rows))


@pytest.mark.parametrize("name", ["traces", "metrics"])
def test_golden_rows_load_into_the_real_schema(store: Store, name: str) -> None:
    body = (DATA / f"in-{name}.json").read_bytes()
    batch = (
        traces_to_rows(decode_traces(body, "application/json"))
        if name == "traces"
        else metrics_to_rows(decode_metrics(body, "application/json"))
    )
    for table in batch.rows:
        store.insert_raw(table, batch.payload(table))
        assert store.query(f"SELECT count() FROM {table}").scalar() == len(batch.rows[table])


def test_business_views_fill_from_otel_traces(store: Store) -> None:
    batch = traces_to_rows(decode_traces((DATA / "in-traces.json").read_bytes(), "application/json"))
    store.insert_raw("otel_traces", batch.payload("otel_traces"))
    rows = store.query(
        "SELECT CorrelationId, Process, Stage, System, Vendor, ObjectType, ObjectId, ObjectRefs, LegalEntity,"
        " toString(Amount), Currency, Attempt, IdempotencyKey, Outcome, ErrorCategory, ErrorCode,"
        " HttpStatusCode, StatusCode, StatusMessage, Duration, PayloadCount, SpanKind"
        " FROM revtrace_spans"
    ).dicts()
    # Only the business span (it has a correlation id) is in the business view.
    _golden("out-business-spans.json", rows)
    refs = store.query("SELECT Ref, CorrelationId FROM revtrace_object_refs ORDER BY Ref").rows
    assert refs == [
        ("billing:invoice/in_1PzX2kLkdIwHu7ix", "q2c-0001"),
        ("billing:subscription/sub_1PzX2kLkdIwHu7ix", "q2c-0001"),
        ("crm:opportunity/006Dn00000A1b2CIAR", "q2c-0001"),
    ]
    summary = store.query(
        "SELECT CorrelationId, sum(Spans), sum(FailedSpans), groupUniqArrayArray(Stages), max(Process)"
        " FROM revtrace_correlations GROUP BY CorrelationId"
    ).rows
    assert summary == [("q2c-0001", 1, 1, ["billing.invoice.create"], "quote_to_cash")]


@pytest.mark.parametrize("nanos", [0, 1, 5_000_000_001, 999_999_999_500_000_000, 2**63 - 1])
def test_any_representable_timestamp_loads_into_the_store(store: Store, nanos: int) -> None:
    """Gauges commonly have start time 0; early Unix times must not read as dates."""
    document = json.loads((DATA / "in-metrics.json").read_text())
    point = document["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0]
    point["startTimeUnixNano"] = str(nanos)
    point["timeUnixNano"] = str(nanos)
    batch = metrics_to_rows(decode_metrics(json.dumps(document).encode(), "application/json"))
    store.insert_raw("otel_metrics_gauge", batch.payload("otel_metrics_gauge"))
    stored = store.query("SELECT toUnixTimestamp64Nano(TimeUnix) FROM otel_metrics_gauge").scalar()
    assert stored == nanos
