#!/usr/bin/env python3
# ruff: noqa: S608 - the SQL here is assembled from code constants only and runs in Grafana.
"""revtrace's Grafana dashboards as code: ``grafana/dashboards/*.json`` are generated here.

    python grafana/generate.py           # write the dashboards
    python grafana/generate.py --check   # exit 1 when a committed file differs

Five dashboards mirror the revtrace dashboard's views for teams that already
run Grafana: Overview, Latency, Alerts, Sync engine, and Trace (a correlation
id's transaction in Grafana's trace view). Every panel is raw SQL for the
Grafana ClickHouse data source (``grafana-clickhouse-datasource``) against the
tables revtrace migrates; stage names, outcomes, categories, attribute and
metric names come from the modules that define them (``tracer.semconv``,
``sync_engine``), SLA defaults from ``dashboard.settings``. The tests run every
query, with the plugin's macros and the template variables filled in, against
the real schema (``tests/deploy/test_grafana.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dashboard import settings as dashboard_settings
from sync_engine import (
    METRIC_BREAKER_STATE,
    METRIC_DLQ_SIZE,
    METRIC_INFLIGHT,
    METRIC_PARKED,
    METRIC_QUEUE_DEPTH,
    METRIC_RATELIMIT_WAITS,
    METRIC_RETRIES,
    METRIC_TRANSACTIONS,
)
from tracer.semconv import BIZ_SYSTEM, FailureCategory, Outcome, Stage

__all__ = ["DASHBOARDS", "DATASOURCE", "Dashboard", "Panel", "Variable", "build", "main"]

PLUGIN_VERSION: Final = "4.10.1"
DATASOURCE: Final = {"type": "grafana-clickhouse-datasource", "uid": "revtrace-clickhouse"}
"""The data source provisioned by ``grafana/provisioning/datasources/revtrace.yaml``."""
OUT_DIR: Final = Path(__file__).resolve().parent / "dashboards"
COLLECTOR_SERVICE: Final = "revtrace-collector"

# The plugin's query formats (sqlds) and query types.
_FORMATS: Final = {"time_series": 0, "table": 1, "traces": 3}
_QUERY_TYPES: Final = {"time_series": "timeseries", "table": "table", "traces": "traces"}


def _q(value: str) -> str:
    """A SQL string literal of a constant from the code (never user input)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(values: Sequence[str]) -> str:
    return ", ".join(_q(str(v)) for v in values)


OK: Final = _q(Outcome.OK)
FAILED_OUTCOMES: Final = _list([Outcome.FAILED, Outcome.DEAD_LETTERED])
DONE_OUTCOMES: Final = _list([Outcome.OK, Outcome.SKIPPED_DUPLICATE, Outcome.FAILED, Outcome.DEAD_LETTERED])
CUSTOMER_STAGES: Final = _list([Stage.BILLING_CUSTOMER_UPSERT, Stage.ERP_CUSTOMER_UPSERT])
# The span's outcome: biz.outcome when the adapter set it, else from the span status.
OUTCOME: Final = f"if(Outcome != '', Outcome, if(StatusCode = 'Error', {_q(Outcome.FAILED)}, {OK}))"
ENTITY_FILTER: Final = "$__conditionalAll(LegalEntity IN (${entity:singlequote}), $entity)"
TRACE_LINK: Final = "/d/revtrace-trace/revtrace-trace?var-correlation_id=${__value.raw}&${__url_time_range}"


def _sla_default(name: str) -> str:
    return dashboard_settings.ENV[name].default


