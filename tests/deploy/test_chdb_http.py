"""The chDB HTTP server: a real ClickHouse HTTP endpoint over an embedded data
directory, in its own process, started with ``SYSTEM START LISTEN HTTP`` and
stopped with ``KILL QUERY``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from collector import chdb_http
from collector.chdb_http import ChdbHttpServer, ServerConfig, ServerError, ServerUser
from collector.store import Store, StoreLockedError, parse_store_url
from tests.deploy import workload
from tests.deploy.conftest import REPO, free_port, new_server


def _http(server: ChdbHttpServer, user: str, password: str, sql: str) -> httpx.Response:
    host, port = server.config.local_host, server.config.http_port
    return httpx.post(f"http://{host}:{port}/", content=sql.encode(), auth=(user, password), timeout=10)


def _store(server: ChdbHttpServer, user: ServerUser, database: str) -> Store:
    config = parse_store_url(server.url(user, database, with_password=True))
    return Store(config)


def test_clickhouse_connect_reads_and_writes_through_the_admin_user(chdb_server: ChdbHttpServer) -> None:
    store = _store(chdb_server, chdb_server.config.admin, "t_rw")
    try:
        store.command("CREATE TABLE IF NOT EXISTS kv (k String, v UInt32) ENGINE = MergeTree ORDER BY k")
        store.insert_rows("kv", [("a", 1), ("b", 2)], ["k", "v"])
        assert store.query("SELECT sum(v) FROM kv WHERE k != {k:String}", {"k": "zz"}).scalar() == 3
        assert store.query("SELECT timezone()").scalar() == "UTC"  # the store's session settings apply
    finally:
        store.close()


def test_the_readonly_user_reads_sets_max_execution_time_and_nothing_else(
    chdb_server: ChdbHttpServer,
) -> None:
    admin = chdb_server.config.admin
    reader = chdb_server.config.users[1]
    assert (
        _http(chdb_server, admin.name, admin.password, "CREATE DATABASE IF NOT EXISTS ro_t").status_code
        == 200
    )
    created = _http(
        chdb_server, admin.name, admin.password, "CREATE TABLE IF NOT EXISTS ro_t.x (a UInt8) ENGINE = Memory"
    )
    assert created.status_code == 200, created.text
    host, port = chdb_server.config.local_host, chdb_server.config.http_port
    # The Grafana plugin's client sets max_execution_time on every query.
    ok = httpx.get(
        f"http://{host}:{port}/",
        params={"query": "SELECT getSetting('max_execution_time')", "max_execution_time": "17"},
        auth=(reader.name, reader.password),
        timeout=10,
    )
    assert (ok.status_code, ok.text.strip()) == (200, "17")
    for sql in ("INSERT INTO ro_t.x VALUES (1)", "DROP TABLE ro_t.x", "SELECT 1 SETTINGS max_threads = 1"):
        refused = _http(chdb_server, reader.name, reader.password, sql)
        assert refused.status_code != 200 and "READONLY" in refused.text, (sql, refused.text)
    assert _http(chdb_server, admin.name, admin.password, "SELECT count() FROM ro_t.x").text.strip() == "0"


def test_a_user_with_grants_may_do_only_what_they_allow(chdb_server: ChdbHttpServer) -> None:
    admin, viewer = chdb_server.config.admin, chdb_server.config.users[2]
    for sql in (
        "CREATE DATABASE IF NOT EXISTS revtrace",
        "CREATE TABLE IF NOT EXISTS revtrace.v (a UInt8) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO revtrace.v VALUES (7)",
    ):
        assert _http(chdb_server, admin.name, admin.password, sql).status_code == 200
    # Unlike a readonly profile, grants leave settings alone (clients set session_timezone).
    read = _http(
        chdb_server, viewer.name, viewer.password, "SELECT sum(a) FROM revtrace.v SETTINGS max_threads = 1"
    )
    assert (read.status_code, read.text.strip()) == (200, "7")
    for sql in ("INSERT INTO revtrace.v VALUES (1)", "DROP TABLE revtrace.v", "SELECT count() FROM ro_t.x"):
        refused = _http(chdb_server, viewer.name, viewer.password, sql)
        assert refused.status_code != 200 and "ACCESS_DENIED" in refused.text, (sql, refused.text)


def test_logins_need_the_right_password_and_default_can_do_nothing(chdb_server: ChdbHttpServer) -> None:
    admin = chdb_server.config.admin
    wrong = _http(chdb_server, admin.name, admin.password + "x", "SELECT 1")
    assert wrong.status_code != 200 and "AUTHENTICATION_FAILED" in wrong.text
    # `default` is the engine's own session user (no password): it may keep the
    # listener running and nothing more.
    assert _http(chdb_server, "default", "", "SELECT 1").status_code == 200
    assert (
        _http(chdb_server, admin.name, admin.password, "CREATE DATABASE IF NOT EXISTS hidden").status_code
        == 200
    )
    assert "hidden" not in _http(chdb_server, "default", "", "SHOW DATABASES").text
    for sql in (
        "CREATE DATABASE evil",
        "CREATE TABLE hidden.t (a UInt8) ENGINE = Memory",
        "SELECT count() FROM ro_t.x",
    ):
        response = _http(chdb_server, "default", "", sql)
        assert response.status_code != 200 and "ACCESS_DENIED" in response.text, (sql, response.text)


def test_the_data_directory_is_locked_against_the_embedded_store(
    chdb_server: ChdbHttpServer, tmp_path: Path
) -> None:
    with pytest.raises(StoreLockedError, match="in use by another process"):
        Store(parse_store_url(f"chdb://{chdb_server.config.data_dir}"))
    second = ChdbHttpServer(
        ServerConfig(chdb_server.config.data_dir, free_port(), chdb_server.config.users), tmp_path / "home"
    )
    with pytest.raises(ServerError, match=r"exited with 1: .*in use by another process \(pid \d+\)"):
        second.start(timeout=30)
    assert chdb_server.query("SELECT 1").strip() == "1"  # the first server is unharmed


def test_stop_is_clean_and_the_data_survives_a_restart(tmp_path: Path) -> None:
    server = new_server(tmp_path)
    server.start()
    server.query("CREATE TABLE default.kept (n UInt64) ENGINE = MergeTree ORDER BY n")
    server.query("INSERT INTO default.kept SELECT number FROM numbers(1000)")
    assert server.stop() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.config.http_port}/ping", timeout=2)
    server.start()
    try:
        assert server.query("SELECT sum(n) FROM default.kept").strip() == str(sum(range(1000)))
    finally:
        assert server.stop() == 0


def test_a_taken_port_fails_fast_with_the_engines_reason(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = new_server(tmp_path, http_port=taken.getsockname()[1])
        with pytest.raises(ServerError, match="Address already in use"):
            server.start(timeout=30)


def test_config_is_validated_and_written_private(tmp_path: Path) -> None:
    with pytest.raises(ServerError) as info:
        ServerConfig(
            str(tmp_path), 70000, (ServerUser("default", "", readonly=True), ServerUser("default", "x"))
        )
    message = str(info.value)
    for problem in ("must be the read-write admin", "needs a password", "unique", "engine's own", "1..65535"):
        assert problem in message
    config = ServerConfig(
        str(tmp_path / "d"),
        8123,
        (ServerUser("rw", "p<&>"), ServerUser("sel", "s", grants=("GRANT SELECT ON db.*",))),
        keep_alive_timeout=3,
    )
    directory = chdb_http.write_config(config, tmp_path / "home")
    for name in ("config.xml", "users.xml", chdb_http.CONFIG_NAME):
        assert (directory / name).stat().st_mode & 0o077 == 0
    assert "<keep_alive_timeout>3</keep_alive_timeout>" in (directory / "config.xml").read_text()
    users_xml = (directory / "users.xml").read_text()
    assert "<password>p&lt;&amp;&gt;</password>" in users_xml
    assert "<query>GRANT SELECT ON db.*</query>" in users_xml
    assert ServerConfig.from_json(config.to_json()) == config


def test_an_unverified_chdb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import chdb

    monkeypatch.setattr(chdb, "__version__", "9.9.9")
    with pytest.raises(ServerError, match=r"not the verified chdb 4\.4\.0"):
        chdb_http._check_chdb(allow_unverified=False)
    chdb_http._check_chdb(allow_unverified=True)


_IN_PROCESS = """
import json, sys, tempfile, time
from pathlib import Path
from collector.chdb_http import Listener, ServerConfig, ServerUser
from collector.service import Collector, CollectorConfig
from collector.store import open_store
from tests.deploy import workload

