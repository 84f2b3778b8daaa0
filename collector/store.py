"""The store: one place that turns ``REVTRACE_CLICKHOUSE_URL`` into a ClickHouse client.

Embedded chDB by default (``chdb:///<data dir>/store``), or a ClickHouse server
over HTTP(S) (``http://user@host:8123/db``, password from
``REVTRACE_CLICKHOUSE_PASSWORD``). Both are clickhouse-connect clients, so the
rest of the code — writer, evaluator, dashboard, CLI — talks to a :class:`Store`
and never knows which engine is behind it.

chDB allows one engine (one data directory) per process, and its data directory
can be opened by one process at a time; :func:`open_store` says so clearly
instead of failing deep inside the engine.

Exceptions::

    StoreError
     ├── StoreConfigError      bad URL or settings (not retryable)
     ├── StoreLockedError      the embedded store is held by another process
     ├── StoreDataError        the store refused the data itself (not retryable)
     └── StoreUnavailableError the server cannot be reached now (retryable)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from collector import pidlock
from collector import settings as _settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Rows",
    "Store",
    "StoreConfig",
    "StoreConfigError",
    "StoreDataError",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailableError",
    "open_store",
    "parse_store_url",
]

log = logging.getLogger(__name__)

# Settings every session gets: UTC everywhere, so a timestamp means the same
# thing on a laptop, in CI and on a server.
_SESSION_SETTINGS: dict[str, Any] = {"session_timezone": "UTC"}


class StoreError(Exception):
    """Anything that went wrong talking to the store."""

    retryable = False


class StoreConfigError(StoreError):
    """The store URL or its settings are invalid."""


class StoreLockedError(StoreError):
    """The embedded store's data directory is held by another process."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now; try again later."""

    retryable = True


class StoreDataError(StoreError):
    """The store refused the data itself (a row it cannot parse); retrying will not help."""


@dataclass(frozen=True)
class StoreConfig:
    """Where the store is. ``kind`` is ``embedded`` or ``server``."""

    kind: str
    database: str
    path: Path | None = None
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = "default"
    password: str = ""

    def describe(self) -> str:
        """Human-readable location without secrets."""
        if self.kind == "embedded":
            return f"embedded chDB at {self.path} (database {self.database})"
        scheme = "https" if self.secure else "http"
        return (
            f"ClickHouse server {scheme}://{self.username}@{self.host}:{self.port} (database {self.database})"
        )


def parse_store_url(url: str | None = None, database: str | None = None) -> StoreConfig:
    """Parse ``REVTRACE_CLICKHOUSE_URL`` (or ``url``) into a :class:`StoreConfig`.

    ``""`` → embedded under ``REVTRACE_DATA_DIR/store``; ``chdb:///abs/path``;
    ``http(s)://user:pass@host:port/db``. The database defaults to the URL's
    path for a server, else ``REVTRACE_DATABASE``.
    """
    raw = (url if url is not None else _settings.env_str("REVTRACE_CLICKHOUSE_URL")).strip()
    db_default = database or _settings.env_str("REVTRACE_DATABASE")
    if not raw:
        return StoreConfig(kind="embedded", database=db_default, path=_settings.data_dir() / "store")
    parsed = urlparse(raw)
    if parsed.scheme == "chdb":
        location = parsed.netloc + parsed.path
        if not location or location in {"memory", ":memory:"}:
            raise StoreConfigError(
                f"REVTRACE_CLICKHOUSE_URL={raw!r}: give chdb a directory, e.g. chdb:///var/lib/revtrace"
            )
        return StoreConfig(kind="embedded", database=db_default, path=Path(location).expanduser().resolve())
    if parsed.scheme in {"http", "https"}:
        if not parsed.hostname:
            raise StoreConfigError(f"REVTRACE_CLICKHOUSE_URL={_redact(raw)!r}: no host")
        secure = parsed.scheme == "https"
        try:
            port = parsed.port or (8443 if secure else 8123)
        except ValueError:
            raise StoreConfigError(f"REVTRACE_CLICKHOUSE_URL={_redact(raw)!r}: invalid port") from None
        path_db = unquote(parsed.path.strip("/"))
        password = _settings.env_str("REVTRACE_CLICKHOUSE_PASSWORD") or unquote(parsed.password or "")
        return StoreConfig(
            kind="server",
            database=database or path_db or db_default,
            host=parsed.hostname,
            port=port,
            secure=secure,
            username=unquote(parsed.username or "default"),
            password=password,
        )
    raise StoreConfigError(
        f"REVTRACE_CLICKHOUSE_URL={_redact(raw)!r}: scheme must be chdb, http or https, got {parsed.scheme!r}"
    )


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


