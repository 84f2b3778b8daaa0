#!/usr/bin/env python3
"""Serve a chDB data directory (an embedded revtrace store) over the ClickHouse HTTP interface.

chDB is ClickHouse as a library. It can start ClickHouse's own HTTP server
(and the native TCP one) from a query, ``SYSTEM START LISTEN HTTP``, when that
query runs through ``chdb._chdb.query`` (the connection API refuses it). The
listener lives as long as the call that started it, so the call ends with a
*hold* query — a ``SELECT`` over ``system.numbers`` that sleeps half a second
per one-row block and never finishes on its own. ``KILL QUERY`` on the hold
query ends the call, and the listener with it; the data is on disk already
(every insert wrote its part), so that is a clean stop.

The engine reads its configuration from ``$HOME/.clickhouse-local/config.xml``
when it starts (there is no other way to pass one), so a server runs with
``HOME`` pointed at a private directory that holds the generated
``config.xml`` and ``users.xml`` (mode 0600) — never the real home.

Users (``users.xml``):

* ``default`` — the engine's own session logs in as ``default`` with no
  password from no address, so that user must exist and accept any network.
  It is granted only what the hold query needs (``SYSTEM LISTEN``,
  ``SELECT ON system.numbers``): over HTTP it can do nothing else.
* the admin user (``revtrace`` unless named otherwise) — read-write, password
  required, from the networks given (loopback by default).
* an optional read-only user for Grafana and other readers — ``readonly = 1``
  with ``max_execution_time`` changeable (the Grafana plugin's client sets it).

One chDB engine per process: the server is its own process (``python
deploy/chdb_http.py …`` or ``python -m collector.chdb_http …``, or :class:`ChdbHttpServer` from Python). It takes the
same directory lock as revtrace's embedded store, so ``revtrace up`` and a
server on the same directory cannot both open it.

Verified with chdb 4.4.0 (engine 26.9); ``SYSTEM START LISTEN`` through
``chdb._chdb.query`` is not a documented chDB API, so other versions are
refused unless ``--allow-unverified-chdb`` is given.

Usage::

    REVTRACE_CHDB_HTTP_PASSWORD=… REVTRACE_CHDB_HTTP_READONLY_PASSWORD=… \\
        python deploy/chdb_http.py --data .revtrace/store --port 8123

SIGTERM or Ctrl-C stops it (the process kills its own hold query).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from xml.sax.saxutils import escape

from collector import pidlock
from collector.store import LOCK_FILE_NAME as _LOCK_FILE  # so the two exclude each other

__all__ = [
    "CONFIG_NAME",
    "HOLD_MARK",
    "VERIFIED_CHDB",
    "ChdbHttpServer",
    "Listener",
    "ServerConfig",
    "ServerError",
    "ServerUser",
    "main",
    "serve",
    "write_config",
]

VERIFIED_CHDB: Final = "4.4.0"
"""The chdb release this server was verified with (pyproject pins the same)."""
VERIFIED_ENGINE: Final = "26.9."
"""The ClickHouse engine version prefix of that release."""

HOLD_MARK: Final = "/* revtrace-chdb-http-hold */"
"""Marks the hold query, so ``KILL QUERY`` can find it and nothing else."""
CONFIG_NAME: Final = "revtrace-chdb-http.json"
"""The server's own settings, beside the generated ``config.xml`` (mode 0600)."""

# One-row blocks sleeping 0.5 s each: the query never ends on its own, costs no
# CPU, and notices a KILL within half a second.
_HOLD_SQL: Final = (
    "SELECT /* revtrace-chdb-http-hold */ count() FROM system.numbers "
    "WHERE NOT ignore(sleepEachRow(0.5)) SETTINGS max_block_size = 1"
)
assert HOLD_MARK in _HOLD_SQL
_LOOPBACK: Final = ("127.0.0.1", "::1")


