"""``revtrace up``: collector, evaluator and dashboard in one process on one store.

The embedded store (chDB) allows one process per data directory, so the roles
share this process and its :class:`~collector.store.Store`. Each role is an
object with ``start()`` and ``stop()``; the collector comes first (it migrates
the schema) and stops last (it flushes the spool).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from collector.service import Collector, CollectorConfig
from collector.store import Store, open_store
from revtrace.runtime import ADMIN_PATH, admin_route, remove_run_file, write_run_file

__all__ = ["Role", "RoleFactory", "Sidecar"]

log = logging.getLogger(__name__)


class Role(Protocol):
    """A part of the sidecar that runs beside the collector."""

    name: str

    def start(self) -> None:
        """Start serving (returns once running)."""

    def stop(self) -> None:
        """Stop and release resources."""


RoleFactory = Callable[[Store, Collector], Role]


class Sidecar:
    """The collector plus the roles given, on one store."""

    def __init__(self, config: CollectorConfig, roles: list[RoleFactory] | None = None) -> None:
        self.config = config
        self.store = open_store(config.store_url, config.database)
        self.collector = Collector(config, store=self.store)
        self._role_factories = roles or []
        self.roles: list[Role] = []
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start the collector, advertise the admin API, then the other roles."""
        self.collector.start()
        assert self.collector.app is not None
        if self.store.config.kind == "embedded":
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
        if self.store.config.kind == "embedded":
            remove_run_file(self.config.data_dir)
        drained = self.collector.stop()
        self.store.close()
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
