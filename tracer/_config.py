"""The wiring half: builds the SDK tracer provider, the accounting batch
processor, the OTLP exporter and the tracer's own metrics from
:func:`configure`'s arguments and the standard ``OTEL_*`` variables.

Arguments win over the environment, the environment wins over the defaults.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.util.re import parse_env_headers
from opentelemetry.util.types import AttributeValue

from tracer._classify import ClassificationRule
from tracer._errors import ConfigurationError
from tracer._log import logger
from tracer._redact import RedactionPolicy, Redactor
from tracer._refindex import default_ref_index
from tracer._state import INSTRUMENTATION_NAME, state
from tracer._stats import export_stats, span_stats
from tracer.environment_variables import REVTRACE_REF_INDEX_SIZE
from tracer.semconv import (
    METRIC_QUEUE_CAPACITY,
    METRIC_QUEUE_SIZE,
    METRIC_SPANS_DROPPED,
    METRIC_SPANS_EXPORTED,
    DropReason,
)

if TYPE_CHECKING:  # the SDK is loaded by configure(), not by importing the tracer
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

    from tracer._processor import AccountingBatchSpanProcessor

__all__ = [
    "ExporterSettings",
    "configure",
    "dropped_spans",
    "force_flush",
    "resolve_exporter_settings",
    "shutdown",
]

PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
_PROTOCOLS: Final = (PROTOCOL_HTTP, PROTOCOL_GRPC)
_DEFAULT_ENDPOINT: Final = {PROTOCOL_HTTP: "http://localhost:4318", PROTOCOL_GRPC: "http://localhost:4317"}
_BSP_DEFAULTS: Final = {
    OTEL_BSP_MAX_QUEUE_SIZE: 2048,
    OTEL_BSP_SCHEDULE_DELAY: 5000,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 512,
    OTEL_BSP_EXPORT_TIMEOUT: 30000,
}

_lock = threading.Lock()


class _Pipeline:
    """What the current configure() built, to flush and shut down later."""

    def __init__(
        self,
        provider: TracerProvider,
        processor: AccountingBatchSpanProcessor,
        meter_provider: MeterProvider | None,
    ) -> None:
        self.provider = provider
        self.processor = processor
        self.meter_provider = meter_provider


_pipeline: _Pipeline | None = None
_global_installed = False


class ExporterSettings:
    """The exporter and batch settings after arguments and environment are
    merged (what :func:`configure` will build; also useful to log)."""

    def __init__(
        self,
        protocol: str,
        traces_endpoint: str,
        metrics_endpoint: str,
        headers: dict[str, str],
        max_queue_size: int,
        schedule_delay_millis: int,
        max_export_batch_size: int,
        export_timeout_millis: int,
    ) -> None:
        self.protocol = protocol
        self.traces_endpoint = traces_endpoint
        self.metrics_endpoint = metrics_endpoint
        self.headers = headers
        self.max_queue_size = max_queue_size
        self.schedule_delay_millis = schedule_delay_millis
        self.max_export_batch_size = max_export_batch_size
        self.export_timeout_millis = export_timeout_millis

    def __repr__(self) -> str:
        # Header values are ingest tokens: only their names are shown.
        return (
            f"ExporterSettings(protocol={self.protocol!r}, traces_endpoint={self.traces_endpoint!r}, "
            f"headers={sorted(self.headers)!r}, max_queue_size={self.max_queue_size}, "
            f"schedule_delay_millis={self.schedule_delay_millis}, "
            f"max_export_batch_size={self.max_export_batch_size})"
        )


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _signal_endpoint(base: str, signal: str) -> str:
    base = base.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


def resolve_exporter_settings(
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_queue_size: int | None = None,
    schedule_delay_millis: int | None = None,
    max_export_batch_size: int | None = None,
    export_timeout_millis: int | None = None,
) -> ExporterSettings:
    """Merge arguments, ``OTEL_*`` variables and defaults; raise
    :class:`ConfigurationError` naming every invalid setting."""
    problems: list[str] = []
    proto = protocol or _env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) or _env(OTEL_EXPORTER_OTLP_PROTOCOL)
    proto = proto or PROTOCOL_HTTP
    if proto not in _PROTOCOLS:
        source = (
            "protocol" if protocol else OTEL_EXPORTER_OTLP_TRACES_PROTOCOL + "/" + OTEL_EXPORTER_OTLP_PROTOCOL
        )
        problems.append(f"{source}: must be one of {', '.join(_PROTOCOLS)}, got {proto!r}")
        proto = PROTOCOL_HTTP

    base = endpoint or _env(OTEL_EXPORTER_OTLP_ENDPOINT) or _DEFAULT_ENDPOINT[proto]
    traces_env = None if endpoint else _env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    metrics_env = None if endpoint else _env(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)
    if proto == PROTOCOL_HTTP:
        traces = traces_env or _signal_endpoint(base, "traces")
        metrics = metrics_env or _signal_endpoint(traces_env or base, "metrics")
    else:
        traces = traces_env or base
        metrics = metrics_env or base
    for name, url in (("endpoint", traces), ("metrics endpoint", metrics)):
        if proto == PROTOCOL_HTTP and not url.startswith(("http://", "https://")):
            problems.append(f"{name}: must be an http:// or https:// URL, got {url!r}")

    merged: dict[str, str] = {}
    for env_name in (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS):
        raw = _env(env_name)
        if raw:
            merged.update(parse_env_headers(raw, liberal=True))
    if headers:
        for key, header_value in headers.items():
            if not isinstance(key, str) or not isinstance(header_value, str):
                problems.append(f"headers: names and values must be strings, got {key!r}")
                continue
            merged[key.lower()] = header_value

    given = {
        OTEL_BSP_MAX_QUEUE_SIZE: max_queue_size,
        OTEL_BSP_SCHEDULE_DELAY: schedule_delay_millis,
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: max_export_batch_size,
        OTEL_BSP_EXPORT_TIMEOUT: export_timeout_millis,
    }
    arg_names = {
        OTEL_BSP_MAX_QUEUE_SIZE: "max_queue_size",
        OTEL_BSP_SCHEDULE_DELAY: "schedule_delay_millis",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "max_export_batch_size",
        OTEL_BSP_EXPORT_TIMEOUT: "export_timeout_millis",
    }
    bsp: dict[str, int] = {}
    for env_name, default in _BSP_DEFAULTS.items():
        value: object = given[env_name]
        source = arg_names[env_name]
        if value is None and (raw := _env(env_name)) is not None:
            source = env_name
            value = int(raw) if raw.lstrip("-").isdigit() else raw
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(f"{source}: must be a positive integer, got {value!r}")
            value = default
        bsp[env_name] = value
    if bsp[OTEL_BSP_MAX_EXPORT_BATCH_SIZE] > bsp[OTEL_BSP_MAX_QUEUE_SIZE]:
        problems.append(
            f"max_export_batch_size ({bsp[OTEL_BSP_MAX_EXPORT_BATCH_SIZE]}) must not exceed "
            f"max_queue_size ({bsp[OTEL_BSP_MAX_QUEUE_SIZE]})"
        )
    if problems:
        raise ConfigurationError(problems)
    return ExporterSettings(
        protocol=proto,
        traces_endpoint=traces,
        metrics_endpoint=metrics,
        headers=merged,
        max_queue_size=bsp[OTEL_BSP_MAX_QUEUE_SIZE],
        schedule_delay_millis=bsp[OTEL_BSP_SCHEDULE_DELAY],
        max_export_batch_size=bsp[OTEL_BSP_MAX_EXPORT_BATCH_SIZE],
        export_timeout_millis=bsp[OTEL_BSP_EXPORT_TIMEOUT],
    )


def _otlp_span_exporter(settings: ExporterSettings) -> SpanExporter:
    if settings.protocol == PROTOCOL_GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        return GrpcSpanExporter(endpoint=settings.traces_endpoint, headers=settings.headers or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=settings.traces_endpoint, headers=settings.headers or None)


def _otlp_metric_reader(settings: ExporterSettings) -> MetricReader:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if settings.protocol == PROTOCOL_GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        return PeriodicExportingMetricReader(
            GrpcMetrics(endpoint=settings.metrics_endpoint, headers=settings.headers or None)
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

    return PeriodicExportingMetricReader(
        HttpMetrics(endpoint=settings.metrics_endpoint, headers=settings.headers or None)
    )


def _observe_dropped(options: CallbackOptions) -> Iterable[Observation]:
    with span_stats.lock:
        counts = dict(span_stats.dropped)
    return [Observation(counts[reason], {"error.type": reason.value}) for reason in DropReason]


def _observe_exported(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(span_stats.exported)]


def _observe_queue(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(export_stats().queued)]


def _meter_provider(resource: Resource, readers: Sequence[MetricReader], capacity: int) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(resource=resource, metric_readers=list(readers))
    meter = provider.get_meter(INSTRUMENTATION_NAME)
    meter.create_observable_counter(
        METRIC_SPANS_DROPPED,
        callbacks=[_observe_dropped],
        unit="{span}",
        description="Spans the tracer lost, by reason (error.type). Should stay 0.",
    )
    meter.create_observable_counter(
        METRIC_SPANS_EXPORTED,
        callbacks=[_observe_exported],
        unit="{span}",
        description="Spans the exporter reported as delivered.",
    )
    meter.create_observable_up_down_counter(
        METRIC_QUEUE_SIZE,
        callbacks=[_observe_queue],
        unit="{span}",
        description="Spans waiting in the batch queue.",
    )

    def _observe_capacity(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(capacity)]

    meter.create_observable_up_down_counter(
        METRIC_QUEUE_CAPACITY,
        callbacks=[_observe_capacity],
        unit="{span}",
        description="Batch queue capacity.",
    )
    return provider


def configure(
    service_name: str,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    redaction: RedactionPolicy | None = None,
    classification_rules: Iterable[ClassificationRule] = (),
    max_queue_size: int | None = None,
    schedule_delay_millis: int | None = None,
    max_export_batch_size: int | None = None,
    export_timeout_millis: int | None = None,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    sampler: Sampler | None = None,
    ref_index_size: int | None = None,
    set_global: bool = True,
) -> None:
    """Start exporting business spans.

    ``endpoint`` is the collector's base URL (``http://revtrace:4318``; for gRPC
    ``http://revtrace:4317``); ``protocol`` is ``http/protobuf`` (default) or
    ``grpc``; ``headers`` carry the ingest token
    (``{"authorization": "Bearer …"}``). Unset arguments come from the standard
    ``OTEL_*`` variables (see :mod:`tracer.environment_variables`), then from
    OpenTelemetry's defaults. ``span_exporter`` replaces the OTLP exporter (tests:
    ``InMemorySpanExporter``); the batch processor is the accounting one either
    way. The tracer's own metrics (dropped and exported spans, queue size) go to
    ``metric_readers``, by default an OTLP metric exporter beside the span
    exporter (none when ``span_exporter`` is given).

    ``set_global`` also installs the provider as OpenTelemetry's global one, if
    no SDK provider was installed yet, so other instrumentation joins the same
    pipeline. A second ``configure()`` flushes and replaces the first pipeline
    for business spans (with a warning; OpenTelemetry's global provider cannot
    be replaced). ``OTEL_SDK_DISABLED=true`` leaves the tracer a no-op.

    Raises :class:`tracer.ConfigurationError` naming every invalid setting.
    """
    global _pipeline, _global_installed
    problems: list[str] = []
    if not isinstance(service_name, str) or not service_name.strip():
        problems.append(f"service_name: must be a non-empty string, got {service_name!r}")
    settings: ExporterSettings | None = None
    try:
        settings = resolve_exporter_settings(
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            export_timeout_millis=export_timeout_millis,
        )
    except ConfigurationError as exc:
        problems.extend(exc.problems)
    redactor: Redactor | None = None
    try:
        redactor = Redactor(redaction)
    except ConfigurationError as exc:
        problems.extend(f"redaction: {p}" for p in exc.problems)
    rules = tuple(classification_rules)
    for i, rule in enumerate(rules):
        if not isinstance(rule, ClassificationRule):
            problems.append(
                f"classification_rules[{i}]: must be a ClassificationRule, got {type(rule).__name__}"
            )
    index_size = ref_index_size
    if index_size is None and (raw := _env(REVTRACE_REF_INDEX_SIZE)) is not None:
        try:
            index_size = int(raw)
        except ValueError:
            problems.append(f"{REVTRACE_REF_INDEX_SIZE}: must be an integer >= 0, got {raw!r}")
    if index_size is not None and (
        isinstance(index_size, bool) or not isinstance(index_size, int) or index_size < 0
    ):
        problems.append(f"ref_index_size: must be an integer >= 0, got {index_size!r}")
        index_size = None
    if problems:
        raise ConfigurationError(problems)
    assert settings is not None and redactor is not None

    with _lock:
        if _pipeline is not None:
            logger.warning("revtrace tracer: configure() called again; replacing the previous pipeline")
            _shutdown_pipeline(_pipeline)
            _pipeline = None
        state.redactor = redactor
        state.rules = rules
        if index_size is not None:
            default_ref_index.resize(index_size)
        if (_env(OTEL_SDK_DISABLED) or "").lower() == "true":
            logger.info("revtrace tracer: %s=true, business spans stay no-ops", OTEL_SDK_DISABLED)
            # Not the global provider's tracer: another part of the process may have
            # installed an SDK provider, and the variable says the SDK is off.
            state.tracer = trace.NoOpTracer()
            state.configured = False
            return

        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider

        from tracer._processor import AccountingBatchSpanProcessor

        resource = Resource.create({**(resource_attributes or {}), SERVICE_NAME: service_name})
        exporter = span_exporter if span_exporter is not None else _otlp_span_exporter(settings)
        processor = AccountingBatchSpanProcessor(
            exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay_millis,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_millis,
        )
        provider = TracerProvider(resource=resource, sampler=sampler)
        provider.add_span_processor(processor)
        readers = metric_readers
        if readers is None:
            readers = [] if span_exporter is not None else [_otlp_metric_reader(settings)]
        meter_provider = _meter_provider(resource, readers, settings.max_queue_size) if readers else None
        _pipeline = _Pipeline(provider, processor, meter_provider)
        state.tracer = provider.get_tracer(INSTRUMENTATION_NAME)
        state.configured = True
        if set_global:
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
                _global_installed = True
            else:
                logger.warning(
                    "revtrace tracer: OpenTelemetry's global tracer provider is already set and cannot be "
                    "replaced; business spans use the new pipeline, other instrumentation keeps the old one"
                )
        logger.info(
            "revtrace tracer configured for %s: %r",
            service_name,
            settings if span_exporter is None else "custom exporter",
        )


def _shutdown_pipeline(pipeline: _Pipeline, timeout_millis: int = 30000) -> None:
    try:
        pipeline.provider.force_flush(timeout_millis)
        pipeline.provider.shutdown()
    except Exception:
        logger.exception("revtrace tracer: shutting down the span pipeline failed")
    if pipeline.meter_provider is not None:
        try:
            pipeline.meter_provider.shutdown(timeout_millis=timeout_millis)
        except Exception:
            logger.exception("revtrace tracer: shutting down the metrics pipeline failed")


def force_flush(timeout_millis: int = 30000) -> bool:
    """Export every queued span now (and collect metrics). False if the timeout
    passed first or nothing is configured. Never raises."""
    pipeline = _pipeline
    if pipeline is None:
        return False
    try:
        ok = pipeline.processor.force_flush(timeout_millis)
        if pipeline.meter_provider is not None:
            pipeline.meter_provider.force_flush(timeout_millis)
        return ok
    except Exception:
        logger.exception("revtrace tracer: force_flush failed")
        return False


def shutdown(timeout_millis: int = 30000) -> None:
    """Flush and stop the pipeline; business spans become no-ops again (call
    at process exit). Never raises."""
    global _pipeline
    with _lock:
        pipeline, _pipeline = _pipeline, None
        state.tracer = trace.get_tracer(INSTRUMENTATION_NAME) if not _global_installed else _NOOP_TRACER
        state.configured = False
    if pipeline is not None:
        _shutdown_pipeline(pipeline, timeout_millis)


_NOOP_TRACER: Final = trace.NoOpTracer()


def dropped_spans() -> int:
    """How many spans the tracer lost since the process started (queue full,
    export failed, ended after shutdown). Should stay 0; see
    :func:`tracer.export_stats` for the breakdown."""
    dropped: int = export_stats().dropped
    return dropped