@dataclass(frozen=True)
class Variable:
    """A template variable: ``query`` (SQL), ``textbox``, ``custom`` or ``constant``."""

    name: str
    kind: str
    label: str = ""
    query: str = ""
    default: str = ""
    multi: bool = False
    hidden: bool = False

    def json(self) -> dict[str, Any]:
        """The variable's JSON model."""
        base: dict[str, Any] = {"name": self.name, "label": self.label or self.name, "type": self.kind}
        base["hide"] = 2 if self.hidden else 0
        if self.kind == "query":
            base.update(
                {
                    "datasource": DATASOURCE,
                    "definition": self.query,
                    "query": {"editorType": "sql", "rawSql": self.query},
                    "includeAll": True,
                    "multi": self.multi,
                    "refresh": 2,
                    "sort": 1,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "options": [],
                }
            )
        elif self.kind == "custom":
            options = [part.split(" : ", 1) for part in self.query.split(",")]
            current = next(o for o in options if o[1].strip() == self.default)
            base.update(
                {
                    "query": self.query,
                    "current": {"selected": True, "text": current[0].strip(), "value": self.default},
                    "options": [
                        {"selected": v.strip() == self.default, "text": t.strip(), "value": v.strip()}
                        for t, v in options
                    ],
                    "multi": False,
                    "includeAll": False,
                }
            )
        else:  # textbox, constant
            base.update(
                {
                    "query": self.default,
                    "current": {"selected": False, "text": self.default, "value": self.default},
                    "options": [{"selected": True, "text": self.default, "value": self.default}],
                }
            )
        return base


@dataclass(frozen=True)
class Panel:
    """One panel: a visualization over one raw-SQL query."""

    title: str
    kind: str
    sql: str
    fmt: str = "table"
    width: int = 8
    height: int = 8
    unit: str = ""
    description: str = ""
    link_field: str = ""
    """A column whose values link to the Trace dashboard (a correlation id)."""
    options: dict[str, Any] = field(default_factory=dict)
    decimals: int | None = None

    def json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        """The panel's JSON model at grid position (x, y)."""
        defaults: dict[str, Any] = {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        overrides: list[dict[str, Any]] = []
        if self.link_field:
            overrides.append(
                {
                    "matcher": {"id": "byName", "options": self.link_field},
                    "properties": [
                        {
                            "id": "links",
                            "value": [{"title": "Open the transaction's trace", "url": TRACE_LINK}],
                        }
                    ],
                }
            )
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": self.options,
            "targets": [
                {
                    "refId": "A",
                    "datasource": DATASOURCE,
                    "editorType": "sql",
                    "format": _FORMATS[self.fmt],
                    "queryType": _QUERY_TYPES[self.fmt],
                    "pluginVersion": PLUGIN_VERSION,
                    "rawSql": self.sql.strip(),
                }
            ],
        }


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: uid, title, variables and panels laid out left to right."""

    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]
    time_from: str = "now-24h"

    def json(self) -> dict[str, Any]:
        """The dashboard's JSON model (what Grafana provisions)."""
        panels: list[dict[str, Any]] = []
        x = y = row_height = 0
        for index, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.json(index, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["revtrace"],
            "editable": True,
            "graphTooltip": 1,
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "refresh": "1m",
            "time": {"from": self.time_from, "to": "now"},
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["revtrace"],
                    "asDropdown": False,
                    "includeVars": False,
                    "keepTime": True,
                    "title": "revtrace",
                }
            ],
            "templating": {"list": [v.json() for v in self.variables]},
            "annotations": {"list": []},
            "panels": panels,
        }


# --- variables ---------------------------------------------------------------------------

ENTITY: Final = Variable(
    "entity",
    "query",
    "Legal entity",
    query="SELECT DISTINCT LegalEntity FROM revtrace_spans "
    "WHERE $__timeFilter(Timestamp) AND LegalEntity != '' ORDER BY LegalEntity",
    multi=True,
)


def _pairs() -> str:
    pairs = (
        ("Invoice posting", Stage.BILLING_INVOICE_CREATE, Stage.ERP_INVOICE_POST),
        ("Payment propagation", Stage.BILLING_PAYMENT_SUCCEED, Stage.ERP_PAYMENT_APPLY),
        ("Order to invoice", Stage.CRM_ORDER_APPROVE, Stage.BILLING_INVOICE_CREATE),
        ("Customer billing to ERP", Stage.BILLING_CUSTOMER_UPSERT, Stage.ERP_CUSTOMER_UPSERT),
        ("Payment to CRM", Stage.BILLING_PAYMENT_SUCCEED, Stage.CRM_ACCOUNT_UPDATE),
        ("Refund posting", Stage.BILLING_REFUND_CREATE, Stage.ERP_REFUND_POST),
    )
    return ",".join(f"{title} : {a}>{b}" for title, a, b in pairs)


