"""A small, bounded, in-process index from business object reference to
correlation id, for webhooks that arrive without our headers or metadata."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RefIndex", "RefMatch", "default_ref_index"]


@dataclass(frozen=True)
class RefMatch:
    """What the index knows about one reference."""

    correlation_id: str
    process: str | None
    ref: str
    """The reference that matched."""


class RefIndex:
    """Remembers which correlation id last touched a business object reference
    (``billing:invoice/in_123``), keeping the ``max_size`` most recently used.

    Every business span that ends feeds the process-wide index
    (:func:`tracer.ref_index`) with its own object (``<system>:<type>/<id>``) and
    its ``object_refs``; a webhook handler asks it with the references it finds
    in the payload. It is a best-effort, in-process memory: after a restart, or
    in another replica, the lookup misses and a new correlation id is minted,
    which the collector can still stitch by ``biz.object.refs``.
    Thread-safe; every operation is O(number of refs).
    """

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 0:
            raise ValueError(f"max_size: must be >= 0, got {max_size}")
        self._max_size = max_size
        self._entries: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def max_size(self) -> int:
        """How many references are kept."""
        return self._max_size

    def resize(self, max_size: int) -> None:
        """Change the capacity, evicting the oldest entries if needed."""
        if max_size < 0:
            raise ValueError(f"max_size: must be >= 0, got {max_size}")
        with self._lock:
            self._max_size = max_size
            self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def remember(self, refs: Iterable[str], correlation_id: str, process: str | None = None) -> None:
        """Record that ``refs`` belong to ``correlation_id`` (the newest wins)."""
        if self._max_size == 0:
            return
        with self._lock:
            for ref in refs:
                if ref:
                    self._entries[ref] = (correlation_id, process)
                    self._entries.move_to_end(ref)
            self._evict()

    def lookup(self, refs: Iterable[str]) -> RefMatch | None:
        """The correlation of the first of ``refs`` the index knows, or None."""
        with self._lock:
            for ref in refs:
                entry = self._entries.get(ref)
                if entry is not None:
                    self._entries.move_to_end(ref)
                    return RefMatch(correlation_id=entry[0], process=entry[1], ref=ref)
        return None

    def forget(self, refs: Iterable[str]) -> None:
        """Drop ``refs`` from the index."""
        with self._lock:
            for ref in refs:
                self._entries.pop(ref, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


default_ref_index = RefIndex()
"""The process-wide index business spans feed (see :func:`tracer.ref_index`)."""
