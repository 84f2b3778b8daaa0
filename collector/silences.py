"""Silences: the ``revtrace_silences`` table, written by the CLI and the dashboard,
read by the evaluator (which mutes the alerts a silence matches).

Matchers are written as Alertmanager's amtool writes them: ``name=value`` and
``name=~regex`` (a full match). The table is a ``ReplacingMergeTree`` by
``UpdatedAt``: expiring a silence writes a newer version of its row.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from collector.store import Store

__all__ = ["add_silence", "expire_silence", "list_silences", "parse_matchers"]

_LIST_SQL: Final = """
SELECT Id, Matchers, MatchersRe, toUnixTimestamp64Milli(StartsAt) AS StartsMs,
       toUnixTimestamp64Milli(EndsAt) AS EndsMs, CreatedBy, Comment
FROM revtrace_silences FINAL
WHERE {expired:UInt8} = 1 OR EndsAt > {now:DateTime64(3)}
ORDER BY StartsAt DESC, Id
LIMIT 1000
"""
_BY_ID_SQL: Final = """
SELECT Id, Matchers, MatchersRe, toUnixTimestamp64Milli(StartsAt), toUnixTimestamp64Milli(EndsAt),
       CreatedBy, Comment, toUnixTimestamp64Milli(UpdatedAt)
FROM revtrace_silences FINAL
WHERE Id = {id:String}
"""


def _db_time(seconds: float) -> dt.datetime:
    """Epoch seconds → the naive UTC datetime the store binds (sessions are UTC)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SILENCE_COLUMNS: Final = (
    "Id",
    "Matchers",
    "MatchersRe",
    "StartsAt",
    "EndsAt",
    "CreatedBy",
    "Comment",
    "UpdatedAt",
)


def parse_matchers(items: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``name=value`` and ``name=~regex`` (as amtool writes them) → (equality, regex) matchers.

    A value may be quoted (``severity="critical"``). Raises :class:`ValueError`
    naming every bad item at once: no ``=``, a bad label name, a regex that
    does not compile, a label matched twice.
    """
    equal: dict[str, str] = {}
    regex: dict[str, str] = {}
    problems: list[str] = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            problems.append(f"{item!r}: expected name=value or name=~regex")
            continue
        is_re = value.startswith("~")
        value = value[1:] if is_re else value
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if not _LABEL_NAME.fullmatch(name):
            problems.append(f"{item!r}: {name!r} is not a label name")
            continue
        if name in equal or name in regex:
            problems.append(f"{item!r}: label {name!r} is matched twice")
            continue
        if is_re:
            try:
                re.compile(value)
            except re.error as exc:
                problems.append(f"{item!r}: the regex does not compile ({exc})")
                continue
            regex[name] = value
        else:
            equal[name] = value
    if problems:
        raise ValueError("; ".join(problems))
    if not equal and not regex:
        raise ValueError("a silence needs at least one matcher (name=value or name=~regex)")
    return equal, regex


def add_silence(
    store: Store,
    matchers: Mapping[str, str],
    *,
    starts_at: float,
    ends_at: float,
    matchers_re: Mapping[str, str] | None = None,
    created_by: str = "",
    comment: str = "",
) -> str:
    """Store a silence; returns its id."""
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    if not matchers and not matchers_re:
        raise ValueError("a silence needs at least one matcher")
    for pattern in (matchers_re or {}).values():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"matcher regex {pattern!r} does not compile: {exc}") from None
    silence_id = uuid.uuid4().hex
    store.insert_rows(
        "revtrace_silences",
        [
            [
                silence_id,
                dict(matchers),
                dict(matchers_re or {}),
                _db_time(starts_at),
                _db_time(ends_at),
                created_by,
                comment,
                _db_time(time.time()),
            ]
        ],
        _SILENCE_COLUMNS,
    )
    return silence_id


def list_silences(store: Store, now: float, *, include_expired: bool = False) -> list[dict[str, Any]]:
    """Silences in force or pending at ``now`` (with ``include_expired``, every one), newest first."""
    rows = store.query(_LIST_SQL, {"now": _db_time(now), "expired": int(include_expired)})
    out: list[dict[str, Any]] = []
    for sid, match, match_re, starts, ends, by, comment in rows:
        start_s, end_s = starts / 1000.0, ends / 1000.0
        state = "active" if start_s <= now < end_s else ("pending" if start_s > now else "expired")
        out.append(
            {
                "id": sid,
                "state": state,
                "matchers": dict(match),
                "matchers_re": dict(match_re),
                "starts_at": start_s,
                "ends_at": end_s,
                "created_by": by,
                "comment": comment,
            }
        )
    return out


def expire_silence(store: Store, silence_id: str, now: float) -> bool:
    """End a silence at ``now`` (a pending one never starts). False when no such silence is in force or pending."""
    rows = store.query(_BY_ID_SQL, {"id": silence_id}).rows
    if not rows:
        return False
    sid, match, match_re, starts, ends, by, comment, updated = rows[0]
    start_s, end_s = starts / 1000.0, ends / 1000.0
    if end_s <= now:
        return False
    # A newer version of the row (ReplacingMergeTree by UpdatedAt) ends it now;
    # a pending one becomes an empty interval at ``now``: it never starts.
    stamp = max(time.time(), updated / 1000.0 + 0.001)
    new_start = min(start_s, now)
    store.insert_rows(
        "revtrace_silences",
        [
            [
                sid,
                dict(match),
                dict(match_re),
                _db_time(new_start),
                _db_time(now),
                by,
                comment,
                _db_time(stamp),
            ]
        ],
        _SILENCE_COLUMNS,
    )
    return True
