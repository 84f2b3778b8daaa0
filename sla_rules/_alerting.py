"""Alerts for on-call: lifecycle, inhibition, silences, routing and grouping.

The pipeline, after Alertmanager's (``dispatch/``, ``inhibit/``, ``notify/``):

1. **Lifecycle** (:func:`sync_alerts`): each evaluation of a rule (or of the
   transactions) replaces that source's set of active alerts. An alert is
   identified by its fingerprint, a hash of its labels, so it is the same alert
   from one evaluation to the next: new ones start firing, missing ones resolve.
2. **Suppression** (:func:`suppress`): an alert matching an inhibition rule's
   target while a matching source fires (with equal ``equal`` labels), or
   matching a silence in force, is ``suppressed`` and not notified.
3. **Routing** (:func:`match_routes`): the first matching child route wins
   unless it says ``continue``; children inherit grouping options.
4. **Grouping** (:func:`dispatch`): alerts of a route with the same
   ``group_by`` label values form a group; a new group waits ``group_wait``,
   a changed group ``group_interval``, an unchanged firing group is repeated
   every ``repeat_interval``. Each notification goes to the outbox first
   (:mod:`sla_rules._notify`), under an id made of the group and its sequence
   number, so it is never queued twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from collector.silences import add_silence, expire_silence, list_silences, parse_matchers
from collector.store import Store
from sla_rules._model import Finding, TxStatus
from sla_rules._queries import sql, to_db_time
from sla_rules._spec import AlertingSpec, InhibitRule, Route, Rule
from tracer.semconv import AlertStatus

__all__ = [
    "TRANSACTIONS_SOURCE",
    "Alert",
    "Silence",
    "add_silence",
    "alerts_from_findings",
    "dispatch",
    "expire_silence",
    "fingerprint",
    "group_key",
    "list_silences",
    "match_routes",
    "open_alerts",
    "parse_matchers",
    "suppress",
    "sync_alerts",
    "transaction_alerts",
]

log = logging.getLogger(__name__)

TRANSACTIONS_SOURCE: Final = "transactions"
"""The ``Rule`` of alerts raised from transaction verdicts (not one window rule)."""
FAILED_ALERT: Final = "transaction-failed"
"""Alert name of failed transactions no rule decided (categorized from their spans)."""

FIRING: Final = AlertStatus.FIRING.value
RESOLVED: Final = AlertStatus.RESOLVED.value
SUPPRESSED: Final = AlertStatus.SUPPRESSED.value


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id for a label set: the same labels, the same alert."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Alert:
    """One alert: its labels identify it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    correlation_ids: tuple[str, ...] = ()
    source: str = ""
    status: str = FIRING
    starts_at: float = 0.0
    ends_at: float | None = None
    suppressed_by: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        """The ``alertname`` label."""
        return self.labels.get("alertname", "")


def alerts_from_findings(rule: Rule, findings: Iterable[Finding]) -> list[Alert]:
    """One alert per distinct label set of a window rule's findings."""
    out: dict[str, Alert] = {}
    for f in findings:
        labels = {
            **{k: v for k, v in rule.labels.items()},
            **{k: v for k, v in f.labels.items() if v},
            "alertname": rule.name,
            "rule": rule.name,
            "kind": rule.kind,
            "category": f.category.value,
            "severity": f.severity,
        }
        if rule.process:
            labels.setdefault("process", rule.process)
        annotations = {
            "summary": rule.annotations.get("summary", rule.description or rule.name),
            "description": f.reason,
            **{k: v for k, v in rule.annotations.items() if k != "summary"},
        }
        alert = Alert(labels, annotations, f.value, f.correlation_ids, rule.name)
        out.setdefault(alert.fingerprint, alert)
    return list(out.values())


def transaction_alerts(store: Store, *, since: float, max_ids: int = 100) -> list[Alert]:
    """Alerts for the transactions that need a human (failed, stuck, held),
    one per deciding rule or failure, category, process, legal entity and stage."""
    rows = store.query(
        sql("alerts", "verdict_groups", BAD_STATUSES=_quote_statuses()),
        {"default_name": FAILED_ALERT, "start": to_db_time(since), "max_ids": max_ids},
    )
    out: list[Alert] = []
    for name, status, category, severity, process, entity, stage, n, ids, reason, _first in rows:
        labels = {
            "alertname": name,
            "category": category,
            "severity": severity or "warning",
            "tx_status": status,
        }
        for key, value in (("process", process), ("legal_entity", entity), ("stage", stage)):
            if value:
                labels[key] = value
        where = f" at {stage}" if stage else ""
        annotations = {
            "summary": f"{n} {status} transaction(s): {category}{where}",
            "description": str(reason),
        }
        out.append(Alert(labels, annotations, float(n), tuple(ids), TRANSACTIONS_SOURCE))
    return out


def _quote_statuses() -> str:
    statuses = (TxStatus.FAILED, TxStatus.STUCK, TxStatus.HELD)
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"


# --- lifecycle ------------------------------------------------------------------------

