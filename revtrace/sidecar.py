"""``revtrace up``: collector, evaluator and dashboard in one process on one store.

The embedded store (chDB) allows one process per data directory, so the roles
share this process and its :class:`~collector.store.Store`. Each role is an
object with ``start()`` and ``stop()``; the collector comes first (it migrates
the schema) and stops last (it flushes the spool).

With :class:`StoreListener` settings the embedded store is also served over
the ClickHouse HTTP interface (for Grafana): chDB runs one engine per process,
so the listener starts here, before anything opens the store, and this
process's own store reaches the engine over loopback HTTP as well.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from collector.service import Collector, CollectorConfig
from collector.store import Store, StoreConfigError, open_store, parse_store_url
from revtrace.runtime import ADMIN_PATH, admin_route, remove_run_file, write_run_file

__all__ = ["Role", "RoleFactory", "Sidecar", "StoreListener"]

log = logging.getLogger(__name__)


class Role(Protocol):
    """A part of the sidecar that runs beside the collector."""

    name: str

    def start(self) -> None:
        """Start serving (returns once running)."""

    def stop(self) -> None:
        """Stop and release resources."""


RoleFactory = Callable[[Store, Collector], Role]


@dataclass(frozen=True)
class StoreListener:
    """Serve the embedded store over the ClickHouse HTTP interface, for readers such as Grafana.

    Readers log in as ``readonly_user`` (``readonly = 1``) from ``allow_from``.
    The process itself uses an admin user whose password is made up at start and
    never leaves the process (and the 0600 configuration under the data directory).
    """

    port: int
    readonly_password: str
    host: str = "127.0.0.1"
    readonly_user: str = "grafana"
    allow_from: tuple[str, ...] = ("127.0.0.1", "::1")

    @property
    def reader_url(self) -> str:
        """Where readers connect (without the password)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"http://{self.readonly_user}@{netloc}:{self.port}"


class Sidecar:
    """The collector plus the roles given, on one store."""

    def __init__(
        self,
        config: CollectorConfig,
        roles: list[RoleFactory] | None = None,
        listener: StoreListener | None = None,
    ) -> None:
        self.config = config
        store_config = parse_store_url(config.store_url, config.database)
        self.embedded = store_config.kind == "embedded"
        self.listener: Any = None
        if listener is None:
            self.store = open_store(config.store_url, config.database)
        else:
            if not self.embedded:
                raise StoreConfigError(
                    "--clickhouse-http-port serves the embedded store; with a ClickHouse server "
                    "point readers at the server"
                )
            self.listener, url = _start_listener(listener, store_config.path, config)
            try:
                self.store = open_store(url, store_config.database)
            except BaseException:
                self.listener.stop()
                raise
        self.collector = Collector(config, store=self.store)
        self._role_factories = roles or []
        self.roles: list[Role] = []
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start the collector, advertise the admin API, then the other roles."""
        self.collector.start()
        assert self.collector.app is not None
        if self.embedded:
            _, token = write_run_file(self.collector.http_endpoint, self.store, self.config.data_dir)
            self.collector.app.mount("POST", ADMIN_PATH, admin_route(self.store, token))
        for factory in self._role_factories:
            role = factory(self.store, self.collector)
            role.start()
            self.roles.append(role)
            log.info("%s started", role.name)

    def stop(self) -> None:
        """Stop the roles, then the collector (flushing the spool), then the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for role in reversed(self.roles):
            try:
                role.stop()
            except Exception:
                log.exception("stopping %s failed", role.name)
        if self.embedded:
            remove_run_file(self.config.data_dir)
        drained = self.collector.stop()
        self.store.close()
        if self.listener is not None:
            try:
                self.listener.stop()
            except Exception:
                log.exception("stopping the ClickHouse HTTP listener failed")
        log.info(
            "stopped%s", "" if drained else " (spool not fully drained; it is written on the next start)"
        )

    def run_until_signal(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start, then block until SIGINT/SIGTERM, then stop gracefully."""
        done = threading.Event()

        def _handler(signum: int, _frame: object) -> None:
            log.info("received %s; shutting down", signal.Signals(signum).name)
            done.set()

        previous: dict[signal.Signals, Any] = {}
        try:
            self.start()
            # After the roles started: Streamlit installs its own handlers on start-up.
            previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
            if on_ready is not None:
                on_ready()
            while not done.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _start_listener(settings: StoreListener, path: Path | None, config: CollectorConfig) -> tuple[Any, str]:
    """Start the chDB HTTP listener on the embedded store's directory; the admin URL for this process."""
    # Imported here: most runs never serve the store, and the module is chDB-specific.
    from collector.chdb_http import Listener, ServerConfig, ServerError, ServerUser

    admin = ServerUser("revtrace", secrets.token_urlsafe(24))
    reader = ServerUser(
        settings.readonly_user, settings.readonly_password, readonly=True, networks=settings.allow_from
    )
    try:
        server = ServerConfig(str(path), settings.port, (admin, reader), host=settings.host)
    except ServerError as exc:
        raise StoreConfigError(f"--clickhouse-http-port: {exc}") from None
    listener = Listener(server, config.data_dir / "clickhouse-http")
    try:
        listener.start()
    except ServerError as exc:
        raise StoreConfigError(str(exc)) from None
    log.info(
        "serving the embedded store over HTTP on %s (read-only user %s)", settings.reader_url, reader.name
    )
    host = server.local_host
    netloc = f"[{host}]" if ":" in host else host
    return listener, f"http://{admin.name}:{quote(admin.password, safe='')}@{netloc}:{settings.port}/"
