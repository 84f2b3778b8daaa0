"""The collector role as one service object: store, schema, spool, writer,
OTLP/HTTP and OTLP/gRPC receivers, health, and self-telemetry.

``revtrace collector`` runs it alone; ``revtrace up`` runs it beside the
evaluator and the dashboard in one process (the embedded store allows one
process). ``start()`` returns once the receivers listen; ``stop()`` stops
accepting, flushes the spool into the store and closes everything.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from collector import settings
from collector.grpc_server import GrpcReceiver
from collector.http import OTLPHttpApp
from collector.ingest import Ingest
from collector.migrations import RenderOptions, apply_retention, migrate
from collector.otlp import Limits, format_timestamp
from collector.spool import Spool
from collector.store import Store, open_store
from collector.writer import Writer

__all__ = ["Collector", "CollectorConfig"]

log = logging.getLogger(__name__)

SELF_SERVICE_NAME = "revtrace-collector"


@dataclass
class CollectorConfig:
    """Everything the collector role needs; :meth:`from_env` reads the defaults."""

    host: str = "127.0.0.1"
    http_port: int = 4318
    grpc_port: int = 4317
    data_dir: Path = field(default_factory=settings.data_dir)
    store_url: str | None = None
    database: str | None = None
    ingest_tokens: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024 * 1024
    batch_rows: int = 50_000
    batch_ms: int = 1000
    insert_threads: int = 2
    spool_max_bytes: int = 2 * 1024 * 1024 * 1024
    spool_fsync: bool = False
    spool_recycle_bytes: int = 4 * 1024 * 1024
    ttl_days: int = 30
    self_telemetry_s: float = 15.0
    ingest_workers: int = 0
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, **overrides: Any) -> CollectorConfig:
        """Defaults from the ``REVTRACE_*`` environment, then ``overrides``."""
        values: dict[str, Any] = {
            "host": settings.env_str("REVTRACE_HTTP_HOST"),
            "http_port": settings.env_int("REVTRACE_HTTP_PORT"),
            "grpc_port": settings.env_int("REVTRACE_GRPC_PORT"),
            "data_dir": settings.data_dir(),
            "ingest_tokens": tuple(
                t for t in settings.env_str("REVTRACE_INGEST_TOKENS").split(",") if t.strip()
            ),
            "max_body_bytes": settings.env_int("REVTRACE_MAX_BODY_BYTES"),
            "batch_rows": settings.env_int("REVTRACE_BATCH_ROWS"),
            "batch_ms": settings.env_int("REVTRACE_BATCH_MS"),
            "insert_threads": settings.env_int("REVTRACE_INSERT_THREADS"),
            "spool_max_bytes": settings.env_int("REVTRACE_SPOOL_MAX_BYTES"),
            "spool_fsync": settings.env_bool("REVTRACE_SPOOL_FSYNC"),
            "ttl_days": settings.env_int("REVTRACE_TTL_DAYS"),
            "ingest_workers": settings.env_int("REVTRACE_INGEST_WORKERS"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Collector:
    """The collector role. Thread-safe start/stop; used as a context manager in tests."""

    def __init__(self, config: CollectorConfig, store: Store | None = None) -> None:
        self.config = config
        self._own_store = store is None
        self.store = store if store is not None else open_store(config.store_url, config.database)
        self.spool: Spool | None = None
        self.writer: Writer | None = None
        self.ingest: Ingest | None = None
        self.app: OTLPHttpApp | None = None
        self.grpc: GrpcReceiver | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._telemetry_stop = threading.Event()
        self._telemetry_thread: threading.Thread | None = None
        self.http_port = config.http_port
        self.grpc_port = config.grpc_port
        self.started_at = 0.0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Migrate the schema, start the writer and both receivers."""
        cfg = self.config
        applied = migrate(self.store, RenderOptions(ttl_days=cfg.ttl_days))
        if applied:
            log.info("schema migrations applied: %s", ", ".join(applied))
        retention = apply_retention(self.store, cfg.ttl_days)
        if retention:
            log.info(
                "retention set to %s on %s",
                f"{cfg.ttl_days} days" if cfg.ttl_days else "forever",
                ", ".join(retention),
            )
        self.spool = Spool(
            cfg.data_dir / "spool" / _safe(self.store.database),
            max_backlog_bytes=cfg.spool_max_bytes,
            fsync=cfg.spool_fsync,
            recycle_bytes=cfg.spool_recycle_bytes,
        )
        if self.spool.backlog_bytes:
            log.info("spool holds %d bytes from before; writing them first", self.spool.backlog_bytes)
        self.writer = Writer(
            self.store,
            self.spool,
            batch_rows=cfg.batch_rows,
            batch_ms=cfg.batch_ms,
            insert_threads=cfg.insert_threads,
        )
        self.writer.start()
        self.ingest = Ingest(
            self.spool, tokens=cfg.ingest_tokens, max_body_bytes=cfg.max_body_bytes, limits=cfg.limits
        )
        if not self.ingest.auth_required and cfg.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("ingest on %s has no token (set REVTRACE_INGEST_TOKENS)", cfg.host)
        self.app = OTLPHttpApp(
            self.ingest,
            health=self.status,
            ready=self.readiness,
            metrics_text=self.prometheus_text,
            process_workers=cfg.ingest_workers,
        )
        self._start_http()
        if cfg.grpc_port >= 0:  # 0 picks a free port; negative disables gRPC
            self.grpc = GrpcReceiver(self.ingest, cfg.host, cfg.grpc_port)
            self.grpc.start()
            self.grpc_port = self.grpc.port
        self.started_at = time.time()
        if cfg.self_telemetry_s > 0:
            self._telemetry_thread = threading.Thread(
                target=self._telemetry_loop, name="revtrace-self-telemetry", daemon=True
            )
            self._telemetry_thread.start()
        log.info(
            "collector listening: OTLP/HTTP %s:%d, OTLP/gRPC %s, store %s",
            cfg.host,
            self.http_port,
            f"{cfg.host}:{self.grpc_port}" if self.grpc else "off",
            self.store.config.describe(),
        )

    def _start_http(self) -> None:
        cfg = self.config
        assert self.app is not None
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.http_port))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="revtrace-otlp-http", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._server_thread.is_alive():
                raise OSError(f"the OTLP/HTTP receiver did not start on {cfg.host}:{self.http_port}")
            time.sleep(0.02)

    def stop(self, flush_timeout: float = 30.0) -> bool:
        """Stop accepting, flush the spool into the store, close. True when fully flushed."""
        if self._server is not None:
            self._server.should_exit = True
        if self.grpc is not None:
            self.grpc.stop()
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
        drained = True
        if self.writer is not None:
            drained = self.writer.stop(flush_timeout)
            if not drained and self.spool is not None:
                log.warning(
                    "stopped with %d bytes still in the spool; they are written on the next start",
                    self.spool.backlog_bytes,
                )
        self._telemetry_stop.set()
        if self._telemetry_thread is not None:
            self._telemetry_thread.join(timeout=5)
        if self.app is not None:
            self.app.close()
        if self.spool is not None:
            self.spool.close()
        if self._own_store:
            self.store.close()
        return drained

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def http_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver."""
        return f"http://{self.config.host}:{self.http_port}"

    # --- health --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything an operator wants to know, as JSON."""
        writer = self.writer
        spool = self.spool
        return {
            "service": SELF_SERVICE_NAME,
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0,
            "store": self.store.config.describe(),
            "ingest": self.ingest.stats.as_dict() if self.ingest else {},
            "auth_required": bool(self.ingest and self.ingest.auth_required),
            "spool": {
                "backlog_bytes": spool.backlog_bytes if spool else 0,
                "max_backlog_bytes": spool.max_backlog_bytes if spool else 0,
                "committed": spool.committed if spool else 0,
                "end": spool.end if spool else 0,
            },
            "writer": {
                "healthy": writer.stats.healthy if writer else False,
                "batches": writer.stats.batches if writer else 0,
                "rows_written": dict(writer.stats.rows_written) if writer else {},
                "insert_errors": writer.stats.insert_errors if writer else 0,
                "records_rejected": writer.stats.records_rejected if writer else 0,
                "last_error": writer.stats.last_error if writer else "",
            },
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the store answers, the writer is healthy and the spool has room."""
        problems: list[str] = []
        if not self.store.ping():
            problems.append("store unreachable")
        if self.writer is not None and not self.writer.stats.healthy:
            problems.append(f"writer failing: {self.writer.stats.last_error[:200]}")
        if self.spool is not None and self.spool.backlog_bytes >= self.spool.max_backlog_bytes:
            problems.append("spool full")
        return not problems, {"problems": problems}

    def prometheus_text(self) -> str:
        """The collector's counters in the Prometheus text format."""
        lines: list[str] = []
        stats = self.ingest.stats if self.ingest else None
        if stats is not None:
            for name, values in stats.as_dict().items():
                metric = f"revtrace_ingest_{name}_total"
                lines.append(f"# TYPE {metric} counter")
                for signal, value in values.items():
                    lines.append(f'{metric}{{signal="{signal}"}} {value}')
        if self.spool is not None:
            lines.append("# TYPE revtrace_spool_backlog_bytes gauge")
            lines.append(f"revtrace_spool_backlog_bytes {self.spool.backlog_bytes}")
        if self.writer is not None:
            lines.append("# TYPE revtrace_writer_rows_total counter")
            for table, value in self.writer.stats.rows_written.items():
                lines.append(f'revtrace_writer_rows_total{{table="{table}"}} {value}')
            lines.append("# TYPE revtrace_writer_errors_total counter")
            lines.append(f"revtrace_writer_errors_total {self.writer.stats.insert_errors}")
            lines.append("# TYPE revtrace_writer_healthy gauge")
            lines.append(f"revtrace_writer_healthy {int(self.writer.stats.healthy)}")
        return "\n".join(lines) + "\n"

    # --- self-telemetry ------------------------------------------------------------

    def _telemetry_loop(self) -> None:
        started_ns = time.time_ns()
        while not self._telemetry_stop.wait(self.config.self_telemetry_s):
            try:
                self.record_self_telemetry(started_ns)
            except Exception as exc:  # the store may be down: that is what the spool is for
                log.debug("self-telemetry skipped: %s", exc)

    def record_self_telemetry(self, started_ns: int | None = None) -> None:
        """Write the collector's own counters into ``otel_metrics_sum``/``_gauge``
        (service ``revtrace-collector``), through the spool like any other data."""
        if self.ingest is None or self.spool is None or self.writer is None:
            return
        now = time.time_ns()
        start = started_ns or int(self.started_at * 1e9)
        sums: list[bytes] = []
        for name, values in self.ingest.stats.as_dict().items():
            for signal, value in values.items():
                sums.append(
                    _metric_row(
                        f"revtrace.ingest.{name}", {"signal": signal}, value, start, now, monotonic=True
                    )
                )
        for table, value in self.writer.stats.rows_written.items():
            sums.append(
                _metric_row("revtrace.writer.rows", {"table": table}, value, start, now, monotonic=True)
            )
        sums.append(
            _metric_row(
                "revtrace.writer.errors", {}, self.writer.stats.insert_errors, start, now, monotonic=True
            )
        )
        gauges = [
            _metric_row("revtrace.spool.backlog_bytes", {}, self.spool.backlog_bytes, start, now),
            _metric_row("revtrace.writer.healthy", {}, int(self.writer.stats.healthy), start, now),
        ]
        self.spool.append(
            [
                ("otel_metrics_sum", len(sums), b"\n".join(sums)),
                ("otel_metrics_gauge", len(gauges), b"\n".join(gauges)),
            ]
        )


def _metric_row(
    name: str, attributes: dict[str, str], value: float, start_ns: int, now_ns: int, monotonic: bool = False
) -> bytes:
    row: dict[str, Any] = {
        "ServiceName": SELF_SERVICE_NAME,
        "ResourceAttributes": {"service.name": SELF_SERVICE_NAME},
        "MetricName": name,
        "Attributes": attributes,
        "StartTimeUnix": format_timestamp(start_ns),
        "TimeUnix": format_timestamp(now_ns),
        "Value": float(value),
    }
    if monotonic:
        row["AggregationTemporality"] = 2  # cumulative
        row["IsMonotonic"] = True
    return orjson.dumps(row)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "default"
