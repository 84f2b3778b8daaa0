"""The resilient client: circuit breaker, rate limiter, and Retry-After
honoured end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sync_engine import CircuitOpenError, Clock, Scenario, parse_profile
from sync_engine._client import BreakerState, CircuitBreaker, RateLimiter
from tracer.semconv import System


class ManualClock(Clock):
    """A clock whose monotonic time only moves when the test says so."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class RecordingClock(Clock):
    """Records every simulated sleep the engine and simulators ask for."""

    def __init__(self, scale: float) -> None:
        super().__init__(scale)
        self.sleeps: list[float] = []

    async def sleep(self, sim_seconds: float) -> None:
        self.sleeps.append(sim_seconds)
        await super().sleep(sim_seconds)


def test_breaker_opens_after_consecutive_failures_and_recovers_through_one_probe() -> None:
    clock = ManualClock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(
        System.ERP, clock, threshold=3, open_seconds=10.0, on_change=lambda s, st: changes.append(st)
    )
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened_count == 1
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.before_call()
    assert rejected.value.retry_after == pytest.approx(10.0) and rejected.value.retryable
    clock.now += 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # only one probe at a time
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state is BreakerState.OPEN and breaker.opened_count == 2
    clock.now += 10.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_rate_limiter_spaces_calls_and_respects_a_cool_down() -> None:
    async def run() -> tuple[list[float], float]:
        limiter = RateLimiter(Clock(0.001), rate=2.0, burst=2)
        waits = [await limiter.acquire() for _ in range(3)]
        limiter.cool_down(5.0)
        return waits, await limiter.acquire()

    waits, after_cool_down = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2] > 0.0  # then one token per half (simulated) second
    assert after_cool_down >= 5.0 * 0.9


def test_retry_after_is_honoured_end_to_end(world: Any, spans: Any) -> None:
    profile = parse_profile(
        {
            "version": "revtrace/v1",
            "kind": "FaultProfile",
            "name": "retry-after",
            "mix": {"new_sale": 1},
            "latency": {"webhook": {"median": 0.3, "p99": 1.0}},
            "faults": [
                {
                    "kind": "rate_limit",
                    "rate": 1.0,
                    "system": "billing",
                    "stage": "billing.customer.upsert",
                    "count": 1,
                    "retry_after": 7,
                }
            ],
        }
    )
    clock = RecordingClock(0.02)
    runtime = world(profile, [Scenario.NEW_SALE], clock=clock)
    (line,) = runtime.truth.lines
    assert line["expected"] == {"outcome": "ok", "category": None, "absorbed": ["rate_limited"]}
    upserts = spans.refresh().of(line["correlation_id"], "billing.customer.upsert")
    # The engine's calls; billing's customer.created webhook is recorded on the stage too (a consumer span).
    attempts = [s for s in upserts if s.kind.name == "CLIENT"]
    assert [s.kind.name for s in upserts if s not in attempts] == ["CONSUMER"]
    assert [s.attributes["biz.attempt"] for s in attempts] == [1, 2]
    first, second = attempts
    assert first.attributes["biz.outcome"] == "retrying"
    assert first.attributes["biz.error.category"] == "rate_limited"
    assert first.attributes["biz.error.retry_after"] == 7.0
    assert second.attributes["biz.outcome"] == "ok"
    # The engine waited at least what billing asked for before the second attempt
    # (nothing else in this world sleeps that long: latencies are capped far below).
    assert any(s >= 7.0 for s in clock.sleeps)
    gap_real = (second.start_time - first.end_time) / 1e9
    assert gap_real >= clock.real(7.0) * 0.95
