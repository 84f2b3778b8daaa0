"""The workbench's audit log: append-only and hash-chained, pure functions.

Every operator action (replay, resolve, assign) and every audit export becomes
one entry. An entry's *record* is its canonical JSON (sorted keys, no spaces);
its hash is ``H(prev_hash ‖ record)`` where ``H`` is SHA-256, or HMAC-SHA256
keyed with ``REVTRACE_AUDIT_KEY`` when set. The first entry's ``prev_hash`` is
64 zeros. So editing, deleting or reordering any entry breaks every link after
it, and :func:`verify` names the first broken one. The typed columns beside the
record (actor, action, …) are checked against it too, so editing a column
without the record is caught as well.

A plain SHA-256 chain proves that nothing was changed *unless* someone rewrote
the whole chain from the edit onwards; the key makes that impossible without
it. The store I/O is in :mod:`dashboard.data`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "GENESIS_HASH",
    "AuditAction",
    "AuditEntry",
    "StoredEntry",
    "VerifyResult",
    "chain_hash",
    "format_at",
    "parse_head",
    "verify",
]

GENESIS_HASH: Final = "0" * 64
"""The ``prev_hash`` of the first entry."""


class AuditAction(StrEnum):
    """What an operator or auditor did."""

    REPLAY = "replay"
    """Asked the sync engine to replay the transaction (details hold the answer)."""
    RESOLVE = "resolve"
    """Marked the transaction resolved, with a note."""
    ASSIGN = "assign"
    """Assigned the transaction to someone."""
    EXPORT = "export"
    """Exported the transaction's audit trail (format in details)."""
    SILENCE = "silence"
    """Created a silence (id, matchers and end in details; no transaction)."""
    EXPIRE_SILENCE = "expire_silence"
    """Ended a silence early (its id in details; no transaction)."""


def format_at(at: dt.datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds, ``Z``."""
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEntry:
    """One action, before it is chained."""

    seq: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    correlation_id: str
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def record(self) -> str:
        """The canonical JSON the hash covers."""
        return json.dumps(
            {
                "seq": self.seq,
                "at": format_at(self.at),
                "actor": self.actor,
                "role": self.role,
                "action": self.action,
                "correlation_id": self.correlation_id,
                "note": self.note,
                "details": dict(self.details),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )


def chain_hash(prev_hash: str, record: str, key: bytes | None = None) -> str:
    """``H(prev_hash ‖ record)``: SHA-256, or HMAC-SHA256 with ``key``."""
    message = prev_hash.encode() + b"\n" + record.encode()
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


@dataclass(frozen=True)
class StoredEntry:
    """One row of ``revtrace_audit_log`` as read back."""

    seq: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    correlation_id: str
    note: str
    details: str
    record: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on a chain: intact, or the first broken link and why."""

    ok: bool
    entries: int
    head: str
    broken_seq: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line for the terminal and the UI."""
        if self.ok:
            if not self.entries:
                return "audit log is empty: nothing to verify"
            return f"audit chain intact: {self.entries} entries, head {self.head[:16]}…"
        return f"audit chain BROKEN at entry {self.broken_seq}: {self.reason}"


def _columns_match(entry: StoredEntry, record: Mapping[str, Any]) -> str:
    """'' when the typed columns agree with the record, else what differs."""
    expected = {
        "seq": entry.seq,
        "at": format_at(entry.at),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "correlation_id": entry.correlation_id,
        "note": entry.note,
    }
    for name, value in expected.items():
        if record.get(name) != value:
            return f"column {name} is {value!r} but the hashed record says {record.get(name)!r}"
    try:
        details = json.loads(entry.details or "{}")
    except ValueError:
        return "column details is not JSON"
    if details != record.get("details"):
        return "column details differs from the hashed record"
    return ""


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (what ``revtrace audit head`` prints) → (seq, hash); ValueError otherwise."""
    seq_text, sep, digest = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or int(seq_text) < 1 or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(
            f"a head is SEQ:HASH as `revtrace audit head` prints it (64 hex digits), got {text!r}"
        )
    return int(seq_text), digest


def verify(
    entries: Iterable[StoredEntry], key: bytes | None = None, head: tuple[int, str] | None = None
) -> VerifyResult:
    """Walk the chain in ``seq`` order; the first broken link and why, or intact.

    ``entries`` must be sorted by ``seq``; a gap, a duplicate, a changed record,
    a changed column or a wrong ``prev_hash`` each break the chain. A chain
    alone cannot show that its newest entries were removed: ``head``, a
    ``(seq, hash)`` recorded outside the store earlier (``revtrace audit head``,
    or the ``audit head`` line logged at every append), must still be in it.
    """
    result = _walk(entries, key, head)
    if not result.ok or head is None:
        return result
    seq = head[0]
    if result.entries < seq:
        return VerifyResult(
            False,
            result.entries,
            result.head,
            result.entries + 1,
            f"entries {result.entries + 1}..{seq} are missing: the recorded head is entry {seq}",
        )
    return result


def _walk(entries: Iterable[StoredEntry], key: bytes | None, head: tuple[int, str] | None) -> VerifyResult:
    prev = GENESIS_HASH
    count = 0
    for entry in entries:
        expected_seq = count + 1
        if entry.seq != expected_seq:
            kind = "duplicate" if entry.seq < expected_seq else "missing"
            where = entry.seq if entry.seq < expected_seq else expected_seq
            return VerifyResult(
                False, count, prev, where, f"{kind} entry (expected seq {expected_seq}, found {entry.seq})"
            )
        if entry.prev_hash != prev:
            return VerifyResult(
                False, count, prev, entry.seq, "prev_hash does not match the hash of the entry before it"
            )
        if chain_hash(prev, entry.record, key) != entry.hash:
            return VerifyResult(
                False,
                count,
                prev,
                entry.seq,
                "hash does not match its record (the record was changed"
                + (", or REVTRACE_AUDIT_KEY differs from the key it was written with)" if key else ")"),
            )
        try:
            record = json.loads(entry.record)
        except ValueError:
            return VerifyResult(False, count, prev, entry.seq, "record is not JSON")
        mismatch = _columns_match(entry, record)
        if mismatch:
            return VerifyResult(False, count, prev, entry.seq, mismatch)
        if head is not None and entry.seq == head[0] and entry.hash != head[1]:
            return VerifyResult(
                False,
                count,
                prev,
                entry.seq,
                "its hash differs from the recorded head (the chain was rewritten)",
            )
        prev = entry.hash
        count += 1
    return VerifyResult(True, count, prev)
