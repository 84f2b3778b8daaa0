"""Fixtures of the deployment tests: the chDB HTTP server (a real ClickHouse HTTP
endpoint in its own process) and helpers to run ``revtrace`` roles as processes."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector.chdb_http import ChdbHttpServer, ServerConfig, ServerUser

REPO = Path(__file__).resolve().parents[2]
REVTRACE = str(Path(sys.executable).with_name("revtrace"))


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` with ``values`` (else the default)."""
    pattern = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>(?:[^{}]|\$\{[^}]*\})*))?\}")
    while (match := pattern.search(text)) is not None:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in values:
            value = values[name]
        elif op in (":-", "-"):
            value = interpolate(arg or "", values)
        else:
            value = ""
        text = text[: match.start()] + value + text[match.end() :]
    return text


def compose_service(name: str, file: str = "docker-compose.yml") -> dict[str, Any]:
    """One service of a compose file, as written."""
    services: dict[str, dict[str, Any]] = yaml.safe_load((REPO / file).read_text())["services"]
    return services[name]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_grants(user: str) -> tuple[str, ...]:
    """The GRANTs ``deploy/clickhouse/users.d/revtrace.xml`` gives ``user`` on the compose deployments."""
    from xml.etree import ElementTree

    root = ElementTree.parse(REPO / "deploy/clickhouse/users.d/revtrace.xml").getroot()
    return tuple(q.text or "" for q in root.findall(f"users/{user}/grants/query"))


def new_users() -> tuple[ServerUser, ...]:
    """An admin, a read-only (Grafana) and a SELECT-only user with random passwords."""
    return (
        ServerUser("revtrace", secrets.token_urlsafe(12)),
        ServerUser("grafana", secrets.token_urlsafe(12), readonly=True),
        ServerUser("viewer", secrets.token_urlsafe(12), grants=("GRANT SELECT ON revtrace.*",)),
    )


def new_server(
    tmp: Path, http_port: int = 0, users: tuple[ServerUser, ...] | None = None, **overrides: Any
) -> ChdbHttpServer:
    """A chDB HTTP server (not started) under ``tmp``, with :func:`new_users` unless given."""
    config = ServerConfig(
        data_dir=str(tmp / "data"),
        http_port=http_port or free_port(),
        users=users or new_users(),
        **overrides,
    )
    return ChdbHttpServer(config, tmp / "home")


@pytest.fixture(scope="module")
def chdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbHttpServer]:
    """A running chDB HTTP server, shared by a test module."""
    server = new_server(tmp_path_factory.mktemp("chdb-http"))
    server.start()
    yield server
    server.stop()


def role_env(
    server: ChdbHttpServer, database: str, data_dir: Path, user: ServerUser | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a ``revtrace`` role process using ``server`` as ``user`` (default: the admin)."""
    who = user or server.config.admin
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVTRACE_")}
    env.update(
        {
            "REVTRACE_CLICKHOUSE_URL": server.url(who, database=database),
            "REVTRACE_CLICKHOUSE_PASSWORD": who.password,
            "REVTRACE_DATA_DIR": str(data_dir),
            "REVTRACE_TTL_DAYS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``revtrace ARGS`` to completion."""
    return subprocess.run(
        [REVTRACE, *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Role:
    """A long-running ``revtrace`` role in its own process, logging to a file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [REVTRACE, *args],
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 60.0) -> httpx.Response:
        """Poll ``url`` until it answers 200; fail with the process's log otherwise."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                response = httpx.get(url, timeout=2)
                if response.status_code == 200:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        pytest.fail(f"{self.name}: {url} did not answer 200 in {timeout:g} s ({last}):\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, return the exit status (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return int(self.process.returncode)
