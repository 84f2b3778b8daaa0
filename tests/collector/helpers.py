"""Helpers for collector tests: real SDK spans and OTLP bodies."""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector.store import Store
from tracer import semconv


def make_spans(count: int, correlation_prefix: str = "c", attributes: int = 0) -> list[ReadableSpan]:
    """``count`` finished business spans made by the OpenTelemetry SDK."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-engine"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for i in range(count):
        with tracer.start_as_current_span(semconv.Stage.BILLING_INVOICE_CREATE) as span:
            span.set_attribute(semconv.BIZ_CORRELATION_ID, f"{correlation_prefix}-{i}")
            span.set_attribute(semconv.BIZ_STAGE, semconv.Stage.BILLING_INVOICE_CREATE)
            span.set_attribute(semconv.BIZ_AMOUNT, 10.5 + i)
            for j in range(attributes):
                span.set_attribute(f"extra.{j}", f"value-{i}-{j}")
    provider.shutdown()
    return list(exporter.get_finished_spans())


def body_of(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP protobuf body the SDK's exporters would send."""
    return bytes(encode_spans(spans).SerializeToString())


def wait_for_count(store: Store, sql: str, expected: int, timeout: float = 20.0) -> int:
    """Poll ``sql`` (a count) until it reaches ``expected`` or the timeout passes."""
    deadline = time.monotonic() + timeout
    value = -1
    while time.monotonic() < deadline:
        value = int(store.query(sql).scalar())
        if value >= expected:
            return value
        time.sleep(0.1)
    return value
