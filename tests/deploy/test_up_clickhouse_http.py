"""``revtrace up --clickhouse-http-port``: Grafana reads the embedded store of a running sidecar.

One process holds the store (chDB runs one engine per process), serves it over
the ClickHouse HTTP interface, and keeps collecting; a reader in another
process logs in as the read-only user, sees the spans, and may not write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.deploy import workload
from tests.resilience.harness import ROOT, Server, _env, free_port

READ_PASSWORD = "grafana-reads-only"


def _reader(port: int, password: str = READ_PASSWORD) -> Any:
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=port, username="grafana", password=password, database="revtrace"
    )


def test_grafana_reads_the_running_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "REVTRACE_CLICKHOUSE_HTTP_PORT": str(port),
        "REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD": READ_PASSWORD,
    }
    with Server(tmp_path / "up", env=env) as server:
        assert f"ClickHouse HTTP (read-only, for Grafana): http://grafana@127.0.0.1:{port}" in server.log()
        workload.send(server.endpoint, time.time())
        client = _reader(port)
        deadline = time.monotonic() + 60
        spans = 0
        while time.monotonic() < deadline:
            spans = int(client.query("SELECT count() FROM otel_traces").result_rows[0][0])
            if spans >= workload.span_count():
                break
            time.sleep(0.3)
        assert spans == workload.span_count()
        # The business views the dashboards read are there too, filled by the same writes.
        ids = client.query(
            "SELECT DISTINCT CorrelationId FROM revtrace_spans ORDER BY CorrelationId"
        ).result_rows
        assert ("q2c-ok-1",) in ids
        # Read-only: no writes, no DDL.
        for statement in ("INSERT INTO revtrace_silences (Id) VALUES ('x')", "DROP TABLE otel_traces"):
            with pytest.raises(DatabaseError, match=r"readonly|Not enough privileges|READONLY"):
                client.command(statement)
        with pytest.raises(DatabaseError, match=r"password|AUTHENTICATION|Authentication"):
            _reader(port, "wrong").query("SELECT 1")
        # The store commands still work beside it (through the running process).
        traced = subprocess.run(
            [sys.executable, "-m", "revtrace.cli", "trace", "q2c-ok-1", "--format", "json"],
            cwd=ROOT,
            env=_env({"REVTRACE_DATA_DIR": str(server.data_dir)}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert traced.returncode == 0, traced.stderr
        assert "billing.invoice.create" in traced.stdout
        assert server.stop() == 0
    log = server.log()
    assert "Traceback" not in log
    # The admin password is made up per start and never written to the log.
    assert "revtrace:" not in log.replace("revtrace up:", "")


def test_the_read_only_password_is_required(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "revtrace.cli", "up", "--clickhouse-http-port", str(free_port())],
        cwd=ROOT,
        env=_env({"REVTRACE_DATA_DIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD" in done.stderr
    assert not (tmp_path / "store").exists() or not os.listdir(tmp_path / "store")
