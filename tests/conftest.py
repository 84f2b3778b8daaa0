"""Fixtures every test package shares: the real embedded ClickHouse (chDB) and a
running collector on loopback.

chDB runs one engine per process, so the whole test session shares one data
directory; each test gets its own database in it, migrated with the real schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from collector.migrations import RenderOptions, migrate
from collector.service import Collector, CollectorConfig
from collector.store import Store, open_store

# CI runs the property tests derandomized: the same examples every run, so a
# landing never depends on the luck of the draw. Locally every run explores anew.
# No deadline or speed health check either: a shared CI machine is not a
# reason for a property to fail.
hypothesis_settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's embedded store directory."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def store(chdb_path: Path) -> Iterator[Store]:
    """A fresh, migrated database in the session's embedded store."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    s = open_store(f"chdb://{chdb_path}", database=database)
    migrate(s, RenderOptions(ttl_days=0))
    yield s
    try:
        s.command(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        s.close()


@pytest.fixture
def collector(store: Store, tmp_path: Path) -> Iterator[Collector]:
    """A running collector (OTLP/HTTP and gRPC on free loopback ports) writing into ``store``."""
    config = CollectorConfig(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=tmp_path / "collector",
        batch_rows=10_000,
        batch_ms=100,
        self_telemetry_s=0,
        ttl_days=0,  # golden data is dated; retention would expire it on arrival
    )
    c = Collector(config, store=store)
    c.start()
    yield c
    c.stop()
