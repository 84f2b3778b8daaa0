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

The cluster variant (``RenderOptions(cluster=…)``, by default from
``REVTRACE_CLICKHOUSE_CLUSTER``) renders from the same files; every statement
of the single-node schema becomes:

* ``CREATE TABLE t`` → ``t_local`` on every node with the Replicated engine,
  plus ``t`` as a ``Distributed`` table over ``t_local`` with the same columns.
  Everything reads and writes ``t``, exactly as on a single node.
* ``CREATE MATERIALIZED VIEW v TO t AS SELECT … FROM s`` → the view reads
  ``s_local`` and writes ``t_local``. A materialized view fires on inserts into
  its source table only, so it must live on the local tables: an insert into
  the Distributed ``otel_traces`` reaches ``otel_traces_local`` on one shard,
  the views there fire, and the derived rows stay on the shard of the spans
  they come from (and replicate with them: the targets are Replicated too).
* ``ALTER TABLE t`` → on ``t_local``; column changes also on ``t``.
* anything else is refused, so the two variants cannot drift apart silently.

Sharding keys are deterministic (never ``rand()``): spans are sharded by
correlation id (trace id when there is none), so a transaction lives on one
shard and per-transaction views are complete there; every other table by its
sorting key, so all versions of a ``ReplacingMergeTree`` row meet on one shard
(``FINAL`` is per shard) and a retried insert splits exactly as before, which
is what lets each shard drop the repeat (insert deduplication).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Final

from collector.store import Store, StoreError
from tracer import semconv

__all__ = [
    "CLUSTER_ENV",
    "LOCAL_SUFFIX",
    "Migration",
    "MigrationError",
    "RenderOptions",
    "applied_versions",
    "apply_retention",
    "load_migrations",
    "migrate",
    "render",
    "sharding_key",
    "ttl_expressions",
]

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "revtrace_schema_migrations"

