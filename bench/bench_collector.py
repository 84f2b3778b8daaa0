"""Collector benchmarks.

1. Sustained ingest: OTLP/HTTP protobuf spans (20 attributes each) from a load
   generator in another process into a ``revtrace collector`` process on the
   embedded store, until every accepted span is in the store. Baseline: the
   raw engine insert rate of the same rows (JSONEachRow into ``otel_traces``
   with its business views), measured in the same run. Also the collector's
   peak RSS and that nothing accepted was lost.
2. Correlation-ID lookup: the median time to fetch every span of one
   correlation ID with 5 million spans stored, through the correlation
   time-range table and the business span table. Baseline: the same question
   asked of the attribute map of ``otel_traces``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import Result
from bench.loadgen import NEEDLE, template

GOAL_SPANS_PER_S = 50_000
GOAL_RSS_BYTES = 1024**3
GOAL_LOOKUP_MS = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _start_collector(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REVTRACE_DATA_DIR": str(data_dir),
        "REVTRACE_CLICKHOUSE_URL": f"chdb://{data_dir}/store",
        "REVTRACE_TTL_DAYS": "0",
        "REVTRACE_INGEST_WORKERS": os.environ.get("REVTRACE_INGEST_WORKERS", "0"),
    }
    log = open(data_dir / "collector.log", "ab")  # noqa: SIM115 - closed when the process ends
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "revtrace.cli",
            "--log-level",
            "warning",
            "collector",
            "--http-port",
            str(port),
            "--grpc-port",
            "-1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("collector did not start: " + (data_dir / "collector.log").read_text()[-2000:])


def _ingest(quick: bool, work: Path) -> tuple[list[Result], Path]:
    seconds = 10.0 if quick else 60.0
    generators = 2
    port = _free_port()
    data_dir = work / "ingest"
    data_dir.mkdir()
    process = _start_collector(data_dir, port)
    url = f"http://127.0.0.1:{port}/v1/traces"
    print(f"sending for {seconds:.0f} s from {generators} load generator processes…", flush=True)
    started = time.monotonic()
    loads = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", url, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(generators)
    ]
    counts: dict[str, int] = {"requests": 0, "spans": 0, "backpressure": 0, "errors": 0}
    for load in loads:
        out, _ = load.communicate()
        for key, value in json.loads(out.strip().splitlines()[-1]).items():
            counts[key] += int(value)
    sent_done = time.monotonic()
    # Wait until the writer has everything in the store (spool backlog 0).
    while True:
        status = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=10).json()
        if status["spool"]["backlog_bytes"] == 0:
            break
        time.sleep(0.2)
    stored_done = time.monotonic()
    rss = _peak_rss(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    accepted = counts["spans"]
    send_s = sent_done - started
    total_s = stored_done - started
    print(
        f"accepted {accepted:,} spans in {send_s:.1f} s; all stored after {total_s:.1f} s; "
        f"backpressure answers {counts['backpressure']}, errors {counts['errors']}",
        flush=True,
    )
    stored_rate = accepted / total_s
    return [
        Result(
            "collector.ingest.stored_spans_per_s",
            stored_rate,
            "spans/s",
            goal=f">= {GOAL_SPANS_PER_S:,} sustained, from the first request until every accepted span is in the store",
            passed=stored_rate >= GOAL_SPANS_PER_S,
            extra=counts,
        ),
        Result(
            "collector.ingest.accepted_spans_per_s",
            accepted / send_s,
            "spans/s",
            goal="answered 200 while sending (the spool absorbs what the writer has not yet written)",
        ),
        Result(
            "collector.peak_rss",
            rss / 1024**2,
            "MiB",
            goal=f"< {GOAL_RSS_BYTES // 1024**2} MiB",
            passed=rss < GOAL_RSS_BYTES,
        ),
    ], data_dir


def _check_and_baseline(quick: bool, data_dir: Path, stored_rate: Result, accepted: int) -> list[Result]:
    from collector.migrations import RenderOptions, migrate
    from collector.otlp import decode_traces, traces_to_rows
    from collector.store import open_store

    store = open_store(f"chdb://{data_dir}/store")
    stored = int(store.query("SELECT count() FROM otel_traces").scalar())
    business = int(store.query("SELECT count() FROM revtrace_spans").scalar())
    lost = accepted - stored
    results = [
        Result(
            "collector.ingest.lost_spans",
            float(lost),
            "spans",
            goal="0",
            passed=lost == 0 and business == stored,
        )
    ]
    # Baseline: the engine inserting the same rows directly, business views included.
    raw = open_store(f"chdb://{data_dir}/store", database="bench_raw")
    migrate(raw, RenderOptions(ttl_days=0))
    body = template(1000)
    rows_per_insert = 50_000
    blocks: list[bytes] = []
    for _ in range(rows_per_insert // 1000):
        batch = traces_to_rows(decode_traces(body.replace(NEEDLE, os.urandom(16)), "application/x-protobuf"))
        blocks.append(batch.payload("otel_traces"))
    payload = b"\n".join(blocks)
    inserts = 4 if quick else 20
    started = time.monotonic()
    for n in range(inserts):
        raw.insert_raw("otel_traces", payload, settings={"insert_deduplication_token": f"raw-{n}"})
    elapsed = time.monotonic() - started
    raw_rate = inserts * rows_per_insert / elapsed
    results.append(
        Result(
            "collector.ingest.vs_raw_engine_insert",
            stored_rate.value,
            "spans/s",
            baseline_name="raw JSONEachRow insert of the same rows (already converted)",
            baseline=raw_rate,
        )
    )
    raw.command("DROP DATABASE bench_raw")
    return results


def _lookup(quick: bool, data_dir: Path) -> list[Result]:
    from collector.migrations import RenderOptions, migrate
    from collector.store import open_store

    spans = 250_000 if quick else 5_000_000
    store = open_store(f"chdb://{data_dir}/store", database="bench_lookup")
    migrate(store, RenderOptions(ttl_days=0))
    per_tx = 10
    print(f"generating {spans:,} spans ({spans // per_tx:,} correlation ids) over 24 h…", flush=True)
    store.command(
        f"""
        INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration, StatusCode)
        SELECT
            now64(9) - toIntervalMillisecond(intDiv(number, {per_tx}) % 86400000) AS Timestamp,
            lower(hex(cityHash64(intDiv(number, {per_tx})))) || lower(hex(cityHash64(number + 7))) AS TraceId,
            lower(hex(cityHash64(number))) AS SpanId,
            ['billing.invoice.create','erp.invoice.post','crm.order.approve'][number % 3 + 1] AS SpanName,
            'Client', 'bench-engine',
            map('biz.correlation_id', concat('corr-', toString(intDiv(number, {per_tx}))),
                'biz.stage', ['billing.invoice.create','erp.invoice.post','crm.order.approve'][number % 3 + 1],
                'biz.process', 'quote_to_cash', 'biz.legal_entity', 'ACME-DE', 'biz.amount', toString(number % 1000),
                'http.response.status_code', '200', 'tenant', 'acme', 'deployment', 'bench'),
            250000, 'Unset'
        FROM numbers({spans})
        """,  # noqa: S608 - numbers only, no input
        settings={"max_insert_threads": 2},
    )
    targets = [f"corr-{n}" for n in range(0, spans // per_tx, max(1, spans // per_tx // 25))][:25]
    fast_sql = (
        "WITH (SELECT (min(Start), max(End)) FROM revtrace_correlations WHERE CorrelationId = {cid:String}) AS r "
        "SELECT * FROM revtrace_spans WHERE CorrelationId = {cid:String} "
        "AND Timestamp BETWEEN r.1 AND r.2 ORDER BY Timestamp"
    )
    scan_sql = "SELECT * FROM otel_traces WHERE SpanAttributes['biz.correlation_id'] = {cid:String} ORDER BY Timestamp"

    def median_ms(sql: str, rounds: list[str]) -> float:
        timings = []
        for cid in rounds:
            started = time.perf_counter()
            rows = store.query(sql, {"cid": cid})
            timings.append((time.perf_counter() - started) * 1000)
            assert len(rows) == per_tx, (sql, cid, len(rows))
        return statistics.median(timings)

    median_ms(fast_sql, targets[:3])  # warm-up
    fast = median_ms(fast_sql, targets)
    scan = median_ms(scan_sql, targets[:5])
    store.command("DROP DATABASE bench_lookup")
    return [
        Result(
            "collector.lookup.correlation_id_ms",
            fast,
            "ms (median)",
            baseline_name="attribute-map scan of otel_traces",
            baseline=scan,
            goal=f"< {GOAL_LOOKUP_MS:.0f} ms with {spans:,} spans",
            passed=fast < GOAL_LOOKUP_MS,
        )
    ]


def run(quick: bool) -> list[Result]:
    """Run both collector benchmarks."""
    work = Path(tempfile.mkdtemp(prefix="revtrace-bench-collector-"))
    try:
        ingest, data_dir = _ingest(quick, work)
        results: list[Any] = list(ingest)
        accepted = int(ingest[0].extra["spans"])
        results += _check_and_baseline(quick, data_dir, ingest[0], accepted)
        results += _lookup(quick, data_dir)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)
