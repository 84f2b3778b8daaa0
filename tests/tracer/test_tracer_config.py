"""configure(): OpenTelemetry habits, the environment, the real OTLP exporters."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracer
from bench.bench_tracer import OtlpReceiver
from tracer import ConfigurationError
from tracer._config import resolve_exporter_settings

_OTEL_VARS = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_SDK_DISABLED",
    "REVTRACE_REF_INDEX_SIZE",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = resolve_exporter_settings()
    assert settings.protocol == "http/protobuf"
    assert settings.traces_endpoint == "http://localhost:4318/v1/traces"
    assert settings.metrics_endpoint == "http://localhost:4318/v1/metrics"
    assert (settings.max_queue_size, settings.schedule_delay_millis, settings.max_export_batch_size) == (
        2048,
        5000,
        512,
    )


def test_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://revtrace.internal:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20tok123,x-tenant=acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=globex")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8192")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1024")
    settings = resolve_exporter_settings()
    assert settings.traces_endpoint == "https://revtrace.internal:4318/v1/traces"
    assert settings.headers == {"authorization": "Bearer tok123", "x-tenant": "globex"}
    assert (settings.max_queue_size, settings.schedule_delay_millis, settings.max_export_batch_size) == (
        8192,
        250,
        1024,
    )
    assert "tok123" not in repr(settings)  # the ingest token never reaches a log line


def test_arguments_win_and_signal_endpoints_are_taken_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:9999/custom/traces")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8192")
    assert resolve_exporter_settings().traces_endpoint == "http://collector:9999/custom/traces"
    settings = resolve_exporter_settings(
        endpoint="http://other:4318", max_queue_size=100, max_export_batch_size=50
    )
    assert settings.traces_endpoint == "http://other:4318/v1/traces"
    assert settings.max_queue_size == 100


def test_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    settings = resolve_exporter_settings()
    assert (settings.protocol, settings.traces_endpoint) == ("grpc", "http://localhost:4317")
    tracer.configure("svc", endpoint="http://127.0.0.1:4317", set_global=False, metric_readers=[])
    tracer.shutdown(timeout_millis=100)


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError) as raised:
        tracer.configure("", max_export_batch_size=-1, ref_index_size=-5)
    problems = raised.value.problems
    assert "service_name: must be a non-empty string, got ''" in problems
    assert "OTEL_BSP_MAX_QUEUE_SIZE: must be a positive integer, got 'lots'" in problems
    assert "max_export_batch_size: must be a positive integer, got -1" in problems
    assert any(
        p.startswith("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL/OTEL_EXPORTER_OTLP_PROTOCOL") for p in problems
    )
    assert "ref_index_size: must be an integer >= 0, got -5" in problems
    assert isinstance(raised.value, ValueError)


def test_sdk_disabled_keeps_business_spans_noops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    tracer.configure("svc", span_exporter=exporter, set_global=False)
    with tracer.business_span("billing.invoice.create") as span:
        assert not span.is_recording
    assert exporter.get_finished_spans() == ()


def test_second_configure_replaces_and_flushes_the_first(caplog: pytest.LogCaptureFixture) -> None:
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    tracer.configure("svc", span_exporter=first, set_global=False, schedule_delay_millis=60_000)
    with tracer.business_span("crm.order.approve"):
        pass
    tracer.configure("svc", span_exporter=second, set_global=False)
    with tracer.business_span("erp.invoice.post"):
        pass
    tracer.force_flush()
    assert [s.name for s in first.get_finished_spans()] == ["crm.order.approve"]
    assert [s.name for s in second.get_finished_spans()] == ["erp.invoice.post"]
    assert "configure() called again" in caplog.text


def test_real_otlp_http_exporter_with_ingest_token() -> None:
    with OtlpReceiver(keep_requests=True) as receiver:
        tracer.configure(
            "billing-adapter",
            endpoint=receiver.endpoint,
            headers={"Authorization": "Bearer ingest-token-1"},
            resource_attributes={"deployment.environment": "test"},
            set_global=False,
            metric_readers=[],
        )
        with tracer.business_span(
            "billing.invoice.create", object_refs=["crm:order/801x", "erp:invoice/9"]
        ) as span:
            span.record_payload("source", {"email": "jane@acme.example"})
        assert tracer.force_flush(10_000)
        tracer.shutdown()
    assert receiver.spans == 1
    assert receiver.headers[0]["authorization"] == "Bearer ingest-token-1"
    (resource_spans,) = receiver.decoded[0].resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "billing-adapter"
    assert resource["deployment.environment"] == "test"
    span_proto = resource_spans.scope_spans[0].spans[0]
    attrs: dict[str, AnyValue] = {kv.key: kv.value for kv in span_proto.attributes}
    refs = [v.string_value for v in attrs["biz.object.refs"].array_value.values]
    assert refs == ["crm:order/801x", "erp:invoice/9"]
    assert attrs["biz.correlation_id"].string_value == span.correlation_id
    assert "jane@acme.example" not in receiver.decoded[0].SerializeToString().decode("latin-1")


def test_set_global_installs_the_provider_once() -> None:
    code = """
import logging, tracer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
tracer.configure("svc", span_exporter=exporter)
with trace.get_tracer("other").start_as_current_span("other-instrumentation"):
    pass
tracer.force_flush()
print([s.name for s in exporter.get_finished_spans()])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['other-instrumentation']"
