"""The hash-chained audit log: intact chains verify, every kind of tampering is caught
and the first broken link is named."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from collector.store import Store
from dashboard import commands, data
from dashboard.audit import GENESIS_HASH, AuditEntry, chain_hash, verify


def _fill(store: Store, n: int = 3) -> None:
    for i in range(1, n + 1):
        data.append_audit(
            store,
            actor=f"user{i}",
            role="operator",
            action="resolve",
            correlation_id=f"tx-{i}",
            note=f"note {i} — ünïcode",
            details={"i": i},
        )


def _mutate(store: Store, sql: str, params: dict[str, object]) -> None:
    store.command(sql, params, settings={"mutations_sync": 2})


def test_an_intact_chain_verifies(store: Store) -> None:
    _fill(store)
    entries = list(data.audit_entries(store))
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    result = data.verify_audit_log(store)
    assert result.ok and result.entries == 3 and result.head == entries[-1].hash
    output = commands.audit_verify(store)
    assert output.exit_code == 0 and "intact: 3 entries" in output.text


def test_an_edited_column_is_caught(store: Store) -> None:
    _fill(store)
    _mutate(
        store,
        "ALTER TABLE revtrace_audit_log UPDATE Note = {n:String} WHERE Seq = 2",
        {"n": "nothing happened"},
    )
    result = data.verify_audit_log(store)
    assert not result.ok and result.broken_seq == 2
    assert "column note" in result.reason
    output = commands.audit_verify(store)
    assert output.exit_code == 1 and "BROKEN at entry 2" in output.text


def test_a_rewritten_entry_breaks_the_next_link(store: Store) -> None:
    _fill(store)
    second = list(data.audit_entries(store))[1]
    forged = AuditEntry(2, second.at, "mallory", "admin", "resolve", "tx-2", "forged", {"i": 2}).record()
    _mutate(
        store,
        "ALTER TABLE revtrace_audit_log UPDATE Record = {r:String}, Hash = {h:String}, Actor = 'mallory', "
        "Role = 'admin', Note = 'forged' WHERE Seq = 2",
        {"r": forged, "h": chain_hash(second.prev_hash, forged)},
    )
    result = data.verify_audit_log(store)
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "prev_hash" in result.reason


def test_a_deleted_entry_is_caught(store: Store) -> None:
    _fill(store)
    _mutate(store, "ALTER TABLE revtrace_audit_log DELETE WHERE Seq = {s:UInt64}", {"s": 2})
    result = data.verify_audit_log(store)
    assert (result.ok, result.broken_seq) == (False, 2)
    assert "missing entry" in result.reason


def test_a_removed_tail_is_caught_against_a_recorded_head(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVTRACE_AUDIT_KEY", "k")
    with caplog.at_level("INFO", logger="dashboard.audit"):
        _fill(store, 4)
    head = commands.audit_head(store)
    assert head.exit_code == 0
    entries = list(data.audit_entries(store))
    assert head.text == f"4:{entries[-1].hash}"
    # Every append logged the head: the log pipeline is the anchor outside the store.
    assert f"audit head 4:{entries[-1].hash}" in caplog.text
    assert commands.audit_verify(store, head.text).exit_code == 0
    assert commands.audit_verify(store, f"2:{entries[1].hash}").exit_code == 0  # an older head too

    _mutate(store, "ALTER TABLE revtrace_audit_log DELETE WHERE Seq >= {s:UInt64}", {"s": 3})
    assert data.verify_audit_log(store).ok  # the shorter chain is intact on its own
    out = commands.audit_verify(store, head.text)
    assert out.exit_code == 1
    assert "BROKEN at entry 3: entries 3..4 are missing: the recorded head is entry 4" in out.text

    # A chain rebuilt after the head (same length, other hashes) does not hold it either.
    result = data.verify_audit_log(store, (2, "f" * 64))
    assert (result.ok, result.broken_seq) == (False, 2)
    assert "differs from the recorded head" in result.reason
    for bad in ("4", "x:abc", f"0:{entries[0].hash}", "4:" + "g" * 64):
        assert commands.audit_verify(store, bad).exit_code == 2


def test_the_key_matters(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVTRACE_AUDIT_KEY", "key-one")
    _fill(store, 2)
    assert data.verify_audit_log(store).ok
    monkeypatch.setenv("REVTRACE_AUDIT_KEY", "key-two")
    result = data.verify_audit_log(store)
    assert (result.ok, result.broken_seq) == (False, 1)
    assert "REVTRACE_AUDIT_KEY" in result.reason
    monkeypatch.delenv("REVTRACE_AUDIT_KEY")
    assert not data.verify_audit_log(store).ok  # an unkeyed forger cannot rebuild it either


def test_pure_verify_edge_cases() -> None:
    assert verify([]).ok
    assert "empty" in verify([]).describe()
    at = dt.datetime(2026, 1, 1, 12, 0, 0, 123456)
    record = AuditEntry(1, at, "a", "admin", "assign", "tx", "", {"assignee": "b"}).record()
    assert record == (
        '{"action":"assign","actor":"a","at":"2026-01-01T12:00:00.123456Z","correlation_id":"tx",'
        '"details":{"assignee":"b"},"note":"","role":"admin","seq":1}'
    )
    assert chain_hash(GENESIS_HASH, record) != chain_hash(GENESIS_HASH, record, b"k")