PAIR: Final = Variable(
    "pair",
    "custom",
    "Stage pair",
    query=_pairs(),
    default=f"{Stage.BILLING_INVOICE_CREATE}>{Stage.ERP_INVOICE_POST}",
)
SLA: Final = Variable(
    "sla_s", "textbox", "SLA (s)", default=_sla_default("REVTRACE_SLA_INVOICE_POSTING_S"), hidden=False
)
INVOICE_SLA: Final = Variable(
    "invoice_sla_s", "constant", default=_sla_default("REVTRACE_SLA_INVOICE_POSTING_S"), hidden=True
)
PAYMENT_SLA: Final = Variable(
    "payment_sla_s", "constant", default=_sla_default("REVTRACE_SLA_PAYMENT_PROPAGATION_S"), hidden=True
)
CORRELATION: Final = Variable("correlation_id", "textbox", "Correlation id", default="")


# --- shared SQL -------------------------------------------------------------------------------


def _pair_base(from_stage: str, to_stage: str) -> str:
    """One row per transaction that finished ``from_stage`` in the window: when each stage ended ok."""
    return f"""
    SELECT
        CorrelationId,
        max(LegalEntity) AS entity,
        minIf(EndTimestamp, Stage = {from_stage} AND {OUTCOME} = {OK}) AS t_from,
        minIf(EndTimestamp, Stage = {to_stage} AND {OUTCOME} = {OK}) AS t_to,
        countIf(Stage = {to_stage} AND {OUTCOME} = {OK}) > 0 AS has_to,
        (toUnixTimestamp64Nano(t_to) - toUnixTimestamp64Nano(t_from)) / 1e9 AS seconds
    FROM revtrace_spans
    WHERE $__timeFilter(Timestamp)
      AND Stage IN ({from_stage}, {to_stage})
      AND {ENTITY_FILTER}
    GROUP BY CorrelationId
    HAVING countIf(Stage = {from_stage} AND {OUTCOME} = {OK}) > 0"""


SLA_SECONDS: Final = "toFloat64OrZero(${sla_s:singlequote})"
SELECTED_FROM: Final = "splitByChar('>', '${pair}')[1]"
SELECTED_TO: Final = "splitByChar('>', '${pair}')[2]"
INVOICE: Final = (_q(Stage.BILLING_INVOICE_CREATE), _q(Stage.ERP_INVOICE_POST))
PAYMENT: Final = (_q(Stage.BILLING_PAYMENT_SUCCEED), _q(Stage.ERP_PAYMENT_APPLY))


def _levels(metrics: Sequence[str], series: str) -> str:
    """Level metrics (gauges and non-monotonic sums) over time, one series per ``series`` value."""
    names = _list(metrics)
    return f"""
SELECT $__timeInterval(TimeUnix) AS time, concat(MetricName, if(s != '', concat(' ', s), '')) AS series,
       max(Value) AS value
FROM (
    SELECT TimeUnix, MetricName, Attributes[{_q(series)}] AS s, Value FROM otel_metrics_gauge
    WHERE MetricName IN ({names}) AND $__timeFilter(TimeUnix)
    UNION ALL
    SELECT TimeUnix, MetricName, Attributes[{_q(series)}] AS s, Value FROM otel_metrics_sum
    WHERE MetricName IN ({names}) AND NOT IsMonotonic AND $__timeFilter(TimeUnix)
)
GROUP BY time, series
ORDER BY time"""


