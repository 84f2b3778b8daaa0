"""Fixtures for the sync engine's tests: an in-memory span exporter behind the
real tracer pipeline, and a runner for the simulated world at a fast time scale."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracer
from sync_engine import Clock, EngineConfig, FaultProfile, Runtime, Scenario, WorkloadConfig, load_profile
from sync_engine._groundtruth import SETTLE_SECONDS
from tracer.semconv import BIZ_CORRELATION_ID, System

TIME_SCALE = 0.02
"""Tests run 50× faster than the simulated clock."""


def test_engine_config(**overrides: Any) -> EngineConfig:
    """Engine settings for tests: generous client timeouts (a loaded CI machine
    must not produce timeouts nobody injected) and no periodic reconciliation."""
    settings: dict[str, Any] = {
        "timeouts": {System.CRM: 60.0, System.BILLING: 60.0, System.ERP: 60.0},
        "reconcile_every": 0.0,
    }
    settings.update(overrides)
    return EngineConfig(**settings)


test_engine_config.__test__ = False  # type: ignore[attr-defined]


@dataclass
class Spans:
    """The spans exported so far, by correlation id."""

    exporter: InMemorySpanExporter
    by_cid: dict[str, list[ReadableSpan]] = field(default_factory=dict)

    def refresh(self) -> Spans:
        """Flush the tracer and regroup."""
        tracer.force_flush()
        grouped: dict[str, list[ReadableSpan]] = defaultdict(list)
        for span in self.exporter.get_finished_spans():
            grouped[str((span.attributes or {}).get(BIZ_CORRELATION_ID))].append(span)
        self.by_cid = {k: sorted(v, key=lambda s: s.start_time or 0) for k, v in grouped.items()}
        return self

    def of(self, cid: str, stage: str | None = None) -> list[ReadableSpan]:
        """The spans of one transaction (of one stage), in start order."""
        spans = self.by_cid.get(cid, [])
        return [s for s in spans if stage is None or s.name == stage]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """The real tracer pipeline, exporting into memory."""
    exporter = InMemorySpanExporter()
    tracer.configure("sync-engine-tests", span_exporter=exporter, schedule_delay_millis=50)
    yield Spans(exporter)
    tracer.shutdown()


async def settle(runtime: Runtime, timeout: float = 20.0) -> None:
    """Wait until nothing is in flight in the runtime, then write the ground
    truth of what has finished (as the running workload would, before anyone
    replays anything)."""
    deadline = time.monotonic() + timeout
    await asyncio.sleep(0.01)
    while not runtime.quiet() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(runtime.clock.real(SETTLE_SECONDS) + 0.01)
    assert runtime.truth is not None
    runtime.truth.write_settled()


async def run_world(
    profile: str | FaultProfile,
    scenarios: int | list[Scenario] | list[list[Scenario | None]],
    *,
    seed: int = 1,
    engine: EngineConfig | None = None,
    sequential: bool = True,
    during: Callable[[Runtime], Any] | None = None,
    meter_provider: MeterProvider | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """Start the simulated world with ``profile``, run ``scenarios`` (a count of
    the profile's picks, a list, or a list of batches run one batch at a time),
    one after the other when ``sequential``, let everything settle, stop, and
    return the runtime (ground truth written)."""
    loaded = profile if isinstance(profile, FaultProfile) else load_profile(profile)
    config = WorkloadConfig(
        profile=loaded,
        seed=seed,
        otlp_endpoint=None,
        time_scale=TIME_SCALE,
        engine=engine or test_engine_config(),
        configure_tracer=False,
    )
    runtime = Runtime(config, loaded, meter_provider, clock)
    await runtime.start()
    try:
        plan: list[Any] = [None] * scenarios if isinstance(scenarios, int) else list(scenarios)
        for step in plan:
            for scenario in step if isinstance(step, list) else [step]:
                runtime.launch(scenario)
            if sequential or isinstance(step, list):
                await settle(runtime)
        await settle(runtime)
        if during is not None:
            result = during(runtime)
            if asyncio.iscoroutine(result):
                await result
            await settle(runtime)
    finally:
        await runtime.stop()
    return runtime


@pytest.fixture
def world() -> Callable[..., Runtime]:
    """``world(profile, scenarios, **options)``: run :func:`run_world` to completion."""

    def run(profile: str | FaultProfile, scenarios: Any, **options: Any) -> Runtime:
        return asyncio.run(run_world(profile, scenarios, **options))

    return run
