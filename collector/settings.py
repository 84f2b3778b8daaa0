"""Service settings from the environment, with documented defaults.

Every ``REVTRACE_*`` variable the server parts read is named here once, with its
default and meaning; ``docs/configuration.md`` is generated from this table
(``python -m collector.settings``). Secrets (passwords, tokens) only ever come
from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ENV",
    "Setting",
    "data_dir",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "register",
]


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default (as text) and meaning."""

    name: str
    default: str
    help: str


ENV: Final[dict[str, Setting]] = {
    s.name: s
    for s in (
        Setting(
            "REVTRACE_CLICKHOUSE_URL",
            "",
            "Where the store is. Empty: embedded chDB under REVTRACE_DATA_DIR. "
            "`chdb:///abs/path` for embedded at a path; `http(s)://user@host:8123/db` for a ClickHouse server.",
        ),
        Setting(
            "REVTRACE_CLICKHOUSE_PASSWORD", "", "Password for the ClickHouse server (overrides the URL's)."
        ),
        Setting(
            "REVTRACE_CLICKHOUSE_CLUSTER",
            "",
            "ClickHouse cluster (remote_servers name) to create the schema on: Replicated tables "
            "plus Distributed ones, ON CLUSTER. Empty: a single node.",
        ),
        Setting("REVTRACE_DATA_DIR", ".revtrace", "Local state: embedded store, spool, run files."),
        Setting("REVTRACE_DATABASE", "revtrace", "ClickHouse database holding every revtrace table."),
        Setting("REVTRACE_TTL_DAYS", "30", "Retention of spans and metrics in days (0 keeps forever)."),
        Setting("REVTRACE_HTTP_HOST", "127.0.0.1", "Bind address of the OTLP/HTTP receiver."),
        Setting("REVTRACE_HTTP_PORT", "4318", "Port of the OTLP/HTTP receiver (and health endpoints)."),
        Setting("REVTRACE_GRPC_PORT", "4317", "Port of the OTLP/gRPC receiver (0 disables it)."),
        Setting("REVTRACE_DASHBOARD_PORT", "8501", "Port of the dashboard."),
        Setting(
            "REVTRACE_CLICKHOUSE_HTTP_PORT",
            "",
            "revtrace up: also serve the embedded store over the ClickHouse HTTP interface on this port "
            "(for Grafana; read-only user `grafana`). Empty: off.",
        ),
        Setting(
            "REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD",
            "",
            "Password of that read-only user (required with the port; only from the environment).",
        ),
        Setting("REVTRACE_CLICKHOUSE_HTTP_HOST", "127.0.0.1", "Bind address of that interface."),
        Setting(
            "REVTRACE_CLICKHOUSE_HTTP_ALLOW_FROM",
            "",
            "Networks (CIDR, space-separated) the read-only user may log in from. Empty: loopback.",
        ),
        Setting(
            "REVTRACE_INGEST_TOKENS",
            "",
            "Comma-separated bearer tokens accepted on ingest. Empty: ingest is open (bind to loopback!).",
        ),
        Setting(
            "REVTRACE_MAX_BODY_BYTES", str(64 * 1024 * 1024), "Largest request body after decompression."
        ),
        Setting(
            "REVTRACE_INGEST_WORKERS",
            "0",
            "Processes that decode and check OTLP/HTTP requests (0: threads of the collector process). "
            "Set to the number of spare cores for high ingest rates.",
        ),
        Setting("REVTRACE_BATCH_ROWS", "50000", "The writer inserts when this many rows are waiting…"),
        Setting("REVTRACE_BATCH_MS", "1000", "…or when the oldest waiting row is this old."),
        Setting(
            "REVTRACE_INSERT_THREADS",
            "2",
            "Statements a batch of spans is split into and written by at once (the engine runs one on "
            "one core), each of at least 20,000 spans; each holds its share of the batch in memory. "
            "Batches under 6,000 spans are converted in Python instead.",
        ),
        Setting(
            "REVTRACE_SPOOL_MAX_BYTES",
            str(2 * 1024 * 1024 * 1024),
            "Spool bytes not yet in the store above which ingest answers 503 with Retry-After.",
        ),
        Setting(
            "REVTRACE_SPOOL_FSYNC",
            "0",
            "1: fsync the spool before answering 2xx (survives power loss, slower). "
            "0: the data survives a crash of the process (kill -9), not of the machine.",
        ),
    )
}


def register(*settings: Setting) -> None:
    """Add a component's own settings (dashboard, evaluator) to the one table
    ``revtrace config`` and ``docs/configuration.md`` list."""
    for setting in settings:
        ENV.setdefault(setting.name, setting)


def env_str(name: str) -> str:
    """The variable's value, or its documented default."""
    return os.environ.get(name, ENV[name].default)


def env_int(name: str) -> int:
    """The variable as an integer; a clear error naming it when it is not one."""
    raw = env_str(name)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str) -> float:
    """The variable as a number; a clear error naming it when it is not one."""
    raw = env_str(name)
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str) -> bool:
    """``1/true/yes/on`` (any case) are true."""
    return env_str(name).strip().lower() in {"1", "true", "yes", "on"}


def data_dir() -> Path:
    """The local state directory (created on demand by its users)."""
    return Path(env_str("REVTRACE_DATA_DIR")).expanduser().resolve()


def _markdown() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in ENV.values():
        lines.append(f"| `{s.name}` | `{s.default}` | {s.help} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_markdown())