def _increases(metrics: Sequence[str], series: str, service: str = "") -> str:
    """Cumulative counters as increases per interval: the difference to each series' previous point
    (a series is one process's counter: its attributes and start time, so a restart starts a new one)."""
    names = _list(metrics)
    by_service = f" AND ServiceName = {_q(service)}" if service else ""
    return f"""
SELECT $__timeInterval(TimeUnix) AS time, series, sum(delta) AS increase
FROM (
    SELECT TimeUnix,
           concat(MetricName, if(Attributes[{_q(series)}] != '', concat(' ', Attributes[{_q(series)}]), ''))
               AS series,
           Value - lagInFrame(Value, 1, Value) OVER (
               PARTITION BY ServiceName, MetricName, Attributes, StartTimeUnix ORDER BY TimeUnix
               ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS delta
    FROM otel_metrics_sum
    WHERE MetricName IN ({names}) AND IsMonotonic AND $__timeFilter(TimeUnix){by_service}
)
GROUP BY time, series
ORDER BY time"""


# --- the dashboards ------------------------------------------------------------------------

OVERVIEW: Final = Dashboard(
    "revtrace-overview",
    "revtrace · Overview",
    "The quote-to-cash KPIs against their SLAs, their trends, and what is firing.",
    (ENTITY, INVOICE_SLA, PAYMENT_SLA),
    (
        Panel(
            "Customer-sync success",
            "stat",
            f"""
SELECT 100 * countIf(final = {OK}) / nullIf(countIf(final IN ({DONE_OUTCOMES})), 0) AS success
FROM (
    SELECT CorrelationId, Stage, argMax({OUTCOME}, Timestamp) AS final
    FROM revtrace_spans
    WHERE $__timeFilter(Timestamp) AND Stage IN ({CUSTOMER_STAGES}) AND {ENTITY_FILTER}
    GROUP BY CorrelationId, Stage
)""",
            width=4,
            height=5,
            unit="percent",
            decimals=1,
            description="The final outcome of every customer upsert in billing and ERP; retries still running "
            "are not counted.",
        ),
        Panel(
            "Invoice posting p95",
            "stat",
            f"""
SELECT quantileIf(0.95)(seconds, has_to) AS p95
FROM ({_pair_base(*INVOICE)})""",
            width=4,
            height=5,
            unit="s",
            description="From billing.invoice.create ending ok to erp.invoice.post ending ok.",
        ),
        Panel(
            "Payment propagation p95",
            "stat",
            f"""
SELECT quantileIf(0.95)(seconds, has_to) AS p95
FROM ({_pair_base(*PAYMENT)})""",
            width=4,
            height=5,
            unit="s",
            description="From billing.payment.succeed ending ok to erp.payment.apply ending ok.",
        ),
        Panel(
            "Invoices waiting past SLA",
            "stat",
            f"""
SELECT countIf(NOT has_to AND t_from < now64(9) - toIntervalSecond(${{invoice_sla_s}})) AS waiting
FROM ({_pair_base(*INVOICE)})""",
            width=3,
            height=5,
            description="Created in billing, not posted to ERP, older than the invoice-posting SLA: stuck "
            "between billing and ERP.",
        ),
        Panel(
            "Duplicate transactions",
            "stat",
            f"""
SELECT 100 * countIf(duplicated) / nullIf(count(), 0) AS duplicate_pct
FROM (
    SELECT CorrelationId,
           max((IdempotencyKey != '' AND objects > 1) OR duplicate_spans > 0) AS duplicated
    FROM (
        SELECT CorrelationId, IdempotencyKey,
               uniqExactIf(ObjectId, ObjectId != '' AND {OUTCOME} = {OK}) AS objects,
               countIf(ErrorCategory = {_q(FailureCategory.DUPLICATE)}) AS duplicate_spans
        FROM revtrace_spans
        WHERE $__timeFilter(Timestamp) AND {ENTITY_FILTER}
        GROUP BY CorrelationId, Stage, IdempotencyKey
    )
    GROUP BY CorrelationId
)""",
            width=3,
            height=5,
            unit="percent",
            decimals=2,
            description="One idempotency key that produced two objects (a retry created a second customer), "
            "or a span categorized duplicate.",
        ),
        Panel(
            "Reconciliation exceptions",
            "stat",
            f"""
SELECT count() AS exceptions
FROM revtrace_recon_items
WHERE RunId IN (
    SELECT argMax(RunId, StartedAt) FROM revtrace_recon_runs WHERE $__timeFilter(StartedAt) GROUP BY Rule
)
  AND Status != {OK} AND {ENTITY_FILTER}""",
            width=3,
            height=5,
            description="Items that differ between systems (counts, amounts, statuses) in each reconciliation "
            "rule's latest run in the window.",
        ),
        Panel(
            "Mean time to resolve",
            "stat",
            """
SELECT avg(dateDiff('second', StartsAt, assumeNotNull(EndsAt))) AS mttr
FROM revtrace_alerts FINAL
WHERE Status = 'resolved' AND EndsAt IS NOT NULL AND $__timeFilter(EndsAt)""",
            width=3,
            height=5,
            unit="s",
            description="Alerts resolved in the window, from firing to resolved.",
        ),
        Panel(
            "Customer-sync success over time",
            "timeseries",
            f"""
SELECT $__timeInterval(first) AS time,
       100 * countIf(final = {OK}) / nullIf(countIf(final IN ({DONE_OUTCOMES})), 0) AS success
FROM (
    SELECT CorrelationId, Stage, min(Timestamp) AS first, argMax({OUTCOME}, Timestamp) AS final
    FROM revtrace_spans
    WHERE $__timeFilter(Timestamp) AND Stage IN ({CUSTOMER_STAGES}) AND {ENTITY_FILTER}
    GROUP BY CorrelationId, Stage
)
GROUP BY time
ORDER BY time""",
            fmt="time_series",
            width=12,
            unit="percent",
        ),
        Panel(
            "Invoice posting p95 over time",
            "timeseries",
            f"""
SELECT $__timeInterval(t_to) AS time, quantile(0.95)(seconds) AS p95, max(seconds) AS worst
FROM ({_pair_base(*INVOICE)})
WHERE has_to
GROUP BY time
ORDER BY time""",
            fmt="time_series",
            width=12,
            unit="s",
        ),
        Panel(
            "Firing alerts by category",
            "barchart",
            """
SELECT Category AS category, count() AS alerts, sum(length(CorrelationIds)) AS transactions
FROM revtrace_alerts FINAL
WHERE Status = 'firing'
GROUP BY category
ORDER BY alerts DESC""",
            width=12,
            options={"orientation": "horizontal", "xField": "category"},
        ),
        Panel(
            "Failed spans by category",
            "barchart",
            f"""
SELECT if(ErrorCategory = '', 'uncategorized', ErrorCategory) AS category,
       count() AS failed_spans, uniqExact(CorrelationId) AS transactions
FROM revtrace_spans
WHERE $__timeFilter(Timestamp) AND {OUTCOME} IN ({FAILED_OUTCOMES}) AND {ENTITY_FILTER}
GROUP BY category
ORDER BY failed_spans DESC""",
            width=12,
            options={"orientation": "horizontal", "xField": "category"},
        ),
    ),
)

