"""The OTLP/HTTP receiver (port 4318) and the health endpoints, as an ASGI app.

``POST /v1/traces`` and ``POST /v1/metrics`` take ``application/x-protobuf`` or
``application/json``, optionally gzip-encoded. Answers follow the OTLP
specification: 200 with an ``Export…ServiceResponse`` (carrying partial success
when some items were rejected), 400 with a ``google.rpc.Status`` for malformed
data, 401 without a valid token, 413 above the size limit, 415 for an unknown
content type, 503 with ``Retry-After`` when the writer is behind.

Memory stays bounded: the bytes of all request bodies in flight are capped
(``max_inflight_bytes``); past it, requests get 503 + Retry-After instead of
buffering more.

``GET /healthz`` (alive), ``GET /readyz`` (store reachable, writer keeping up),
``GET /metrics`` (Prometheus text) and ``GET /api/v1/status`` (JSON) report health.
Extra routes (the local admin API of ``revtrace up``) can be mounted.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import orjson
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.ingest import (
    Backpressure,
    BadRequest,
    Converted,
    Ingest,
    IngestError,
    IngestResult,
    PayloadTooLarge,
    Signal,
    convert_request,
)

__all__ = ["HealthSource", "OTLPHttpApp", "Route"]

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A mounted route: (method, path) → handler(scope, body, headers) -> (status, headers, body)
Route = Callable[[Scope, bytes, Mapping[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]
HealthSource = Callable[[], dict[str, Any]]

_PATHS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_GRPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14, 429: 8, 500: 13}


class OTLPHttpApp:
    """ASGI application: OTLP ingest plus health endpoints."""

    def __init__(
        self,
        ingest: Ingest,
        *,
        health: HealthSource | None = None,
        ready: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
        metrics_text: Callable[[], str] | None = None,
        max_inflight_bytes: int = 256 * 1024 * 1024,
        workers: int = 4,
        process_workers: int = 0,
    ) -> None:
        self.ingest = ingest
        self.health = health or (lambda: {})
        self.ready = ready or (lambda: (True, {}))
        self.metrics_text = metrics_text or (lambda: "")
        self.max_inflight_bytes = max(max_inflight_bytes, ingest.max_body_bytes)
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="revtrace-ingest")
        # Decoding and converting OTLP is pure Python work: with process workers
        # it runs beside the event loop and the writer instead of sharing one GIL.
        self._processes: ProcessPoolExecutor | None = None
        if process_workers > 0:
            self._processes = ProcessPoolExecutor(
                max_workers=process_workers, mp_context=multiprocessing.get_context("spawn")
            )
        self.routes: dict[tuple[str, str], Route] = {}

    def mount(self, method: str, path: str, handler: Route) -> None:
        """Serve ``handler`` at ``method path`` (used by ``revtrace up`` for its admin API)."""
        self.routes[(method.upper(), path)] = handler

    def close(self) -> None:
        """Stop the conversion threads and processes."""
        self._executor.shutdown(wait=True, cancel_futures=False)
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=False)

    # --- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            if path in _PATHS:
                if method != "POST":
                    await _respond(send, 405, {"allow": "POST"}, b"use POST\n", "text/plain")
                    return
                await self._export(_PATHS[path], headers, receive, send)
                return
            route = self.routes.get((method, path)) or self.routes.get((method, _prefix(path)))
            if route is not None:
                body = await self._read_limited(receive, headers, self.ingest.max_body_bytes)
                status, extra, payload = await route(scope, body, headers)
                await _respond(send, status, extra, payload, extra.get("content-type", "application/json"))
                return
            if method == "GET":
                await self._get(path, send)
                return
            await _respond(send, 404, {}, b"not found\n", "text/plain")
        except IngestError as exc:
            await self._error(send, exc, headers.get("content-type"))
        except Exception:
            log.exception("request %s %s failed", method, path)
            await _respond(send, 500, {}, b"internal error\n", "text/plain")

    async def _get(self, path: str, send: Send) -> None:
        if path == "/healthz":
            await _respond(send, 200, {}, orjson.dumps({"status": "ok"}), "application/json")
        elif path == "/readyz":
            ok, detail = await asyncio.get_running_loop().run_in_executor(self._executor, self.ready)
            body = orjson.dumps({"status": "ready" if ok else "not ready", **detail})
            await _respond(send, 200 if ok else 503, {}, body, "application/json")
        elif path == "/metrics":
            text = self.metrics_text()
            await _respond(send, 200, {}, text.encode(), "text/plain; version=0.0.4")
        elif path == "/api/v1/status":
            body = orjson.dumps(self.health(), default=str)
            await _respond(send, 200, {}, body, "application/json")
        else:
            await _respond(send, 404, {}, b"not found\n", "text/plain")

    async def _read_limited(self, receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise BadRequest(f"invalid Content-Length {declared[:40]!r}") from None
            if size > limit:
                raise PayloadTooLarge(f"body is {size} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _reserve(self, size: int) -> None:
        with self._inflight_lock:
            if self._inflight + size > self.max_inflight_bytes and self._inflight > 0:
                raise Backpressure(f"{self._inflight} bytes of requests in flight; retry later")
            self._inflight += size

    def _release(self, size: int) -> None:
        with self._inflight_lock:
            self._inflight -= size

    async def _export(self, signal: Signal, headers: Mapping[str, str], receive: Receive, send: Send) -> None:
        ingest = self.ingest
        limit = ingest.max_body_bytes
        declared = (
            int(headers.get("content-length", "0") or 0) if headers.get("content-length", "").isdigit() else 0
        )
        reserved = min(max(declared, 0), limit)
        try:
            ingest.authenticate(headers.get("authorization"))
            ingest.check_capacity()
            self._reserve(reserved)
        except IngestError:
            ingest.refused(signal)  # refused before reading the body (401, 503): counted like any refusal
            raise
        try:
            raw = await self._read_limited(receive, headers, limit)
            extra = len(raw) - reserved
            if extra > 0:
                self._reserve(extra)
                reserved += extra
            content_type = headers.get("content-type")
            encoding = headers.get("content-encoding")
            loop = asyncio.get_running_loop()
            try:
                converted: Converted = await loop.run_in_executor(
                    self._processes or self._executor,
                    convert_request,
                    signal,
                    raw,
                    encoding,
                    content_type,
                    ingest.max_body_bytes,
                    ingest.limits,
                )
            except IngestError:
                ingest.refused(signal)
                raise
            result: IngestResult = await loop.run_in_executor(
                self._executor, ingest.spool_converted, signal, converted
            )
        finally:
            self._release(reserved)
        await _respond(send, 200, {}, _success_body(signal, result, content_type), _reply_type(content_type))

    async def _error(self, send: Send, exc: IngestError, content_type: str | None) -> None:
        extra: dict[str, str] = {}
        if exc.retry_after is not None:
            extra["retry-after"] = str(exc.retry_after)
        if exc.status == 401:
            extra["www-authenticate"] = 'Bearer realm="revtrace"'
        message = str(exc)
        if _reply_type(content_type) == "application/json":
            body = orjson.dumps({"code": _GRPC_CODE.get(exc.status, 13), "message": message})
        else:
            body = status_pb2.Status(code=_GRPC_CODE.get(exc.status, 13), message=message).SerializeToString()
        await _respond(send, exc.status, extra, body, _reply_type(content_type))


def _prefix(path: str) -> str:
    """``/api/v1/admin/x`` → ``/api/v1/admin/*`` for prefix routes."""
    head, _, _ = path.rpartition("/")
    return head + "/*"


def _reply_type(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return "application/json" if media == "application/json" else "application/x-protobuf"


def _success_body(signal: Signal, result: IngestResult, content_type: str | None) -> bytes:
    json_reply = _reply_type(content_type) == "application/json"
    if signal == "traces":
        if json_reply:
            if not result.rejected:
                return b"{}"
            return orjson.dumps(
                {"partialSuccess": {"rejectedSpans": str(result.rejected), "errorMessage": result.message}}
            )
        trace_response = ExportTraceServiceResponse()
        if result.rejected:
            trace_response.partial_success.rejected_spans = result.rejected
            trace_response.partial_success.error_message = result.message
        return bytes(trace_response.SerializeToString())
    if json_reply:
        if not result.rejected:
            return b"{}"
        return orjson.dumps(
            {"partialSuccess": {"rejectedDataPoints": str(result.rejected), "errorMessage": result.message}}
        )
    metrics_response = ExportMetricsServiceResponse()
    if result.rejected:
        metrics_response.partial_success.rejected_data_points = result.rejected
        metrics_response.partial_success.error_message = result.message
    return bytes(metrics_response.SerializeToString())


async def _respond(
    send: Send, status: int, headers: Mapping[str, str], body: bytes, content_type: str
) -> None:
    raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers.items() if k != "content-type"]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
