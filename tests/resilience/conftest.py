"""The resilience suite: the ``soak`` marker and the ``figures`` a test records
for the report (``python -m resilience`` turns them into ``docs/resilience.md``).

Tests marked ``@pytest.mark.soak`` run for many minutes; they are skipped unless
pytest runs with ``--soak`` (when pointed at ``tests/resilience``) or with
``REVTRACE_SOAK=1`` in the environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.migrations import RenderOptions, migrate
from collector.store import Store, open_store

SOAK_ENV = "REVTRACE_SOAK"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False, help="also run the long soak tests (REVTRACE_SOAK=1)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: long resilience runs (minutes); skipped unless --soak or REVTRACE_SOAK=1"
    )


def soak_enabled(config: pytest.Config) -> bool:
    """Whether the long runs are wanted."""
    option = bool(config.getoption("--soak", default=False))
    return option or os.environ.get(SOAK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if soak_enabled(config):
        return
    skip = pytest.mark.skip(reason=f"soak run: pass --soak or set {SOAK_ENV}=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


class Figures(dict[str, Any]):
    """Named measurements of one test (counts, rates, memory) for the report."""

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` more of ``name``."""
        self[name] = int(self.get(name, 0)) + amount


@pytest.fixture
def figures(record_property: Any) -> Iterator[Figures]:
    """Record measurements; they are attached to the test's report even when it fails."""
    recorded = Figures()
    yield recorded
    record_property("figures", dict(recorded))


@dataclass
class CliStore:
    """A database of the session's embedded store that the ``revtrace`` CLI opens
    itself in this process (as it does when no ``revtrace up`` holds the store)."""

    url: str
    database: str

    def open(self) -> Store:
        """The store (the CLI closes it after each command; this reopens it)."""
        return open_store(self.url, database=self.database)


@pytest.fixture
def cli_store(chdb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliStore]:
    """A migrated database the ``revtrace`` CLI runs against in this process."""
    target = CliStore(f"chdb://{chdb_path}", f"t_cli_{uuid.uuid4().hex[:10]}")
    store = target.open()
    migrate(store, RenderOptions(ttl_days=0))
    monkeypatch.setenv("REVTRACE_CLICKHOUSE_URL", target.url)
    monkeypatch.setenv("REVTRACE_DATABASE", target.database)
    monkeypatch.setenv("REVTRACE_DATA_DIR", str(tmp_path))  # no running revtrace up here
    yield target
    leftover = target.open()
    try:
        leftover.command(f"DROP DATABASE IF EXISTS `{target.database}`")
    finally:
        leftover.close()