LATENCY: Final = Dashboard(
    "revtrace-latency",
    "revtrace · Latency",
    "Stage-to-stage SLAs over time, per legal entity: invoice posting, payment propagation and the rest.",
    (ENTITY, PAIR, SLA),
    (
        Panel(
            "p50 / p95 / p99",
            "timeseries",
            f"""
SELECT $__timeInterval(t_to) AS time,
       quantile(0.5)(seconds) AS p50, quantile(0.95)(seconds) AS p95, quantile(0.99)(seconds) AS p99
FROM ({_pair_base(SELECTED_FROM, SELECTED_TO)})
WHERE has_to
GROUP BY time
ORDER BY time""",
            fmt="time_series",
            width=16,
            height=9,
            unit="s",
        ),
        Panel(
            "Breaches and waiting",
            "stat",
            f"""
SELECT countIf(has_to AND seconds > {SLA_SECONDS}) AS breaches,
       countIf(NOT has_to AND t_from < now64(9) - toIntervalSecond(toUInt32({SLA_SECONDS}))) AS waiting_past_sla,
       countIf(has_to) AS completed
FROM ({_pair_base(SELECTED_FROM, SELECTED_TO)})""",
            width=8,
            height=9,
        ),
        Panel(
            "Per legal entity",
            "table",
            f"""
SELECT entity AS legal_entity, countIf(has_to) AS completed,
       round(quantileIf(0.5)(seconds, has_to), 1) AS p50_s, round(quantileIf(0.95)(seconds, has_to), 1) AS p95_s,
       countIf(has_to AND seconds > {SLA_SECONDS}) AS breaches, countIf(NOT has_to) AS waiting
FROM ({_pair_base(SELECTED_FROM, SELECTED_TO)})
GROUP BY entity
ORDER BY p95_s DESC""",
            width=12,
            height=9,
        ),
        Panel(
            "Slowest and still waiting",
            "table",
            f"""
SELECT CorrelationId AS correlation_id, entity AS legal_entity, t_from AS first_stage_done,
       if(has_to, 'done', 'waiting') AS state, if(has_to, round(seconds, 1), NULL) AS seconds
FROM ({_pair_base(SELECTED_FROM, SELECTED_TO)})
ORDER BY has_to ASC, seconds DESC
LIMIT 100""",
            width=12,
            height=9,
            link_field="correlation_id",
        ),
        Panel(
            "SLOs as the evaluator measures them (value vs objective)",
            "table",
            f"""
SELECT Rule AS rule, Measure AS measure, LegalEntity AS legal_entity,
       argMax(Value, Time) AS value, argMax(Objective, Time) AS objective, argMax(Unit, Time) AS unit,
       argMax(Breached, Time) AS breached, max(Time) AS measured_at
FROM revtrace_sla_points
WHERE $__timeFilter(Time) AND {ENTITY_FILTER}
GROUP BY rule, measure, legal_entity
ORDER BY breached DESC, rule, measure, legal_entity
LIMIT 300""",
            width=24,
            height=8,
        ),
    ),
)

