"""Process-wide accounting of what happened to every span the tracer's batch
processors received. Free of the OpenTelemetry SDK, so the API half of the
tracer can report it without loading the SDK."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Protocol

from tracer.semconv import DropReason

__all__ = ["ExportStats", "QueueOwner", "export_stats", "register_queue", "span_stats", "unregister_queue"]


class QueueOwner(Protocol):
    """Anything with a queue of spans to report (the batch processors)."""

    @property
    def queue_length(self) -> int: ...


@dataclass(frozen=True)
class ExportStats:
    """What happened to the spans the tracer's batch processors received,
    counted since the process started (across every :func:`tracer.configure`)."""

    exported: int
    """Spans the exporter reported as delivered."""
    dropped_queue_full: int
    """Spans refused because the queue was full (raise ``OTEL_BSP_MAX_QUEUE_SIZE``)."""
    dropped_export_failed: int
    """Spans in batches the exporter gave up on or raised for."""
    dropped_shutdown: int
    """Spans that ended after shutdown."""
    queued: int
    """Spans waiting in the current queue."""

    @property
    def dropped(self) -> int:
        """Every span that was lost, whatever the reason."""
        return self.dropped_queue_full + self.dropped_export_failed + self.dropped_shutdown


class _Counters:
    """Process-wide counters. Increments happen under one lock; a lock
    round-trip is far cheaper than the span it counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exported = 0
        self.dropped = dict.fromkeys(DropReason, 0)

    def add_dropped(self, reason: DropReason, count: int) -> None:
        with self.lock:
            self.dropped[reason] += count

    def add_exported(self, count: int) -> None:
        with self.lock:
            self.exported += count


span_stats = _Counters()
"""The process-wide counters (read them through :func:`export_stats`)."""

_queues: weakref.WeakSet[QueueOwner] = weakref.WeakSet()


def register_queue(owner: QueueOwner) -> None:
    """Count ``owner``'s queue in :attr:`ExportStats.queued` while it lives."""
    _queues.add(owner)


def unregister_queue(owner: QueueOwner) -> None:
    """Stop counting ``owner``'s queue."""
    _queues.discard(owner)


def export_stats() -> ExportStats:
    """A snapshot of :data:`span_stats` and the live queues' lengths."""
    queued = sum(q.queue_length for q in list(_queues))
    with span_stats.lock:
        return ExportStats(
            exported=span_stats.exported,
            dropped_queue_full=span_stats.dropped[DropReason.QUEUE_FULL],
            dropped_export_failed=span_stats.dropped[DropReason.EXPORT_FAILED],
            dropped_shutdown=span_stats.dropped[DropReason.SHUTDOWN],
            queued=queued,
        )
