"""Ingest: what the HTTP and gRPC receivers share.

Authenticate → decode → convert (OTLP → rows) → spool. The receivers only map
the outcome to their protocol (HTTP status codes, gRPC status codes), as the
OTLP specification says.

Exceptions (each carries what the receiver answers)::

    IngestError
     ├── Unauthorized       401 / UNAUTHENTICATED
     ├── BadRequest         400 / INVALID_ARGUMENT (malformed OTLP)
     ├── PayloadTooLarge    413 / RESOURCE_EXHAUSTED without retry
     ├── UnsupportedMedia   415
     └── Backpressure       503 + Retry-After / UNAVAILABLE (retryable)
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from collector.otlp import (
    TRACES_PROTOBUF,
    TRACES_TABLE,
    Limits,
    OTLPDecodeError,
    RowBatch,
    Screened,
    decode_metrics,
    decode_traces,
    drop_spans,
    is_protobuf,
    metrics_to_rows,
    request_span_keys,
    screen_traces,
)
from collector.spool import Spool, SpoolFullError

__all__ = [
    "Backpressure",
    "BadRequest",
    "Converted",
    "Ingest",
    "IngestError",
    "IngestResult",
    "IngestStats",
    "PayloadTooLarge",
    "RecentSpans",
    "Signal",
    "Unauthorized",
    "UnsupportedMedia",
    "convert_request",
    "decompress",
]

log = logging.getLogger(__name__)

Signal = Literal["traces", "metrics"]

RETRY_AFTER_S: Final = 5


class IngestError(Exception):
    """A request that cannot be accepted; ``status`` is the HTTP answer."""

    status = 500
    retry_after: int | None = None


class Unauthorized(IngestError):
    """No valid bearer token."""

    status = 401


class BadRequest(IngestError):
    """Malformed OTLP."""

    status = 400


class PayloadTooLarge(IngestError):
    """Body above the size limit (after decompression)."""

    status = 413


class UnsupportedMedia(IngestError):
    """Content type or encoding we do not speak."""

    status = 415


class Backpressure(IngestError):
    """The writer is behind; the client should retry after ``retry_after`` seconds."""

    status = 503
    retry_after = RETRY_AFTER_S


@dataclass(frozen=True)
class IngestResult:
    """What was accepted and rejected of one request."""

    accepted: int
    rejected: int
    message: str


@dataclass
class IngestStats:
    """Counters per signal, for health endpoints and self-telemetry."""

    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    accepted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """JSON-ready counters."""
        return {
            "requests": dict(self.requests),
            "accepted": dict(self.accepted),
            "rejected": dict(self.rejected),
            "refused": dict(self.refused),
            "duplicates": dict(self.duplicates),
        }


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` with a hard cap on the output (gzip bombs stop at ``max_bytes``)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {max_bytes}")
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMedia(f"unsupported Content-Encoding {encoding!r}; use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"invalid {encoding} body: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"body is over {max_bytes} bytes after decompression")
    if not inflater.eof:
        raise BadRequest(f"truncated {encoding} body")
    return out


class RecentSpans:
    """The span keys (trace id + span id) accepted recently, bounded.

    An OTLP client retries a request it got no answer for; when the collector
    had already spooled it (killed after the write, before the reply), the
    retry would store every span twice. Spans whose key was accepted within
    the last ``capacity`` spans (at least half of it) are dropped as duplicates.

    Two generations of plain sets: when the young one is full it becomes the
    old one and the old one is dropped — half the memory of an ordered map and
    O(1) per key, at the price of remembering between ``capacity / 2`` and
    ``capacity`` keys instead of exactly ``capacity``.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._young: set[bytes] = set()
        self._old: set[bytes] = set()

    def __contains__(self, key: bytes) -> bool:
        return key in self._young or key in self._old

    def __len__(self) -> int:
        return len(self._young | self._old)

    def add(self, keys: Iterable[bytes]) -> None:
        """Remember ``keys``; the oldest generation goes when the young one is full."""
        half = max(1, self.capacity // 2)
        for key in keys:
            self._young.add(key)
            if len(self._young) >= half:
                self._old, self._young = self._young, set()


class Ingest:
    """Authenticates, decodes, converts and spools OTLP requests."""

    def __init__(
        self,
        spool: Spool,
        *,
        tokens: Iterable[str] = (),
        max_body_bytes: int = 64 * 1024 * 1024,
        limits: Limits | None = None,
    ) -> None:
        self.spool = spool
        self.tokens = tuple(t for t in (tok.strip() for tok in tokens) if t)
        self.max_body_bytes = max_body_bytes
        self.limits = limits or Limits()
        self.stats = IngestStats()
        self._lock = threading.Lock()
        self.recent = RecentSpans()
        self._remember_spooled()

    def _remember_spooled(self) -> None:
        """Rebuild the recent-span keys from what the spool still holds (after a restart)."""
        import orjson

        start = max(self.spool.committed - 64 * 1024 * 1024, self.spool.first_position)
        keys: list[bytes] = []
        try:
            for record in self.spool.read_from(start, self.spool.end - start):
                for table, _, rows in record.blocks:
                    if table == TRACES_PROTOBUF:
                        keys.extend(request_span_keys(rows))
                    if table != TRACES_TABLE:  # JSON rows, as an older collector spooled them
                        continue
                    for line in rows.split(b"\n"):
                        row = orjson.loads(line)
                        keys.append(bytes.fromhex(row["TraceId"]) + bytes.fromhex(row["SpanId"]))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("could not rebuild recent span keys from the spool: %s", exc)
        self.recent.add(keys)

    @property
    def auth_required(self) -> bool:
        """True when ingest needs a bearer token."""
        return bool(self.tokens)

    def authenticate(self, authorization: str | None) -> None:
        """Check ``Authorization: Bearer <token>`` when tokens are configured."""
        if not self.tokens:
            return
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token")
        if not any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens):
            raise Unauthorized("invalid bearer token")

    def check_capacity(self) -> None:
        """Raise :class:`Backpressure` early when the spool is over its limit."""
        if self.spool.backlog_bytes >= self.spool.max_backlog_bytes:
            raise Backpressure(
                f"the writer is behind ({self.spool.backlog_bytes} bytes waiting for the store); retry later"
            )

    def handle(self, signal: Signal, body: bytes, content_type: str | None) -> IngestResult:
        """Decode ``body`` (already decompressed), convert and spool it, in this thread."""
        try:
            converted = convert_request(signal, body, None, content_type, self.max_body_bytes, self.limits)
        except IngestError:
            self.stats.requests[signal] += 1
            self.stats.refused[signal] += 1
            raise
        return self.spool_converted(signal, converted)

    def handle_message(self, signal: Signal, message: object) -> IngestResult:
        """Convert and spool an already-decoded message (the gRPC path)."""
        if signal == "traces":
            converted = Converted.of_traces(screen_traces(message, self.limits))  # type: ignore[arg-type]
        else:
            converted = Converted.of(metrics_to_rows(message, self.limits))  # type: ignore[arg-type]
        return self.spool_converted(signal, converted)

    def refused(self, signal: Signal) -> None:
        """Count a request refused before conversion finished (no valid token, no
        room, a bad body)."""
        self.stats.requests[signal] += 1
        self.stats.refused[signal] += 1

    def spool_converted(self, signal: Signal, converted: Converted) -> IngestResult:
        """Append the converted rows to the spool; only then are they accepted.

        Spans accepted before (a client retrying a request whose reply it
        never got) are dropped here, counted as ``duplicates``.
        """
        self.stats.requests[signal] += 1
        blocks = converted.blocks
        with self._lock:
            keys = converted.span_keys
            if keys:
                recent = self.recent
                fresh = [i for i, key in enumerate(keys) if key not in recent]
                if len(fresh) != len(keys):
                    self.stats.duplicates[signal] += len(keys) - len(fresh)
                    keys = [keys[i] for i in fresh]
                    blocks = [_keep_spans(block, set(fresh)) for block in blocks]
                    blocks = [block for block in blocks if block[1]]
            if blocks:
                try:
                    self.spool.append(blocks)
                except SpoolFullError as exc:
                    self.stats.refused[signal] += 1
                    raise Backpressure(str(exc)) from None
            if keys:
                self.recent.add(keys)
        self.stats.accepted[signal] += converted.accepted
        self.stats.rejected[signal] += converted.rejected
        if converted.rejected:
            log.info("%s: %d accepted, %s", signal, converted.accepted, converted.message)
        return IngestResult(converted.accepted, converted.rejected, converted.message)