ALERTS: Final = Dashboard(
    "revtrace-alerts",
    "revtrace · Alerts",
    "The evaluator's alerts, categorized and grouped, and the transactions behind them.",
    (ENTITY,),
    (
        Panel(
            "Alerts by category and status",
            "barchart",
            """
SELECT Category AS category, countIf(Status = 'firing') AS firing, countIf(Status = 'resolved') AS resolved,
       countIf(Status = 'suppressed') AS suppressed
FROM revtrace_alerts FINAL
WHERE StartsAt <= $__toTime AND (EndsAt IS NULL OR EndsAt >= $__fromTime)
GROUP BY category
ORDER BY firing DESC, category""",
            width=12,
            height=9,
            options={"orientation": "horizontal", "xField": "category", "stacking": "normal"},
        ),
        Panel(
            "Alerts started over time",
            "timeseries",
            """
SELECT $__timeInterval(StartsAt) AS time, Category AS category, count() AS alerts
FROM revtrace_alerts FINAL
WHERE $__timeFilter(StartsAt)
GROUP BY time, category
ORDER BY time""",
            fmt="time_series",
            width=12,
            height=9,
        ),
        Panel(
            "Alerts",
            "table",
            """
SELECT StartsAt AS started, Status AS status, Severity AS severity, Category AS category,
       AlertName AS alert, Rule AS rule, Labels['legal_entity'] AS legal_entity,
       length(CorrelationIds) AS transactions, CorrelationIds[1] AS example, Annotations['summary'] AS summary
FROM revtrace_alerts FINAL
WHERE StartsAt <= $__toTime AND (EndsAt IS NULL OR EndsAt >= $__fromTime)
  AND $__conditionalAll(Labels['legal_entity'] IN (${entity:singlequote}), $entity)
ORDER BY status = 'firing' DESC, started DESC
LIMIT 500""",
            width=24,
            height=10,
            link_field="example",
        ),
        Panel(
            "Failing transactions (the evaluator's verdicts)",
            "table",
            f"""
SELECT LastSeen AS last_seen, CorrelationId AS correlation_id, Status AS status, Category AS category,
       Severity AS severity, LegalEntity AS legal_entity, LastStage AS last_stage, Reason AS reason
FROM revtrace_transactions FINAL
WHERE $__timeFilter(LastSeen) AND Status != {OK} AND {ENTITY_FILTER}
ORDER BY last_seen DESC
LIMIT 500""",
            width=24,
            height=10,
            link_field="correlation_id",
        ),
    ),
)