CLUSTER_ENV: Final = "REVTRACE_CLICKHOUSE_CLUSTER"
"""The ClickHouse cluster (``remote_servers`` name) to render the schema for; empty: one node."""
LOCAL_SUFFIX: Final = "_local"
"""On a cluster, ``t`` is the Distributed table and ``t_local`` the table on each node."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Z_]+|attr|ENGINE|TTL)(?::(?P<arg>[^}]*))?\}")
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(StoreError):
    """A migration failed; the message names the migration, statement and cause."""


def _cluster_from_env() -> str:
    from collector.settings import env_str

    return env_str(CLUSTER_ENV).strip()


@dataclass(frozen=True)
class RenderOptions:
    """How the schema templates are rendered for one deployment.

    ``cluster`` defaults to ``REVTRACE_CLICKHOUSE_CLUSTER``, so every role that
    migrates on start renders the same variant. ``database`` is where the
    Distributed tables point (:func:`migrate` fills it in from the store).
    """

    ttl_days: int = 30
    cluster: str = field(default_factory=_cluster_from_env)
    database: str = ""

    def __post_init__(self) -> None:
        if self.cluster and not _IDENTIFIER.fullmatch(self.cluster):
            raise MigrationError(f"{CLUSTER_ENV}={self.cluster!r}: a cluster name is letters, digits and _")

    def engine(self, name: str) -> str:
        """The engine clause for ``name`` (MergeTree family), parameters kept after the replication path."""
        if not self.cluster:
            return name
        base, paren, args = name.partition("(")
        path = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        if paren and args.strip() != ")":
            return f"Replicated{base}({path}, {args}"
        return f"Replicated{base}({path})"

    def table(self, name: str) -> str:
        """The table that holds ``name``'s rows on each node (``name_local`` on a cluster)."""
        return f"{name}{LOCAL_SUFFIX}" if self.cluster else name


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
    files: list[tuple[re.Match[str], str]] = []
    for entry in sorted(resources.files("collector.schema").iterdir(), key=lambda e: e.name):
        match = _FILE_NAME.match(entry.name)
        if match is not None:
            files.append((match, entry.read_text(encoding="utf-8")))
    tables = {MIGRATIONS_TABLE} | {t["table"] for _, text in files for t in _CREATE_TABLE.finditer(text)}
    found: list[Migration] = []
    for match, text in files:
        statements = [render(statement, options) for statement in _split(text)]
        if options.cluster:
            statements = [out for statement in statements for out in _for_cluster(statement, options, tables)]
        found.append(
            Migration(
                version=match["version"],
                name=match["name"],
                statements=tuple(statements),
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
            )
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def _migrations_table(options: RenderOptions) -> list[str]:
    """The statements creating ``revtrace_schema_migrations`` (two on a cluster)."""
    statement = render(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ${{ON_CLUSTER}} ("
        " version String, name String, checksum String, applied_at DateTime64(3, 'UTC'),"
        " duration_ms UInt32"
        ") ENGINE = ${ENGINE:ReplacingMergeTree} ORDER BY version",
        options,
    )
    return _for_cluster(statement, options, {MIGRATIONS_TABLE}) if options.cluster else [statement]


def _ensure_table(store: Store, options: RenderOptions) -> None:
    # ON CLUSTER waits for every node; roles migrate on each start, so ask first.
    if options.cluster and store.query(f"EXISTS TABLE {MIGRATIONS_TABLE}").scalar() == 1:
        return
    for statement in _migrations_table(options):
        store.command(statement)


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
    if options.cluster and not options.database:
        options = replace(options, database=store.database)
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


def apply_retention(store: Store, ttl_days: int, options: RenderOptions | None = None) -> list[str]:
    """Make every table's TTL match ``ttl_days`` (0: keep forever); return the tables changed.

    Migrations set the TTL a table is created with; this keeps it in step when
    ``REVTRACE_TTL_DAYS`` changes later. Existing parts are not rewritten
    (``materialize_ttl_after_modify = 0``): old data expires as its parts are
    merged or dropped whole (``ttl_only_drop_parts``). On a cluster the TTL is
    set on the local tables of every node (``ON CLUSTER``).
    """
    options = options or RenderOptions()
    on_cluster = f" ON CLUSTER {options.cluster}" if options.cluster else ""
    current = {
        str(name): str(query)
        for name, query in store.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase()"
        )
    }
    changed: list[str] = []
    for name, expr in sorted(ttl_expressions().items()):
        table = options.table(name)
        query = current.get(table)
        if query is None:
            continue
        wanted = f"toIntervalDay({ttl_days})"
        has_ttl = " TTL " in query
        if ttl_days > 0 and not (has_ttl and wanted in query):
            store.command(
                f"ALTER TABLE {table}{on_cluster} MODIFY TTL {expr} + toIntervalDay({int(ttl_days)})",
                settings={"materialize_ttl_after_modify": 0},
            )
            changed.append(table)
        elif ttl_days <= 0 and has_ttl:
            store.command(f"ALTER TABLE {table}{on_cluster} REMOVE TTL")
            changed.append(table)
    return changed


# --- the cluster variant ----------------------------------------------------------------

# Tables whose rows must be placed by something other than their sorting key.
# Spans go by correlation id (trace id without one), so one transaction is on
# one shard; revtrace_spans is filled on that shard by its view, and its key
# says the same, for anyone inserting into it directly.
_SHARDING_KEYS: Final = {
    "otel_traces": "cityHash64(if(SpanAttributes['${attr:BIZ_CORRELATION_ID}'] != '', "
    "SpanAttributes['${attr:BIZ_CORRELATION_ID}'], TraceId))",
    "revtrace_spans": "cityHash64(CorrelationId)",
}

_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS\s+(?P<view>\w+)\b")
_MV_TO = re.compile(r"\bTO\s+(?P<table>\w+)\b")
_ALTER_TABLE = re.compile(r"^ALTER TABLE\s+(?P<table>\w+)\b")
_COLUMN_ALTER = re.compile(r"\b(?:ADD|DROP|MODIFY|RENAME|CLEAR|COMMENT)\s+COLUMN\b", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER BY\s+")


def _order_by(statement: str) -> list[str]:
    """The sorting key's expressions of a CREATE TABLE statement."""
    match = _ORDER_BY.search(statement)
    if match is None:
        return []
    rest = statement[match.end() :]
    if not rest.startswith("("):
        return [rest.split()[0]]
    depth = 0
    for index, char in enumerate(rest):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            body = rest[1:index]
            break
    else:
        return []
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(body[start:index].strip())
            start = index + 1
    parts.append(body[start:].strip())
    return [p for p in parts if p]


def sharding_key(table: str, statement: str, options: RenderOptions | None = None) -> str:
    """The Distributed table's sharding key for ``table`` (created by ``statement``).

    Deterministic, so a retried insert splits across shards exactly as before.
    """
    special = _SHARDING_KEYS.get(table)
    if special is not None:
        return render(special, options or RenderOptions())
    columns = _order_by(statement)
    if not columns:
        raise MigrationError(f"cluster schema: {table} has no ORDER BY to shard by")
    return f"cityHash64({', '.join(columns)})"


def _for_cluster(statement: str, options: RenderOptions, tables: set[str]) -> list[str]:
    """The cluster form of one rendered single-node statement (see the module docstring)."""
    cluster = options.cluster
    create = _CREATE_TABLE.match(statement)
    if create is not None:
        name = create["table"]
        local = options.table(name)
        local_statement = f"{statement[: create.start('table')]}{local}{statement[create.end('table') :]}"
        database = f"'{options.database}'" if options.database else "currentDatabase()"
        key = sharding_key(name, statement, options)
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
            f"ENGINE = Distributed('{cluster}', {database}, '{local}', {key})"
        )
        return [local_statement, distributed]
    if _CREATE_MV.match(statement) is not None:
        target = _MV_TO.search(statement)
        if target is None or target["table"] not in tables:
            raise MigrationError(f"cluster schema: a materialized view needs TO <table>: {statement[:120]}")
        start, end = target.span("table")
        retargeted = f"{statement[:start]}{options.table(target['table'])}{statement[end:]}"
        names = "|".join(sorted(tables, key=len, reverse=True))
        return [
            re.sub(
                rf"\b(FROM|JOIN)(\s+)({names})\b",
                lambda m: f"{m[1]}{m[2]}{options.table(m[3])}",
                retargeted,
            )
        ]
    alter = _ALTER_TABLE.match(statement)
    if alter is not None and alter["table"] in tables:
        name = alter["table"]
        local = f"ALTER TABLE {options.table(name)}{statement[alter.end('table') :]}"
        if _COLUMN_ALTER.search(statement):
            return [local, statement]  # the Distributed table's columns follow the local table's
        return [local]
    raise MigrationError(
        f"cluster schema: no cluster form for this statement (write CREATE TABLE, CREATE MATERIALIZED "
        f"VIEW … TO, or ALTER TABLE): {statement[:120]}"
    )
