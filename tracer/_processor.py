"""A batch span processor that never loses a span silently.

OpenTelemetry's ``BatchSpanProcessor`` drops spans with one log line when its
queue is full and gives no count of batches its exporter gave up on. This
processor has the same settings (``OTEL_BSP_*``) and the same shape (a bounded
queue drained by one worker thread in batches) and counts every span's fate:
exported, dropped because the queue was full, dropped because the export
failed, dropped because it ended after shutdown. The counts are process-wide
(:func:`tracer.export_stats`), exposed as metrics by :mod:`tracer._config` and
reported by a rate-limited warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracer._log import RateLimitedLog
from tracer._stats import register_queue, span_stats, unregister_queue
from tracer.semconv import DropReason

__all__ = ["AccountingBatchSpanProcessor"]


_drop_log = RateLimitedLog(interval=10.0)
_logger = logging.getLogger("tracer")


class AccountingBatchSpanProcessor(SpanProcessor):
    """Batches ended spans to ``exporter`` from one worker thread and counts
    every span it cannot deliver (see :class:`ExportStats`).

    The worker exports when ``max_export_batch_size`` spans are waiting or
    ``schedule_delay_millis`` has passed, whichever comes first. ``on_end`` never
    blocks on the exporter: a full queue drops the span (counted, logged at most
    every ten seconds) instead of slowing the business call.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        schedule_delay_millis: float = 5000,
        max_export_batch_size: int = 512,
        export_timeout_millis: float = 30000,
    ) -> None:
        if max_queue_size <= 0:
            raise ValueError(f"max_queue_size: must be positive, got {max_queue_size}")
        if max_export_batch_size <= 0 or max_export_batch_size > max_queue_size:
            raise ValueError(
                f"max_export_batch_size: must be in [1, max_queue_size={max_queue_size}], "
                f"got {max_export_batch_size}"
            )
        if schedule_delay_millis <= 0:
            raise ValueError(f"schedule_delay_millis: must be positive, got {schedule_delay_millis}")
        self._exporter = exporter
        self.max_queue_size = max_queue_size
        self._delay = schedule_delay_millis / 1000
        self._batch_size = max_export_batch_size
        self._export_timeout = export_timeout_millis / 1000
        self._queue: deque[ReadableSpan] = deque()
        self._queue_lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._shutdown = False
        self._pid = os.getpid()
        self._worker = self._start_worker()
        register_queue(self)

    @property
    def queue_length(self) -> int:
        """Spans waiting to be exported."""
        return len(self._queue)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name="revtrace-span-export", daemon=True)
        worker.start()
        return worker

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span, or count it as dropped. Never raises, never blocks
        on export."""
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._shutdown:
            self._dropped(DropReason.SHUTDOWN, 1)
            return
        if self._pid != os.getpid():  # forked: the worker thread did not survive
            self._after_fork()
        wake = False
        with self._queue_lock:
            full = len(self._queue) >= self.max_queue_size
            if not full:
                self._queue.append(span)
                wake = len(self._queue) >= self._batch_size
        if full:
            self._dropped(DropReason.QUEUE_FULL, 1)
        elif wake:
            self._wake.set()

    def _after_fork(self) -> None:
        with self._queue_lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._queue.clear()
            self._export_lock = threading.Lock()
            self._wake = threading.Event()
            self._worker = self._start_worker()

    def _dropped(self, reason: DropReason, count: int) -> None:
        span_stats.add_dropped(reason, count)
        total = sum(span_stats.dropped.values())
        _drop_log.log(
            f"drop:{reason}",
            logging.WARNING,
            "revtrace tracer dropped %d span(s): %s (%d dropped since start). %s",
            count,
            reason.value,
            total,
            _GUIDANCE[reason],
        )

    def _run(self) -> None:
        while not self._shutdown:
            self._wake.wait(self._delay)
            self._wake.clear()
            if self._shutdown:
                break
            self._export_available()

    def _take_batch(self) -> list[ReadableSpan]:
        with self._queue_lock:
            count = min(self._batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _export_available(self, deadline: float | None = None) -> bool:
        """Export everything queued now, in batches. False if ``deadline``
        (monotonic seconds) passed before the queue was empty."""
        with self._export_lock:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    return False
                batch = self._take_batch()
                if not batch:
                    return True
                self._export(batch)

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        try:
            result = self._exporter.export(batch)
        except Exception as exc:  # an exporter must not raise, but if it does we count it
            _logger.debug("span exporter raised", exc_info=exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            span_stats.add_exported(len(batch))
        else:
            self._dropped(DropReason.EXPORT_FAILED, len(batch))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False if the timeout passed first."""
        if self._shutdown:
            return False
        try:
            return self._export_available(time.monotonic() + timeout_millis / 1000)
        except Exception:  # never into the caller
            _logger.exception("revtrace tracer: force_flush failed")
            return False

    def shutdown(self) -> None:
        """Export what is queued (within the export timeout), then shut the
        exporter down. Spans still queued after the timeout are counted as
        dropped."""
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._worker.join(self._export_timeout)
        try:
            self._export_available(time.monotonic() + self._export_timeout)
        finally:
            with self._queue_lock:
                left = len(self._queue)
                self._queue.clear()
            if left:
                self._dropped(DropReason.SHUTDOWN, left)
            try:
                self._exporter.shutdown()
            except Exception:
                _logger.exception("revtrace tracer: span exporter shutdown failed")
            unregister_queue(self)


_GUIDANCE: dict[DropReason, str] = {
    DropReason.QUEUE_FULL: "Spans end faster than they are exported: raise OTEL_BSP_MAX_QUEUE_SIZE "
    "(memory: about 2-5 KiB per span) or OTEL_BSP_MAX_EXPORT_BATCH_SIZE, or lower OTEL_BSP_SCHEDULE_DELAY. "
    "See docs/conventions.md#queue-sizing.",
    DropReason.EXPORT_FAILED: "The exporter gave up on a batch: check the endpoint, the ingest token "
    "(OTEL_EXPORTER_OTLP_HEADERS) and the collector's health.",
    DropReason.SHUTDOWN: "Spans ended after tracer.shutdown() or were still queued when its timeout passed.",
}
