"""The dashboard's service settings, from the environment, with documented defaults.

Every ``REVTRACE_*`` variable the dashboard reads is named here once. The ones
the whole product shares (store URL, data directory, dashboard port) stay in
:mod:`collector.settings`; this table adds what only the dashboard needs:
sign-in, the replay endpoint, the audit-log key, refresh and SLA objectives.
Secrets (passwords, tokens, keys) only ever come from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from collector import settings as _collector_settings
from collector.settings import Setting, env_float, env_int, env_str, register

__all__ = [
    "ENV",
    "LOOPBACK_HOSTS",
    "Setting",
    "env_float",
    "env_int",
    "env_str",
    "users_file",
]

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""Bind addresses that only this machine can reach: the only ones on which the
dashboard may run open (without sign-in)."""


ENV: Final[dict[str, Setting]] = {
    s.name: s
    for s in (
        Setting(
            "REVTRACE_DASHBOARD_HOST",
            "127.0.0.1",
            "Bind address of the dashboard. Without sign-in configured it must be a loopback address.",
        ),
        Setting(
            "REVTRACE_USERS_FILE",
            "",
            "Local dashboard accounts (bcrypt hashes), written by `revtrace users add`. "
            "Empty: <REVTRACE_DATA_DIR>/users.json. When it holds accounts, sign-in is required.",
        ),
        Setting(
            "REVTRACE_OIDC_METADATA_URL",
            "",
            "OpenID Connect discovery URL (…/.well-known/openid-configuration). Set it, with the "
            "client id and secret, to sign in through st.login instead of local accounts.",
        ),
        Setting("REVTRACE_OIDC_CLIENT_ID", "", "OpenID Connect client id."),
        Setting("REVTRACE_OIDC_CLIENT_SECRET", "", "OpenID Connect client secret."),
        Setting(
            "REVTRACE_OIDC_REDIRECT_URI",
            "",
            "OpenID Connect redirect URI. Empty: http://<host>:<port>/oauth2callback.",
        ),
        Setting(
            "REVTRACE_OIDC_COOKIE_SECRET",
            "",
            "Secret that signs the sign-in cookie (OIDC). Empty: a random one per process.",
        ),
        Setting(
            "REVTRACE_OIDC_DEFAULT_ROLE",
            "viewer",
            "Role of an OIDC user who has no entry in the users file.",
        ),
        Setting(
            "REVTRACE_REPLAY_URL",
            "",
            "Base URL of the sync engine's API; the workbench's replay posts to "
            "{url}/api/v1/transactions/{correlation_id}/replay. Empty: replay is unavailable.",
        ),
        Setting("REVTRACE_REPLAY_TOKEN", "", "Bearer token for the sync engine's replay endpoint."),
        Setting(
            "REVTRACE_AUDIT_KEY",
            "",
            "Secret key of the audit log's hash chain (HMAC-SHA256). Empty: plain SHA-256, which "
            "detects edits but not someone who rewrites the whole chain.",
        ),
        Setting(
            "REVTRACE_DASHBOARD_REFRESH_S", "30", "Default auto-refresh interval in seconds (0 turns it off)."
        ),
        Setting(
            "REVTRACE_SLA_INVOICE_POSTING_S",
            "3600",
            "Invoice-posting SLA (billing.invoice.create → erp.invoice.post), seconds at p95.",
        ),
        Setting(
            "REVTRACE_SLA_PAYMENT_PROPAGATION_S",
            "900",
            "Payment-propagation SLA (billing.payment.succeed → erp.payment.apply), seconds at p95.",
        ),
        # The SLA defaults follow the default quote-to-cash rule pack (sla_rules/packs).
        Setting(
            "REVTRACE_SLA_CUSTOMER_SYNC_PCT",
            "99",
            "Customer-sync success-rate objective, percent.",
        ),
        Setting(
            "REVTRACE_SLA_DUPLICATE_PCT",
            "0.1",
            "Highest acceptable duplicate-transaction rate, percent.",
        ),
        Setting(
            "REVTRACE_SLA_MTTR_S",
            "14400",
            "Mean-time-to-resolve objective for alerts, seconds.",
        ),
    )
}


register(*ENV.values())


def users_file() -> Path:
    """Where the local accounts are: ``REVTRACE_USERS_FILE`` or ``<data dir>/users.json``."""
    raw = env_str("REVTRACE_USERS_FILE").strip()
    if raw:
        return Path(raw).expanduser().resolve()
    return _collector_settings.data_dir() / "users.json"
