"""OTLP/HTTP load generator: ``python -m bench.loadgen URL SECONDS [SPANS_PER_REQUEST]``.

Sends protobuf export requests of business spans with 20 attributes each, as
fast as the collector accepts them, for SECONDS; every request carries a fresh
trace id so no span repeats. Prints one JSON line: requests, spans accepted,
backpressure answers (429/503), errors.

Building spans with the SDK costs more than sending them, so one request body
is built once and each send swaps its trace id (a 16-byte needle replaced in
the serialized bytes).
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tracer import semconv

NEEDLE = b"\xa5\x5a" * 8  # the template trace id, replaced per request


def template(spans: int) -> bytes:
    """One export request of ``spans`` business spans with 20 attributes each."""
    now = time.time_ns()
    scope = ScopeSpans()
    for i in range(spans):
        attrs = {
            semconv.BIZ_CORRELATION_ID: f"bench-{i % 97}",
            semconv.BIZ_PROCESS: "quote_to_cash",
            semconv.BIZ_STAGE: semconv.CANONICAL_STAGES[i % 7],
            semconv.BIZ_SYSTEM_VENDOR: "stripe",
            semconv.BIZ_OBJECT_ID: f"in_{i:08d}",
            semconv.BIZ_LEGAL_ENTITY: "ACME-DE",
            semconv.BIZ_CURRENCY: "EUR",
            semconv.BIZ_IDEMPOTENCY_KEY: f"idem-{i}",
            semconv.BIZ_OUTCOME: "ok",
            "http.request.method": "POST",
            "url.full": "https://api.stripe.test/v1/invoices",
            "server.address": "api.stripe.test",
            "net.peer.name": "api.stripe.test",
            "biz.region": "emea",
            "tenant": "acme",
            "deployment": "bench",
        }
        kv = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]
        kv.append(KeyValue(key=semconv.BIZ_AMOUNT, value=AnyValue(double_value=100.0 + i)))
        kv.append(KeyValue(key=semconv.BIZ_ATTEMPT, value=AnyValue(int_value=1)))
        kv.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=200)))
        kv.append(KeyValue(key="retryable", value=AnyValue(bool_value=False)))
        scope.spans.append(
            Span(
                trace_id=NEEDLE,
                span_id=(i + 1).to_bytes(8, "big"),
                name=semconv.CANONICAL_STAGES[i % 7],
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 250_000,
                attributes=kv,
            )
        )
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])])
    request.resource_spans[0].resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="bench-engine"))
    )
    return bytes(request.SerializeToString())


def run(url: str, seconds: float, spans_per_request: int = 1000) -> dict[str, int]:
    """Send for ``seconds``; return the counters."""
    body = template(spans_per_request)
    assert body.count(NEEDLE) == spans_per_request
    counts = {"requests": 0, "spans": 0, "backpressure": 0, "errors": 0}
    headers = {"content-type": "application/x-protobuf"}
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            payload = body.replace(NEEDLE, os.urandom(16))
            try:
                response = client.post(url, content=payload, headers=headers)
            except httpx.HTTPError:
                counts["errors"] += 1
                time.sleep(0.05)
                continue
            counts["requests"] += 1
            if response.status_code == 200:
                counts["spans"] += spans_per_request
            elif response.status_code in (429, 503):
                counts["backpressure"] += 1
                time.sleep(float(response.headers.get("retry-after", "1")) / 10)
            else:
                counts["errors"] += 1
    return counts


if __name__ == "__main__":
    target, duration = sys.argv[1], float(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    print(json.dumps(run(target, duration, size)), flush=True)
