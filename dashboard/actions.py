"""Workbench actions — replay, resolve, assign —, silences, and audit exports, each
recorded in the hash-chained audit log. Every function checks the user's role itself, whatever
the page shows.

Replay goes through the sync engine's API::

    POST {REVTRACE_REPLAY_URL}/api/v1/transactions/{correlation_id}/replay
    Authorization: Bearer {REVTRACE_REPLAY_TOKEN}
    Idempotency-Key: <the transaction's own idempotency key>
    {"correlation_id": …, "idempotency_key": …, "requested_by": …, "note": …}
    → 202 Accepted

The replay reuses the idempotency key of the step that failed (else the
transaction's last one), so a replay can never book the business effect twice,
and a double click is one replay. Refusals and failures are recorded too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

import httpx

from collector.silences import add_silence, parse_matchers
from collector.silences import expire_silence as expire
from collector.store import Store
from dashboard import data, settings
from dashboard.audit import AuditAction, StoredEntry
from dashboard.auth import Permission, User
from dashboard.errors import PermissionDenied, ReplayError

__all__ = ["REPLAY_PATH", "assign", "expire_silence", "record_export", "replay", "resolve", "silence"]

REPLAY_PATH: Final = "/api/v1/transactions/{correlation_id}/replay"
"""The sync engine's replay endpoint, below ``REVTRACE_REPLAY_URL``."""
_TIMEOUT: Final = 10.0


def _check(user: User, permission: Permission, what: str) -> None:
    if not user.can(permission):
        raise PermissionDenied(f"{user.name} ({user.role}) may not {what}")


def replay(
    store: Store, user: User, correlation_id: str, note: str = "", *, client: httpx.Client | None = None
) -> StoredEntry:
    """Ask the sync engine to replay ``correlation_id``; record the request and its answer.

    Raises :class:`ReplayError` (after recording it) when the engine does not
    answer 202, and :class:`PermissionDenied` for roles that may not act.
    """
    _check(user, Permission.ACT, "replay transactions")
    base = settings.env_str("REVTRACE_REPLAY_URL").rstrip("/")
    if not base:
        raise ReplayError(
            "replay is not configured: set REVTRACE_REPLAY_URL to the sync engine's API", retryable=False
        )
    key = data.replay_key(store, correlation_id) or f"replay:{correlation_id}"
    url = base + REPLAY_PATH.format(correlation_id=quote(correlation_id, safe=""))
    headers = {"Idempotency-Key": key}
    token = settings.env_str("REVTRACE_REPLAY_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"correlation_id": correlation_id, "idempotency_key": key, "requested_by": user.name, "note": note}
    details: dict[str, object] = {"idempotency_key": key, "endpoint": base}
    error: ReplayError | None = None
    owned = client is None
    http = client or httpx.Client(timeout=_TIMEOUT)
    try:
        response = http.post(url, json=body, headers=headers)
        details.update(status_code=response.status_code, accepted=response.status_code == 202)
        details["response"] = response.text[:500]
        if response.status_code != 202:
            retryable = response.status_code >= 500 or response.status_code == 429
            error = ReplayError(
                f"the sync engine answered {response.status_code}: {response.text[:200]}",
                retryable=retryable,
                status_code=response.status_code,
            )
    except httpx.HTTPError as exc:
        details.update(accepted=False, error=f"{type(exc).__name__}: {exc}")
        error = ReplayError(f"the sync engine cannot be reached at {base}: {exc}", retryable=True)
    finally:
        if owned:
            http.close()
    entry = data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.REPLAY,
        correlation_id=correlation_id,
        note=note,
        details=details,
    )
    if error is not None:
        raise error
    return entry


def resolve(store: Store, user: User, correlation_id: str, note: str) -> StoredEntry:
    """Mark ``correlation_id`` resolved; a note saying how is required."""
    _check(user, Permission.ACT, "resolve transactions")
    if not note.strip():
        raise ValueError("resolving needs a note saying what was done")
    return data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.RESOLVE,
        correlation_id=correlation_id,
        note=note.strip(),
    )


def assign(store: Store, user: User, correlation_id: str, assignee: str, note: str = "") -> StoredEntry:
    """Assign ``correlation_id`` to ``assignee``."""
    _check(user, Permission.ACT, "assign transactions")
    if not assignee.strip():
        raise ValueError("name someone to assign it to")
    return data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.ASSIGN,
        correlation_id=correlation_id,
        note=note.strip(),
        details={"assignee": assignee.strip()},
    )


def record_export(store: Store, user: User, correlation_id: str, fmt: str) -> StoredEntry:
    """Record that ``user`` exported the audit trail of ``correlation_id`` as ``fmt``."""
    _check(user, Permission.EXPORT, "export audit trails")
    return data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.EXPORT,
        correlation_id=correlation_id,
        details={"format": fmt},
    )


def silence(
    store: Store, user: User, matchers: Sequence[str], duration_s: float, comment: str
) -> tuple[str, StoredEntry]:
    """Silence the alerts matching every matcher (``name=value``, ``name=~regex``) from now
    for ``duration_s``; returns the silence id and the audit entry. Raises
    :class:`ValueError` naming every problem of the input."""
    _check(user, Permission.ACT, "silence alerts")
    equal, regex = parse_matchers([m for m in matchers if m.strip()])
    if duration_s <= 0:
        raise ValueError("a silence must last a while")
    if not comment.strip():
        raise ValueError("a silence needs a comment saying why")
    now = time.time()
    silence_id = add_silence(
        store,
        equal,
        matchers_re=regex,
        starts_at=now,
        ends_at=now + duration_s,
        created_by=user.name,
        comment=comment.strip(),
    )
    entry = data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.SILENCE,
        correlation_id="",
        note=comment.strip(),
        details={"silence_id": silence_id, "matchers": equal, "matchers_re": regex, "duration_s": duration_s},
    )
    return silence_id, entry


def expire_silence(store: Store, user: User, silence_id: str) -> StoredEntry:
    """End a silence now. Raises :class:`ValueError` when it is not in force or pending."""
    _check(user, Permission.ACT, "expire silences")
    if not expire(store, silence_id, time.time()):
        raise ValueError(f"no silence {silence_id!r} is in force or pending")
    return data.append_audit(
        store,
        actor=user.name,
        role=str(user.role),
        action=AuditAction.EXPIRE_SILENCE,
        correlation_id="",
        details={"silence_id": silence_id},
    )
