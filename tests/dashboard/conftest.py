"""Fixtures of the dashboard tests: one database filled once with the workload
(through a real collector over OTLP) that the read-only page tests share."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.migrations import RenderOptions, migrate
from collector.service import Collector, CollectorConfig
from collector.store import Store, open_store
from dashboard import data
from dashboard import settings as ds
from tests.dashboard import workload


@dataclass(frozen=True)
class Filled:
    """A store holding the workload, and the workload's ``now`` (epoch seconds)."""

    store: Store
    now: float


def _wait_rows(store: Store, table: str, rows: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while int(store.query(f"SELECT count() FROM {table}").scalar() or 0) < rows:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table} did not reach {rows} rows")
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every dashboard test starts from the documented defaults: no accounts (open on
    loopback), no OIDC, no replay endpoint, no audit key."""
    for name in ds.ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(tmp_path / "no-users.json"))


@pytest.fixture(scope="session")
def filled(chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    """The workload, sent once per session through a real collector, in its own database."""
    database = f"t_dash_{uuid.uuid4().hex[:10]}"
    store = open_store(f"chdb://{chdb_path}", database=database)
    migrate(store, RenderOptions(ttl_days=0))
    config = CollectorConfig(
        host="127.0.0.1",
        http_port=0,
        grpc_port=-1,
        data_dir=tmp_path_factory.mktemp("dash-collector"),
        batch_rows=10_000,
        batch_ms=50,
        self_telemetry_s=0,
    )
    collector = Collector(config, store=store)
    collector.start()
    try:
        now = time.time()
        sent = workload.send(collector.http_endpoint, now)
        workload.send_metrics(collector.http_endpoint, now)
        workload.wait_for(store, sent)
        collector.record_self_telemetry()
        _wait_rows(store, "otel_metrics_gauge WHERE ServiceName = 'sync-engine'", 12)
        _wait_rows(store, "otel_metrics_sum WHERE ServiceName = 'sync-engine'", 6)
        _wait_rows(store, "otel_metrics_gauge WHERE MetricName = 'revtrace.spool.backlog_bytes'", 1)
    finally:
        collector.stop()
    yield Filled(store, now)
    try:
        store.command(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        store.close()


@pytest.fixture
def use_filled(filled: Filled) -> Iterator[Filled]:
    """The filled store handed to the dashboard (as `revtrace up` does)."""
    data.use_store(filled.store)
    yield filled
    data.use_store(None)


@pytest.fixture
def use_empty(store: Store) -> Iterator[Store]:
    """A fresh, empty store handed to the dashboard."""
    data.use_store(store)
    yield store
    data.use_store(None)
