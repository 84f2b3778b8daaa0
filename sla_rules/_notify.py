"""Notifications: the outbox in the store and the receivers that deliver it.

Every notification is written to ``revtrace_notifications`` before anything is
sent, one row per integration of the receiver, with an id made of the
aggregation group, its sequence number and the integration: queuing the same
notification twice is a no-op. :func:`deliver_due` sends what is due in
creation order (per group and integration, a later notification waits for an
earlier one, so a resolve never overtakes its trigger), records success, and on
a retryable failure backs off and tries again later: a receiver outage loses
nothing and a delivered notification is not sent again.

Receivers: a generic webhook (Alertmanager's webhook payload, version 4),
Slack incoming webhooks, PagerDuty Events API v2 (trigger and resolve with a
dedup key) and e-mail over SMTP. Secrets are ``${ENV_VAR}`` references in the
rules file, resolved only when sending, and never stored in the outbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import smtplib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Final

import httpx

from collector.store import Store
from sla_rules._errors import DeliveryError
from sla_rules._queries import sql, to_db_time
from sla_rules._spec import (
    AlertingSpec,
    EmailConfig,
    PagerDutyConfig,
    ReceiverSpec,
    SlackConfig,
    WebhookConfig,
    resolve_env,
)
from tracer.semconv import AlertStatus

if TYPE_CHECKING:
    from sla_rules._alerting import Alert

__all__ = [
    "Delivery",
    "Integration",
    "deliver_due",
    "integrations",
    "queue_notification",
    "render_alertmanager",
    "send",
]

log = logging.getLogger(__name__)

_COLUMNS: Final = (
    "Id",
    "GroupKey",
    "Receiver",
    "Integration",
    "Kind",
    "AlertStatus",
    "Status",
    "Attempts",
    "NextAttemptAt",
    "LastError",
    "Payload",
    "Fingerprints",
    "CreatedAt",
    "SentAt",
    "UpdatedAt",
)
_FIRING: Final = AlertStatus.FIRING.value
_RESOLVED: Final = AlertStatus.RESOLVED.value
PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"

_REPORTED_OFF: set[tuple[str, str, str]] = set()
"""Integrations already reported as off (logged once per process, not every dispatch)."""

IntegrationConfig = WebhookConfig | SlackConfig | PagerDutyConfig | EmailConfig


@dataclass(frozen=True)
class Integration:
    """One way a receiver is reached: ``webhook[0]``, ``slack[1]``, …"""

    receiver: str
    name: str
    kind: str
    config: IntegrationConfig


def integrations(receiver: ReceiverSpec) -> list[Integration]:
    """The receiver's integrations, named by kind and position."""
    out: list[Integration] = []
    groups: tuple[tuple[str, Sequence[IntegrationConfig]], ...] = (
        ("webhook", receiver.webhook),
        ("slack", receiver.slack),
        ("pagerduty", receiver.pagerduty),
        ("email", receiver.email),
    )
    for kind, configs in groups:
        for i, config in enumerate(configs):
            out.append(Integration(receiver.name, f"{kind}[{i}]", kind, config))
    return out


def _configured(integration: Integration, environ: Mapping[str, str] | None) -> bool:
    """False when the integration references an environment variable that is not
    set: such an integration is switched off (a pack may name receivers the
    deployment does not use), with a log line saying so."""
    config = integration.config
    texts = [getattr(config, name, "") for name in ("url", "routing_key", "password")]
    for text in texts:
        if isinstance(text, str) and text:
            try:
                resolve_env(text, environ)
            except KeyError as exc:
                key = (integration.receiver, integration.name, str(exc.args[0]))
                if key not in _REPORTED_OFF:
                    _REPORTED_OFF.add(key)
                    log.info("receiver %s %s is off: environment variable %s is not set", *key)
                return False
    return True


