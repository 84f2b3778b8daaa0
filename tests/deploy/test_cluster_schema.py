"""The cluster schema: rendered from the same SQL files as the single-node schema,
with the cluster changes only — and working, on two shards over the native
protocol (two chDB servers), with the collector writing through the
Distributed tables."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from collector import migrations
from collector.chdb_http import ChdbHttpServer
from collector.migrations import (
    LOCAL_SUFFIX,
    MIGRATIONS_TABLE,
    MigrationError,
    RenderOptions,
    load_migrations,
    render,
)
from collector.service import Collector, CollectorConfig
from collector.store import Store, parse_store_url
from grafana import generate
from tests.deploy import workload
from tests.deploy.conftest import free_port, new_server, new_users, role_env, run_cli
from tests.deploy.grafana_macros import ALL, Context, expand
from tracer import semconv

CLUSTER = "revtrace"
DATABASE = "revtrace"
REPLICATION = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
CLUSTER_OPTIONS = RenderOptions(ttl_days=30, cluster=CLUSTER, database=DATABASE)
SINGLE_OPTIONS = RenderOptions(ttl_days=30, cluster="")


def _schema_files() -> list[tuple[str, str]]:
    files = resources.files("collector.schema")
    return sorted(
        (e.name, e.read_text(encoding="utf-8"))
        for e in files.iterdir()
        if re.match(r"^\d{4}_\w+\.sql$", e.name)
    )


def _tables() -> set[str]:
    found = {MIGRATIONS_TABLE}
    for _, text in _schema_files():
        found |= set(re.findall(r"CREATE TABLE IF NOT EXISTS\s+(\w+)", text))
    return found


def _oracle(template: str) -> str:
    """The single-node rendering, written out independently: placeholders filled, nothing else."""
    text = template.replace("${ON_CLUSTER}", "")
    text = re.sub(r"\$\{ENGINE:([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{TTL:([^}]*)\}", r"TTL \1 + toIntervalDay(30)", text)
    return re.sub(r"\$\{attr:(\w+)\}", lambda m: str(getattr(semconv, m[1])), text)


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def test_the_single_node_schema_is_the_templates_with_placeholders_filled() -> None:
    migrations = load_migrations(SINGLE_OPTIONS)
    assert [m.version for m in migrations] == [name[:4] for name, _ in _schema_files()]
    for migration, (name, text) in zip(migrations, _schema_files(), strict=True):
        assert list(migration.statements) == [_oracle(s) for s in _statements(text)], name


def _back_to_single_node(statement: str, tables: set[str]) -> str:
    """Undo exactly the documented cluster changes (independently of collector.migrations)."""
    text = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    text = re.sub(r"Replicated(\w*MergeTree)\(" + re.escape(REPLICATION) + r"(?:, )?", r"\1(", text)
    text = re.sub(r"(\w*MergeTree)\(\)", r"\1", text)
    for table in sorted(tables, key=len, reverse=True):
        text = re.sub(rf"\b{table}{LOCAL_SUFFIX}\b", table, text)
    return " ".join(text.split())


def test_the_cluster_schema_is_the_single_node_schema_with_the_cluster_changes_only() -> None:
    tables = _tables()
    single = load_migrations(SINGLE_OPTIONS)
    cluster = load_migrations(CLUSTER_OPTIONS)
    for one, many in zip(single, cluster, strict=True):
        assert (one.version, one.checksum) == (many.version, many.checksum)
        distributed = [s for s in many.statements if "ENGINE = Distributed(" in s]
        rest = [s for s in many.statements if s not in distributed]
        # Every statement has its cluster form, in order; the Distributed tables are the only additions.
        assert [_back_to_single_node(s, tables) for s in rest] == [
            " ".join(s.split()) for s in one.statements
        ]
        created = [m for s in one.statements if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s))]
        assert len(distributed) == len(created), one.version
        for statement in many.statements:
            assert f" ON CLUSTER {CLUSTER}" in statement.splitlines()[0]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: set[str]


def test_local_tables_replicate_distributed_tables_shard_deterministically_and_views_stay_local() -> None:
    tables = _tables()
    statements = [s for m in load_migrations(CLUSTER_OPTIONS) for s in m.statements]
    local_columns: dict[str, set[str]] = {}
    for statement in statements:
        head = statement.splitlines()[0]
        if head.startswith("CREATE TABLE") and "ENGINE = Distributed(" not in statement:
            name = head.split()[5]
            assert name.endswith(LOCAL_SUFFIX)
            assert re.search(r"ENGINE = Replicated\w*MergeTree\(" + re.escape(REPLICATION), statement), name
            local_columns[name] = set(re.findall(r"^\s{4}(\w+) ", statement, re.MULTILINE))
        elif "ENGINE = Distributed(" in statement:
            name = head.split()[5]
            local = f"{name}{LOCAL_SUFFIX}"
            assert head == f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER} AS {local}"
            engine = statement.splitlines()[1]
            prefix = f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', '{local}', "
            assert engine.startswith(prefix), engine
            key = engine.removeprefix(prefix)[:-1]
            assert "rand" not in key.lower(), (name, key)
            used = (
                set(re.findall(r"\b([A-Z]\w*)\b", key)) - {"SpanAttributes"}
                if name != "otel_traces"
                else set()
            )
            assert used <= local_columns[local], (name, key)
        else:
            assert head.startswith("CREATE MATERIALIZED VIEW"), head
            referenced = re.findall(r"\b(?:FROM|JOIN|TO)\s+(\w+)", statement)
            for table in (t for t in referenced if t.removesuffix(LOCAL_SUFFIX) in tables):
                assert table.endswith(LOCAL_SUFFIX), (head, table)
    spans_key = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS otel_traces ON"))
    assert f"SpanAttributes['{semconv.BIZ_CORRELATION_ID}']" in spans_key and "TraceId" in spans_key


def test_engines_keep_their_parameters_after_the_replication_path() -> None:
    options = RenderOptions(cluster="c")
    assert options.engine("MergeTree") == f"ReplicatedMergeTree({REPLICATION})"
    assert (
        options.engine("ReplacingMergeTree(UpdatedAt)")
        == f"ReplicatedReplacingMergeTree({REPLICATION}, UpdatedAt)"
    )
    assert render("${ENGINE:ReplacingMergeTree(V)}", RenderOptions(cluster="")) == "ReplacingMergeTree(V)"


def test_the_cluster_comes_from_the_environment_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVTRACE_CLICKHOUSE_CLUSTER", "prod_2x2")
    assert RenderOptions().cluster == "prod_2x2"
    monkeypatch.delenv("REVTRACE_CLICKHOUSE_CLUSTER")
    assert RenderOptions().cluster == ""
    with pytest.raises(MigrationError, match="letters, digits and _"):
        RenderOptions(cluster="a b; DROP")


def test_statements_without_a_cluster_form_are_refused() -> None:
    for statement in ("INSERT INTO otel_traces VALUES (1)", "CREATE VIEW v AS SELECT 1", "DROP TABLE x"):
        with pytest.raises(MigrationError, match="no cluster form"):
            migrations._for_cluster(statement, CLUSTER_OPTIONS, _tables())
    alter = "ALTER TABLE revtrace_spans ON CLUSTER revtrace ADD COLUMN IF NOT EXISTS X String"
    assert migrations._for_cluster(alter, CLUSTER_OPTIONS, _tables()) == [
        alter.replace("revtrace_spans", "revtrace_spans_local"),
        alter,
    ]
    ttl = "ALTER TABLE otel_traces ON CLUSTER revtrace MODIFY TTL toDateTime(Timestamp) + toIntervalDay(3)"
    assert migrations._for_cluster(ttl, CLUSTER_OPTIONS, _tables()) == [
        ttl.replace("otel_traces", "otel_traces_local")
    ]


# --- two shards, for real ------------------------------------------------------------------


def _node_statement(statement: str) -> str:
    """What the DDL worker would run on one node, minus replication (no Keeper here)."""
    text = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    text = re.sub(r"Replicated(\w*MergeTree)\(" + re.escape(REPLICATION) + r"(?:, )?", r"\1(", text)
    return re.sub(r"(\w*MergeTree)\(\)", r"\1", text)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ChdbHttpServer]]:
    tcp = [free_port(), free_port()]
    remote = {CLUSTER: ((("127.0.0.1", tcp[0]),), (("127.0.0.1", tcp[1]),))}
    users = new_users()  # the same on both nodes: Distributed logs in to the other node as the admin
    servers = []
    try:
        for index in range(2):
            tmp = tmp_path_factory.mktemp(f"shard{index + 1}")
            server = new_server(
                tmp,
                users=users,
                tcp_port=tcp[index],
                remote_servers=remote,
                macros={"cluster": CLUSTER, "shard": f"0{index + 1}", "replica": "r1"},
                profile_settings={"distributed_foreground_insert": "1", "distributed_product_mode": "global"},
            )
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _store(server: ChdbHttpServer) -> Store:
    return Store(parse_store_url(server.url(database=DATABASE, with_password=True)))


@pytest.fixture(scope="module")
def loaded(shards: list[ChdbHttpServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Store]]:
    """Both nodes migrated with the cluster schema; the workload sent to a collector writing to node 1."""
    stores = [_store(s) for s in shards]
    try:
        for store in stores:
            for statement in migrations._migrations_table(CLUSTER_OPTIONS):
                store.command(_node_statement(statement))
            for migration in load_migrations(CLUSTER_OPTIONS):
                for statement in migration.statements:
                    store.command(_node_statement(statement))
        stores[0].insert_rows(
            MIGRATIONS_TABLE,
            [(m.version, m.name, m.checksum, 0) for m in load_migrations(CLUSTER_OPTIONS)],
            ["version", "name", "checksum", "duration_ms"],
        )
        # The collector writes to node 1 as to any ClickHouse: the Distributed tables do the rest.
        collector = Collector(
            CollectorConfig(
                host="127.0.0.1",
                http_port=0,
                grpc_port=-1,
                data_dir=tmp_path_factory.mktemp("collector"),
                batch_ms=100,
                self_telemetry_s=0,
                ttl_days=0,
            ),
            store=stores[0],
        )
        collector.start()
        try:
            workload.send(collector.http_endpoint, time.time())
            deadline = time.monotonic() + 30
            while int(stores[1].query("SELECT count() FROM revtrace_spans").scalar()) < workload.span_count():
                assert time.monotonic() < deadline, "spans did not reach the shards"
                time.sleep(0.2)
        finally:
            collector.stop()
        yield stores
    finally:
        for store in stores:
            store.close()


def test_two_shards_spans_in_through_one_node_whole_transactions_per_shard(loaded: list[Store]) -> None:
    spans = workload.span_count()
    reader = loaded[1]  # the other node sees the same
    assert reader.query("SELECT count() FROM otel_traces").scalar() == spans
    local = [int(s.query("SELECT count() FROM otel_traces_local").scalar()) for s in loaded]
    assert sum(local) == spans and min(local) > 0  # each node holds its share
    per_shard = dict(reader.query("SELECT _shard_num, count() FROM revtrace_spans GROUP BY 1").rows)
    assert set(per_shard) == {1, 2} and sum(per_shard.values()) == spans
    split = reader.query(
        "SELECT CorrelationId FROM revtrace_spans GROUP BY CorrelationId HAVING uniqExact(_shard_num) > 1"
    )
    assert split.rows == []  # every transaction lives on one shard
    # The views ran on the shards: partial aggregates merge when read through Distributed.
    correlations = dict(
        reader.query(
            "SELECT CorrelationId, sum(Spans) FROM revtrace_correlations GROUP BY CorrelationId"
        ).rows
    )
    assert correlations == {tx.correlation_id: len(tx.steps) for tx in workload.transactions()}
    assert int(reader.query("SELECT uniqExact(TraceId) FROM otel_traces_trace_id_ts").scalar()) == len(
        workload.transactions()
    )
    # A subquery over another Distributed table works (distributed_product_mode = global).
    failed = reader.query(
        "SELECT CorrelationId FROM revtrace_correlations WHERE CorrelationId IN "
        "(SELECT CorrelationId FROM revtrace_spans WHERE Outcome = 'failed') GROUP BY CorrelationId"
    )
    assert [r[0] for r in failed.rows] == ["q2c-stuck"]


def test_every_grafana_panel_runs_on_the_cluster_as_the_read_only_user(
    loaded: list[Store], shards: list[ChdbHttpServer]
) -> None:
    node = shards[1]
    reader = node.config.users[1]
    assert reader.readonly
    now = time.time()
    ctx = Context(
        start=now - 3 * 3600,
        end=now + 60,
        interval_s=300,
        variables={
            "entity": [ALL],
            "correlation_id": ["q2c-stuck"],
            "pair": [generate.PAIR.default],
            "sla_s": ["600"],
            "invoice_sla_s": ["3600"],
            "payment_sla_s": ["900"],
        },
        options={"entity": ["US01", "DE01"]},
    )
    failures = []
    for dashboard in generate.DASHBOARDS:
        queries = [p.sql for p in dashboard.panels] + [
            v.query for v in dashboard.variables if v.kind == "query"
        ]
        for sql in queries:
            # As the plugin sends it: the read-only user, max_execution_time set, the default database.
            response = httpx.post(
                f"http://{node.config.local_host}:{node.config.http_port}/",
                params={"database": DATABASE, "max_execution_time": "60", "default_format": "JSONCompact"},
                content=expand(sql, ctx).encode(),
                auth=(reader.name, reader.password),
                timeout=30,
            )
            if response.status_code != 200:
                failures.append(f"{dashboard.uid}: {response.text[:300]}")
    assert failures == []
    spans = httpx.post(
        f"http://{node.config.local_host}:{node.config.http_port}/",
        params={"database": DATABASE, "default_format": "JSON"},
        content=expand(next(p.sql for p in generate.TRACE.panels if p.kind == "traces"), ctx).encode(),
        auth=(reader.name, reader.password),
        timeout=30,
    ).json()["data"]
    assert len(spans) == 5 and {s["traceID"] for s in spans} == {"q2c-stuck"}


def test_the_evaluator_runs_unchanged_on_the_distributed_tables(
    loaded: list[Store], shards: list[ChdbHttpServer], tmp_path: Path
) -> None:
    env = role_env(shards[0], DATABASE, tmp_path / "state", REVTRACE_RULES="builtin:demo")
    check = run_cli(["sla", "check", "--format", "json"], env)
    assert check.returncode in (0, 1) and "q2c-stuck" in check.stdout, check.stderr[-3000:]
