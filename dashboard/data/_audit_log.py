"""The audit log in the store: append a chained entry, read the chain back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final

import pandas as pd

from collector.store import Store
from dashboard import settings
from dashboard.audit import GENESIS_HASH, AuditEntry, StoredEntry, VerifyResult, chain_hash, verify
from dashboard.data._core import run_df, sql

__all__ = ["AUDIT_TABLE", "append_audit", "audit_entries", "recent_actions", "verify_audit_log"]

AUDIT_TABLE: Final = "revtrace_audit_log"
_COLUMNS: Final = (
    "Seq",
    "At",
    "Actor",
    "Role",
    "Action",
    "CorrelationId",
    "Note",
    "Details",
    "Record",
    "PrevHash",
    "Hash",
)
_PAGE: Final = 10_000
log = logging.getLogger("dashboard.audit")

# Appends are serialized in this process so that each entry chains onto the one
# before it. (Two processes appending to one database at the same instant would
# fork the chain; `revtrace audit verify` reports that as a duplicate entry.)
_append_lock = threading.Lock()


def _key() -> bytes | None:
    raw = settings.env_str("REVTRACE_AUDIT_KEY")
    return raw.encode() if raw else None


def append_audit(
    store: Store,
    *,
    actor: str,
    role: str,
    action: str,
    correlation_id: str,
    note: str = "",
    details: Mapping[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> StoredEntry:
    """Chain one entry onto the log and write it; returns what was written."""
    with _append_lock:
        head = store.query(sql("audit_head"))
        seq, prev = (int(head.rows[0][0]) + 1, str(head.rows[0][1])) if head.rows else (1, GENESIS_HASH)
        when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
        entry = AuditEntry(seq, when, actor, role, action, correlation_id, note, dict(details or {}))
        record = entry.record()
        digest = chain_hash(prev, record, _key())
        stored = StoredEntry(
            seq,
            when,
            actor,
            role,
            action,
            correlation_id,
            note,
            json.dumps(dict(details or {}), sort_keys=True, ensure_ascii=False),
            record,
            prev,
            digest,
        )
        store.insert_rows(
            AUDIT_TABLE,
            [
                [
                    stored.seq,
                    stored.at,
                    stored.actor,
                    stored.role,
                    stored.action,
                    stored.correlation_id,
                    stored.note,
                    stored.details,
                    stored.record,
                    stored.prev_hash,
                    stored.hash,
                ]
            ],
            _COLUMNS,
        )
        # The head, outside the store: the log pipeline keeps what a truncated
        # table would lose (`revtrace audit verify --head SEQ:HASH` checks it).
        log.info("audit head %d:%s (%s by %s)", stored.seq, stored.hash, stored.action, stored.actor)
        return stored


def audit_entries(store: Store) -> Iterator[StoredEntry]:
    """The whole chain in ``seq`` order, read a page at a time."""
    after = 0
    while True:
        rows = store.query(sql("audit_page"), {"after": after, "limit": _PAGE})
        for row in rows:
            at = row[1]
            if isinstance(at, dt.datetime) and at.tzinfo is not None:
                at = at.astimezone(dt.UTC).replace(tzinfo=None)
            yield StoredEntry(int(row[0]), at, *(str(v) for v in row[2:]))
        if len(rows) < _PAGE:
            return
        after = int(rows.rows[-1][0])


def verify_audit_log(store: Store, head: tuple[int, str] | None = None) -> VerifyResult:
    """Check the whole chain, and that it still holds ``head`` (see :func:`dashboard.audit.verify`)."""
    return verify(audit_entries(store), _key(), head)


def recent_actions(store: Store, limit: int = 200) -> pd.DataFrame:
    """The latest operator actions, newest first."""
    return run_df(store, "audit_recent", {"limit": limit})
