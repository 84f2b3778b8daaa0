"""Nothing accepted is lost, nothing is doubled: a collector killed with SIGKILL
mid-stream and restarted, a store that goes away and comes back, a spool that
fills up (backpressure, not memory growth)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from collector.service import Collector, CollectorConfig
from collector.spool import Spool
from collector.store import Store
from collector.writer import Writer, write_blocks
from tests.collector.helpers import body_of, make_spans, wait_for_count

PB = {"content-type": "application/x-protobuf"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_collector(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REVTRACE_DATA_DIR": str(data_dir),
        "REVTRACE_CLICKHOUSE_URL": f"chdb://{data_dir}/store",
        "REVTRACE_BATCH_MS": "1500",
    }
    log_path = data_dir / "collector.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "revtrace.cli",
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
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(log_path.read_text())
        time.sleep(0.2)
    process.kill()
    raise AssertionError("collector did not start")


def _count_in_subprocess(data_dir: Path) -> dict[str, int]:
    """Open the store in another process (chDB: one engine per process) and count."""
    script = (
        "import json, sys\n"
        "from collector.store import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "q = lambda sql: s.query(sql).scalar()\n"
        "print(json.dumps({\n"
        "  'traces': q('SELECT count() FROM otel_traces'),\n"
        "  'distinct': q('SELECT uniqExact(SpanId) FROM otel_traces'),\n"
        "  'business': q('SELECT count() FROM revtrace_spans'),\n"
        "  'business_distinct': q('SELECT uniqExact(SpanId) FROM revtrace_spans'),\n"
        "}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, f"chdb://{data_dir}/store"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    import json

    return dict(json.loads(out.stdout))


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(tmp_path: Path) -> None:
    port = _free_port()
    process = _start_collector(tmp_path, port)
    accepted: list[int] = []
    batches = [make_spans(20, f"b{n}") for n in range(40)]
    kill_after = 15
    restarted = threading.Event()

    def send() -> None:
        for index, spans in enumerate(batches):
            body = body_of(spans)
            while True:  # retry like an OTLP exporter until the collector answers 200
                try:
                    response = httpx.post(
                        f"http://127.0.0.1:{port}/v1/traces", content=body, headers=PB, timeout=5
                    )
                    if response.status_code == 200:
                        accepted.append(index)
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)

    sender = threading.Thread(target=send)
    sender.start()
    while len(accepted) < kill_after:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = len(accepted)
    # Re-send a batch that was already answered: a client retry must not double it.
    process = _start_collector(tmp_path, port)
    restarted.set()
    sender.join(120)
    retry = httpx.post(
        f"http://127.0.0.1:{port}/v1/traces", content=body_of(batches[0]), headers=PB, timeout=5
    )
    assert retry.status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert killed_at < len(batches) and len(accepted) == len(batches)
    counts = _count_in_subprocess(tmp_path)
    expected = 20 * len(batches)
    assert counts == {
        "traces": expected,
        "distinct": expected,
        "business": expected,
        "business_distinct": expected,
    }


@pytest.mark.parametrize(
    ("kind", "engine_min_spans", "parallel"),
    [
        ("protobuf", 0, 1),  # flattened by the engine
        ("protobuf", 0, 2),  # by the engine, as two concurrent statements
        ("protobuf", 1_000, 1),  # a small batch, converted in Python
        ("json rows", 0, 1),  # what an older collector spooled, still written after an upgrade
    ],
)
def test_crash_between_insert_and_commit_is_written_once(
    store: Store, tmp_path: Path, kind: str, engine_min_spans: int, parallel: int
) -> None:
    spool = Spool(tmp_path / "spool", max_backlog_bytes=1 << 30)
    from collector.ingest import convert_request
    from collector.otlp import Limits, decode_traces, traces_to_rows

    bodies = [body_of(make_spans(25, "crash")), body_of(make_spans(15, "crash-b"))]
    blocks = []
    for body in bodies:
        if kind == "protobuf":
            converted = convert_request("traces", body, None, "application/x-protobuf", 1 << 26, Limits())
            blocks.extend(converted.blocks)
        else:
            batch = traces_to_rows(decode_traces(body, "application/x-protobuf"))
            blocks.append(("otel_traces", len(batch.rows["otel_traces"]), batch.payload("otel_traces")))
    spool.append(blocks)
    options = {"engine_min_spans": engine_min_spans, "part_min_spans": 1}
    # Simulate the first writer: pending persisted, rows inserted, then killed before commit.
    spool.set_pending(0, spool.end)
    write_blocks(store, blocks, f"0-{spool.end}", tmp_path, parallel, **options)
    assert store.query("SELECT count() FROM otel_traces").scalar() == 40
    spool.close()
    # Restart: a new spool over the same directory redoes the pending batch with the same token.
    spool2 = Spool(tmp_path / "spool", max_backlog_bytes=1 << 30)
    assert spool2.pending == (0, spool2.end)
    # The killed writer's batch file is still there; the new writer removes it.
    stale = spool2.directory / ".flatten-1-killed.pb"
    stale.write_bytes(b"\x00" * 1024)
    writer = Writer(store, spool2, batch_ms=50, insert_threads=parallel, **options)
    writer.start()
    assert not stale.exists()
    assert writer.flush(20)
    writer.stop()
    spool2.close()
    assert store.query("SELECT count() FROM otel_traces").scalar() == 40
    assert store.query("SELECT count() FROM revtrace_spans").scalar() == 40
    assert store.query("SELECT sum(Spans) FROM revtrace_correlations").scalar() == 40


def test_torn_tail_is_cut_and_the_spool_keeps_working(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_backlog_bytes=1 << 30)
    spool.append([("otel_traces", 1, b'{"a":1}')])
    good_end = spool.end
    spool.close()
    segment = next((tmp_path / "spool").glob("*.seg"))
    with open(segment, "ab") as handle:
        handle.write(b"RTS1\x99\x00\x00\x00partial")  # a crash mid-append
    reopened = Spool(tmp_path / "spool", max_backlog_bytes=1 << 30)
    assert reopened.end == good_end
    reopened.append([("otel_traces", 1, b'{"a":2}')])
    records = list(reopened.read_from(0, 1 << 20))
    assert [r.blocks[0][2] for r in records] == [b'{"a":1}', b'{"a":2}']
    reopened.close()


def test_store_outage_then_recovery_delivers_everything(store: Store, tmp_path: Path) -> None:
    config = CollectorConfig(http_port=0, grpc_port=-1, data_dir=tmp_path, batch_ms=100, self_telemetry_s=0)
    with Collector(config, store=store) as c:
        assert c.writer is not None
        c.writer.max_backoff_s = 0.5
        store.command("DETACH TABLE otel_traces")  # the store "goes away" for writes
        try:
            for n in range(5):
                response = httpx.post(
                    f"{c.http_endpoint}/v1/traces", content=body_of(make_spans(10, f"o{n}")), headers=PB
                )
                assert response.status_code == 200  # accepted into the spool
            deadline = time.monotonic() + 10
            while c.writer.stats.healthy and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not c.writer.stats.healthy
            ready = httpx.get(f"{c.http_endpoint}/readyz")
            assert ready.status_code == 503 and "writer failing" in ready.text
            assert c.spool is not None and c.spool.backlog_bytes > 0
        finally:
            store.command("ATTACH TABLE otel_traces")
        assert wait_for_count(store, "SELECT count() FROM otel_traces", 50) == 50
        assert c.writer.flush(20)
        assert httpx.get(f"{c.http_endpoint}/readyz").status_code == 200
    assert store.query("SELECT count() FROM revtrace_spans").scalar() == 50
    assert c.writer.stats.records_rejected == 0


def test_full_spool_answers_503_with_retry_after(store: Store, tmp_path: Path) -> None:
    config = CollectorConfig(
        http_port=0,
        grpc_port=-1,
        data_dir=tmp_path,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
        spool_max_bytes=64 * 1024,
    )
    with Collector(config, store=store) as c:
        store.command("DETACH TABLE otel_traces")
        try:
            statuses = []
            for n in range(40):
                response = httpx.post(
                    f"{c.http_endpoint}/v1/traces", content=body_of(make_spans(10, f"f{n}")), headers=PB
                )
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["retry-after"] == "5"
                    break
            assert statuses[-1] == 503 and statuses[0] == 200
            accepted = statuses.count(200)
        finally:
            store.command("ATTACH TABLE otel_traces")
        assert wait_for_count(store, "SELECT count() FROM otel_traces", accepted * 10) == accepted * 10


def test_one_spool_per_directory(tmp_path: Path) -> None:

    first = Spool(tmp_path / "spool", max_backlog_bytes=1 << 20)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from collector.spool import Spool, SpoolLockedError\n"
        "try:\n"
        "    Spool(Path(sys.argv[1]), max_backlog_bytes=1)\n"
        "except SpoolLockedError as exc:\n"
        "    print(exc)\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "spool")], capture_output=True, text=True
    )
    assert "in use by another collector" in other.stdout, other.stderr
    first.close()
    again = Spool(tmp_path / "spool", max_backlog_bytes=1 << 20)  # released on close
    again.close()


def test_recent_span_keys_are_bounded() -> None:
    from collector.ingest import RecentSpans

    recent = RecentSpans(capacity=100)
    recent.add(i.to_bytes(24, "big") for i in range(1000))
    assert 50 <= len(recent) <= 100
    assert (999).to_bytes(24, "big") in recent  # the newest are remembered
    assert (0).to_bytes(24, "big") not in recent  # the oldest are forgotten