class ServerError(RuntimeError):
    """The server could not start, or stopped with an error."""


@dataclass(frozen=True)
class ServerUser:
    """A user that logs in over HTTP. ``readonly`` users may only read (and set ``max_execution_time``)."""

    name: str
    password: str
    readonly: bool = False
    networks: tuple[str, ...] = _LOOPBACK
    grants: tuple[str, ...] = ()
    """``GRANT`` statements limiting what the user may do (empty: everything its profile allows)."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything one server needs. ``users[0]`` is the admin (read-write) user."""

    data_dir: str
    http_port: int
    users: tuple[ServerUser, ...]
    host: str = "127.0.0.1"
    tcp_port: int = 0
    keep_alive_timeout: int = 3
    profile_settings: Mapping[str, str] = field(default_factory=dict)
    """Session settings of every user (both profiles), e.g. a cluster's distributed_* settings."""
    remote_servers: Mapping[str, tuple[tuple[tuple[str, int], ...], ...]] = field(default_factory=dict)
    macros: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.users or self.users[0].readonly:
            problems.append("users[0] must be the read-write admin user")
        if not self.users or not all(u.password for u in self.users):
            problems.append("every user needs a password")
        if len({u.name for u in self.users}) != len(self.users):
            problems.append("user names must be unique")
        if any(u.name == "default" for u in self.users):
            problems.append("'default' is the engine's own session user; name the users otherwise")
        if not 0 < self.http_port < 65536:
            problems.append(f"http_port must be in 1..65535, got {self.http_port}")
        if not 0 < self.keep_alive_timeout < 5:
            problems.append(f"keep_alive_timeout must be 1..4 s, got {self.keep_alive_timeout}")
        if problems:
            raise ServerError("; ".join(problems))

    @property
    def admin(self) -> ServerUser:
        """The read-write user the server itself uses to stop."""
        return self.users[0]

    @property
    def local_host(self) -> str:
        """An address this machine reaches the server on (wildcards → loopback)."""
        if self.host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    def to_json(self) -> str:
        """The config as JSON (for the server process)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        """The inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        raw["users"] = tuple(
            ServerUser(
                u["name"],
                u["password"],
                bool(u["readonly"]),
                tuple(u["networks"]),
                tuple(u.get("grants", ())),
            )
            for u in raw["users"]
        )
        raw["remote_servers"] = {
            name: tuple(tuple((str(h), int(p)) for h, p in shard) for shard in shards)
            for name, shards in raw.get("remote_servers", {}).items()
        }
        return cls(**raw)


def _networks(networks: Sequence[str]) -> str:
    return "".join(f"<ip>{escape(n)}</ip>" for n in networks)


def _config_xml(config: ServerConfig, users_path: Path) -> str:
    lines = [
        "<clickhouse>",
        f"    <listen_host>{escape(config.host)}</listen_host>",
        f"    <http_port>{config.http_port}</http_port>",
    ]
    if config.tcp_port:
        lines.append(f"    <tcp_port>{config.tcp_port}</tcp_port>")
    lines += [
        f"    <keep_alive_timeout>{config.keep_alive_timeout}</keep_alive_timeout>",
        "    <user_directories>",
        f"        <users_xml><path>{escape(str(users_path))}</path></users_xml>",
        "    </user_directories>",
    ]
    if config.remote_servers:
        admin = config.admin
        lines.append("    <remote_servers>")
        for name, shards in config.remote_servers.items():
            lines.append(f"        <{name}>")
            for shard in shards:
                lines.append("            <shard><internal_replication>true</internal_replication>")
                for host, port in shard:
                    lines.append(
                        f"                <replica><host>{escape(host)}</host><port>{port}</port>"
                        f"<user>{escape(admin.name)}</user><password>{escape(admin.password)}</password>"
                        "</replica>"
                    )
                lines.append("            </shard>")
            lines.append(f"        </{name}>")
        lines.append("    </remote_servers>")
    if config.macros:
        lines.append("    <macros>")
        lines += [f"        <{k}>{escape(v)}</{k}>" for k, v in config.macros.items()]
        lines.append("    </macros>")
    lines.append("</clickhouse>")
    return "\n".join(lines) + "\n"