@dataclass(frozen=True)
class Rows:
    """A query result: column names and row tuples."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row (None when empty)."""
        return self.rows[0][0] if self.rows else None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class Store:
    """A ClickHouse database behind clickhouse-connect, embedded or server.

    Thread-safe: each thread gets its own client (chDB clients share the one
    engine of the process). User input is always bound as server-side
    parameters: ``store.query("… WHERE id = {id:String}", {"id": value})``.
    """

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.database = config.database
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._locked_dir: Path | None = None
        if config.kind == "embedded":
            self._locked_dir = _lock_data_dir(config)
        # Create the database with a client on the default database, then
        # every client of this store uses it.
        bootstrap = self._new_client(database=None)
        try:
            # Look first: a read-only user (dashboards, Grafana) may not create.
            exists = bootstrap.query(
                "SELECT count() FROM system.databases WHERE name = {d:String}",
                parameters={"d": self.database},
            ).result_rows[0][0]
            if not exists:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {_ident(self.database)}")
        except Exception as exc:
            raise _wrap(exc, f"creating database {self.database!r}") from exc
        finally:
            with contextlib.suppress(Exception):
                bootstrap.close()

    # --- clients ---------------------------------------------------------------

    def _new_client(self, database: str | None) -> Any:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ProgrammingError

        cfg = self.config
        try:
            if cfg.kind == "embedded":
                assert cfg.path is not None
                cfg.path.mkdir(parents=True, exist_ok=True)
                return clickhouse_connect.get_client(
                    interface="chdb",
                    path=str(cfg.path),
                    database=database,
                    settings=dict(_SESSION_SETTINGS),
                )
            try:
                return self._server_client(database, dict(_SESSION_SETTINGS))
            except Exception as exc:
                if "READONLY" not in str(exc) and "readonly" not in str(exc):
                    raise
                # A readonly=1 user may not change settings; it reads in the
                # server's time zone (set the server to UTC, as revtrace expects).
                log.warning("user %s is read-only; session settings not applied", cfg.username)
                return self._server_client(database, {})
        except ProgrammingError as exc:
            if cfg.kind == "embedded":
                raise StoreLockedError(
                    f"{cfg.describe()} cannot be opened in this process: {exc}. chDB runs one engine per "
                    "process; use one Store per process."
                ) from exc
            raise _wrap(exc, "connecting") from exc
        except Exception as exc:
            message = str(exc)
            if cfg.kind == "embedded" and ("lock" in message.lower() or "another" in message.lower()):
                raise StoreLockedError(
                    f"{cfg.describe()} is in use by another process (is `revtrace up` running?): {message}"
                ) from exc
            raise _wrap(exc, f"connecting to {cfg.describe()}") from exc

    def _server_client(self, database: str | None, settings: dict[str, Any]) -> Any:
        import clickhouse_connect

        cfg = self.config
        return clickhouse_connect.get_client(
            host=cfg.host,
            port=cfg.port,
            interface="https" if cfg.secure else "http",
            username=cfg.username,
            password=cfg.password,
            database=database or "default",
            settings=settings,
            connect_timeout=5,
            send_receive_timeout=300,
            autogenerate_session_id=False,
        )

    def client(self) -> Any:
        """This thread's clickhouse-connect client (created on first use)."""
        if self._closed:
            raise StoreError("the store is closed")
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client(self.database)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    # --- queries ---------------------------------------------------------------

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Rows:
        """Run a SELECT with bound parameters; return its rows."""
        try:
            result = self.client().query(
                sql, parameters=dict(parameters or {}), settings=dict(settings or {})
            )
        except StoreError:
            raise
        except Exception as exc:
            raise _wrap(exc, "query") from exc
        return Rows(tuple(result.column_names), list(result.result_rows))

    def query_df(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Run a SELECT with bound parameters; return a pandas DataFrame."""
        import pandas as pd

        rows = self.query(sql, parameters, settings)
        return pd.DataFrame.from_records(rows.rows, columns=list(rows.columns))

    def command(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run DDL or a statement without a result set."""
        try:
            return self.client().command(
                sql, parameters=dict(parameters or {}), settings=dict(settings or {})
            )
        except StoreError:
            raise
        except Exception as exc:
            raise _wrap(exc, "command") from exc

    def insert_raw(
        self,
        table: str,
        data: bytes,
        fmt: str = "JSONEachRow",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert pre-encoded rows (``JSONEachRow`` by default) into ``table``."""
        try:
            self.client().raw_insert(table, insert_block=data, fmt=fmt, settings=dict(settings or {}))
        except StoreError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"insert into {table}") from exc

    def insert_rows(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert Python rows into ``table``."""
        if not rows:
            return
        try:
            self.client().insert(
                table, [list(r) for r in rows], column_names=list(column_names), settings=dict(settings or {})
            )
        except StoreError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"insert into {table}") from exc

    def ping(self) -> bool:
        """True when the store answers a trivial query."""
        try:
            return bool(self.query("SELECT 1").scalar() == 1)
        except StoreError:
            return False

    def close(self) -> None:
        """Close every client of this store."""
        self._closed = True
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        if self._locked_dir is not None:
            _unlock_data_dir(self._locked_dir)
            self._locked_dir = None


LOCK_FILE_NAME = ".revtrace-store.lock"

# The embedded data directory is locked once per process (flock is per open
# file, so a second lock from this process would fail); stores on the same
# directory share the lock and the last one to close releases it.
_dir_locks: dict[Path, tuple[Any, int]] = {}
_dir_locks_guard = threading.Lock()


def _lock_data_dir(config: StoreConfig) -> Path:
    """Hold an exclusive lock on the embedded data directory for this process.

    chDB itself fails with an opaque message when a second process opens the
    directory; the lock turns that into an error naming the holder.
    """

    assert config.path is not None
    path = config.path
    with _dir_locks_guard:
        held = _dir_locks.get(path)
        if held is not None:
            _dir_locks[path] = (held[0], held[1] + 1)
            return path
        try:
            handle = pidlock.hold(path / LOCK_FILE_NAME)
        except pidlock.HeldElsewhere as exc:
            raise StoreLockedError(
                f"{config.describe()} is in use by another process (pid {exc.holder}). The embedded store "
                "can be opened by one process at a time: stop it, or run this command while `revtrace up` "
                "holds the store (the CLI then asks the running process)."
            ) from None
        _dir_locks[path] = (handle, 1)
        return path


def _unlock_data_dir(path: Path) -> None:
    with _dir_locks_guard:
        held = _dir_locks.get(path)
        if held is None:
            return
        handle, count = held
        if count > 1:
            _dir_locks[path] = (handle, count - 1)
            return
        del _dir_locks[path]
        with contextlib.suppress(Exception):
            handle.close()


def _ident(name: str) -> str:
    """Quote an identifier that comes from configuration (never from users)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# ClickHouse error names that mean "this data is bad", not "the store is down".
_DATA_ERRORS = (
    "CANNOT_PARSE",
    "INCORRECT_DATA",
    "TYPE_MISMATCH",
    "DECIMAL_OVERFLOW",
    "INCORRECT_JSON",
    "TOO_LARGE_STRING_SIZE",
    "CANNOT_READ_ARRAY_FROM_TEXT",
    "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    "ARGUMENT_OUT_OF_BOUND",
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
)


def _wrap(exc: Exception, what: str) -> StoreError:
    """Classify a driver error: data errors are final, everything else may pass."""
    text = str(exc)
    if any(name in text for name in _DATA_ERRORS):
        return StoreDataError(f"{what}: {text}")
    lowered = text.lower()
    markers = ("connection refused", "timed out", "timeout", "name or service", "max retries", "unreachable")
    if any(marker in lowered for marker in markers):
        return StoreUnavailableError(f"{what}: {text}")
    return StoreError(f"{what}: {text}")


# One embedded Store per data directory per process: chDB cannot open a second
# engine in the same process, so handing out the same Store is the only correct
# answer to a second open of the same path.
_embedded: dict[tuple[Path, str], Store] = {}
_embedded_lock = threading.Lock()


def open_store(url: str | None = None, database: str | None = None) -> Store:
    """Open the store named by ``url`` (default ``REVTRACE_CLICKHOUSE_URL``).

    Embedded stores are shared within the process (chDB: one engine per process).
    """
    config = parse_store_url(url, database)
    if config.kind != "embedded":
        return Store(config)
    assert config.path is not None
    key = (config.path, config.database)
    with _embedded_lock:
        existing = _embedded.get(key)
        if existing is not None and not existing._closed:
            return existing
        for (path, _db), store in list(_embedded.items()):
            if store._closed:
                del _embedded[(path, _db)]
            elif path != config.path:
                raise StoreLockedError(
                    f"this process already runs embedded chDB at {path}; it cannot open {config.path} too "
                    "(chDB runs one engine per process)"
                )
        store = Store(config)
        _embedded[key] = store
        return store
