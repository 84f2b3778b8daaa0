"""One transaction end to end: spans, payload snapshots, transformations, related
transactions, the evaluator's verdict and operator actions."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from collector.store import Store
from dashboard.data._audit_log import AUDIT_TABLE
from dashboard.data._core import cached, run_df, table_exists
from dashboard.data._queries import transactions_for
from tracer import semconv

__all__ = ["MAX_EVENTS", "MAX_SPANS", "TraceBundle", "load_trace"]

MAX_SPANS: Final = 5000
"""A transaction with more spans than this is shown truncated (and says so)."""
MAX_EVENTS: Final = 2000


@dataclass(frozen=True)
class TraceBundle:
    """Everything known about one correlation id."""

    correlation_id: str
    summary: dict[str, Any]
    spans: pd.DataFrame
    """One row per span in time order, with ``offset_ms`` from the first span."""
    events: pd.DataFrame | None
    """Payload snapshots and transformations; ``None`` when the caller may not see them."""
    related: pd.DataFrame
    actions: pd.DataFrame
    verdict: dict[str, Any] | None
    truncated: bool

    @property
    def retries(self) -> pd.DataFrame:
        """Spans that were retries (attempt > 1) or ended retrying."""
        spans = self.spans
        return spans[(spans["attempt"] > 1) | (spans["outcome"] == semconv.Outcome.RETRYING)]

    @property
    def refs(self) -> list[str]:
        """Every object reference the transaction's spans carry."""
        return _refs(self.spans)


def _widen(at: Any, seconds: float) -> dt.datetime:
    base = at if isinstance(at, dt.datetime) else pd.Timestamp(at).to_pydatetime()
    return base + dt.timedelta(seconds=seconds)


def _decode_list(text: str) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _events_frame(raw: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in raw.itertuples(index=False):
        attrs: dict[str, str] = dict(row.attributes)
        rows.append(
            {
                "span_id": row.span_id,
                "stage": row.stage,
                "at": row.at,
                "event": row.name,
                "kind": attrs.get(semconv.PAYLOAD_KIND, ""),
                "system": attrs.get(semconv.PAYLOAD_SYSTEM, ""),
                "body": attrs.get(semconv.PAYLOAD_BODY, ""),
                "truncated": attrs.get(semconv.PAYLOAD_TRUNCATED, "").lower() == "true",
                "redacted_fields": _decode_list(attrs.get(semconv.PAYLOAD_REDACTED_FIELDS, "")),
                "transform_from": attrs.get(semconv.TRANSFORM_FROM, ""),
                "transform_to": attrs.get(semconv.TRANSFORM_TO, ""),
                "mapping": attrs.get(semconv.TRANSFORM_MAPPING, ""),
            }
        )
    columns = [
        "span_id",
        "stage",
        "at",
        "event",
        "kind",
        "system",
        "body",
        "truncated",
        "redacted_fields",
        "transform_from",
        "transform_to",
        "mapping",
    ]
    return pd.DataFrame(rows, columns=columns)


@cached
def load_trace(store: Store, correlation_id: str, with_payloads: bool) -> TraceBundle | None:
    """The whole audit trail of ``correlation_id``; ``None`` when no span carries it.

    Payload snapshots are only read when ``with_payloads`` (the caller's role may
    see them); otherwise :attr:`TraceBundle.events` is ``None``.
    """
    summary_df = run_df(store, "trace_summary", {"correlation_id": correlation_id})
    if not len(summary_df):
        return None
    summary = {str(k): v for k, v in summary_df.iloc[0].to_dict().items()}
    # The correlations table is aggregated per insert: widen the range a little so
    # late spans written in another block are inside it.
    start, end = _widen(summary["start"], -60), _widen(summary["end"], 60)
    spans = run_df(
        store,
        "trace_spans",
        {"correlation_id": correlation_id, "start": start, "end": end, "limit": MAX_SPANS + 1},
    )
    truncated = len(spans) > MAX_SPANS
    spans = spans.head(MAX_SPANS).copy()
    if len(spans):
        first = pd.to_datetime(spans["start"]).min()
        spans["offset_ms"] = (pd.to_datetime(spans["start"]) - first).dt.total_seconds() * 1000
    else:
        spans["offset_ms"] = []
    events: pd.DataFrame | None = None
    if with_payloads and len(spans):
        raw = run_df(
            store,
            "trace_events",
            {
                "trace_ids": sorted(set(spans["trace_id"])),
                "span_ids": sorted(set(spans["span_id"])),
                "start": start,
                "end": end,
                "event_names": [semconv.EVENT_PAYLOAD, semconv.EVENT_TRANSFORM],
                "limit": MAX_EVENTS,
            },
        )
        events = _events_frame(raw)
    bundle_refs = _refs(spans)
    related = run_df(
        store, "trace_related", {"refs": bundle_refs, "correlation_id": correlation_id, "limit": 100}
    )
    if table_exists(store, AUDIT_TABLE):
        actions = run_df(store, "audit_for", {"correlation_id": correlation_id, "limit": 1000})
    else:
        actions = pd.DataFrame({c: [] for c in ("seq", "at", "actor", "role", "action", "note", "details")})
    verdicts = transactions_for(store, (correlation_id,))
    verdict = {str(k): v for k, v in verdicts.iloc[0].to_dict().items()} if len(verdicts) else None
    return TraceBundle(correlation_id, summary, spans, events, related, actions, verdict, truncated)


def _refs(spans: pd.DataFrame) -> list[str]:
    found: set[str] = set()
    for row in spans.itertuples(index=False):
        if row.object_id and row.object_type:
            found.add(semconv.format_object_ref(str(row.system), str(row.object_type), str(row.object_id)))
        found.update(str(r) for r in row.object_refs if r)
    return sorted(found)