def queue_notification(
    store: Store,
    spec: AlertingSpec,
    receiver: str,
    group: str,
    group_labels: Mapping[str, str],
    sequence: int,
    alerts: Sequence[Alert],
    now: float,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Write one notification per configured integration of ``receiver`` to
    the outbox (once: ids already there are skipped). Returns the new ids."""
    spec_receiver = next((r for r in spec.receivers if r.name == receiver), None)
    if spec_receiver is None or not alerts:
        return []
    firing = [a for a in alerts if a.status == _FIRING]
    status = _FIRING if firing else _RESOLVED
    alert_docs = [_alert_json(a) for a in alerts]
    payload: dict[str, Any] = {
        "receiver": receiver,
        "group_key": group,
        "group_labels": dict(group_labels),
        "sequence": sequence,
        "status": status,
        "alerts": alert_docs,
    }
    rows: list[list[Any]] = []
    for integ in integrations(spec_receiver):
        if not _configured(integ, environ):
            continue
        if status == _RESOLVED and not getattr(integ.config, "send_resolved", True):
            continue
        ident = hashlib.sha256(f"{group}/{sequence}/{integ.name}".encode()).hexdigest()[:32]
        rows.append(
            [
                ident,
                group,
                receiver,
                integ.name,
                integ.kind,
                status,
                PENDING,
                0,
                to_db_time(now),
                "",
                json.dumps(payload, sort_keys=True),
                [a["fingerprint"] for a in alert_docs],
                to_db_time(now),
                None,
                to_db_time(now),
            ]
        )
    if not rows:
        return []
    existing = {r[0] for r in store.query(sql("alerts", "outbox_ids"), {"ids": [row[0] for row in rows]})}
    rows = [row for row in rows if row[0] not in existing]
    if rows:
        store.insert_rows("revtrace_notifications", rows, _COLUMNS)
    return [str(row[0]) for row in rows]


def _iso(seconds: float | None) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "status": _RESOLVED if alert.status == _RESOLVED else _FIRING,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": _iso(alert.starts_at),
        "endsAt": _iso(alert.ends_at) if alert.status == _RESOLVED else "0001-01-01T00:00:00Z",
        "fingerprint": alert.fingerprint,
        "value": alert.value,
        "correlationIds": list(alert.correlation_ids[:20]),
    }


# --- rendering --------------------------------------------------------------------------


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def render_alertmanager(payload: Mapping[str, Any], external_url: str, max_alerts: int = 0) -> dict[str, Any]:
    """The Alertmanager webhook payload (version 4) of a queued notification."""
    alerts = list(payload["alerts"])
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    shown = [
        {
            "status": a["status"],
            "labels": a["labels"],
            "annotations": a["annotations"],
            "startsAt": a["startsAt"],
            "endsAt": a["endsAt"],
            "generatorURL": _link(external_url, a),
            "fingerprint": a["fingerprint"],
        }
        for a in alerts
    ]
    return {
        "version": "4",
        "groupKey": payload["group_key"],
        "truncatedAlerts": truncated,
        "status": payload["status"],
        "receiver": payload["receiver"],
        "groupLabels": payload["group_labels"],
        "commonLabels": _common([a["labels"] for a in payload["alerts"]]),
        "commonAnnotations": _common([a["annotations"] for a in payload["alerts"]]),
        "externalURL": external_url,
        "alerts": shown,
    }


def _link(external_url: str, alert: Mapping[str, Any]) -> str:
    ids = alert.get("correlationIds") or []
    base = external_url.rstrip("/")
    if len(ids) == 1:
        return f"{base}/trace?correlation_id={ids[0]}"
    return f"{base}/alerts?fingerprint={alert['fingerprint']}"


def _title(payload: Mapping[str, Any]) -> str:
    alerts = payload["alerts"]
    firing = sum(1 for a in alerts if a["status"] == _FIRING)
    common = _common([a["labels"] for a in alerts])
    name = common.get("alertname", "revtrace")
    what = f"[{payload['status'].upper()}:{firing}]" if firing else "[RESOLVED]"
    parts = [common.get(k, "") for k in ("category", "legal_entity", "process")]
    return " ".join(x for x in (what, name, *parts) if x)


def _text(payload: Mapping[str, Any]) -> str:
    lines = []
    for a in payload["alerts"]:
        ann = a["annotations"]
        lines.append(
            f"- [{a['status']}] {ann.get('summary', a['labels'].get('alertname', ''))}: {ann.get('description', '')}"
        )
        if a.get("correlationIds"):
            lines.append(f"  correlation ids: {', '.join(a['correlationIds'][:5])}")
    return "\n".join(lines)


def _pd_severity(payload: Mapping[str, Any]) -> str:
    severities = {a["labels"].get("severity", "") for a in payload["alerts"]}
    for name, pd in (("critical", "critical"), ("warning", "warning"), ("info", "info")):
        if name in severities:
            return pd
    return "error"


# --- sending ----------------------------------------------------------------------------


def _post(url: str, body: Mapping[str, Any], timeout: float, accept: tuple[int, ...] = ()) -> None:
    try:
        response = httpx.post(url, json=dict(body), timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"POST {_safe(url)}: {type(exc).__name__}: {exc}", retryable=True) from exc
    code = response.status_code
    if 200 <= code < 300 or code in accept:
        return
    retryable = code >= 500 or code in (408, 425, 429)
    raise DeliveryError(f"POST {_safe(url)}: HTTP {code}: {response.text[:200]}", retryable=retryable)


def _safe(url: str) -> str:
    # Never log a URL's path or query: Slack and webhook URLs carry their token there.
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}/…"


def _secret(text: str, environ: Mapping[str, str] | None) -> str:
    try:
        return resolve_env(text, environ)
    except KeyError as exc:
        raise DeliveryError(f"environment variable {exc.args[0]} is not set", retryable=True) from exc


def send(
    integration: Integration,
    payload: Mapping[str, Any],
    *,
    external_url: str = "",
    environ: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> None:
    """Deliver one notification through one integration. Raises :class:`DeliveryError`."""
    config = integration.config
    if isinstance(config, WebhookConfig):
        body = render_alertmanager(payload, external_url, config.max_alerts)
        _post(_secret(config.url, environ), body, timeout)
    elif isinstance(config, SlackConfig):
        color = "#2eb886" if payload["status"] == _RESOLVED else "#d00000"
        slack: dict[str, Any] = {
            "text": _title(payload),
            "attachments": [{"color": color, "title": _title(payload), "text": _text(payload)}],
        }
        if config.channel:
            slack["channel"] = config.channel
        _post(_secret(config.url, environ), slack, timeout)
    elif isinstance(config, PagerDutyConfig):
        event: dict[str, Any] = {
            "routing_key": _secret(config.routing_key, environ),
            "event_action": "resolve" if payload["status"] == _RESOLVED else "trigger",
            "dedup_key": payload["group_key"],
        }
        if event["event_action"] == "trigger":
            common = _common([a["labels"] for a in payload["alerts"]])
            event["payload"] = {
                "summary": _title(payload)[:1024],
                "source": "revtrace",
                "severity": _pd_severity(payload),
                "component": common.get("stage", ""),
                "group": common.get("process", ""),
                "class": common.get("category", ""),
                "custom_details": {"alerts": _text(payload), "group_labels": payload["group_labels"]},
            }
            event["client"] = "revtrace"
            if external_url:
                event["client_url"] = external_url
        _post(config.url, event, timeout, accept=(202,))
    else:
        _send_email(config, payload, environ, timeout)


def _send_email(
    config: EmailConfig, payload: Mapping[str, Any], environ: Mapping[str, str] | None, timeout: float
) -> None:
    host, _, port = config.smarthost.rpartition(":")
    message = EmailMessage()
    message["Subject"] = _title(payload)
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["X-Revtrace-Group"] = str(payload["group_key"])
    message.set_content(_text(payload) + "\n")
    try:
        with smtplib.SMTP(host, int(port), timeout=timeout) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.username:
                smtp.login(config.username, _secret(config.password, environ))
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        # 4xx: try again later; 5xx: the server refuses for good.
        raise DeliveryError(
            f"SMTP {config.smarthost}: {exc.smtp_code} {exc.smtp_error!r}", retryable=exc.smtp_code < 500
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(
            f"SMTP {config.smarthost}: recipients refused: {list(exc.recipients)}", retryable=False
        ) from exc
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {config.smarthost}: {type(exc).__name__}: {exc}", retryable=True) from exc


@dataclass(frozen=True)
class Delivery:
    """What one :func:`deliver_due` pass did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


def deliver_due(
    store: Store,
    spec: AlertingSpec,
    now: float,
    *,
    external_url: str = "",
    environ: Mapping[str, str] | None = None,
    backoff: float = 5.0,
    max_backoff: float = 600.0,
    limit: int = 500,
) -> Delivery:
    """Send the outbox's due notifications; record each result."""
    rows = store.query(sql("alerts", "outbox_due"), {"limit": limit})
    receivers = {r.name: {i.name: i for i in integrations(r)} for r in spec.receivers}
    blocked: set[tuple[str, str]] = set()
    sent = retried = failed = 0
    for (
        ident,
        group,
        receiver,
        integ_name,
        kind,
        alert_status,
        attempts,
        next_ms,
        payload_text,
        fps,
        created_ms,
    ) in rows:
        chain = (group, integ_name)
        if chain in blocked:
            continue
        if next_ms / 1000.0 > now:
            blocked.add(chain)
            continue
        payload = json.loads(payload_text)
        integ = receivers.get(receiver, {}).get(integ_name)
        status, error = SENT, ""
        sent_at: dt.datetime | None = to_db_time(now)
        next_at = now
        try:
            if integ is None:
                raise DeliveryError(
                    f"receiver {receiver!r} has no integration {integ_name} any more", retryable=False
                )
            send(integ, payload, external_url=external_url, environ=environ)
            sent += 1
        except DeliveryError as exc:
            error = str(exc)
            sent_at = None
            if exc.retryable:
                status = PENDING
                next_at = now + min(max_backoff, backoff * (2 ** min(int(attempts), 16)))
                retried += 1
                blocked.add(chain)
                log.warning(
                    "notification %s to %s %s failed (attempt %d, retrying): %s",
                    ident,
                    receiver,
                    integ_name,
                    attempts + 1,
                    exc,
                )
            else:
                status = FAILED
                failed += 1
                log.error("notification %s to %s %s failed for good: %s", ident, receiver, integ_name, exc)
        row = [
            ident,
            group,
            receiver,
            integ_name,
            kind,
            alert_status,
            status,
            int(attempts) + 1,
            to_db_time(next_at),
            error,
            payload_text,
            list(fps),
            to_db_time(created_ms / 1000.0),
            sent_at,
            to_db_time(max(now, created_ms / 1000.0 + 0.001 * (int(attempts) + 1))),
        ]
        # Record each result at once: a crash after a send must not send it again.
        store.insert_rows("revtrace_notifications", [row], _COLUMNS)
    return Delivery(sent, retried, failed)
