"""revtrace benchmarks (``make bench``).

Every benchmark measures the thing and a baseline *in the same run* and reports
the ratio, because these machines are shared and noisy: absolute numbers move,
ratios measured side by side hold. Each ``bench/bench_*.py`` module exposes
``run(quick: bool) -> list[Result]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """One measured figure, its same-run baseline and the goal it is held to."""

    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    goal: str = ""
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a baseline."""
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, ratio included."""
        return {**asdict(self), "ratio": self.ratio}