_ALERT_COLUMNS: Final = (
    "Fingerprint",
    "AlertName",
    "Category",
    "Severity",
    "Status",
    "Labels",
    "Annotations",
    "StartsAt",
    "EndsAt",
    "UpdatedAt",
    "CorrelationIds",
    "Value",
    "Rule",
    "SuppressedBy",
)


def _row(alert: Alert, now: float) -> list[Any]:
    return [
        alert.fingerprint,
        alert.name,
        alert.labels.get("category", ""),
        alert.labels.get("severity", ""),
        alert.status,
        dict(alert.labels),
        dict(alert.annotations),
        to_db_time(alert.starts_at),
        None if alert.ends_at is None else to_db_time(alert.ends_at),
        to_db_time(now),
        list(alert.correlation_ids),
        float(alert.value),
        alert.source,
        list(alert.suppressed_by),
    ]


def _alert(row: Sequence[Any], with_end: bool = False) -> Alert:
    if with_end:
        (_fp, _name, _cat, _sev, status, labels, annotations, starts_ms, ends_ms, value, ids, source, sup) = (
            row
        )
    else:
        (_fp, _name, _cat, _sev, status, labels, annotations, starts_ms, value, ids, source, sup) = row
        ends_ms = 0
    return Alert(
        labels=dict(labels),
        annotations=dict(annotations),
        value=float(value),
        correlation_ids=tuple(ids),
        source=source,
        status=status,
        starts_at=starts_ms / 1000.0,
        ends_at=ends_ms / 1000.0 if ends_ms else None,
        suppressed_by=tuple(sup),
    )


def open_alerts(store: Store) -> list[Alert]:
    """Every alert not resolved (firing or suppressed)."""
    return [_alert(row) for row in store.query(sql("alerts", "open_alerts"))]


def sync_alerts(
    store: Store, source: str, active: Sequence[Alert], now: float
) -> tuple[list[Alert], list[Alert]]:
    """Make ``active`` the open alerts of ``source``: start new ones, update
    changed ones, resolve the ones no longer active. Returns (started, resolved)."""
    current = {a.fingerprint: a for a in open_alerts(store) if a.source == source}
    rows: list[list[Any]] = []
    started: list[Alert] = []
    seen: set[str] = set()
    for alert in active:
        fp = alert.fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        old = current.get(fp)
        if old is None:
            new = replace(alert, status=FIRING, starts_at=now, ends_at=None, source=source)
            started.append(new)
            rows.append(_row(new, now))
        elif (old.value, old.correlation_ids, dict(old.annotations)) != (
            alert.value,
            alert.correlation_ids,
            dict(alert.annotations),
        ):
            rows.append(
                _row(
                    replace(
                        alert,
                        status=old.status,
                        starts_at=old.starts_at,
                        suppressed_by=old.suppressed_by,
                        source=source,
                    ),
                    now,
                )
            )
    resolved = [replace(a, status=RESOLVED, ends_at=now) for fp, a in current.items() if fp not in seen]
    rows.extend(_row(a, now) for a in resolved)
    if rows:
        store.insert_rows("revtrace_alerts", rows, _ALERT_COLUMNS)
    return started, resolved


# --- silences and inhibition ------------------------------------------------------------


