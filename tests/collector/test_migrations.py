"""Schema migrations: idempotent, recorded, a failure named and resumable; retention follows config."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.migrations import (
    MigrationError,
    RenderOptions,
    applied_versions,
    apply_retention,
    load_migrations,
    migrate,
    render,
    ttl_expressions,
)
from collector.store import Store, StoreConfigError, open_store, parse_store_url


@pytest.fixture
def empty_store(chdb_path: Path) -> Iterator[Store]:
    database = f"m_{uuid.uuid4().hex[:10]}"
    s = open_store(f"chdb://{chdb_path}", database=database)
    yield s
    s.command(f"DROP DATABASE IF EXISTS `{database}`")
    s.close()


def test_migrate_is_idempotent_and_recorded(empty_store: Store) -> None:
    first = migrate(empty_store, RenderOptions(ttl_days=7))
    assert first == [m.version for m in load_migrations()]
    assert migrate(empty_store, RenderOptions(ttl_days=7)) == []
    assert set(applied_versions(empty_store)) == set(first)
    tables = {
        r[0] for r in empty_store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    assert {"otel_traces", "otel_traces_trace_id_ts", "otel_metrics_sum", "revtrace_spans"} <= tables


def test_a_failed_migration_says_what_failed_and_can_be_rerun(empty_store: Store) -> None:
    migrate(empty_store)
    # Make migration 0003 half-done and its second statement fail: the view it
    # creates reads otel_traces, which is detached.
    empty_store.command("DELETE FROM revtrace_schema_migrations WHERE version = '0003'")
    empty_store.command("DROP VIEW revtrace_spans_mv")
    empty_store.command("DETACH TABLE otel_traces")
    with pytest.raises(MigrationError) as failure:
        migrate(empty_store)
    text = str(failure.value)
    assert "migration 0003_business_spans failed at statement 2/6" in text
    assert "run `revtrace db migrate` again" in text
    assert "0003" not in applied_versions(empty_store)
    empty_store.command("ATTACH TABLE otel_traces")
    assert migrate(empty_store) == ["0003"]
    assert empty_store.query("EXISTS TABLE revtrace_spans_mv").scalar() == 1


def test_render_placeholders() -> None:
    assert render("x ${ON_CLUSTER} y", RenderOptions()) == "x  y"
    assert render("${ENGINE:MergeTree}", RenderOptions(cluster="c1")).startswith("ReplicatedMergeTree(")
    assert render("${TTL:toDateTime(T)}", RenderOptions(ttl_days=3)) == "TTL toDateTime(T) + toIntervalDay(3)"
    assert render("${TTL:toDateTime(T)}", RenderOptions(ttl_days=0)) == ""
    assert render("'${attr:BIZ_STAGE}'", RenderOptions()) == "'biz.stage'"
    with pytest.raises(MigrationError, match="has no string constant 'NOPE'"):
        render("${attr:NOPE}", RenderOptions())


def test_retention_follows_the_setting(empty_store: Store) -> None:
    migrate(empty_store, RenderOptions(ttl_days=30))
    assert "otel_traces" in ttl_expressions()
    assert apply_retention(empty_store, 30) == []
    changed = apply_retention(empty_store, 7)
    assert "otel_traces" in changed and "revtrace_spans" in changed
    query = empty_store.query(
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'otel_traces'"
    ).scalar()
    assert "toIntervalDay(7)" in query
    assert apply_retention(empty_store, 7) == []
    assert "otel_traces" in apply_retention(empty_store, 0)
    query = empty_store.query(
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'otel_traces'"
    ).scalar()
    assert " TTL " not in query


def test_store_urls() -> None:
    assert parse_store_url("").kind == "embedded"
    server = parse_store_url("https://ops:pa%40ss@ch.example:9443/rt")
    assert (server.host, server.port, server.secure, server.username, server.password, server.database) == (
        "ch.example",
        9443,
        True,
        "ops",
        "pa@ss",
        "rt",
    )
    assert "pa@ss" not in server.describe()
    assert parse_store_url("http://ch.example").port == 8123
    with pytest.raises(StoreConfigError, match="scheme must be chdb, http or https"):
        parse_store_url("postgres://x")
    with pytest.raises(StoreConfigError, match="give chdb a directory"):
        parse_store_url("chdb://memory")


def test_cli_db_commands_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdb_path: Path) -> None:
    from revtrace.cli import cli

    database = f"cli_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REVTRACE_CLICKHOUSE_URL", f"chdb://{chdb_path}")
    monkeypatch.setenv("REVTRACE_DATABASE", database)
    monkeypatch.setenv("REVTRACE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    status = runner.invoke(cli, ["db", "status"])
    assert status.exit_code == 1 and "PENDING" in status.output
    migrated = runner.invoke(cli, ["db", "migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert "applied 3 migration(s)" in migrated.output or "applied" in migrated.output
    again = runner.invoke(cli, ["db", "migrate"])
    assert "nothing to apply" in again.output
    status = runner.invoke(cli, ["db", "status"])
    assert status.exit_code == 0 and "PENDING" not in status.output
    leftover = open_store(f"chdb://{chdb_path}", database=database)
    leftover.command(f"DROP DATABASE `{database}`")
    leftover.close()