def _keep_spans(block: tuple[str, int, bytes], keep: set[int]) -> tuple[str, int, bytes]:
    if block[0] != TRACES_PROTOBUF:
        return block
    return block[0], len(keep), drop_spans(block[2], keep) if keep else b""


@dataclass(frozen=True)
class Converted:
    """A converted request, compact enough to cross a process boundary cheaply:
    for traces one protobuf block of the screened spans (flattened by the
    store's engine when written), for metrics one JSONEachRow payload per
    table; and the span keys of the traces."""

    accepted: int
    rejected: int
    message: str
    blocks: list[tuple[str, int, bytes]]
    span_keys: list[bytes]

    @classmethod
    def of(cls, batch: RowBatch) -> Converted:
        """Pack a :class:`RowBatch`."""
        blocks = [(table, len(rows), b"\n".join(rows)) for table, rows in batch.rows.items() if rows]
        return cls(batch.accepted, batch.rejected, batch.message, blocks, batch.span_keys)

    @classmethod
    def of_traces(cls, screened: Screened) -> Converted:
        """Pack a screened traces request."""
        blocks = [(TRACES_PROTOBUF, screened.accepted, screened.payload)] if screened.accepted else []
        return cls(screened.accepted, screened.rejected, screened.message, blocks, screened.span_keys)


def convert_request(
    signal: Signal,
    raw: bytes,
    encoding: str | None,
    content_type: str | None,
    max_body_bytes: int,
    limits: Limits,
) -> Converted:
    """Decompress, decode and convert one request body. Pure: runs in a worker
    process when the collector has ingest workers."""
    body = decompress(raw, encoding, max_body_bytes)
    try:
        if signal == "traces":
            message = decode_traces(body, content_type)
            spooled = body if is_protobuf(content_type) else None  # spooled as it came
            return Converted.of_traces(screen_traces(message, limits, spooled))
        return Converted.of(metrics_to_rows(decode_metrics(body, content_type), limits))
    except OTLPDecodeError as exc:
        if str(exc).startswith("unsupported content type"):
            raise UnsupportedMedia(str(exc)) from None
        raise BadRequest(str(exc)) from None
