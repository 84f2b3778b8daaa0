"""revtrace's reference quote-to-cash sync engine, with simulated CRM
(Salesforce-like), billing (Stripe-like) and ERP (NetSuite-like) systems that
inject faults: the demo workload and the ground truth revtrace is scored
against.

Run a demo workload (what ``revtrace demo`` wires)::

    from sync_engine import Workload, WorkloadConfig

    workload = Workload(WorkloadConfig(rate_per_s=5, profile="default", seed=1,
                                       otlp_endpoint="http://127.0.0.1:4318",
                                       ground_truth_path=Path("ground-truth.jsonl"), duration_s=60))
    workload.start()          # returns once the engine listens: workload.engine_url
    workload.wait()           # until the duration is over and what was in flight has settled
    workload.stop()           # graceful; flushes spans and metrics
    print(workload.summary())

or ``python -m sync_engine --duration 20 --rate 5 --profile default``
(:func:`build_parser` is that command line's parser).

Exceptions::

    SyncEngineError
    ├── ProfileError (+ValueError)   a fault profile is invalid (every problem, with path and value)
    ├── ConfigError (+ValueError)    a WorkloadConfig / EngineConfig setting is invalid
    ├── DownstreamError              a call to CRM, billing or ERP failed (retryable or not)
    │   └── CircuitOpenError         the system's circuit breaker is open
    ├── StepFailed                   an orchestration step ended for good
    └── ReplayError                  unknown transaction or dead letter
"""

from __future__ import annotations

from sync_engine._cli import build_parser
from sync_engine._clock import Clock
from sync_engine._config import ENV_REPLAY_TOKEN, Endpoints, EngineConfig, RetryPolicy
from sync_engine._engine import SyncEngine
from sync_engine._errors import (
    CircuitOpenError,
    ConfigError,
    DownstreamError,
    ProfileError,
    ReplayError,
    StepFailed,
    SyncEngineError,
)
from sync_engine._metrics import (
    METRIC_BREAKER_STATE,
    METRIC_DLQ_SIZE,
    METRIC_INFLIGHT,
    METRIC_PARKED,
    METRIC_QUEUE_DEPTH,
    METRIC_RATELIMIT_WAITS,
    METRIC_RETRIES,
    METRIC_TRANSACTIONS,
)
from sync_engine._profile import (
    FaultProfile,
    FaultSpec,
    LatencySpec,
    OutageSpec,
    builtin_profiles,
    load_profile,
    parse_profile,
)
from sync_engine._scenarios import FAULT_CATEGORY, FaultKind, Scenario
from sync_engine._sims import Simulators
from sync_engine._workload import Runtime, Workload, WorkloadConfig

__all__ = [
    "ENV_REPLAY_TOKEN",
    "FAULT_CATEGORY",
    "METRIC_BREAKER_STATE",
    "METRIC_DLQ_SIZE",
    "METRIC_INFLIGHT",
    "METRIC_PARKED",
    "METRIC_QUEUE_DEPTH",
    "METRIC_RATELIMIT_WAITS",
    "METRIC_RETRIES",
    "METRIC_TRANSACTIONS",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "DownstreamError",
    "Endpoints",
    "EngineConfig",
    "FaultKind",
    "FaultProfile",
    "FaultSpec",
    "LatencySpec",
    "OutageSpec",
    "ProfileError",
    "ReplayError",
    "RetryPolicy",
    "Runtime",
    "Scenario",
    "Simulators",
    "StepFailed",
    "SyncEngine",
    "SyncEngineError",
    "Workload",
    "WorkloadConfig",
    "build_parser",
    "builtin_profiles",
    "load_profile",
    "parse_profile",
]
