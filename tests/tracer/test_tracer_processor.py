"""No silent loss: every span the batch processor cannot deliver is counted,
logged (rate-limited) and visible as a metric."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import tracer
from tests.tracer.conftest import Captured
from tracer._log import RateLimitedLog
from tracer._processor import AccountingBatchSpanProcessor
from tracer.semconv import METRIC_QUEUE_CAPACITY, METRIC_SPANS_DROPPED, METRIC_SPANS_EXPORTED


class GatedExporter(SpanExporter):
    """Blocks in export until released, so the queue can be filled on purpose."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.result = result
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.release.wait(10)
        self.exported.extend(spans)
        return self.result

    def shutdown(self) -> None:
        self.release.set()


class FailingExporter(SpanExporter):
    def __init__(self, raise_: bool) -> None:
        self.raise_ = raise_

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.raise_:
            raise OSError("collector unreachable")
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def _emit(provider: TracerProvider, count: int) -> None:
    for i in range(count):
        provider.get_tracer("t").start_span(f"s{i}").end()


def test_queue_full_drops_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracer._processor._drop_log", RateLimitedLog(interval=10.0))
    exporter = GatedExporter()
    processor = AccountingBatchSpanProcessor(
        exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    before = tracer.export_stats()
    with caplog.at_level(logging.WARNING, logger="tracer"):
        _emit(provider, 2)  # a full batch wakes the worker, which blocks in export holding it
        assert exporter.entered.wait(10)
        _emit(provider, 4)  # fills the queue
        assert processor.queue_length == 4
        _emit(provider, 3)  # no room
    after = tracer.export_stats()
    assert after.dropped_queue_full - before.dropped_queue_full == 3
    assert tracer.dropped_spans() - before.dropped == 3
    drop_lines = [r for r in caplog.records if "queue_full" in r.getMessage()]
    assert len(drop_lines) == 1  # rate-limited: one line for the burst
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in drop_lines[0].getMessage()
    exporter.release.set()
    assert processor.force_flush(10_000)
    assert len(exporter.exported) == 6
    assert tracer.export_stats().exported - before.exported == 6
    provider.shutdown()


@pytest.mark.parametrize("raise_", [False, True])
def test_failed_exports_are_counted(raise_: bool) -> None:
    processor = AccountingBatchSpanProcessor(
        FailingExporter(raise_), max_queue_size=100, max_export_batch_size=10, schedule_delay_millis=60_000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    before = tracer.export_stats()
    _emit(provider, 5)
    processor.force_flush()
    after = tracer.export_stats()
    assert after.dropped_export_failed - before.dropped_export_failed == 5
    assert after.exported == before.exported
    provider.shutdown()


def test_spans_after_shutdown_are_counted() -> None:
    processor = AccountingBatchSpanProcessor(
        GatedExporter(), max_queue_size=10, max_export_batch_size=5, schedule_delay_millis=60_000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("late")
    processor.shutdown()
    before = tracer.export_stats()
    span.end()
    assert tracer.export_stats().dropped_shutdown - before.dropped_shutdown == 1
    assert processor.force_flush() is False


def test_invalid_processor_settings() -> None:
    with pytest.raises(ValueError, match="max_export_batch_size"):
        AccountingBatchSpanProcessor(GatedExporter(), max_queue_size=4, max_export_batch_size=8)
    with pytest.raises(ValueError, match="max_queue_size"):
        AccountingBatchSpanProcessor(GatedExporter(), max_queue_size=0)


def test_rate_limited_log_counts_what_it_suppresses(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = RateLimitedLog(interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tracer"):
        assert log.log("k", logging.WARNING, "dropped %d", 1)
        assert not log.log("k", logging.WARNING, "dropped %d", 2)
        assert not log.log("k", logging.WARNING, "dropped %d", 3)
        assert log.log("other", logging.WARNING, "other key")
        now[0] += 10.5
        assert log.log("k", logging.WARNING, "dropped %d", 4)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["dropped 1", "other key", "dropped 4 (2 similar lines suppressed)"]


def _metric_points(captured: Captured) -> dict[str, list[tuple[dict[str, object], float]]]:
    data = captured.metrics.get_metrics_data()
    points: dict[str, list[tuple[dict[str, object], float]]] = {}
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points.setdefault(metric.name, []).append((dict(point.attributes or {}), point.value))
    return points


def test_drop_and_export_counts_are_metrics(captured: Captured) -> None:
    with tracer.business_span("billing.invoice.create"):
        pass
    captured.spans()
    points = _metric_points(captured)
    stats = tracer.export_stats()
    dropped = {attrs["error.type"]: value for attrs, value in points[METRIC_SPANS_DROPPED]}
    assert dropped == {
        "queue_full": stats.dropped_queue_full,
        "export_failed": stats.dropped_export_failed,
        "already_shutdown": stats.dropped_shutdown,
    }
    assert points[METRIC_SPANS_EXPORTED] == [({}, stats.exported)]
    assert stats.exported >= 1
    assert points[METRIC_QUEUE_CAPACITY] == [({}, 2048)]
