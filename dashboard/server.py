"""Serving the dashboard in this process: the ``dashboard`` role of ``revtrace up``.

Streamlit 1.67's ``st.App`` is an ASGI application. :class:`DashboardRole` serves
it with uvicorn from a thread of the current process, so the Streamlit runtime,
its script threads and the collector share one process — and the one embedded
store (chDB can be opened once per process), which the role hands to
:mod:`dashboard.data` before the first page runs. ``revtrace dashboard`` runs the
same role alone against a ClickHouse server.

Only one Streamlit runtime can exist per process, so there is at most one
running :class:`DashboardRole` at a time.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from collector.store import Store
from dashboard import data, settings
from dashboard.errors import DashboardError

__all__ = ["APP_PATH", "DashboardRole", "role_factory", "run_alone"]

log = logging.getLogger(__name__)

APP_PATH: Final = Path(__file__).with_name("app.py")
"""The router script Streamlit runs for every session."""


def _streamlit_options(host: str, port: int) -> dict[str, Any]:
    return {
        "server.headless": True,
        "server.address": host,
        "server.port": port,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "server.enableXsrfProtection": True,
        "server.enableCORS": True,
        "server.maxUploadSize": 1,
        "browser.gatherUsageStats": False,
        "browser.serverAddress": host,
        "browser.serverPort": port,
        "global.developmentMode": False,
        "client.toolbarMode": "viewer",
        "client.showErrorDetails": "type",
        "logger.hideWelcomeMessage": True,
    }


def _oidc_secrets(host: str, port: int) -> dict[str, Any] | None:
    """``st.login`` settings from ``REVTRACE_OIDC_*`` (``None`` when OIDC is not configured)."""
    metadata = settings.env_str("REVTRACE_OIDC_METADATA_URL")
    if not metadata:
        return None
    return {
        "auth": {
            "redirect_uri": settings.env_str("REVTRACE_OIDC_REDIRECT_URI")
            or f"http://{host}:{port}/oauth2callback",
            "cookie_secret": settings.env_str("REVTRACE_OIDC_COOKIE_SECRET") or secrets.token_urlsafe(32),
            "client_id": settings.env_str("REVTRACE_OIDC_CLIENT_ID"),
            "client_secret": settings.env_str("REVTRACE_OIDC_CLIENT_SECRET"),
            "server_metadata_url": metadata,
        }
    }


class DashboardRole:
    """The dashboard served by uvicorn from a thread of this process."""

    name = "dashboard"

    def __init__(
        self,
        store: Store,
        *,
        host: str | None = None,
        port: int | None = None,
        collector_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.host = host or settings.env_str("REVTRACE_DASHBOARD_HOST")
        self.port = settings.env_int("REVTRACE_DASHBOARD_PORT") if port is None else port
        self._collector_status = collector_status
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where to open the dashboard."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind, start serving and return once the server listens."""
        import streamlit as st
        import uvicorn
        from streamlit import config as st_config

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise DashboardError(
                f"the dashboard cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self.port = sock.getsockname()[1]
        data.use_store(self.store)
        data.use_collector_status(self._collector_status)
        st_config.get_config_options(
            force_reparse=True, options_from_flags=_streamlit_options(self.host, self.port)
        )
        if self.host not in settings.LOOPBACK_HOSTS:
            log.warning(
                "the dashboard listens on %s: without accounts (revtrace users add) or OIDC it stays closed",
                self.host,
            )
        app = st.App(str(APP_PATH), secrets=_oidc_secrets(self.host, self.port))
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="revtrace-dashboard", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise DashboardError(f"the dashboard did not start on {self.url}")
            time.sleep(0.05)
        log.info("dashboard at %s", self.url)

    def stop(self) -> None:
        """Stop serving (open sessions are closed) and forget the store."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("the dashboard's server thread did not stop within 10 s")
        self._server = None
        self._thread = None
        data.use_collector_status(None)
        data.use_store(None)


def role_factory(port: int | None = None, host: str | None = None) -> Callable[[Store, Any], DashboardRole]:
    """The factory ``revtrace up`` calls with its store and collector."""

    def make(store: Store, collector: Any) -> DashboardRole:
        status = getattr(collector, "status", None)
        return DashboardRole(store, host=host, port=port, collector_status=status)

    return make


def run_alone(
    host: str | None = None, port: int | None = None, on_ready: Callable[[DashboardRole], None] | None = None
) -> None:
    """``revtrace dashboard``: open the store ``REVTRACE_CLICKHOUSE_URL`` names, serve the
    dashboard until SIGINT/SIGTERM, then stop and close the store."""
    import signal

    from collector.store import open_store

    store = open_store()
    role = DashboardRole(store, host=host, port=port)
    done = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        log.info("received %s; stopping the dashboard", signal.Signals(signum).name)
        done.set()

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        role.start()
        if on_ready is not None:
            on_ready(role)
        while not done.wait(0.5):
            pass
    finally:
        role.stop()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
