"""Calling a downstream system properly: a client-side rate limiter (token
bucket, plus a shared cool-down when the system answers ``Retry-After``), a
circuit breaker, a timeout, W3C propagation, and every failure classified in
business terms (with the tracer's vendor tables) into a
:class:`DownstreamError` that says whether retrying can help."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from sync_engine._clock import Clock
from sync_engine._errors import CircuitOpenError, DownstreamError
from tracer import classify, inject_http_headers
from tracer.semconv import FailureCategory, System

__all__ = ["BreakerState", "CircuitBreaker", "RateLimiter", "SystemClient"]

_TRIPS_BREAKER = frozenset({FailureCategory.TRANSIENT})
"""Rate limiting is the limiter's business (cool-down on Retry-After), not the breaker's."""


class BreakerState(IntEnum):
    """Circuit breaker states, as the ``syncengine.breaker.state`` gauge reports them."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; after
    ``open_seconds`` (simulated) lets one probe through (half-open); the probe's
    success closes it, its failure opens it again."""

    def __init__(
        self,
        system: System,
        clock: Clock,
        threshold: int = 5,
        open_seconds: float = 15.0,
        on_change: Callable[[System, BreakerState], None] | None = None,
    ) -> None:
        self.system = system
        self._clock = clock
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        self._on_change = on_change
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose time is up reads half-open)."""
        if self._state is BreakerState.OPEN and self._remaining() <= 0:
            return BreakerState.HALF_OPEN
        return self._state

    def _remaining(self) -> float:
        return self.open_seconds - self._clock.sim(self._clock.monotonic() - self._opened_at)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.system, state)

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go out now."""
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN:
            remaining = self._remaining()
            if remaining > 0:
                raise CircuitOpenError(self.system, remaining)
            self._set(BreakerState.HALF_OPEN)
        if self._probing:
            raise CircuitOpenError(self.system, max(self.open_seconds / 10, 0.5))
        self._probing = True

    def record_success(self) -> None:
        """The call reached a working system (any answer but a transient failure)."""
        self._failures = 0
        self._probing = False
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """The call failed transiently (5xx, 429, timeout, connection)."""
        self._failures += 1
        probing, self._probing = self._probing, False
        if probing or self._failures >= self.threshold:
            if self._state is not BreakerState.OPEN:
                self.opened_count += 1
            self._opened_at = self._clock.monotonic()
            self._set(BreakerState.OPEN)

    def release_probe(self) -> None:
        """The probe ended without telling anything (cancelled)."""
        self._probing = False


class RateLimiter:
    """A token bucket (``rate`` requests per simulated second, ``burst``
    deep) and a cool-down every caller respects after a ``Retry-After``."""

    def __init__(self, clock: Clock, rate: float, burst: int) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = self._clock.monotonic()
        self._cooldown_until = 0.0
        self._lock = asyncio.Lock()

    def cool_down(self, sim_seconds: float) -> None:
        """Nobody calls the system for ``sim_seconds`` (from ``Retry-After``)."""
        self._cooldown_until = max(
            self._cooldown_until, self._clock.monotonic() + self._clock.real(sim_seconds)
        )

    async def acquire(self) -> float:
        """Wait for a token (and any cool-down); returns the simulated seconds waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                if now < self._cooldown_until:
                    pause = self._cooldown_until - now
                else:
                    real_rate = self.rate / self._clock.scale
                    self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * real_rate)
                    self._updated = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return self._clock.sim(waited)
                    pause = (1 - self._tokens) / real_rate
                waited += pause
                await asyncio.sleep(pause)


class SystemClient:
    """HTTP to one downstream system, through its breaker and rate limiter."""

    def __init__(
        self,
        system: System,
        vendor: str,
        base_url: str,
        token: str,
        clock: Clock,
        *,
        timeout: float,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        on_wait: Callable[[System], None] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        transport_wrapper: Callable[[httpx.AsyncClient], Any] | None = None,
    ) -> None:
        self.system = system
        self.vendor = vendor
        self.breaker = breaker
        self.limiter = limiter
        self._clock = clock
        self._timeout = timeout
        self._on_wait = on_wait
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "authorization": f"Bearer {token}",
                "user-agent": "revtrace-sync-engine/0.1",
                **(extra_headers or {}),
            },
            timeout=httpx.Timeout(clock.real(timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        if transport_wrapper is not None:
            transport_wrapper(self._http)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: list[tuple[str, str]] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send one request; a 2xx/3xx response is returned, anything else
        raises :class:`DownstreamError` (or :class:`CircuitOpenError` without
        sending)."""
        self.breaker.before_call()
        try:
            waited = await self.limiter.acquire()
        except BaseException:
            self.breaker.release_probe()
            raise
        if waited > 0 and self._on_wait is not None:
            self._on_wait(self.system)
        headers: dict[str, str] = {}
        inject_http_headers(headers)
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        content: bytes | None = None
        if json is not None:
            content = orjson.dumps(json)
            headers["content-type"] = "application/json"
        elif form is not None:
            content = urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        try:
            response = await self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            verdict = classify(exception=exc, vendor=self.vendor)
            raise DownstreamError(
                self.system,
                verdict.category or FailureCategory.TRANSIENT,
                f"{method} {path}: {type(exc).__name__}",
                code=type(exc).__name__,
                retryable=verdict.retryable,
            ) from exc
        except BaseException:
            self.breaker.release_probe()
            raise
        if response.status_code < 400:
            self.breaker.record_success()
            return response
        verdict = classify(
            status_code=response.status_code,
            headers=response.headers,
            body=response.content,
            vendor=self.vendor,
        )
        category = verdict.category or FailureCategory.UNKNOWN
        if category in _TRIPS_BREAKER:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        if category is FailureCategory.RATE_LIMITED and verdict.retry_after is not None:
            self.limiter.cool_down(verdict.retry_after)
        raise DownstreamError(
            self.system,
            category,
            verdict.message or f"{method} {path}: HTTP {response.status_code}",
            code=verdict.code,
            status_code=response.status_code,
            retry_after=verdict.retry_after,
            retryable=verdict.retryable,
            response=response,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
