"""Fixtures for the tracer tests: a configured tracer exporting to the SDK's
in-memory exporter, reset after each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracer


class Captured:
    """What a test exported."""

    def __init__(self, exporter: InMemorySpanExporter, metrics: InMemoryMetricReader) -> None:
        self.exporter = exporter
        self.metrics = metrics

    def spans(self) -> list[ReadableSpan]:
        assert tracer.force_flush(5000)
        return list(self.exporter.get_finished_spans())

    def one(self, name: str | None = None) -> ReadableSpan:
        spans = [s for s in self.spans() if name is None or s.name == name]
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def attrs(self, name: str | None = None) -> dict[str, Any]:
        return dict(self.one(name).attributes or {})


@pytest.fixture
def captured() -> Iterator[Captured]:
    exporter = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    tracer.configure(
        "revtrace-tests",
        span_exporter=exporter,
        metric_readers=[metrics],
        set_global=False,
        schedule_delay_millis=60_000,  # tests flush explicitly
    )
    try:
        yield Captured(exporter, metrics)
    finally:
        tracer.shutdown()
        tracer.ref_index().clear()


@pytest.fixture(autouse=True)
def _unconfigured_after() -> Iterator[None]:
    yield
    tracer.shutdown()
    tracer.ref_index().clear()