SYNC_ENGINE: Final = Dashboard(
    "revtrace-sync-engine",
    "revtrace · Sync engine",
    "Throughput, retries, dead letters, circuit breakers and rate limiting of the sync engine; the "
    "collector's own health.",
    (ENTITY,),
    (
        Panel(
            "Business spans by system",
            "timeseries",
            f"""
SELECT $__timeInterval(Timestamp) AS time, System AS system, count() AS spans
FROM revtrace_spans
WHERE $__timeFilter(Timestamp) AND {ENTITY_FILTER}
GROUP BY time, system
ORDER BY time""",
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Failures and retries",
            "timeseries",
            f"""
SELECT $__timeInterval(Timestamp) AS time,
       countIf({OUTCOME} IN ({FAILED_OUTCOMES})) AS failed,
       countIf(Attempt > 1) AS retries,
       countIf(ErrorCategory = {_q(FailureCategory.RATE_LIMITED)}) AS rate_limited
FROM revtrace_spans
WHERE $__timeFilter(Timestamp) AND {ENTITY_FILTER}
GROUP BY time
ORDER BY time""",
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Queue, in flight, dead letters, parked",
            "timeseries",
            _levels((METRIC_QUEUE_DEPTH, METRIC_INFLIGHT, METRIC_DLQ_SIZE, METRIC_PARKED), BIZ_SYSTEM),
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Circuit breakers now (0 closed, 1 half-open, 2 open)",
            "stat",
            f"""
SELECT Attributes[{_q(BIZ_SYSTEM)}] AS system, argMax(Value, TimeUnix) AS state
FROM otel_metrics_gauge
WHERE MetricName = {_q(METRIC_BREAKER_STATE)} AND $__timeFilter(TimeUnix)
GROUP BY system
ORDER BY system""",
            width=12,
            options={"reduceOptions": {"values": True, "calcs": [], "fields": "/^state$/"}},
        ),
        Panel(
            "Retries, transactions and rate-limit waits",
            "timeseries",
            _increases((METRIC_RETRIES, METRIC_TRANSACTIONS, METRIC_RATELIMIT_WAITS), BIZ_SYSTEM),
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Circuit breaker state over time",
            "timeseries",
            _levels((METRIC_BREAKER_STATE,), BIZ_SYSTEM),
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Collector: accepted, rejected, refused",
            "timeseries",
            _increases(
                ("revtrace.ingest.accepted", "revtrace.ingest.rejected", "revtrace.ingest.refused"),
                "signal",
                COLLECTOR_SERVICE,
            ),
            fmt="time_series",
            width=12,
        ),
        Panel(
            "Collector: spool backlog",
            "timeseries",
            f"""
SELECT $__timeInterval(TimeUnix) AS time, max(Value) AS backlog_bytes
FROM otel_metrics_gauge
WHERE ServiceName = {_q(COLLECTOR_SERVICE)} AND MetricName = 'revtrace.spool.backlog_bytes'
  AND $__timeFilter(TimeUnix)
GROUP BY time
ORDER BY time""",
            fmt="time_series",
            width=12,
            unit="bytes",
        ),
    ),
)

