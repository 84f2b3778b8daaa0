"""Bad input gets a clear 4xx, never takes the collector down, and loses none of
the valid data sent beside it."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.otlp import Limits
from collector.service import Collector, CollectorConfig
from collector.store import Store
from tests.collector.helpers import body_of, make_spans

PB = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
MAX_BODY = 1024 * 1024


@pytest.fixture
def small_collector(store: Store, tmp_path: Path) -> Iterator[Collector]:
    config = CollectorConfig(
        http_port=0,
        grpc_port=0,
        data_dir=tmp_path,
        max_body_bytes=MAX_BODY,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
        limits=Limits(max_attributes=128, max_attribute_bytes=64 * 1024),
    )
    with Collector(config, store=store) as c:
        yield c


def _message(response: httpx.Response) -> str:
    if response.headers["content-type"] == "application/json":
        return str(response.json()["message"])
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return str(status.message)


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.flush())
    return b"".join(parts)


def _with_attributes(count: int, value_size: int = 4) -> bytes:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body_of(make_spans(1, "absurd")))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(count):
        span.attributes.append(KeyValue(key=f"k{i}", value=AnyValue(string_value="x" * value_size)))
    return bytes(request.SerializeToString())


BAD_REQUESTS = [
    ("malformed protobuf", b"\x0a\xff\xff\xff\xff\x0f garbage", PB, 400, "malformed protobuf"),
    ("truncated protobuf", body_of(make_spans(3))[:-7], PB, 400, "malformed protobuf"),
    ("invalid JSON", b'{"resourceSpans": [', JSON, 400, "invalid JSON"),
    ("JSON that is not an object", b"[1, 2]", JSON, 400, "must be a JSON object"),
    (
        "JSON with a non-hex trace id",
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}).encode(),
        JSON,
        400,
        "traceId must be hex",
    ),
    (
        "JSON with a wrong field type",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
        JSON,
        400,
        "invalid OTLP/JSON",
    ),
    (
        "deeply nested JSON",
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
            + b'{"arrayValue": {"values": [' * 200
            + b"]}}" * 200
            + b"}]}}]}"
        ),
        JSON,
        400,
        "invalid",
    ),
    ("wrong content type", b"hello", {"content-type": "text/plain"}, 415, "unsupported content type"),
    ("unknown content encoding", b"x", {**PB, "content-encoding": "br"}, 415, "unsupported Content-Encoding"),
    (
        "truncated gzip",
        gzip.compress(body_of(make_spans(5)))[:-12],
        {**PB, "content-encoding": "gzip"},
        400,
        "truncated gzip",
    ),
    ("not gzip at all", b"plain bytes", {**PB, "content-encoding": "gzip"}, 400, "invalid gzip"),
    (
        "gzip bomb",
        _gzip_bomb(32 * 1024 * 1024),
        {**PB, "content-encoding": "gzip"},
        413,
        "after decompression",
    ),
    ("oversized body", b"\0" * (MAX_BODY + 1), PB, 413, "limit"),
    ("invalid UTF-8 in a string", bytes.fromhex("0a0a1208120662696c6c80ff"), PB, 400, "malformed protobuf"),
]


@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "needle"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_request_gets_a_clear_4xx(
    small_collector: Collector, case: str, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    response = httpx.post(
        f"{small_collector.http_endpoint}/v1/traces", content=body, headers=headers, timeout=30
    )
    assert response.status_code == status, (case, response.status_code, response.content[:200])
    assert needle in _message(response), _message(response)
    assert httpx.get(f"{small_collector.http_endpoint}/healthz").status_code == 200


def test_valid_data_beside_bad_requests_is_all_stored(small_collector: Collector, store: Store) -> None:
    url = f"{small_collector.http_endpoint}/v1/traces"
    sent = 0
    for index, (_, body, headers, _, _) in enumerate(BAD_REQUESTS):
        httpx.post(url, content=body, headers=headers, timeout=30)
        good = make_spans(3, f"good{index}")
        assert httpx.post(url, content=body_of(good), headers=PB).status_code == 200
        sent += 3
    assert small_collector.writer is not None and small_collector.writer.flush(20)
    assert store.query("SELECT count() FROM otel_traces").scalar() == sent
    assert store.query("SELECT countIf(CorrelationId LIKE 'good%') FROM revtrace_spans").scalar() == sent


def test_absurd_attribute_counts_and_lengths_are_rejected_per_span(
    small_collector: Collector, store: Store
) -> None:
    url = f"{small_collector.http_endpoint}/v1/traces"
    too_many = httpx.post(url, content=_with_attributes(5000), headers=PB)
    assert too_many.status_code == 200  # the request is valid OTLP: partial success
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    decoded = ExportTraceServiceResponse()
    decoded.ParseFromString(too_many.content)
    assert decoded.partial_success.rejected_spans == 1
    assert "attributes (limit 128)" in decoded.partial_success.error_message
    too_long = httpx.post(url, content=_with_attributes(1, value_size=200 * 1024), headers=PB)
    decoded.ParseFromString(too_long.content)
    assert decoded.partial_success.rejected_spans == 1
    assert "bytes (limit 65536 bytes)" in decoded.partial_success.error_message
    assert small_collector.ingest is not None
    assert small_collector.ingest.stats.rejected["traces"] == 2


def test_declared_oversize_is_refused_before_the_body_is_read(small_collector: Collector) -> None:
    import socket

    url = f"{small_collector.http_endpoint}/v1/traces"
    assert httpx.put(url, content=b"x", headers=PB).status_code == 405
    # A raw client that announces 10 MiB and sends 10 bytes: answered 413 at once.
    with socket.create_connection(("127.0.0.1", small_collector.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {MAX_BODY * 10}\r\n\r\n".encode()
            + b"0123456789"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_timestamps_past_2262_are_rejected_per_span_not_stored_as_poison(
    small_collector: Collector, store: Store
) -> None:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body_of(make_spans(2, "future")))
    request.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = 2**64 - 1
    request.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano = 2**63 + 5
    response = httpx.post(
        f"{small_collector.http_endpoint}/v1/traces", content=request.SerializeToString(), headers=PB
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    decoded = ExportTraceServiceResponse()
    decoded.ParseFromString(response.content)
    assert decoded.partial_success.rejected_spans == 1
    assert "DateTime64(9)" in decoded.partial_success.error_message
    assert small_collector.writer is not None and small_collector.writer.flush(20)
    assert store.query("SELECT count() FROM otel_traces").scalar() == 1
    assert small_collector.writer.stats.records_rejected == 0
