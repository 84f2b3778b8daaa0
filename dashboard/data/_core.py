"""The store of this process, the SQL files and the query cache."""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, ParamSpec, TypeVar, cast

import pandas as pd

from collector.store import Store, StoreError, open_store
from tracer import semconv

__all__ = [
    "CACHE_TTL_S",
    "Filters",
    "StoreError",
    "cached",
    "cached_for",
    "clear_caches",
    "collector_status",
    "get_store",
    "run_df",
    "sql",
    "table_exists",
    "use_collector_status",
    "use_store",
    "utcnow",
    "vocabulary",
]

CACHE_TTL_S: Final = 10
"""How long a query result is reused by the pages (they auto-refresh)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")

# --- the store ----------------------------------------------------------------

_handed: Store | None = None
_collector_status: Callable[[], dict[str, Any]] | None = None
_lock = threading.Lock()


def use_store(store: Store | None) -> None:
    """Hand the process's store to the dashboard (``revtrace up``, tests); ``None`` forgets it.

    The embedded store (chDB) can be opened once per process, so ``revtrace up``
    hands the one it opened instead of letting the dashboard open another.
    """
    global _handed
    with _lock:
        _handed = store


def use_collector_status(status: Callable[[], dict[str, Any]] | None) -> None:
    """Let the sync-engine page show the live status of the collector in this process."""
    global _collector_status
    _collector_status = status


def collector_status() -> dict[str, Any] | None:
    """The in-process collector's status, when the dashboard runs inside ``revtrace up``."""
    status = _collector_status
    if status is None:
        return None
    try:
        return status()
    except Exception:
        return None


def _open(url: str, database: str) -> Store:
    return open_store(url or None, database or None)


def _still_open(store: Store) -> bool:
    return not getattr(store, "_closed", False)


def get_store() -> Store:
    """The store of this process: the one handed in, else the one the environment names.

    The latter is opened once per process (``st.cache_resource``; ``open_store``
    also hands out the same embedded store for the same path).
    """
    with _lock:
        handed = _handed
    if handed is not None:
        return handed
    from collector import settings

    url, database = settings.env_str("REVTRACE_CLICKHOUSE_URL"), settings.env_str("REVTRACE_DATABASE")
    return _opener()(url, database)


@functools.cache
def _opener() -> Callable[[str, str], Store]:
    import streamlit as st

    return cast(
        Callable[[str, str], Store], st.cache_resource(show_spinner=False, validate=_still_open)(_open)
    )


def _store_key(store: Store) -> str:
    return f"{store.config.describe()}#{id(store)}"


# --- SQL ----------------------------------------------------------------------

_INCLUDE: Final = re.compile(r"/\*@(?P<name>[a-z_]+)\*/")
_SLOT: Final = re.compile(r"/\*:(?P<name>[a-z_]+)\*/")


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


@functools.cache
def sql(name: str, **slots: str) -> str:
    """The query ``dashboard/data/sql/<name>.sql`` with its ``/*@snippet*/`` includes
    and its ``/*:slot*/`` slots filled (``slots`` names the snippet for each slot).

    Snippets are the ``_<snippet>.sql`` files: static SQL, never input.
    """
    root = resources.files("dashboard.data") / "sql"
    text = _strip_comments((root / f"{name}.sql").read_text(encoding="utf-8"))

    def include(match: re.Match[str]) -> str:
        return sql(f"_{match['name']}")

    def fill(match: re.Match[str]) -> str:
        return sql(f"_{slots[match['name']]}")

    return _INCLUDE.sub(include, _SLOT.sub(fill, text))


def vocabulary() -> dict[str, Any]:
    """Parameters every query may use: the business vocabulary, from tracer.semconv."""
    return _VOCABULARY


_VOCABULARY: Final[dict[str, Any]] = {
    "outcome_ok": str(semconv.Outcome.OK),
    "outcome_failed": str(semconv.Outcome.FAILED),
    "ok_outcomes": [str(semconv.Outcome.OK), str(semconv.Outcome.SKIPPED_DUPLICATE)],
    "failed_outcomes": [str(semconv.Outcome.FAILED), str(semconv.Outcome.DEAD_LETTERED)],
    "customer_billing": str(semconv.Stage.BILLING_CUSTOMER_UPSERT),
    "customer_erp": str(semconv.Stage.ERP_CUSTOMER_UPSERT),
    "category_mismatch": str(semconv.FailureCategory.MISMATCH),
    "category_duplicate": str(semconv.FailureCategory.DUPLICATE),
    "category_rate_limited": str(semconv.FailureCategory.RATE_LIMITED),
    "sys_crm": str(semconv.System.CRM),
    "sys_billing": str(semconv.System.BILLING),
    "sys_erp": str(semconv.System.ERP),
    "attr_stage": semconv.BIZ_STAGE,
}


# --- filters --------------------------------------------------------------------

_STEPS: Final = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)


def utcnow() -> dt.datetime:
    """Now, naive UTC (the store's session time zone)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Filters:
    """What every view is filtered by: a time window (naive UTC) and a legal entity."""

    start: dt.datetime
    end: dt.datetime
    entity: str = ""

    @property
    def step(self) -> int:
        """Bucket width in seconds: the smallest step giving at most ~120 buckets."""
        span = max((self.end - self.start).total_seconds(), 1.0)
        for step in _STEPS:
            if span / step <= 120:
                return step
        return _STEPS[-1]

    def params(self) -> dict[str, Any]:
        """The window and entity as query parameters."""
        return {"start": self.start, "end": self.end, "entity": self.entity, "step": self.step}


# --- running and caching ----------------------------------------------------------

_missing_tables: dict[str, float] = {}


def table_exists(store: Store, table: str) -> bool:
    """Whether ``table`` exists in the store's database (asked again after a minute when not)."""
    import time

    key = f"{_store_key(store)}/{table}"
    checked = _missing_tables.get(key)
    if checked is not None and time.monotonic() - checked < 60:
        return False
    found = bool(
        store.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": table},
        ).scalar()
    )
    if found:
        _missing_tables.pop(key, None)
    else:
        _missing_tables[key] = time.monotonic()
    return found


def run_df(
    store: Store, name: str, params: Mapping[str, Any] | None = None, slots: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Run the named SQL file (``slots`` filled) with the vocabulary and ``params`` bound."""
    bound = {**_VOCABULARY, **(params or {})}
    return store.query_df(sql(name, **dict(slots or {})), bound)


def _in_streamlit() -> bool:
    try:
        from streamlit import runtime
    except ImportError:  # pragma: no cover - streamlit is a server dependency
        return False
    return bool(runtime.exists())


def cached_for(ttl: int) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Cache a query function's result for ``ttl`` seconds inside Streamlit.

    The store is part of the key by identity (two databases never share results);
    outside a Streamlit run (the CLI, benchmarks' baselines) the function runs as is.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.cache
        def streamlit_cached() -> Callable[_P, _R]:
            # Wrapped on first use inside a run: st.cache_data outside one logs a warning.
            import streamlit as st

            return cast(
                Callable[_P, _R],
                st.cache_data(ttl=ttl, show_spinner=False, hash_funcs={Store: _store_key})(fn),
            )

        @functools.wraps(fn)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if _in_streamlit():
                return streamlit_cached()(*args, **kwargs)
            return fn(*args, **kwargs)

        return call

    return decorate


cached = cached_for(CACHE_TTL_S)
"""Cache for :data:`CACHE_TTL_S` (see :func:`cached_for`)."""


def clear_caches() -> None:
    """Forget every cached query result (after an action changed the store)."""
    import streamlit as st

    st.cache_data.clear()
    _missing_tables.clear()
