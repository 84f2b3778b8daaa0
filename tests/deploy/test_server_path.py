"""The server path end to end: every role in its own process against a ClickHouse
HTTP endpoint (the chDB HTTP server), over the real protocol.

``revtrace db migrate`` → ``revtrace collector`` receives OTLP → the evaluator
judges the transactions → the dashboard serves → ``revtrace trace`` reads one
transaction back; a reader with the read-only user sees everything; stopping
and restarting the server keeps the data.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from collector.chdb_http import ChdbHttpServer, ServerUser
from tests.deploy import workload
from tests.deploy.conftest import (
    REVTRACE,
    Role,
    compose_grants,
    compose_service,
    free_port,
    interpolate,
    new_server,
    role_env,
    run_cli,
)

DATABASE = "revtrace"


def _client(server: ChdbHttpServer, user: ServerUser) -> Any:
    return clickhouse_connect.get_client(
        host=server.config.local_host,
        port=server.config.http_port,
        username=user.name,
        password=user.password,
        database=DATABASE,
        autogenerate_session_id=False,
    )


def _wait(what: str, probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {value!r} after {timeout:g} s")
        time.sleep(0.25)
        value = probe()
    return value


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChdbHttpServer]:
    # The roles log in as the compose deployments' `revtrace` user, with exactly its GRANTs
    # (deploy/clickhouse/users.d/revtrace.xml); readers as its read-only `grafana` user.
    users = (
        ServerUser("admin", secrets.token_urlsafe(12)),
        ServerUser("grafana", secrets.token_urlsafe(12), readonly=True, grants=compose_grants("grafana")),
        ServerUser("revtrace", secrets.token_urlsafe(12), grants=compose_grants("revtrace")),
    )
    s = new_server(tmp_path / "clickhouse", users=users)
    s.start()
    yield s
    s.stop()


def test_every_role_as_its_own_process_over_http(server: ChdbHttpServer, tmp_path: Path) -> None:
    role_user = server.config.users[2]
    assert role_user.name == "revtrace" and "GRANT ALL ON revtrace.*" in role_user.grants
    token = secrets.token_urlsafe(16)
    env = role_env(
        server,
        DATABASE,
        tmp_path / "state",
        role_user,
        REVTRACE_RULES="builtin:demo",
        REVTRACE_INGEST_TOKENS=token,
    )
    migrated = run_cli(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout
    # The evaluator's compose healthcheck, as written, passes against the migrated store.
    healthcheck = compose_service("evaluator")["healthcheck"]["test"]
    assert healthcheck[:2] == ["CMD", "revtrace"]
    healthy = run_cli(healthcheck[2:], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    # The three long-running roles start together (each migrates on start: a no-op now).
    port, dashboard_port = free_port(), free_port()
    roles = [
        Role(
            "collector",
            ["collector", "--host", "127.0.0.1", "--http-port", str(port), "--grpc-port", "-1"],
            env,
            tmp_path,
        ),
        Role("evaluator", ["evaluator"], env, tmp_path),
        Role("dashboard", ["dashboard", "--host", "127.0.0.1", "--port", str(dashboard_port)], env, tmp_path),
    ]
    collector, _evaluator, dashboard = roles
    try:
        collector.wait_http(f"http://127.0.0.1:{port}/readyz")
        status = collector.wait_http(f"http://127.0.0.1:{port}/api/v1/status").json()
        assert status["store"].startswith("ClickHouse server http://revtrace@127.0.0.1:")
        assert status["auth_required"] is True

        now = time.time()
        workload.send(f"http://127.0.0.1:{port}", now, token=token)

        # Read back over HTTP as the read-only user, the way Grafana does.
        reader = _client(server, server.config.users[1])
        spans = workload.span_count()
        _wait(
            "business spans",
            lambda: reader.command("SELECT count() FROM revtrace_spans"),
            lambda n: int(n) >= spans,
        )
        assert int(reader.command("SELECT count() FROM otel_traces")) == spans
        assert int(reader.command("SELECT uniqExact(CorrelationId) FROM revtrace_correlations")) == len(
            workload.transactions()
        )

        # `revtrace trace` and the compose demo profile's sync engine — exactly as
        # docker-compose.yml runs it, bounded here — run meanwhile.
        trace = subprocess.Popen(
            [REVTRACE, "trace", "q2c-stuck", "--format", "json", "--no-payloads"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        service = compose_service("sync-engine")
        demo = [
            interpolate(str(part), {"REVTRACE_INGEST_TOKENS": token}).replace(
                "http://collector:4318", f"http://127.0.0.1:{port}"
            )
            for part in [*service["entrypoint"], *service["command"]]
        ]
        assert demo[:3] == ["python", "-m", "sync_engine"]
        engine = subprocess.Popen(
            [sys.executable, *demo[1:], "--duration", "2", "--rate", "5", "--drain-timeout", "2", "-q"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        _wait(
            "sync-engine gauges",
            lambda: reader.command(
                "SELECT count() FROM otel_metrics_gauge WHERE ServiceName = 'sync-engine'"
            ),
            lambda n: int(n) > 0,
        )
        # The evaluator judges what was active recently (the demo pack's windows):
        # the failed ERP posting and the clean payment are among them.
        verdicts = _wait(
            "the evaluator's verdicts",
            lambda: dict(
                reader.query("SELECT CorrelationId, Status FROM revtrace_transactions FINAL").result_rows
            ),
            lambda found: {"q2c-stuck", "pay-1"} <= set(found),
        )
        assert verdicts["pay-1"] == "ok"
        assert verdicts["q2c-stuck"] in {"failed", "held", "stuck"}

        assert dashboard.wait_http(f"http://127.0.0.1:{dashboard_port}/_stcore/health").text == "ok"
        # The compose healthchecks, as written (ports moved to this test's), pass against the live roles.
        for name, default, actual in (("collector", 4318, port), ("dashboard", 8501, dashboard_port)):
            probe = compose_service(name)["healthcheck"]["test"]
            assert probe[:2] == ["CMD", "python"]
            argv = [sys.executable, *(p.replace(f":{default}/", f":{actual}/") for p in probe[2:])]
            assert subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0, name

        out, err = trace.communicate(timeout=120)
        assert trace.returncode == 0, err
        stages = json.dumps(json.loads(out))
        for stage in ("billing.invoice.create", "erp.invoice.post", "MISSING_COST_CENTER"):
            assert stage in stages

        _, err = engine.communicate(timeout=120)
        assert engine.returncode == 0, err[-3000:]
        _wait(
            "the demo engine's spans",
            lambda: reader.command(
                "SELECT count() FROM revtrace_spans WHERE CorrelationId NOT IN ('q2c-ok-1', "
                "'q2c-ok-2', 'q2c-stuck', 'q2c-retry', 'pay-1', 'cust-dup')"
            ),
            lambda n: int(n) > 0,
        )

        for role in reversed(roles):
            assert role.stop() == 0, f"{role.name}:\n{role.log()[-3000:]}"
    finally:
        for role in roles:
            role.stop()

    # The data outlives the server process.
    stored = int(reader.command("SELECT count() FROM revtrace_spans"))
    assert server.stop() == 0
    server.start()
    assert int(_client(server, server.config.admin).command("SELECT count() FROM revtrace_spans")) == stored


def test_a_role_without_the_password_is_refused_with_a_clear_error(
    server: ChdbHttpServer, tmp_path: Path
) -> None:
    env = role_env(
        server, DATABASE, tmp_path / "state", server.config.users[2], REVTRACE_CLICKHOUSE_PASSWORD="wrong"
    )
    result = run_cli(["db", "migrate"], env)
    assert result.returncode != 0
    assert "AUTHENTICATION_FAILED" in result.stderr or "Authentication failed" in result.stderr
    assert "wrong" not in result.stderr  # the password is never printed
