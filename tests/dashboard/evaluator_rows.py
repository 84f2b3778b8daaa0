"""Rows of the evaluator's contract tables (migration 0100), written the way the
evaluator writes them, for pages that read its verdicts, alerts and reconciliations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from collector.store import Store


def now() -> dt.datetime:
    """Naive UTC now (the store's time zone)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def verdict(
    store: Store,
    correlation_id: str,
    status: str,
    category: str = "",
    *,
    entity: str = "DE01",
    reason: str = "",
    age_s: float = 7200,
    process: str = "quote_to_cash",
    last_stage: str = "erp.invoice.post",
) -> None:
    """One row of ``revtrace_transactions``."""
    t = now()
    store.insert_rows(
        "revtrace_transactions",
        [
            [
                correlation_id,
                process,
                entity,
                "EMEA",
                status,
                category,
                "critical" if status == "stuck" else "warning",
                reason or f"{category or status} at {last_stage}",
                "{}",
                t - dt.timedelta(seconds=age_s),
                t - dt.timedelta(seconds=age_s / 2),
                last_stage,
                Decimal("1200.00"),
                "EUR",
                ["rule-a"],
                t,
            ]
        ],
        [
            "CorrelationId",
            "Process",
            "LegalEntity",
            "Region",
            "Status",
            "Category",
            "Severity",
            "Reason",
            "Evidence",
            "FirstSeen",
            "LastSeen",
            "LastStage",
            "Amount",
            "Currency",
            "Rules",
            "EvaluatedAt",
        ],
    )


def alert(
    store: Store,
    fingerprint: str,
    name: str,
    category: str,
    status: str,
    *,
    started_s_ago: float,
    ended_s_ago: float | None = None,
    correlation_ids: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
    summary: str = "",
) -> None:
    """One row of ``revtrace_alerts``."""
    t = now()
    row: list[Any] = [
        fingerprint,
        name,
        category,
        "critical",
        status,
        labels or {},
        {"summary": summary} if summary else {},
        t - dt.timedelta(seconds=started_s_ago),
        None if ended_s_ago is None else t - dt.timedelta(seconds=ended_s_ago),
        t,
        list(correlation_ids),
        1.0,
        name,
    ]
    store.insert_rows(
        "revtrace_alerts",
        [row],
        [
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
        ],
    )


def silence(
    store: Store, silence_id: str, matchers: dict[str, str], *, hours: float = 2, by: str = "ops"
) -> None:
    """One row of ``revtrace_silences``."""
    t = now()
    store.insert_rows(
        "revtrace_silences",
        [
            [
                silence_id,
                matchers,
                {},
                t - dt.timedelta(minutes=5),
                t + dt.timedelta(hours=hours),
                by,
                "maintenance",
                t,
            ]
        ],
        ["Id", "Matchers", "MatchersRe", "StartsAt", "EndsAt", "CreatedBy", "Comment", "UpdatedAt"],
    )


def recon_run(
    store: Store, run_id: str, rule: str, periods: list[str], items: int, exceptions: int, *, s_ago: float
) -> None:
    """One row of ``revtrace_recon_runs``."""
    t = now() - dt.timedelta(seconds=s_ago)
    store.insert_rows(
        "revtrace_recon_runs",
        [[run_id, rule, t, t + dt.timedelta(seconds=2), periods, "ok", items, exceptions, ""]],
        ["RunId", "Rule", "StartedAt", "FinishedAt", "Periods", "Status", "Items", "Exceptions", "Error"],
    )


def recon_item(
    store: Store,
    run_id: str,
    rule: str,
    period: str,
    object_type: str,
    measure: str,
    systems: list[str],
    values: list[float],
    status: str,
    *,
    entity: str = "DE01",
) -> None:
    """One row of ``revtrace_recon_items``."""
    store.insert_rows(
        "revtrace_recon_items",
        [
            [
                run_id,
                rule,
                now(),
                period,
                object_type,
                entity,
                measure,
                systems,
                values,
                max(values, default=0) - min(values, default=0),
                status,
                [],
            ]
        ],
        [
            "RunId",
            "Rule",
            "CheckedAt",
            "Period",
            "ObjectType",
            "LegalEntity",
            "Measure",
            "Systems",
            "Values",
            "Difference",
            "Status",
            "CorrelationIds",
        ],
    )
