"""The package's public surface is small, sorted and documented."""

from __future__ import annotations

import ast
from pathlib import Path

import sync_engine
from tracer import semconv

EXPECTED = [
    "ENV_REPLAY_TOKEN", "FAULT_CATEGORY", "METRIC_BREAKER_STATE", "METRIC_DLQ_SIZE", "METRIC_INFLIGHT",
    "METRIC_PARKED", "METRIC_QUEUE_DEPTH", "METRIC_RATELIMIT_WAITS", "METRIC_RETRIES", "METRIC_TRANSACTIONS",
    "CircuitOpenError", "Clock", "ConfigError", "DownstreamError", "Endpoints", "EngineConfig", "FaultKind",
    "FaultProfile", "FaultSpec", "LatencySpec", "OutageSpec", "ProfileError", "ReplayError", "RetryPolicy", "Runtime",
    "Scenario", "Simulators", "StepFailed", "SyncEngine", "SyncEngineError", "Workload", "WorkloadConfig",
    "build_parser", "builtin_profiles", "load_profile", "parse_profile",
]  # fmt: skip


def test_exported_names_are_locked_and_sorted() -> None:
    assert sync_engine.__all__ == EXPECTED
    assert sync_engine.__all__ == sorted(sync_engine.__all__, key=lambda n: (not n.isupper(), n))


def test_every_public_name_is_documented() -> None:
    for name in sync_engine.__all__:
        value = getattr(sync_engine, name)
        if callable(value) or isinstance(value, type):
            assert (value.__doc__ or "").strip(), name


def test_metric_names_are_the_contract() -> None:
    assert [
        sync_engine.METRIC_QUEUE_DEPTH,
        sync_engine.METRIC_INFLIGHT,
        sync_engine.METRIC_DLQ_SIZE,
        sync_engine.METRIC_BREAKER_STATE,
        sync_engine.METRIC_RETRIES,
        sync_engine.METRIC_TRANSACTIONS,
        sync_engine.METRIC_RATELIMIT_WAITS,
    ] == [
        "syncengine.queue.depth",
        "syncengine.inflight",
        "syncengine.dlq.size",
        "syncengine.breaker.state",
        "syncengine.retries",
        "syncengine.transactions",
        "syncengine.ratelimit.waits",
    ]


def _literals(package: str, wanted: set[str]) -> set[str]:
    """``file:line value`` of every string literal in ``package`` that is one of ``wanted``."""
    root = Path(__file__).resolve().parents[2] / package
    hits = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in wanted:
                hits.add(f"{path.relative_to(root.parent)}:{node.lineno} {node.value}")
    return hits


def test_metric_names_are_spelled_once_in_the_vocabulary_module() -> None:
    assert sync_engine.METRIC_QUEUE_DEPTH == semconv.METRIC_SYNCENGINE_QUEUE_DEPTH
    assert sync_engine.METRIC_PARKED == semconv.METRIC_SYNCENGINE_PARKED
    names = {v for k, v in vars(semconv).items() if k.startswith("METRIC_SYNCENGINE_")}
    assert len(names) == 8
    spelled = _literals("sync_engine", names) | _literals("dashboard", names)
    assert not spelled, f"spell these through tracer.semconv: {sorted(spelled)}"
