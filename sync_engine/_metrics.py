"""The engine's own health as OpenTelemetry metrics.

The names are :mod:`tracer.semconv` constants (``METRIC_SYNCENGINE_*``), which
the dashboard's Sync engine view reads too; this package re-exports them under
their short names (``METRIC_QUEUE_DEPTH`` = ``syncengine.queue.depth``, …):

* queue depth — gauge: events waiting to be processed plus transactions
  waiting in the retry queue;
* in flight — gauge: transactions started and not finished (running, waiting
  for an event, queued or parked);
* DLQ size — gauge: dead letters not yet replayed;
* parked — gauge: events parked until an earlier one arrives;
* breaker state — gauge per ``biz.system``: 0 closed, 1 half-open, 2 open;
* retries — counter, by ``biz.system`` and ``biz.error.category``;
* transactions — counter of finished transactions, by ``biz.process`` and
  ``biz.outcome``;
* rate-limit waits — counter of calls that waited for the client-side rate
  limiter or a ``Retry-After`` cool-down, by ``biz.system``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from tracer.semconv import (
    BIZ_ERROR_CATEGORY,
    BIZ_OUTCOME,
    BIZ_PROCESS,
    BIZ_SYSTEM,
    METRIC_SYNCENGINE_BREAKER_STATE,
    METRIC_SYNCENGINE_DLQ_SIZE,
    METRIC_SYNCENGINE_INFLIGHT,
    METRIC_SYNCENGINE_PARKED,
    METRIC_SYNCENGINE_QUEUE_DEPTH,
    METRIC_SYNCENGINE_RATELIMIT_WAITS,
    METRIC_SYNCENGINE_RETRIES,
    METRIC_SYNCENGINE_TRANSACTIONS,
    FailureCategory,
    Process,
    System,
)

__all__ = [
    "METRIC_BREAKER_STATE",
    "METRIC_DLQ_SIZE",
    "METRIC_INFLIGHT",
    "METRIC_PARKED",
    "METRIC_QUEUE_DEPTH",
    "METRIC_RATELIMIT_WAITS",
    "METRIC_RETRIES",
    "METRIC_TRANSACTIONS",
    "EngineGauges",
    "EngineMetrics",
    "otlp_meter_provider",
]

METRIC_QUEUE_DEPTH: Final = METRIC_SYNCENGINE_QUEUE_DEPTH
METRIC_INFLIGHT: Final = METRIC_SYNCENGINE_INFLIGHT
METRIC_DLQ_SIZE: Final = METRIC_SYNCENGINE_DLQ_SIZE
METRIC_PARKED: Final = METRIC_SYNCENGINE_PARKED
METRIC_BREAKER_STATE: Final = METRIC_SYNCENGINE_BREAKER_STATE
METRIC_RETRIES: Final = METRIC_SYNCENGINE_RETRIES
METRIC_TRANSACTIONS: Final = METRIC_SYNCENGINE_TRANSACTIONS
METRIC_RATELIMIT_WAITS: Final = METRIC_SYNCENGINE_RATELIMIT_WAITS


class EngineGauges:
    """What the observable gauges read; the engine fills in the callables."""

    def __init__(self) -> None:
        self.queue_depth: Callable[[], int] = lambda: 0
        self.inflight: Callable[[], int] = lambda: 0
        self.dlq_size: Callable[[], int] = lambda: 0
        self.parked: Callable[[], int] = lambda: 0
        self.breakers: Callable[[], Mapping[System, int]] = dict


class EngineMetrics:
    """The instruments; a no-op meter when no provider is given."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter: Meter = meter_provider.get_meter("sync_engine") if meter_provider else NoOpMeter("sync_engine")
        self.gauges = EngineGauges()
        self._retries = meter.create_counter(METRIC_RETRIES, unit="{retry}", description="Retried calls.")
        self._transactions = meter.create_counter(
            METRIC_TRANSACTIONS, unit="{transaction}", description="Finished transactions."
        )
        self._waits = meter.create_counter(
            METRIC_RATELIMIT_WAITS, unit="{wait}", description="Calls delayed by rate limiting."
        )
        gauges = self.gauges

        def one(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def observe(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(read())]

            return observe

        meter.create_observable_gauge(
            METRIC_QUEUE_DEPTH,
            [one(lambda: gauges.queue_depth())],
            unit="{item}",
            description="Events to process plus transactions in the retry queue.",
        )
        meter.create_observable_gauge(
            METRIC_INFLIGHT,
            [one(lambda: gauges.inflight())],
            unit="{transaction}",
            description="Transactions started and not finished.",
        )
        meter.create_observable_gauge(
            METRIC_DLQ_SIZE,
            [one(lambda: gauges.dlq_size())],
            unit="{event}",
            description="Dead letters not replayed.",
        )
        meter.create_observable_gauge(
            METRIC_PARKED,
            [one(lambda: gauges.parked())],
            unit="{event}",
            description="Events parked until an earlier one arrives.",
        )

        def breakers(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(state, {BIZ_SYSTEM: system.value}) for system, state in gauges.breakers().items()
            ]

        meter.create_observable_gauge(
            METRIC_BREAKER_STATE,
            [breakers],
            unit="1",
            description="Circuit breaker: 0 closed, 1 half-open, 2 open.",
        )
        self.retries_total = 0
        self.waits_total = 0
        self.finished: dict[tuple[str, str], int] = {}

    def retry(self, system: System, category: FailureCategory) -> None:
        """A call is being retried."""
        self.retries_total += 1
        self._retries.add(1, {BIZ_SYSTEM: system.value, BIZ_ERROR_CATEGORY: category.value})

    def finished_transaction(self, process: Process, outcome: str) -> None:
        """A transaction finished with ``outcome`` (ok, failed, held)."""
        key = (process.value, outcome)
        self.finished[key] = self.finished.get(key, 0) + 1
        self._transactions.add(1, {BIZ_PROCESS: process.value, BIZ_OUTCOME: outcome})

    def rate_limit_wait(self, system: System) -> None:
        """A call waited for the rate limiter."""
        self.waits_total += 1
        self._waits.add(1, {BIZ_SYSTEM: system.value})


def otlp_meter_provider(
    endpoint: str,
    headers: Mapping[str, str] | None,
    *,
    service_name: str,
    protocol: str | None = None,
    interval_seconds: float = 10.0,
    readers: Iterable[MetricReader] = (),
) -> MeterProvider:
    """A meter provider exporting every ``interval_seconds`` to the collector at
    ``endpoint`` with the same headers as the traces: OTLP/HTTP protobuf to
    ``<endpoint>/v1/metrics``, or OTLP/gRPC when ``protocol`` is ``grpc``."""
    exporter: MetricExporter
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=endpoint, headers=dict(headers or {}))
    else:
        exporter = OTLPMetricExporter(
            endpoint=endpoint.rstrip("/") + "/v1/metrics", headers=dict(headers or {})
        )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=int(interval_seconds * 1000))
    return MeterProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), metric_readers=[reader, *readers]
    )
