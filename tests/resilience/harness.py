"""The resilience suite's harness: the product in its own process (``revtrace up``
or ``revtrace collector`` on a private data directory and free ports), load
generators in theirs (:mod:`tests.resilience.producer`), a sampler of the
server's memory and CPU from ``/proc``, and counting in the store from yet
another process (chDB: one process per data directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "EXPORTER_ENV",
    "ROOT",
    "ProcessSampler",
    "Producers",
    "Server",
    "Usage",
    "WebhookReceiver",
    "free_port",
    "query_store",
]

ROOT = Path(__file__).resolve().parents[2]

EXPORTER_ENV = {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "60", "OTEL_BSP_EXPORT_TIMEOUT": "180000"}
"""Adapters' exporter settings: the OTLP exporter waits ``Retry-After`` (5 s) and
gives up once its timeout has passed; with a minute it retries a 503 several
times before a batch is lost. Shutdown waits up to three minutes for the queue."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVTRACE_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


# --- memory and CPU of a process --------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What :class:`ProcessSampler` saw of one process."""

    samples: int
    seconds: float
    rss_avg_mib: float
    rss_max_mib: float
    cpu_avg_pct: float
    cpu_max_pct: float
    series: tuple[tuple[float, float], ...] = ()
    """(seconds since start, RSS MiB) per sample."""

    def figures(self) -> dict[str, float]:
        """The columns the report shows."""
        return {
            "rss_avg_mib": round(self.rss_avg_mib, 1),
            "rss_max_mib": round(self.rss_max_mib, 1),
            "cpu_avg_pct": round(self.cpu_avg_pct, 1),
            "cpu_max_pct": round(self.cpu_max_pct, 1),
        }

    def rss_slope_mib_per_hour(self, skip_fraction: float = 0.25) -> float:
        """Least-squares slope of RSS over time, after the first ``skip_fraction`` (warm-up)."""
        points = [p for p in self.series if p[0] >= self.seconds * skip_fraction]
        if len(points) < 3:
            return 0.0
        n = len(points)
        mean_t = sum(p[0] for p in points) / n
        mean_r = sum(p[1] for p in points) / n
        var = sum((p[0] - mean_t) ** 2 for p in points)
        if var == 0:
            return 0.0
        cov = sum((p[0] - mean_t) * (p[1] - mean_r) for p in points)
        return cov / var * 3600


def _read_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _read_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


