"""Simulated time: every duration in profiles and settings is in simulated
seconds, and one factor turns them into real ones.

``time_scale=1`` is real time (the demo); tests use ``0.01``–``0.05`` so a
30-second ERP outage takes a fraction of a second. Wall-clock timestamps
(event ``created``, span times, business dates) are always real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

__all__ = ["Clock"]


class Clock:
    """Converts simulated durations to real ones and sleeps accordingly."""

    __slots__ = ("_origin", "scale")

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale: must be > 0, got {time_scale!r}")
        self.scale = float(time_scale)
        """Real seconds per simulated second."""
        self._origin = time.monotonic()

    def real(self, sim_seconds: float) -> float:
        """Real seconds for a simulated duration."""
        return max(0.0, sim_seconds) * self.scale

    def sim(self, real_seconds: float) -> float:
        """Simulated seconds for a real duration."""
        return real_seconds / self.scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a simulated duration."""
        await asyncio.sleep(self.real(sim_seconds))

    def monotonic(self) -> float:
        """Real monotonic seconds (for measuring; tests may override)."""
        return time.monotonic()

    def elapsed(self) -> float:
        """Simulated seconds since this clock was made (for outage windows)."""
        return self.sim(time.monotonic() - self._origin)

    @staticmethod
    def now() -> dt.datetime:
        """The real wall-clock time, UTC."""
        return dt.datetime.now(dt.UTC)
