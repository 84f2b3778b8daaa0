"""The tracer's logger and a rate limit for log lines emitted on hot paths."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog", "logger"]

logger = logging.getLogger("tracer")
"""Every log line of the tracer goes through this logger (``tracer``)."""


class RateLimitedLog:
    """Logs at most one line per ``interval`` seconds per key; lines suppressed
    in between are counted and the count is reported with the next line, so a
    flood of the same failure costs one line per interval and nothing is
    hidden."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: int, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than an
        interval ago. Returns whether the line was written."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            logger.log(level, message + " (%d similar lines suppressed)", *args, suppressed)
        else:
            logger.log(level, message, *args)
        return True
