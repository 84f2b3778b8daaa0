"""Versioned, idempotent schema migrations.

Migrations are the ``collector/schema/NNNN_name.sql`` files, applied in order.
Each is a list of statements separated by ``;`` at the end of a line; every
statement is idempotent (``IF NOT EXISTS``), so a migration that failed half-way
can simply be run again. A migration is recorded in ``revtrace_schema_migrations``
only after all its statements succeeded.

The SQL is a template rendered here, once, for the deployment:

``${ON_CLUSTER}``
    empty on a single node; ``ON CLUSTER <name>`` for a cluster.
``${ENGINE:MergeTree}``
    the table engine (a cluster gets the Replicated variant).
``${TTL:expr}``
    ``TTL expr + toIntervalDay(N)`` when retention is set, else nothing.
``${attr:NAME}``
    the value of ``tracer.semconv.NAME`` (attribute names are spelled once).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

from collector.store import Store, StoreError
from tracer import semconv

__all__ = [
    "Migration",
    "MigrationError",
    "RenderOptions",
    "applied_versions",
    "apply_retention",
    "load_migrations",
    "migrate",
    "render",
    "ttl_expressions",
]

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "revtrace_schema_migrations"

_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Z_]+|attr|ENGINE|TTL)(?::(?P<arg>[^}]*))?\}")
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(StoreError):
    """A migration failed; the message names the migration, statement and cause."""


@dataclass(frozen=True)
class RenderOptions:
    """How the schema templates are rendered for one deployment."""

    ttl_days: int = 30
    cluster: str = ""

    def engine(self, name: str) -> str:
        """The engine clause for ``name`` (MergeTree family)."""
        if not self.cluster:
            return name
        return f"Replicated{name}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}')"


@dataclass(frozen=True)
class Migration:
    """One schema file: version, name, rendered statements and checksum."""

    version: str
    name: str
    statements: tuple[str, ...]
    checksum: str


def render(template: str, options: RenderOptions) -> str:
    """Fill the ``${…}`` placeholders of a schema template."""

    def replace(match: re.Match[str]) -> str:
        name, arg = match["name"], match["arg"]
        if name == "ON_CLUSTER":
            return f"ON CLUSTER {options.cluster}" if options.cluster else ""
        if name == "ENGINE":
            if not arg:
                raise MigrationError("${ENGINE:…} needs an engine name")
            return options.engine(arg)
        if name == "TTL":
            if not arg:
                raise MigrationError("${TTL:…} needs a time expression")
            return f"TTL {arg} + toIntervalDay({options.ttl_days})" if options.ttl_days > 0 else ""
        if name == "attr":
            value = getattr(semconv, arg or "", None)
            if not isinstance(value, str):
                raise MigrationError(f"${{attr:{arg}}}: tracer.semconv has no string constant {arg!r}")
            return value.replace("\\", "\\\\").replace("'", "\\'")
        raise MigrationError(f"unknown placeholder ${{{name}}}")

    return _PLACEHOLDER.sub(replace, template)


def _split(sql: str) -> list[str]:
    """Statements of a schema file: comment lines dropped, split on ``;`` at line end."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def load_migrations(options: RenderOptions | None = None) -> list[Migration]:
    """Every migration shipped with the collector, rendered, in version order."""
    options = options or RenderOptions()
    found: list[Migration] = []
    for entry in sorted(resources.files("collector.schema").iterdir(), key=lambda e: e.name):
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                version=match["version"],
                name=match["name"],
                statements=tuple(render(statement, options) for statement in _split(text)),
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
            )
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def _ensure_table(store: Store, options: RenderOptions) -> None:
    store.command(
        render(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ${{ON_CLUSTER}} ("
            " version String, name String, checksum String, applied_at DateTime64(3, 'UTC'),"
            " duration_ms UInt32"
            ") ENGINE = ${ENGINE:ReplacingMergeTree} ORDER BY version",
            options,
        )
    )


def applied_versions(store: Store) -> dict[str, str]:
    """version → checksum of every recorded migration."""
    rows = store.query("SELECT version, any(checksum) FROM revtrace_schema_migrations GROUP BY version")
    return {str(v): str(c) for v, c in rows}


def migrate(store: Store, options: RenderOptions | None = None) -> list[str]:
    """Apply every migration not yet recorded; return the versions applied.

    Raises :class:`MigrationError` naming the migration and statement that
    failed. Nothing of a failed migration is recorded, so running again
    resumes it (its statements are idempotent).
    """
    options = options or RenderOptions()
    _ensure_table(store, options)
    done = applied_versions(store)
    applied: list[str] = []
    for migration in load_migrations(options):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                log.warning(
                    "migration %s_%s changed since it was applied (checksum %s, now %s); "
                    "write a new migration instead of editing an applied one",
                    migration.version,
                    migration.name,
                    done[migration.version],
                    migration.checksum,
                )
            continue
        started = time.monotonic()
        for index, statement in enumerate(migration.statements, start=1):
            try:
                store.command(statement)
            except StoreError as exc:
                first = statement.splitlines()[0][:120]
                raise MigrationError(
                    f"migration {migration.version}_{migration.name} failed at statement "
                    f"{index}/{len(migration.statements)} ({first}): {exc}. Nothing of it was recorded; "
                    "fix the cause and run `revtrace db migrate` again."
                ) from exc
        elapsed_ms = int((time.monotonic() - started) * 1000)
        store.command(
            "INSERT INTO revtrace_schema_migrations (version, name, checksum, applied_at, duration_ms) "
            "VALUES ({v:String}, {n:String}, {c:String}, now64(3), {d:UInt32})",
            {"v": migration.version, "n": migration.name, "c": migration.checksum, "d": elapsed_ms},
        )
        log.info("applied migration %s_%s in %d ms", migration.version, migration.name, elapsed_ms)
        applied.append(migration.version)
    return applied


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS\s+(?P<table>\w+)")
_TTL_PLACEHOLDER = re.compile(r"\$\{TTL:(?P<expr>[^}]*)\}")


def ttl_expressions() -> dict[str, str]:
    """table → the time expression its retention is computed from, per the schema files."""
    found: dict[str, str] = {}
    for entry in resources.files("collector.schema").iterdir():
        if not _FILE_NAME.match(entry.name):
            continue
        for statement in _split(entry.read_text(encoding="utf-8")):
            table = _CREATE_TABLE.search(statement)
            ttl = _TTL_PLACEHOLDER.search(statement)
            if table and ttl:
                found[table["table"]] = ttl["expr"]
    return found


def apply_retention(store: Store, ttl_days: int) -> list[str]:
    """Make every table's TTL match ``ttl_days`` (0: keep forever); return the tables changed.

    Migrations set the TTL a table is created with; this keeps it in step when
    ``REVTRACE_TTL_DAYS`` changes later. Existing parts are not rewritten
    (``materialize_ttl_after_modify = 0``): old data expires as its parts are
    merged or dropped whole (``ttl_only_drop_parts``).
    """
    current = {
        str(name): str(query)
        for name, query in store.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase()"
        )
    }
    changed: list[str] = []
    for table, expr in sorted(ttl_expressions().items()):
        query = current.get(table)
        if query is None:
            continue
        wanted = f"toIntervalDay({ttl_days})"
        has_ttl = " TTL " in query
        if ttl_days > 0 and not (has_ttl and wanted in query):
            store.command(
                f"ALTER TABLE {table} MODIFY TTL {expr} + toIntervalDay({int(ttl_days)})",
                settings={"materialize_ttl_after_modify": 0},
            )
            changed.append(table)
        elif ttl_days <= 0 and has_ttl:
            store.command(f"ALTER TABLE {table} REMOVE TTL")
            changed.append(table)
    return changed
