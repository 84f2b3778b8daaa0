"""Silences from the command line: add, list, expire — and the evaluator honours them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.migrations import RenderOptions, migrate
from collector.store import Store, open_store
from revtrace.cli import cli
from sla_rules import expire_silence, list_silences, parse_matchers
from sla_rules._alerting import Alert, silences, suppress
from sla_rules._spec import DEFAULT_ROUTE, AlertingSpec


def test_matchers_are_parsed_as_amtool_writes_them() -> None:
    assert parse_matchers(["alertname=erp-outage", 'severity="critical"', "legal_entity=~DE.*"]) == (
        {"alertname": "erp-outage", "severity": "critical"},
        {"legal_entity": "DE.*"},
    )
    with pytest.raises(ValueError) as info:
        parse_matchers(["novalue", "bad name=x", "entity=~(", "a=1", "a=~2"])
    message = str(info.value)
    for problem in (
        "'novalue': expected name=value",
        "'bad name' is not a label name",
        "the regex does not compile",
        "label 'a' is matched twice",
    ):
        assert problem in message
    with pytest.raises(ValueError, match="at least one matcher"):
        parse_matchers([])


@pytest.fixture
def cli_env(chdb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Store]:
    """A database of its own for the CLI (each command closes the store it opened); the
    function opens it again for the checks."""
    database = f"cli_{uuid.uuid4().hex[:8]}"
    migrate(open_store(f"chdb://{chdb_path}", database=database), RenderOptions(ttl_days=0))
    monkeypatch.setenv("REVTRACE_CLICKHOUSE_URL", f"chdb://{chdb_path}")
    monkeypatch.setenv("REVTRACE_DATABASE", database)
    monkeypatch.setenv("REVTRACE_DATA_DIR", str(tmp_path / "data"))
    return lambda: open_store(f"chdb://{chdb_path}", database=database)


def test_add_list_expire_through_the_cli(cli_env: Callable[[], Store]) -> None:
    runner = CliRunner()
    hostile = "x'); DROP TABLE revtrace_silences; --"
    added = runner.invoke(
        cli,
        [
            "silence",
            "add",
            "alertname=erp-outage",
            "legal_entity=~ACME-(DE|UK)",
            f"process={hostile}",
            "--duration",
            "90m",
            "--comment",
            "NetSuite maintenance window",
            "--author",
            "oncall-ana",
        ],
    )
    assert added.exit_code == 0, added.output
    silence_id = added.stdout.split()[1].rstrip(":")
    assert len(silence_id) == 32

    # The evaluator sees it in force, and it mutes only what matches every matcher.
    now = time.time()
    active = silences(cli_env(), now)
    assert [s.id for s in active] == [silence_id]
    assert active[0].matchers["process"] == hostile  # bound as a parameter, stored verbatim
    labels = {"alertname": "erp-outage", "legal_entity": "ACME-DE", "process": hostile}
    muted = Alert(labels)
    kept = Alert({**labels, "legal_entity": "ACME-US"})
    decided = {a.fingerprint: a for a in suppress([muted, kept], AlertingSpec(DEFAULT_ROUTE), active)}
    assert decided[muted.fingerprint].status == "suppressed"
    assert decided[muted.fingerprint].suppressed_by == (f"silence:{silence_id}",)
    assert decided[kept.fingerprint].status == "firing"

    listed = runner.invoke(cli, ["silence", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["state"] == "active" and row["created_by"] == "oncall-ana"
    assert 89 * 60 < row["ends_at"] - row["starts_at"] <= 90 * 60
    assert "NetSuite maintenance window" in runner.invoke(cli, ["silence", "list"]).output

    expired = runner.invoke(cli, ["silence", "expire", silence_id])
    assert expired.exit_code == 0, expired.output
    assert silences(cli_env(), time.time() + 0.01) == []
    assert runner.invoke(cli, ["silence", "list"]).stdout.strip() == "no silence in force or pending"
    assert [r["state"] for r in list_silences(cli_env(), time.time() + 0.01, include_expired=True)] == [
        "expired"
    ]
    again = runner.invoke(cli, ["silence", "expire", silence_id])
    assert again.exit_code == 1 and "no silence" in again.output


def test_bad_silences_are_refused_with_the_reason(cli_env: Callable[[], Store]) -> None:
    runner = CliRunner()
    cases = {
        ("entity=~(", "--comment", "c", "--author", "a"): "the regex does not compile",
        ("a=b", "--author", "a", "--comment", " "): "--comment",
        ("a=b", "--comment", "c", "--author", "a", "--duration", "soon"): "not a duration",
        ("a=b", "--comment", "c", "--author", "a", "--start", "yesterday"): "RFC 3339",
    }
    for args, message in cases.items():
        result = runner.invoke(cli, ["silence", "add", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert list_silences(cli_env(), time.time(), include_expired=True) == []


def test_a_pending_silence_expired_never_starts(store: Store) -> None:
    from sla_rules import add_silence

    start = time.time() + 3600
    sid = add_silence(
        store, {"alertname": "x"}, starts_at=start, ends_at=start + 60, created_by="a", comment="c"
    )
    assert [r["state"] for r in list_silences(store, time.time())] == ["pending"]
    assert expire_silence(store, sid, time.time())
    assert list_silences(store, time.time()) == []
    assert silences(store, start + 30) == []
    assert not expire_silence(store, uuid.uuid4().hex, time.time())
