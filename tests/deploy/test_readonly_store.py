"""A read-only database user (Grafana, dashboards) can open a Store: it neither
creates the database nor needs to change settings."""

from __future__ import annotations

import uuid
from pathlib import Path

from collector.chdb_http import ChdbHttpServer
from tests.deploy.conftest import role_env, run_cli


def test_read_only_user_reads_through_the_cli(chdb_server: ChdbHttpServer, tmp_path: Path) -> None:
    database = f"ro_{uuid.uuid4().hex[:8]}"
    admin_env = role_env(chdb_server, database, tmp_path / "admin")
    migrated = run_cli(["db", "migrate"], admin_env)
    assert migrated.returncode == 0, migrated.stderr
    reader = next(u for u in chdb_server.config.users if u.readonly)
    reader_env = role_env(chdb_server, database, tmp_path / "reader", user=reader)
    status = run_cli(["db", "status"], reader_env)
    assert status.returncode == 0, status.stderr
    assert "otel_traces" in status.stdout or "applied" in status.stdout
    trace = run_cli(["trace", "no-such-transaction"], reader_env)
    assert "Traceback" not in trace.stderr
    assert "ACCESS_DENIED" not in trace.stderr and "READONLY" not in trace.stderr