data, home, spool, port = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
config = ServerConfig(str(data), port, (ServerUser("revtrace", "rw-secret"), ServerUser("grafana", "ro-secret", readonly=True)))
listener = Listener(config, home)
listener.start()
# This process's own store reaches the engine over HTTP: one engine, one process.
store = open_store(f"http://revtrace:rw-secret@127.0.0.1:{port}/revtrace")
collector = Collector(CollectorConfig(host="127.0.0.1", http_port=0, grpc_port=-1, data_dir=spool,
                                      batch_ms=100, self_telemetry_s=0, ttl_days=0), store=store)
collector.start()
workload.send(collector.http_endpoint, time.time())
deadline = time.monotonic() + 30
while store.query("SELECT count() FROM revtrace_spans").scalar() < workload.span_count() and time.monotonic() < deadline:
    time.sleep(0.1)
spans = store.query("SELECT count() FROM revtrace_spans").scalar()
collector.stop()
store.close()
listener.stop()
print(json.dumps({"spans": spans, "alive": listener.alive}))
"""


def test_the_listener_inside_the_process_that_holds_the_store(tmp_path: Path) -> None:
    """The shape `revtrace up` needs for Grafana: listener and store in one process, the store over HTTP."""
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _IN_PROCESS,
            str(tmp_path / "data"),
            str(tmp_path / "home"),
            str(tmp_path / "spool"),
            str(port),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "spans": workload.span_count(),
        "alive": False,
    }
    # The data directory was released: another server opens it and sees the spans.
    server = new_server(tmp_path)
    server.start()
    try:
        assert server.query("SELECT count() FROM revtrace.revtrace_spans").strip() == str(
            workload.span_count()
        )
    finally:
        server.stop()