@dataclass(frozen=True)
class Silence:
    """Alerts whose labels match every matcher are suppressed until ``ends_at``."""

    id: str
    matchers: Mapping[str, str]
    matchers_re: Mapping[str, str] = field(default_factory=dict)
    ends_at: float = 0.0
    created_by: str = ""
    comment: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every equality and regex matcher holds."""
        return _matches(labels, self.matchers, self.matchers_re)


def _matches(
    labels: Mapping[str, str], match: Mapping[str, str], match_re: Mapping[str, str] | None = None
) -> bool:
    if any(labels.get(k, "") != v for k, v in match.items()):
        return False
    return all(re.fullmatch(p, labels.get(k, "")) for k, p in (match_re or {}).items())


def silences(store: Store, now: float) -> list[Silence]:
    """Silences in force at ``now``."""
    rows = store.query(sql("alerts", "silences"), {"now": to_db_time(now)})
    return [Silence(i, dict(m), dict(mr), e / 1000.0, c, t) for i, m, mr, e, c, t in rows]


def _inhibitors(alert: Alert, firing: Sequence[Alert], rules: Sequence[InhibitRule]) -> list[str]:
    out: list[str] = []
    for rule in rules:
        if not _matches(alert.labels, rule.target_match):
            continue
        for source in firing:
            if source.fingerprint == alert.fingerprint or not _matches(source.labels, rule.source_match):
                continue
            if all(source.labels.get(k, "") == alert.labels.get(k, "") for k in rule.equal):
                out.append(source.fingerprint)
    return sorted(set(out))


def suppress(alerts: Sequence[Alert], spec: AlertingSpec, active_silences: Sequence[Silence]) -> list[Alert]:
    """The alerts with their status decided: ``suppressed`` (by inhibition or a
    silence, naming what suppressed them) or ``firing``. Resolved ones pass."""
    open_ = [a for a in alerts if a.status != RESOLVED]
    out: list[Alert] = []
    for alert in alerts:
        if alert.status == RESOLVED:
            out.append(alert)
            continue
        by = _inhibitors(alert, open_, spec.inhibit_rules)
        by += [f"silence:{s.id}" for s in active_silences if s.matches(alert.labels)]
        status = SUPPRESSED if by else FIRING
        out.append(replace(alert, status=status, suppressed_by=tuple(by)))
    return out


# --- routing and grouping ----------------------------------------------------------------


def match_routes(route: Route, labels: Mapping[str, str], path: str = "0") -> list[tuple[str, Route]]:
    """The routes an alert goes to, with their paths: depth first, the first
    matching child wins unless it has ``continue``; a node no child takes keeps
    the alert itself."""
    if path != "0" and not _matches(labels, route.match, route.match_re):
        return []
    out: list[tuple[str, Route]] = []
    for i, child in enumerate(route.routes):
        got = match_routes(child, labels, f"{path}.{i}")
        if got:
            out.extend(got)
            if not child.continue_:
                break
    return out or [(path, route)]


def group_key(path: str, route: Route, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The aggregation group of an alert on a route: (key, group labels)."""
    group = {k: labels.get(k, "") for k in route.group_by}
    text = json.dumps([route.receiver, path, sorted(group.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24], group


@dataclass
class _GroupState:
    key: str
    receiver: str
    labels: dict[str, str]
    first_seen: float
    last_notified: float
    notified: list[str]
    sequence: int


def _load_groups(store: Store) -> dict[str, _GroupState]:
    out: dict[str, _GroupState] = {}
    for key, receiver, labels, first_ms, last_ms, notified, seq in store.query(sql("alerts", "groups")):
        out[key] = _GroupState(
            key, receiver, dict(labels), first_ms / 1000.0, last_ms / 1000.0, list(notified), int(seq)
        )
    return out


_GROUP_COLUMNS: Final = (
    "GroupKey",
    "Receiver",
    "Labels",
    "FirstSeenAt",
    "LastNotifiedAt",
    "Notified",
    "Sequence",
    "UpdatedAt",
)


def _group_row(g: _GroupState, now: float) -> list[Any]:
    return [
        g.key,
        g.receiver,
        g.labels,
        to_db_time(g.first_seen),
        to_db_time(g.last_notified) if g.last_notified else None,
        g.notified,
        g.sequence,
        to_db_time(now),
    ]


def due(state: _GroupState | None, firing: Sequence[str], route: Route, now: float) -> bool:
    """Whether a group should be notified now (pure)."""
    if state is None:
        return False
    changed = sorted(firing) != sorted(state.notified)
    if not state.last_notified:
        return bool(firing) and now - state.first_seen >= route.group_wait
    if changed:
        return now - state.last_notified >= route.group_interval
    return bool(firing) and now - state.last_notified >= route.repeat_interval


def dispatch(
    store: Store, spec: AlertingSpec, now: float, *, resolved_lookback: float = 86400.0
) -> list[str]:
    """Refresh suppression, group and route the alerts, and queue the
    notifications that are due in the outbox. Returns the queued ids."""
    from sla_rules._notify import queue_notification

    rows = store.query(sql("alerts", "recent_alerts"), {"since": to_db_time(now - resolved_lookback)})
    alerts = [_alert(row, with_end=True) for row in rows]
    decided = suppress(alerts, spec, silences(store, now))
    changed = [
        a
        for a, old in zip(decided, alerts, strict=True)
        if a.status != old.status or a.suppressed_by != old.suppressed_by
    ]
    if changed:
        store.insert_rows("revtrace_alerts", [_row(a, now) for a in changed], _ALERT_COLUMNS)
    groups: dict[str, tuple[str, Route, dict[str, str], list[Alert]]] = {}
    for alert in decided:
        for path, route in match_routes(spec.route, alert.labels):
            key, labels = group_key(path, route, alert.labels)
            groups.setdefault(key, (path, route, labels, []))[3].append(alert)
    states = _load_groups(store)
    queued: list[str] = []
    state_rows: dict[str, list[Any]] = {}
    for key, (_path, route, labels, members) in groups.items():
        firing = sorted(a.fingerprint for a in members if a.status == FIRING)
        state = states.get(key)
        if state is None:
            if not firing:
                continue
            # The group was born with its first alert, not when this pass saw it.
            born = min((a.starts_at for a in members if a.status == FIRING and a.starts_at), default=now)
            state = _GroupState(key, route.receiver, labels, min(born, now), 0.0, [], 0)
            state_rows[key] = _group_row(state, now)
        if not due(state, firing, route, now):
            continue
        firing_set = set(firing)
        notified = set(state.notified)
        resolved = [a for a in members if a.status == RESOLVED and a.fingerprint in notified]
        payload_alerts = [a for a in members if a.fingerprint in firing_set] + resolved
        state.sequence += 1
        if route.receiver != "null":
            queued += queue_notification(
                store, spec, route.receiver, key, labels, state.sequence, payload_alerts, now
            )
        state.last_notified = now
        state.notified = firing
        state_rows[key] = _group_row(state, now)
    if state_rows:
        store.insert_rows("revtrace_alert_groups", list(state_rows.values()), _GROUP_COLUMNS)
    return queued
