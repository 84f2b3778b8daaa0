"""The OTLP/gRPC receiver (port 4317): the trace and metrics services.

Status codes as the OTLP specification says: ``UNAUTHENTICATED`` without a valid
token, ``UNAVAILABLE`` (retryable) when the writer is behind, ``RESOURCE_EXHAUSTED``
for messages above the size limit (gRPC enforces it before we see the message),
partial success in the response when some items were rejected.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from collector.ingest import Backpressure, Ingest, IngestError, Signal, Unauthorized

__all__ = ["GrpcReceiver"]

log = logging.getLogger(__name__)


def _handle(ingest: Ingest, signal: Signal, request: Any, context: Any) -> Any:
    metadata = dict(context.invocation_metadata() or ())
    try:
        try:
            ingest.authenticate(metadata.get("authorization"))
            ingest.check_capacity()
        except IngestError:
            ingest.refused(signal)  # refused before decoding (UNAUTHENTICATED, UNAVAILABLE): counted
            raise
        return ingest.handle_message(signal, request)
    except Unauthorized as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    except Backpressure as exc:
        context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except IngestError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Exception:
        log.exception("gRPC %s export failed", signal)
        context.abort(grpc.StatusCode.INTERNAL, "internal error")


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Export(self, request: Any, context: Any) -> Any:
        result = _handle(self.ingest, "traces", request, context)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        return response


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Export(self, request: Any, context: Any) -> Any:
        result = _handle(self.ingest, "metrics", request, context)
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_data_points = result.rejected
            response.partial_success.error_message = result.message
        return response


class GrpcReceiver:
    """A gRPC server with the OTLP trace and metrics services."""

    def __init__(self, ingest: Ingest, host: str, port: int, workers: int = 4) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="revtrace-grpc"),
            options=[
                ("grpc.max_receive_message_length", ingest.max_body_bytes),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ],
            maximum_concurrent_rpcs=workers * 4,
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(ingest), self.server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _MetricsService(ingest), self.server
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind the OTLP/gRPC receiver to {host}:{port}")

    def start(self) -> None:
        """Start serving."""
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let running calls finish for ``grace`` seconds."""
        self.server.stop(grace).wait(grace + 1)