def _users_xml(config: ServerConfig) -> str:
    profile = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in config.profile_settings.items())
    lines = [
        "<clickhouse>",
        "    <profiles>",
        f"        <default>{profile}</default>",
        "        <readonly>",
        f"            <readonly>1</readonly>{profile}",
        "            <constraints><max_execution_time><changeable_in_readonly/></max_execution_time></constraints>",
        "        </readonly>",
        "    </profiles>",
        "    <quotas><default/></quotas>",
        "    <users>",
        # The engine's own session: no password, no address. Only what the hold query needs.
        "        <default>",
        "            <password></password>",
        "            <networks><ip>::/0</ip></networks>",
        "            <profile>default</profile>",
        "            <quota>default</quota>",
        "            <grants>",
        "                <query>GRANT SYSTEM LISTEN ON *.*</query>",
        "                <query>GRANT SELECT ON system.numbers</query>",
        "            </grants>",
        "        </default>",
    ]
    for user in config.users:
        networks = list(user.networks)
        if user is config.admin:  # the server stops itself over loopback
            networks += [n for n in _LOOPBACK if n not in networks]
        lines += [
            f"        <{user.name}>",
            f"            <password>{escape(user.password)}</password>",
            f"            <networks>{_networks(networks)}</networks>",
            f"            <profile>{'readonly' if user.readonly else 'default'}</profile>",
            "            <quota>default</quota>",
        ]
        if user.grants:
            lines.append("            <grants>")
            lines += [f"                <query>{escape(g)}</query>" for g in user.grants]
            lines.append("            </grants>")
        lines.append(f"        </{user.name}>")
    lines += ["    </users>", "</clickhouse>"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_config(config: ServerConfig, home: Path) -> Path:
    """Write ``config.xml``, ``users.xml`` and the server's JSON under ``home/.clickhouse-local``."""
    directory = home / ".clickhouse-local"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    users_path = directory / "users.xml"
    _write_private(users_path, _users_xml(config))
    _write_private(directory / "config.xml", _config_xml(config, users_path))
    _write_private(directory / CONFIG_NAME, config.to_json())
    return directory


def _request(config: ServerConfig, sql: str, timeout: float = 10.0) -> str:
    """Run ``sql`` as the admin user over HTTP; return the body."""
    host = config.local_host
    netloc = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(f"http://{netloc}:{config.http_port}/", data=sql.encode(), method="POST")
    token = base64.b64encode(f"{config.admin.name}:{config.admin.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode())


def _ping(config: ServerConfig, timeout: float = 2.0) -> bool:
    host = config.local_host
    netloc = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{netloc}:{config.http_port}/ping", timeout=timeout) as response:
            return bool(response.read().startswith(b"Ok."))
    except (OSError, urllib.error.URLError):
        return False


def kill_hold_query(config: ServerConfig, timeout: float = 10.0) -> None:
    """Ask the server to kill its hold query, which stops it."""
    _request(config, f"KILL QUERY WHERE startsWith(query, 'SELECT {HOLD_MARK}') SYNC", timeout)


def _lock(data_dir: Path) -> IO[str]:
    """Hold the data directory's lock (the embedded store's lock file); the handle releases it."""
    try:
        return pidlock.hold(data_dir / _LOCK_FILE)
    except pidlock.HeldElsewhere as exc:
        raise ServerError(
            f"{data_dir} is in use by another process (pid {exc.holder}); "
            "chDB data directories can be opened by one process at a time"
        ) from None


def _check_chdb(allow_unverified: bool) -> None:
    import chdb

    version = str(chdb.__version__)
    engine = str(getattr(chdb, "engine_version", ""))
    if (version != VERIFIED_CHDB or not engine.startswith(VERIFIED_ENGINE)) and not allow_unverified:
        raise ServerError(
            f"chdb {version} (engine {engine}) is not the verified chdb {VERIFIED_CHDB} "
            f"(engine {VERIFIED_ENGINE}x); install that, or pass --allow-unverified-chdb"
        )


class Listener:
    """The HTTP (and TCP) listener of this process's chDB engine, on ``config.data_dir``.

    One chDB engine per process: the listener must live in the process that holds
    the store, and must start before anything else in the process opens chDB;
    the process's own clients then reach the store over HTTP too. That is the
    shape ``revtrace up`` needs to let Grafana read its embedded store. The engine
    reads ``$HOME/.clickhouse-local/config.xml`` when it starts, so ``start()``
    points ``HOME`` at ``home`` for that moment and restores it.
    """

    def __init__(self, config: ServerConfig, home: Path, allow_unverified_chdb: bool = False) -> None:
        self.config = config
        self.home = home
        self.allow_unverified_chdb = allow_unverified_chdb
        self.error = ""
        self._thread: threading.Thread | None = None
        self._lock: IO[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start listening; return once ``/ping`` answers (raise :class:`ServerError` if it does not)."""
        _check_chdb(self.allow_unverified_chdb)
        write_config(self.config, self.home)
        # The engine's low-level module (untyped): the only API that can start listeners.
        engine: Any = importlib.import_module("chdb._chdb")
        # chDB installs ClickHouse's process-wide signal handlers when the engine
        # starts; they would take SIGTERM/SIGINT from the process's own handlers.
        engine.set_signal_handlers_enabled(0)
        statements = ["SYSTEM START LISTEN HTTP"]
        if self.config.tcp_port:
            statements.append("SYSTEM START LISTEN TCP")
        sql = "; ".join([*statements, _HOLD_SQL])

        def hold() -> None:
            result = engine.query(sql, "TabSeparated", path=self.config.data_dir)
            self.error = str(result.error_message() or "")

        self._lock = _lock(Path(self.config.data_dir))
        previous = os.environ.get("HOME")
        os.environ["HOME"] = str(self.home)
        try:
            self._thread = threading.Thread(target=hold, name="chdb-http-hold", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not _ping(self.config, timeout=1.0):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise ServerError(
                        f"the chDB listener on {self.config.host}:{self.config.http_port} did not start: "
                        f"{self.error or 'see the engine message above'}"
                    )
                time.sleep(0.05)
        finally:
            if previous is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = previous

    @property
    def alive(self) -> bool:
        """Whether the hold query (and so the listener) still runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the listener to end (a client's KILL QUERY); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive

    def stop(self, timeout: float = 30.0) -> None:
        """Kill the hold query, wait for the listener to end, release the data directory."""
        if self.alive:
            with contextlib.suppress(OSError):
                kill_hold_query(self.config)
            self.wait(timeout)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self.alive:
            raise ServerError("the chDB listener's hold query did not stop")


def serve(home: Path, allow_unverified_chdb: bool = False) -> int:
    """Serve the configuration written under ``home`` in this process, until SIGTERM/SIGINT or KILL.

    Must run in a process that has not started a chDB engine yet. Returns the
    process exit status: 0 after a requested stop, 1 when the listener failed.
    """
    directory = home / ".clickhouse-local"
    config = ServerConfig.from_json((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    listener = Listener(config, home, allow_unverified_chdb)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        listener.start()
        # Until a signal (we stop it) or a client's KILL QUERY (it stops by itself):
        # both are requested stops.
        while listener.alive and not stop.wait(0.2):
            pass
        listener.stop()
    except ServerError as exc:
        print(f"chdb-http: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class ChdbHttpServer:
    """A chDB HTTP server in a child process (tests, tools). A context manager."""

    def __init__(self, config: ServerConfig, home: Path, log_path: Path | None = None) -> None:
        self.config = config
        self.home = home
        self.log_path = log_path or home / "chdb-http.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, user: ServerUser | None = None, database: str = "", with_password: bool = False) -> str:
        """``http://user@host:port/database`` (the password only when asked for)."""
        who = user or self.config.admin
        host = self.config.local_host
        netloc = f"[{host}]" if ":" in host else host
        secret = f":{who.password}" if with_password else ""
        return f"http://{who.name}{secret}@{netloc}:{self.config.http_port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        """Write the configuration, start the process, return once ``/ping`` answers."""
        write_config(self.config, self.home)
        env = {**os.environ, "HOME": str(self.home)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collector.chdb_http", "--config-home", str(self.home)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _ping(self.config):
            if self.process.poll() is not None:
                status = self.stop()
                raise ServerError(f"chdb-http exited with {status}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"chdb-http did not answer within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.1)

    def query(self, sql: str) -> str:
        """Run ``sql`` as the admin user (for checks; clients use clickhouse-connect)."""
        return _request(self.config, sql)

    def stop(self, timeout: float = 30.0) -> int:
        """``KILL QUERY`` the hold query and wait for the process; returns its exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            with contextlib.suppress(OSError):
                kill_hold_query(self.config)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None
        return int(process.returncode)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ChdbHttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chdb_http.py",
        description="Serve a chDB data directory over the ClickHouse HTTP interface. Passwords come from "
        "REVTRACE_CHDB_HTTP_PASSWORD (admin, required) and REVTRACE_CHDB_HTTP_READONLY_PASSWORD "
        "(read-only user, optional).",
    )
    parser.add_argument("--data", type=Path, help="the chDB data directory (e.g. .revtrace/store)")
    parser.add_argument("--port", type=int, default=8123, help="HTTP port [8123]")
    parser.add_argument("--host", default="127.0.0.1", help="bind address [127.0.0.1: loopback only]")
    parser.add_argument("--admin-user", default="revtrace", help="read-write user [revtrace]")
    parser.add_argument("--readonly-user", default="grafana", help="read-only user [grafana]")
    parser.add_argument(
        "--allow-from",
        action="append",
        default=[],
        help="networks the users may connect from (CIDR; repeat) [loopback]",
    )
    parser.add_argument("--config-home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--allow-unverified-chdb", action="store_true", help="run on another chdb version")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parse(argv)
    if args.config_home is not None:
        try:
            return serve(args.config_home, args.allow_unverified_chdb)
        except ServerError as exc:
            print(f"chdb_http.py: {exc}", file=sys.stderr)
            return 1
    if args.data is None:
        print("chdb_http.py: --data is required", file=sys.stderr)
        return 2
    password = os.environ.get("REVTRACE_CHDB_HTTP_PASSWORD", "")
    if not password:
        print("chdb_http.py: set REVTRACE_CHDB_HTTP_PASSWORD (the admin user's password)", file=sys.stderr)
        return 2
    networks = tuple(args.allow_from) or _LOOPBACK
    users = [ServerUser(args.admin_user, password, networks=networks)]
    readonly_password = os.environ.get("REVTRACE_CHDB_HTTP_READONLY_PASSWORD", "")
    if readonly_password:
        users.append(ServerUser(args.readonly_user, readonly_password, readonly=True, networks=networks))
    try:
        config = ServerConfig(str(args.data.resolve()), args.port, tuple(users), host=args.host)
    except ServerError as exc:
        print(f"chdb_http.py: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="revtrace-chdb-http-") as home:
        write_config(config, Path(home))
        print(
            f"chdb_http.py: serving {config.data_dir} on http://{config.host}:{config.http_port}",
            file=sys.stderr,
        )
        try:
            return serve(Path(home), args.allow_unverified_chdb)
        except ServerError as exc:
            print(f"chdb_http.py: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