# The correlation id's spans in Grafana's trace view: every trace the transaction
# touched (HTTP hops, webhooks and queue messages start new traces) shown as one,
# with the correlation id as its trace id.
_TRACE_SPANS: Final = """
WITH
    (SELECT min(Start) FROM revtrace_correlations WHERE CorrelationId = ${correlation_id:singlequote}) AS t_first,
    (SELECT max(End) FROM revtrace_correlations WHERE CorrelationId = ${correlation_id:singlequote}) AS t_last
SELECT
    ${correlation_id:singlequote} AS traceID,
    SpanId AS spanID,
    ParentSpanId AS parentSpanID,
    SpanName AS operationName,
    ServiceName AS serviceName,
    Duration / 1000000 AS duration,
    toUnixTimestamp64Milli(Timestamp) AS startTime,
    arrayMap(key -> map('key', key, 'value', SpanAttributes[key]), mapKeys(SpanAttributes)) AS tags,
    arrayMap(key -> map('key', key, 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes)) AS serviceTags,
    if(StatusCode = 'Error', 2, if(StatusCode = 'Ok', 1, 0)) AS statusCode,
    StatusMessage AS statusMessage,
    SpanKind AS kind,
    arrayMap((name, ts, attrs) -> CAST(tuple(name, toString(toUnixTimestamp64Milli(ts)), mapConcat(attrs, map('name', name))),
             'Tuple(name String, timestamp String, fields Map(String, String))'),
             Events.Name, Events.Timestamp, Events.Attributes) AS logs
FROM otel_traces
WHERE TraceId IN (SELECT DISTINCT TraceId FROM revtrace_spans
                  WHERE CorrelationId = ${correlation_id:singlequote}
                    AND Timestamp >= t_first - toIntervalHour(1) AND Timestamp <= t_last + toIntervalHour(1))
  AND Timestamp >= t_first - toIntervalHour(1) AND Timestamp <= t_last + toIntervalHour(1)
ORDER BY startTime
LIMIT 10000"""

TRACE: Final = Dashboard(
    "revtrace-trace",
    "revtrace · Trace",
    "One transaction by correlation id: its summary, every business step, and all its spans in Grafana's "
    "trace view.",
    (CORRELATION,),
    (
        Panel(
            "Transaction",
            "table",
            """
SELECT CorrelationId AS correlation_id, min(Start) AS started, max(End) AS ended,
       max(Process) AS process, max(LegalEntity) AS legal_entity, sum(Spans) AS spans,
       sum(FailedSpans) AS failed_spans, arrayStringConcat(groupUniqArrayArray(Stages), ', ') AS stages
FROM revtrace_correlations
WHERE CorrelationId = ${correlation_id:singlequote}
GROUP BY CorrelationId""",
            width=24,
            height=4,
        ),
        Panel(
            "Business steps",
            "table",
            f"""
SELECT Timestamp AS time, System AS system, Vendor AS vendor, Stage AS stage, {OUTCOME} AS outcome,
       ErrorCategory AS category, ErrorCode AS code, Attempt AS attempt, ObjectId AS object,
       round(Duration / 1e6, 1) AS duration_ms, TraceId AS trace_id
FROM revtrace_spans
WHERE CorrelationId = ${{correlation_id:singlequote}}
  AND Timestamp >= (SELECT min(Start) FROM revtrace_correlations WHERE CorrelationId = ${{correlation_id:singlequote}})
ORDER BY Timestamp
LIMIT 1000""",
            width=24,
            height=9,
        ),
        Panel("Trace", "traces", _TRACE_SPANS, fmt="traces", width=24, height=16),
    ),
    time_from="now-7d",
)

DASHBOARDS: Final = (OVERVIEW, LATENCY, ALERTS, SYNC_ENGINE, TRACE)


def build() -> dict[str, str]:
    """file name → JSON text of every dashboard."""
    return {
        f"{d.uid}.json": json.dumps(d.json(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        for d in DASHBOARDS
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` report which differ from the generated ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)} (run python grafana/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
