"""Tracer benchmarks.

1. Cost of one business span vs a bare OpenTelemetry SDK span with the same
   attributes, both through the same kind of pipeline (the accounting batch
   processor and an exporter that discards), measured interleaved in one run.
   Goal: ratio ≤ 1.3.
2. Business spans per second through the real OTLP/HTTP exporter to a minimal
   OTLP/HTTP receiver on loopback (stdlib ``http.server`` that decodes
   ``ExportTraceServiceRequest`` with ``opentelemetry.proto``), in one process:
   sustained (the producer paced by queue depth: zero drops) and flat out
   (overload: every span received or counted as dropped). Goal: zero
   uncounted drops.
"""

from __future__ import annotations

import gzip
import statistics
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracer
from bench import Result
from tracer._processor import AccountingBatchSpanProcessor

__all__ = ["DiscardingExporter", "OtlpReceiver", "run"]


class DiscardingExporter(SpanExporter):
    """Counts and forgets: the pipeline's cost without the network's."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1 for benchmarks and tests:
    accepts ``POST /v1/traces`` (protobuf, optionally gzip/deflate), counts the
    spans and keeps the request headers and decoded requests if asked."""

    def __init__(self, keep_requests: bool = False) -> None:
        self.spans = 0
        self.requests = 0
        self.keep_requests = keep_requests
        self.decoded: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if self.path != "/v1/traces":
                    self._reply(404, b"")
                    return
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                with receiver._lock:
                    receiver.spans += count
                    receiver.requests += 1
                    if receiver.keep_requests:
                        receiver.decoded.append(request)
                        receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """Base URL (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_STAGE = "billing.invoice.create"


def _business_span() -> None:
    with tracer.business_span(
        _STAGE,
        vendor="stripe",
        object_id="in_1PzQk2LkdIwHu7ix0aB1cDeF",
        object_refs=("crm:opportunity/006Dn00000A1b2CIAR",),
        amount=Decimal("120.00"),
        currency="EUR",
        legal_entity="ACME-DE",
        idempotency_key="q2c-7c1e4a4e-invoice",
        attempt=1,
    ):
        pass


def _timed(fn: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _span_overhead(quick: bool) -> list[Result]:
    # the attributes a business span ends up with, for the baseline to set up front
    probe = InMemorySpanExporter()
    tracer.configure("bench", span_exporter=probe, set_global=False, metric_readers=[])
    with tracer.correlation("7c1e4a4e-2f55-4b8e-9d43-2b1f6b0c9a11", process="quote_to_cash"):
        _business_span()
    tracer.force_flush()
    attributes = dict(probe.get_finished_spans()[0].attributes or {})
    tracer.shutdown()

    discard = DiscardingExporter()
    big = 1_000_000  # no drops: the comparison is about the span, not the queue
    tracer.configure(
        "bench",
        span_exporter=discard,
        set_global=False,
        metric_readers=[],
        max_queue_size=big,
        max_export_batch_size=512,
        schedule_delay_millis=200,
    )
    baseline_provider = TracerProvider()
    baseline_provider.add_span_processor(
        AccountingBatchSpanProcessor(
            DiscardingExporter(), max_queue_size=big, max_export_batch_size=512, schedule_delay_millis=200
        )
    )
    bare = baseline_provider.get_tracer("bench.baseline")

    def baseline() -> None:
        with bare.start_as_current_span(_STAGE, attributes=attributes):
            pass

    # Many short, adjacent pairs: each pair sees the same machine load, and the
    # median of the pair ratios shrugs off the pairs a neighbour's job disturbed.
    chunk, pairs = (200, 30) if quick else (200, 200)
    business_times: list[float] = []
    baseline_times: list[float] = []
    with tracer.correlation("7c1e4a4e-2f55-4b8e-9d43-2b1f6b0c9a11", process="quote_to_cash"):
        _timed(_business_span, 1000)  # warm up both
        _timed(baseline, 1000)
        for i in range(pairs):
            if i % 2:  # alternate which goes first
                baseline_times.append(_timed(baseline, chunk))
                business_times.append(_timed(_business_span, chunk))
            else:
                business_times.append(_timed(_business_span, chunk))
                baseline_times.append(_timed(baseline, chunk))
            if i % 20 == 19:
                tracer.force_flush()
                baseline_provider.force_flush()
    tracer.shutdown()
    baseline_provider.shutdown()
    ratios = [b / a for b, a in zip(business_times, baseline_times, strict=True)]
    ratio = statistics.median(ratios)
    baseline_us = statistics.median(baseline_times) * 1e6
    business_us = baseline_us * ratio
    return [
        Result(
            name="business span (baggage correlation, 9 business args; value = baseline × median pair ratio)",
            value=business_us,
            unit="µs/span",
            baseline_name="bare OTel SDK span, same attributes",
            baseline=baseline_us,
            goal="ratio ≤ 1.3",
            passed=ratio <= 1.3,
            extra={
                "pairs": pairs,
                "spans_per_chunk": chunk,
                "ratio_p25": statistics.quantiles(ratios, n=4)[0],
                "ratio_p75": statistics.quantiles(ratios, n=4)[2],
                "business_median_us": statistics.median(business_times) * 1e6,
            },
        )
    ]


def _throughput(quick: bool, *, paced: bool) -> Result:
    """Business spans through the real OTLP/HTTP exporter to the loopback
    receiver. ``paced``: the producer holds back while the queue is over half
    full (what a sustained load looks like); otherwise it produces flat out
    and the overflow must show up as counted drops."""
    total = 20_000 if quick else 60_000
    queue_size = 16_384
    with OtlpReceiver() as receiver:
        before = tracer.export_stats()
        tracer.configure(
            "bench-otlp",
            endpoint=receiver.endpoint,
            protocol="http/protobuf",
            set_global=False,
            metric_readers=[],
            max_queue_size=queue_size,
            max_export_batch_size=1024,
            schedule_delay_millis=100,
        )
        start = time.perf_counter()
        with tracer.correlation("7c1e4a4e-2f55-4b8e-9d43-2b1f6b0c9a11", process="quote_to_cash"):
            for i in range(total):
                _business_span()
                if paced and i % 256 == 0:
                    while tracer.export_stats().queued > queue_size // 2:
                        time.sleep(0.005)
        produced_s = time.perf_counter() - start
        tracer.force_flush(120_000)
        elapsed = time.perf_counter() - start
        tracer.shutdown()
        after = tracer.export_stats()
        received = receiver.spans
    dropped = after.dropped - before.dropped
    uncounted = total - received - dropped
    mode = (
        "sustained (producer paced by queue depth)" if paced else "flat out (overload: drops must be counted)"
    )
    return Result(
        name=f"business spans/s delivered over OTLP/HTTP to a loopback receiver, {mode}",
        value=received / elapsed,
        unit="spans/s",
        goal="zero uncounted drops" + (", zero drops" if paced else ""),
        passed=uncounted == 0 and (dropped == 0 or not paced),
        extra={
            "produced": total,
            "received": received,
            "dropped_counted": dropped,
            "uncounted": uncounted,
            "exported_counted": after.exported - before.exported,
            "produce_rate_spans_s": total / produced_s,
            "export_requests": receiver.requests,
        },
    )


def run(quick: bool) -> list[Result]:
    """Both tracer benchmarks."""
    results = _span_overhead(quick)
    results.append(_throughput(quick, paced=True))
    results.append(_throughput(quick, paced=False))
    for result in results:
        for key, value in result.extra.items():
            print(f"      {key}: {value:,.1f}" if isinstance(value, float) else f"      {key}: {value}")
    return results
