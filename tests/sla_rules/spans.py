"""Business spans written straight into ``otel_traces`` (the materialized views
fill ``revtrace_spans`` and the rest, as they do for the collector)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from collector.store import Store
from tracer import semconv as sc

_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "SpanAttributes",
    "Duration",
    "StatusCode",
)

_ATTRS = {
    "process": sc.BIZ_PROCESS,
    "legal_entity": sc.BIZ_LEGAL_ENTITY,
    "region": sc.BIZ_REGION,
    "vendor": sc.BIZ_SYSTEM_VENDOR,
    "object_type": sc.BIZ_OBJECT_TYPE,
    "object_id": sc.BIZ_OBJECT_ID,
    "amount": sc.BIZ_AMOUNT,
    "currency": sc.BIZ_CURRENCY,
    "idempotency_key": sc.BIZ_IDEMPOTENCY_KEY,
    "attempt": sc.BIZ_ATTEMPT,
    "event_id": sc.BIZ_EVENT_ID,
    "sequence": sc.BIZ_EVENT_SEQUENCE,
    "outcome": sc.BIZ_OUTCOME,
    "error_category": sc.BIZ_ERROR_CATEGORY,
    "error_code": sc.BIZ_ERROR_CODE,
    "period": sc.BIZ_RECON_PERIOD,
    "count": sc.BIZ_RECON_COUNT,
    "recon_amount": sc.BIZ_RECON_AMOUNT,
    "refs": sc.BIZ_OBJECT_REFS,
}


def span(cid: str, stage: str, at: float, **kw: Any) -> dict[str, Any]:
    """One business span: ``at`` is its start (epoch seconds); ``dur`` seconds."""
    return {"cid": cid, "stage": stage, "at": at, **kw}


def insert_spans(store: Store, spans: Sequence[Mapping[str, Any]]) -> None:
    """Write the spans into otel_traces."""
    rows = []
    for i, s in enumerate(spans):
        attrs = {
            sc.BIZ_CORRELATION_ID: s["cid"],
            sc.BIZ_STAGE: s["stage"],
            sc.BIZ_PROCESS: s.get("process", sc.Process.QUOTE_TO_CASH.value),
            sc.BIZ_LEGAL_ENTITY: s.get("legal_entity", "ACME-DE"),
            sc.BIZ_OUTCOME: s.get("outcome", sc.Outcome.OK.value),
        }
        for key, attr in _ATTRS.items():
            if key in s and key not in ("process", "legal_entity", "outcome"):
                attrs[attr] = str(s[key])
        if "statuses" in s:
            attrs[sc.BIZ_RECON_STATUSES] = json.dumps(s["statuses"])
        if "http" in s:
            attrs["http.response.status_code"] = str(s["http"])
        if "error_type" in s:
            attrs["error.type"] = str(s["error_type"])
        failed = attrs[sc.BIZ_OUTCOME] in (sc.Outcome.FAILED, sc.Outcome.DEAD_LETTERED)
        seed = f"{s['cid']}/{s['stage']}/{s['at']}/{i}"
        rows.append(
            [
                dt.datetime.fromtimestamp(s["at"], dt.UTC).replace(tzinfo=None),
                hashlib.md5(s["cid"].encode()).hexdigest(),
                hashlib.md5(seed.encode()).hexdigest()[:16],
                s["stage"],
                "Internal",
                "sync-engine",
                attrs,
                int(float(s.get("dur", 1.0)) * 1e9),
                s.get("status", "Error" if failed else "Ok"),
            ]
        )
    store.insert_rows("otel_traces", rows, _COLUMNS)
