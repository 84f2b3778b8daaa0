"""The spool's disk fills up: ingest answers 503 with Retry-After (nothing is
acknowledged that was not written), the process stays up, and once the store
takes the backlog the spool gives its disk back and ingest resumes — every
acknowledged span ends up in the store exactly once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.service import Collector, CollectorConfig
from collector.store import Store
from tests.collector.helpers import body_of, make_spans, wait_for_count
from tests.resilience.conftest import Figures

PB = {"content-type": "application/x-protobuf"}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_spool_disk_full_answers_503_then_recovers(store: Store, tiny_disk: Path, figures: Figures) -> None:
    """The spool on a 1 MiB tmpfs while the store takes nothing: requests are
    acknowledged until the disk is full, then answered 503 + Retry-After with the
    cause; the process stays healthy, the backlog drains once the store is back,
    the segment is recycled, ingest resumes, and every acknowledged span is stored
    exactly once."""
    config = CollectorConfig(
        http_port=0,
        grpc_port=-1,
        data_dir=tiny_disk,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,
        spool_recycle_bytes=64 * 1024,
    )
    with Collector(config, store=store) as c:
        url = f"{c.http_endpoint}/v1/traces"
        store.command("DETACH TABLE otel_traces")  # nothing drains: the disk must fill
        acknowledged = 0
        refused = None
        try:
            for n in range(200):
                response = httpx.post(url, content=body_of(make_spans(20, f"d{n}", attributes=5)), headers=PB)
                if response.status_code == 200:
                    acknowledged += 20
                    continue
                refused = response
                break
        finally:
            store.command("ATTACH TABLE otel_traces")
        assert refused is not None, "the 1 MiB disk never filled"
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        from google.rpc import status_pb2

        status = status_pb2.Status()
        status.ParseFromString(refused.content)
        assert "No space left on device" in status.message
        assert acknowledged > 0
        assert httpx.get(f"{c.http_endpoint}/healthz").status_code == 200
        # The backlog drains; the fully written segment is recycled; ingest works again.
        assert wait_for_count(store, "SELECT count() FROM otel_traces", acknowledged) == acknowledged
        assert c.writer is not None and c.writer.flush(20)
        later = httpx.post(url, content=body_of(make_spans(20, "after")), headers=PB)
        assert later.status_code == 200
        acknowledged += 20
        assert c.writer.flush(20)
    stored = store.query("SELECT count(), uniqExact(SpanId) FROM otel_traces").rows[0]
    figures.update(
        disk_kib=1024,
        accepted=acknowledged,
        stored=int(stored[0]),
        lost=acknowledged - int(stored[1]),
        doubled=int(stored[0]) - int(stored[1]),
        refused_503=1,
    )
    assert tuple(stored) == (acknowledged, acknowledged)
    assert store.query("SELECT count() FROM revtrace_spans").scalar() == acknowledged