class ProcessSampler:
    """Samples a process's resident memory (``VmRSS``) and CPU time every
    ``interval`` seconds from ``/proc`` in a thread, until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self._series: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu %)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resilience-sampler", daemon=True)
        self._started = time.monotonic()

    def start(self) -> ProcessSampler:
        """Start sampling."""
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        last_t, last_cpu = time.monotonic(), _read_cpu_s(self.pid)
        while not self._stop.wait(self.interval):
            rss, cpu, now = _read_rss_kib(self.pid), _read_cpu_s(self.pid), time.monotonic()
            if rss is None or cpu is None or last_cpu is None:
                continue
            pct = 100.0 * (cpu - last_cpu) / max(now - last_t, 1e-6)
            self._series.append((now - self._started, rss / 1024, pct))
            last_t, last_cpu = now, cpu

    def stop(self) -> Usage:
        """Stop and summarize."""
        self._stop.set()
        self._thread.join(5)
        series = self._series or [(0.0, 0.0, 0.0)]
        return Usage(
            samples=len(self._series),
            seconds=time.monotonic() - self._started,
            rss_avg_mib=sum(s[1] for s in series) / len(series),
            rss_max_mib=max(s[1] for s in series),
            cpu_avg_pct=sum(s[2] for s in series) / len(series),
            cpu_max_pct=max(s[2] for s in series),
            series=tuple((round(s[0], 1), round(s[1], 1)) for s in series),
        )


# --- the product in its own process -------------------------------------------------------


@dataclass
class Server:
    """``revtrace up`` (or another long-running role) in its own process, on a
    private data directory and free loopback ports. Its log goes to ``log_path``."""

    data_dir: Path
    role: str = "up"
    env: Mapping[str, str] = field(default_factory=dict)
    log_level: str = "info"
    http_port: int = 0
    dashboard_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.data_dir / f"{self.role}.log"

    @property
    def store_url(self) -> str:
        """The embedded store the server holds."""
        return f"chdb://{self.data_dir}/store"

    def environment(self) -> dict[str, str]:
        """The variables the server runs with."""
        return _env({"REVTRACE_DATA_DIR": str(self.data_dir), "REVTRACE_TTL_DAYS": "0", **self.env})

    def start(self, timeout: float = 120.0) -> Server:
        """Start and wait until it serves (for ``up``: until every role started)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        argv = [sys.executable, "-m", "revtrace.cli", "--log-level", self.log_level, self.role]
        argv += ["--http-port", str(self.http_port), "--grpc-port", "-1"]
        if self.role == "up":
            self.dashboard_port = self.dashboard_port or free_port()
            argv += ["--dashboard-port", str(self.dashboard_port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        ready_line = "Ctrl-C stops" if self.role == "up" else "collector: OTLP/HTTP"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.role} exited {self.process.returncode}:\n{self.log()}")
            if ready_line in self.log():
                try:
                    if httpx.get(f"{self.endpoint}/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"{self.role} did not start in {timeout}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        """Everything the server wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def status(self) -> dict[str, Any]:
        """The collector's ``/api/v1/status``."""
        response = httpx.get(f"{self.endpoint}/api/v1/status", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def wait_drained(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the spool holds nothing the store has not taken."""
        deadline = time.monotonic() + timeout
        status = self.status()
        while status["spool"]["backlog_bytes"] > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status()
        return status

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM (the spool is flushed first) and wait; the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.role} did not stop in {timeout}s:\n{self.log()[-4000:]}") from None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(AssertionError):
                self.stop(60)


# --- load generators --------------------------------------------------------------------------


@dataclass
class Producers:
    """Adapter processes (:mod:`tests.resilience.producer`) sending to ``endpoint``."""

    endpoint: str
    services: Sequence[str]
    profile: str
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    per_service_args: Mapping[str, Sequence[str]] = field(default_factory=dict)
    per_service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    log_dir: Path | None = None
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self) -> Producers:
        """Start one process per service."""
        for service in self.services:
            argv = [sys.executable, "-m", "tests.resilience.producer", "--endpoint", self.endpoint]
            argv += ["--service", service, "--profile", self.profile, *self.args]
            argv += list(self.per_service_args.get(service, ()))
            env = _env({**self.env, **self.per_service_env.get(service, {})})
            if self.log_dir is None:
                process = subprocess.Popen(
                    argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                )
            else:
                with open(self.log_dir / f"{service}.log", "wb") as log:
                    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
            self._processes.append((service, process))
        return self

    @property
    def profile_seconds(self) -> float:
        """How long the profile runs (the sum of its phases)."""
        return sum(float(part.partition("x")[2]) for part in self.profile.split(","))

    def wait(self, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Each service's summary (see the producer's docstring). The default
        timeout is the profile's length plus ten minutes to drain."""
        results: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + (self.profile_seconds + 600 if timeout is None else timeout)
        for service, process in self._processes:
            out, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, (
                f"producer {service} exited {process.returncode}: {self.log(service)}"
            )
            results[service] = json.loads(out.decode().strip().splitlines()[-1])
        return results

    def log(self, service: str) -> str:
        """What the producer (the tracer and the OTLP exporter) logged."""
        if self.log_dir is None:
            return ""
        try:
            return (self.log_dir / f"{service}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """Stop every producer still running."""
        for _, process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


# --- counting in the store ----------------------------------------------------------------

_QUERY_SCRIPT = """
import json, sys
from collector.store import open_store
store = open_store(sys.argv[1], database=sys.argv[2])
queries = json.loads(sys.stdin.read())
out = {name: [list(row) for row in store.query(sql).rows] for name, sql in queries.items()}
store.close()
print(json.dumps(out, default=str))
"""


def query_store(
    url: str, queries: Mapping[str, str], database: str = "revtrace"
) -> dict[str, list[list[Any]]]:
    """Run read-only queries against an embedded store in another process (the
    server must have stopped: chDB lets one process hold a data directory)."""
    done = subprocess.run(
        [sys.executable, "-c", _QUERY_SCRIPT, url, database],
        input=json.dumps(dict(queries)).encode(),
        capture_output=True,
        cwd=ROOT,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


# --- an alert receiver that can be down ------------------------------------------------------


class WebhookReceiver:
    """An Alertmanager-style webhook receiver on loopback (or any JSON endpoint).
    While ``up`` is False it answers 503 (an outage) and counts the refused
    attempts; while up it keeps every payload it gets, with the request headers,
    and answers ``status_up``."""

    def __init__(self, status_up: int = 200) -> None:
        self.up = True
        self.status_up = status_up
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.refused = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    if not receiver.up:
                        receiver.refused += 1
                        status = 503
                    else:
                        receiver.received.append(json.loads(body))
                        receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                        status = receiver.status_up
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        """Where to post."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def deliveries(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """Each payload received as (group key, status, alert fingerprints), in order."""
        with self._lock:
            return [
                (p["groupKey"], p["status"], tuple(sorted(a["fingerprint"] for a in p["alerts"])))
                for p in self.received
            ]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
