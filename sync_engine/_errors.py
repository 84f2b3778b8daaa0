"""The sync engine's exceptions.

::

    SyncEngineError                  base of everything sync_engine raises
    ├── ProfileError (+ValueError)   a fault profile is invalid (every problem, with path and value)
    ├── ConfigError (+ValueError)    a WorkloadConfig / EngineConfig setting is invalid
    ├── DownstreamError              a call to CRM, billing or ERP failed; says whether retrying helps
    │   └── CircuitOpenError         the system's circuit breaker is open: the call was not made
    ├── StepFailed                   an orchestration step ended for good (retries exhausted or not retryable)
    └── ReplayError                  a replay was asked for something that cannot be replayed

Constructors and ``start()`` raise; the running engine turns failures into
business spans, transaction states and dead letters instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from tracer.semconv import FailureCategory, Stage, System

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "DownstreamError",
    "ProfileError",
    "ReplayError",
    "StepFailed",
    "SyncEngineError",
]


class SyncEngineError(Exception):
    """Base class of the sync engine's exceptions."""


class ProfileError(SyncEngineError, ValueError):
    """A fault profile is invalid. ``problems`` lists every problem found, each
    naming the path and the value: ``faults[2].count: must be an integer >= 1, got 0``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class ConfigError(SyncEngineError, ValueError):
    """A setting of the engine or the workload is invalid (all problems at once)."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("; ".join(self.problems))


class DownstreamError(SyncEngineError):
    """A call to a downstream system failed, classified in business terms."""

    def __init__(
        self,
        system: System,
        category: FailureCategory,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        response: httpx.Response | None = None,
    ) -> None:
        self.system = system
        self.category = category
        self.code = code
        self.status_code = status_code
        self.retry_after = retry_after
        """Seconds (simulated) the system asked us to wait, from ``Retry-After``."""
        self.retryable = retryable
        self.response = response
        """The failing HTTP response (None for transport errors and engine-side failures)."""
        self.message = message
        super().__init__(f"{system.value}: {category.value}: {message}")


class CircuitOpenError(DownstreamError):
    """The downstream system's breaker is open; nothing was sent."""

    def __init__(self, system: System, retry_after: float) -> None:
        super().__init__(
            system,
            FailureCategory.TRANSIENT,
            f"circuit open for another {retry_after:.1f}s",
            code="circuit_open",
            retry_after=retry_after,
            retryable=True,
        )


class StepFailed(SyncEngineError):
    """A step of a transaction failed for good."""

    def __init__(
        self, stage: Stage, error: DownstreamError | None, category: FailureCategory, code: str
    ) -> None:
        self.stage = stage
        self.error = error
        self.category = category
        self.code = code
        self.retryable = error.retryable if error is not None else False
        super().__init__(f"{stage.value}: {category.value} ({code})")


class ReplayError(SyncEngineError):
    """A replay cannot be done (unknown transaction or dead letter)."""
