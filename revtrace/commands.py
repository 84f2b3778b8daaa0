"""Store commands of the ``revtrace`` CLI that belong to no single component.

Each is ``fn(store, **args) -> CommandOutput`` so it runs here or inside a
running ``revtrace up`` (see :mod:`revtrace.runtime`).
"""

from __future__ import annotations

from collector.migrations import RenderOptions, applied_versions, load_migrations, migrate
from collector.settings import env_int
from collector.store import Store
from revtrace.runtime import CommandOutput

__all__ = ["db_migrate", "db_status"]


def db_migrate(store: Store, ttl_days: int | None = None) -> CommandOutput:
    """Apply pending schema migrations; say which."""
    options = RenderOptions(ttl_days=env_int("REVTRACE_TTL_DAYS") if ttl_days is None else ttl_days)
    applied = migrate(store, options)
    if applied:
        return CommandOutput(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    return CommandOutput("schema is up to date; nothing to apply")


def db_status(store: Store) -> CommandOutput:
    """List migrations, applied or pending, and table sizes."""
    done = applied_versions(store) if _has_table(store) else {}
    lines = ["version  state    name"]
    pending = 0
    for migration in load_migrations():
        state = "applied" if migration.version in done else "PENDING"
        pending += state == "PENDING"
        lines.append(f"{migration.version}     {state:<8} {migration.name}")
    sizes = store.query(
        "SELECT table, sum(rows), formatReadableSize(sum(bytes_on_disk)) FROM system.parts "
        "WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table"
    )
    if sizes.rows:
        lines.append("")
        lines.append("table                                  rows        size")
        for table, rows, size in sizes:
            lines.append(f"{table:<38} {rows:<11} {size}")
    return CommandOutput("\n".join(lines), exit_code=1 if pending else 0)


def _has_table(store: Store) -> bool:
    return bool(
        store.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {n:String}",
            {"n": "revtrace_schema_migrations"},
        ).scalar()
    )
