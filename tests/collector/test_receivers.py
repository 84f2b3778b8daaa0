"""The OTLP receivers with real clients: the OpenTelemetry SDK's own exporters
(HTTP and gRPC) over loopback, OTLP/JSON and gzip over plain HTTP."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from collector.service import Collector, CollectorConfig
from collector.store import Store
from tests.collector.helpers import body_of, make_spans, wait_for_count

DATA = Path(__file__).parent / "testdata"


def test_sdk_http_and_grpc_exporters_land_in_store_and_business_views(
    collector: Collector, store: Store
) -> None:
    http_spans = make_spans(50, "http")
    grpc_spans = make_spans(30, "grpc")
    http = HttpSpanExporter(endpoint=f"{collector.http_endpoint}/v1/traces")
    grpc = GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    assert http.export(http_spans) == SpanExportResult.SUCCESS
    assert grpc.export(grpc_spans) == SpanExportResult.SUCCESS
    http.shutdown()
    grpc.shutdown()
    assert collector.writer is not None and collector.writer.flush(20)
    assert store.query("SELECT count() FROM otel_traces").scalar() == 80
    by_prefix = store.query(
        "SELECT splitByChar('-', CorrelationId)[1] AS p, count(), sum(Amount) FROM revtrace_spans GROUP BY p ORDER BY p"
    ).rows
    assert [(p, n) for p, n, _ in by_prefix] == [("grpc", 30), ("http", 50)]
    assert float(by_prefix[1][2]) == sum(10.5 + i for i in range(50))
    assert store.query("SELECT uniqExact(CorrelationId) FROM revtrace_correlations").scalar() == 80


def test_sdk_metric_exporters_over_http_and_grpc(collector: Collector, store: Store) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": "test-engine"}), metric_readers=[reader]
    )
    meter = provider.get_meter("tests")
    meter.create_counter("syncengine.retries").add(3, {"biz.system": "erp"})
    meter.create_histogram("syncengine.step.duration").record(12.5)
    meter.create_up_down_counter("syncengine.queue.depth").add(4)
    data = reader.get_metrics_data()
    assert data is not None
    for exporter in (
        HttpMetricExporter(endpoint=f"{collector.http_endpoint}/v1/metrics"),
        GrpcMetricExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True),
    ):
        assert exporter.export(data).name == "SUCCESS"
        exporter.shutdown()
    assert collector.writer is not None and collector.writer.flush(20)
    sums = store.query(
        "SELECT MetricName, Attributes['biz.system'], Value, IsMonotonic FROM otel_metrics_sum ORDER BY MetricName, IsMonotonic"
    ).rows
    assert ("syncengine.retries", "erp", 3.0, True) in sums
    assert ("syncengine.queue.depth", "", 4.0, False) in sums
    assert store.query("SELECT count(), sum(Sum) FROM otel_metrics_histogram").rows == [(2, 25.0)]


def test_otlp_json_with_hex_ids_and_gzip(collector: Collector, store: Store) -> None:
    body = (DATA / "in-traces.json").read_bytes()
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=gzip.compress(body),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    assert collector.writer is not None and collector.writer.flush(20)
    assert store.query("SELECT TraceId, SpanId FROM otel_traces ORDER BY SpanId LIMIT 1").rows == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    ]


def test_partial_success_reports_rejected_spans_and_keeps_the_rest(
    collector: Collector, store: Store
) -> None:
    document = json.loads((DATA / "in-traces.json").read_text())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = dict(spans[1], spanId="abcd")  # 2 bytes: not a span id
    spans.append(bad)
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=json.dumps(document),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "spanId has 2 bytes" in partial["errorMessage"]
    assert collector.writer is not None and collector.writer.flush(20)
    assert store.query("SELECT count() FROM otel_traces").scalar() == 2


def test_protobuf_partial_success_response(collector: Collector) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body_of(make_spans(3)))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    decoded = ExportTraceServiceResponse()
    decoded.ParseFromString(response.content)
    assert decoded.partial_success.rejected_spans == 1
    assert "traceId is all zeros" in decoded.partial_success.error_message


def test_ingest_tokens_required_when_configured(store: Store, tmp_path: Path) -> None:
    config = CollectorConfig(
        http_port=0,
        grpc_port=0,
        data_dir=tmp_path,
        ingest_tokens=("s3cret-token",),
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
    )
    with Collector(config, store=store) as c:
        spans = make_spans(5)
        url = f"{c.http_endpoint}/v1/traces"
        headers = {"content-type": "application/x-protobuf"}
        missing = httpx.post(url, content=body_of(spans), headers=headers)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        status = status_pb2.Status()
        status.ParseFromString(missing.content)
        assert status.message == "missing bearer token"
        wrong = httpx.post(url, content=body_of(spans), headers={**headers, "authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.post(
            url, content=body_of(spans), headers={**headers, "authorization": "Bearer s3cret-token"}
        )
        assert ok.status_code == 200
        # The SDK exporters carry the token as a header too (OTEL_EXPORTER_OTLP_HEADERS in production).
        grpc_bad = GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True, timeout=5)
        assert grpc_bad.export(spans) == SpanExportResult.FAILURE
        grpc_bad.shutdown()
        grpc_ok = GrpcSpanExporter(
            endpoint=f"127.0.0.1:{c.grpc_port}",
            insecure=True,
            headers={"authorization": "Bearer s3cret-token"},
        )
        assert grpc_ok.export(make_spans(5, "grpc")) == SpanExportResult.SUCCESS
        grpc_ok.shutdown()
        assert c.writer is not None and c.writer.flush(20)
    assert store.query("SELECT count() FROM otel_traces").scalar() == 10
    assert c.ingest is not None and c.ingest.stats.duplicates["traces"] == 0


def test_health_readiness_and_prometheus_metrics(collector: Collector) -> None:
    base = collector.http_endpoint
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    httpx.post(
        f"{base}/v1/traces",
        content=body_of(make_spans(4)),
        headers={"content-type": "application/x-protobuf"},
    )
    text = httpx.get(f"{base}/metrics").text
    assert 'revtrace_ingest_accepted_total{signal="traces"} 4' in text
    status = httpx.get(f"{base}/api/v1/status").json()
    assert status["ingest"]["accepted"]["traces"] == 4
    assert httpx.get(f"{base}/v1/traces").status_code == 405
    assert httpx.get(f"{base}/nope").status_code == 404


def test_self_telemetry_lands_in_the_metrics_tables(collector: Collector, store: Store) -> None:
    httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=body_of(make_spans(6)),
        headers={"content-type": "application/x-protobuf"},
    )
    collector.record_self_telemetry()
    assert collector.writer is not None and collector.writer.flush(20)
    value = wait_for_count(
        store,
        "SELECT max(Value) FROM otel_metrics_sum WHERE ServiceName = 'revtrace-collector'"
        " AND MetricName = 'revtrace.ingest.accepted' AND Attributes['signal'] = 'traces'",
        6,
    )
    assert value == 6


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/metrics"])
def test_empty_request_is_a_valid_export(collector: Collector, path: str) -> None:
    response = httpx.post(
        f"{collector.http_endpoint}{path}", content=b"", headers={"content-type": "application/x-protobuf"}
    )
    assert response.status_code == 200


def test_conversion_in_worker_processes(store: Store, tmp_path: Path) -> None:
    config = CollectorConfig(
        http_port=0,
        grpc_port=-1,
        data_dir=tmp_path,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
        ingest_workers=1,
    )
    with Collector(config, store=store) as c:
        url = f"{c.http_endpoint}/v1/traces"
        headers = {"content-type": "application/x-protobuf"}
        assert (
            httpx.post(url, content=body_of(make_spans(12, "proc")), headers=headers, timeout=30).status_code
            == 200
        )
        bad = httpx.post(url, content=b"\x0a\xff\xff", headers=headers, timeout=30)
        assert bad.status_code == 400 and b"malformed protobuf" in bad.content
        assert c.writer is not None and c.writer.flush(20)
        assert c.ingest is not None and c.ingest.stats.refused["traces"] == 1
    assert store.query("SELECT count() FROM revtrace_spans WHERE CorrelationId LIKE 'proc-%'").scalar() == 12
