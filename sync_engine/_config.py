"""Settings of the engine (frozen dataclasses with documented defaults) and
the environment variables it reads.

Durations are simulated seconds (see :class:`sync_engine.Clock`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sync_engine._errors import ConfigError
from tracer.semconv import System

__all__ = ["ENV_REPLAY_TOKEN", "Endpoints", "EngineConfig", "RetryPolicy"]

ENV_REPLAY_TOKEN: Final = "REVTRACE_REPLAY_TOKEN"
"""Bearer token the engine's ``/api/v1`` endpoints require (replay, DLQ,
transactions). Unset and not given to the constructor: a random token is
generated and exposed as ``SyncEngine.replay_token``."""


@dataclass(frozen=True)
class RetryPolicy:
    """In-call retries of one step: exponential backoff with jitter, never
    shorter than the ``Retry-After`` the system asked for."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 20.0
    jitter: float = 0.2


def _timeouts() -> dict[System, float]:
    return {System.CRM: 10.0, System.BILLING: 15.0, System.ERP: 40.0}


def _rate_limits() -> dict[System, tuple[float, int]]:
    return {System.CRM: (20.0, 20), System.BILLING: (25.0, 25), System.ERP: (10.0, 10)}


@dataclass(frozen=True)
class EngineConfig:
    """How the engine behaves."""

    host: str = "127.0.0.1"
    port: int = 0
    """Port of the webhook receiver and the API (0: ephemeral)."""
    replay_token: str | None = None
    """Bearer token for ``/api/v1`` (default: ``REVTRACE_REPLAY_TOKEN``, else random)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    requeue_delays: tuple[float, ...] = (30.0, 60.0, 120.0)
    """When ERP posting still fails after the in-call retries (billing already
    done), the transaction is re-driven from the retry queue after each of
    these delays, then held for finance review."""
    timeouts: Mapping[System, float] = field(default_factory=_timeouts)
    rate_limits: Mapping[System, tuple[float, int]] = field(default_factory=_rate_limits)
    """Client-side rate limit per system: (requests per second, burst)."""
    breaker_threshold: int = 5
    """Consecutive transient failures that open a system's circuit."""
    breaker_open_seconds: float = 15.0
    breaker_waits: int = 6
    """How many times a step waits for an open circuit to close before it gives up
    (waiting does not use up its retries: no call was made)."""
    park_ttl: float = 30.0
    """How long an out-of-order event waits for its predecessor before it is dead-lettered."""
    inbound_capacity: int = 10_000
    """Events waiting to be processed before webhooks are refused with 503 + Retry-After."""
    max_concurrency: int = 64
    """Events processed at once."""
    reconcile_every: float = 60.0
    """Seconds between reconciliation snapshots (0: only when asked)."""
    client_id: str = "revtrace-sync"
    """The API client name the engine identifies itself with (Salesforce
    ``Sforce-Call-Options: client=…``); changes it made come back with it."""
    retain_transactions: int = 2_000
    """Transactions kept in memory (with their payloads, for replay and the API):
    beyond it the oldest completed ones are dropped a minute after they finished,
    failed and held ones only beyond twice as many."""
    retain_events: int = 50_000
    """Event ids kept for deduplication."""
    http_client_spans: bool = False
    """Also emit one CLIENT span per HTTP call (tracer.instrument_httpx)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid setting."""
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: must be 0..65535, got {self.port!r}")
        if self.retry.max_attempts < 1:
            problems.append(f"retry.max_attempts: must be >= 1, got {self.retry.max_attempts!r}")
        if self.retry.base_delay < 0 or self.retry.max_delay < self.retry.base_delay:
            problems.append(
                f"retry: need 0 <= base_delay <= max_delay, got {self.retry.base_delay!r}, "
                f"{self.retry.max_delay!r}"
            )
        if any(d < 0 for d in self.requeue_delays):
            problems.append(f"requeue_delays: must be >= 0, got {self.requeue_delays!r}")
        for system in (System.CRM, System.BILLING, System.ERP):
            if self.timeouts.get(system, 0) <= 0:
                problems.append(f"timeouts.{system.value}: must be > 0, got {self.timeouts.get(system)!r}")
            rate, burst = self.rate_limits.get(system, (0.0, 0))
            if rate <= 0 or burst < 1:
                problems.append(
                    f"rate_limits.{system.value}: need rate > 0 and burst >= 1, got {(rate, burst)!r}"
                )
        if self.breaker_threshold < 1:
            problems.append(f"breaker_threshold: must be >= 1, got {self.breaker_threshold!r}")
        if self.park_ttl <= 0:
            problems.append(f"park_ttl: must be > 0, got {self.park_ttl!r}")
        if self.inbound_capacity < 1 or self.max_concurrency < 1:
            problems.append(
                "inbound_capacity and max_concurrency: must be >= 1, got "
                f"{self.inbound_capacity!r}, {self.max_concurrency!r}"
            )
        if self.retain_transactions < 100 or self.retain_events < 100:
            problems.append(
                "retain_transactions and retain_events: must be >= 100, got "
                f"{self.retain_transactions!r}, {self.retain_events!r}"
            )
        if self.reconcile_every < 0:
            problems.append(f"reconcile_every: must be >= 0, got {self.reconcile_every!r}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Endpoints:
    """Where the downstream systems are and the credentials for them."""

    crm_url: str
    billing_url: str
    erp_url: str
    crm_token: str
    billing_key: str
    erp_token: str
    billing_webhook_secret: str
    crm_webhook_secret: str
