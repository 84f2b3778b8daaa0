"""One transaction's audit trail as text: a terminal waterfall, JSON, CSV and a
self-contained HTML report (no scripts, no external resources; every value escaped).

Pure functions over a :class:`dashboard.data.TraceBundle`; the trace page and
``revtrace trace`` both use them.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import itertools
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import pandas as pd

from dashboard.data import TraceBundle
from dashboard.diff import field_diff, pretty, unified_diff
from tracer.semconv import EVENT_PAYLOAD, EVENT_TRANSFORM, PayloadKind

__all__ = [
    "FORMATS",
    "Transformation",
    "render",
    "to_csv",
    "to_html",
    "to_json",
    "transformations",
    "waterfall_text",
]

FORMATS: Final = ("table", "json", "csv", "html")
"""What :func:`render` can produce."""

_ORDER: Final = [str(k) for k in PayloadKind]
_FAILED: Final = frozenset({"failed", "dead_lettered"})


def _plain(value: Any) -> Any:
    """A JSON-safe version of a cell."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return pd.Timestamp(value).isoformat() + ("Z" if pd.Timestamp(value).tzinfo is None else "")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict | str):
        try:
            return _plain(value.item())
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is pd.NaT:
        return None
    return value


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None:
        return []
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


@dataclass(frozen=True)
class Transformation:
    """One mapping step of a span with the payloads on both sides."""

    span_id: str
    stage: str
    source_kind: str
    target_kind: str
    mapping: str
    before: str
    after: str


def transformations(bundle: TraceBundle) -> list[Transformation]:
    """Every transformation with both payloads, from the transform events or, without
    them, between consecutive snapshots (source → canonical → target_request → target_response)."""
    events = bundle.events
    if events is None or not len(events):
        return []
    found: list[Transformation] = []
    for span_id, part in events.groupby("span_id", sort=False):
        payloads = {
            str(r.kind): str(r.body) for r in part.itertuples(index=False) if r.event == EVENT_PAYLOAD
        }
        stage = str(part.iloc[0]["stage"])
        steps = [
            (str(r.transform_from), str(r.transform_to), str(r.mapping))
            for r in part.itertuples(index=False)
            if r.event == EVENT_TRANSFORM
        ]
        if not steps:
            kinds = sorted(payloads, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
            steps = [(a, b, "") for a, b in itertools.pairwise(kinds)]
        for source, target, mapping in steps:
            if source in payloads and target in payloads:
                found.append(
                    Transformation(
                        str(span_id), stage, source, target, mapping, payloads[source], payloads[target]
                    )
                )
    return found


# --- terminal -----------------------------------------------------------------------------


def _ms(value: float) -> str:
    if value >= 60_000:
        return f"{value / 60_000:.1f}m"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    return f"{value:.0f}ms"


def waterfall_text(bundle: TraceBundle, width: int = 40) -> str:
    """The waterfall as a terminal table: offset, duration, system, stage, outcome and a bar."""
    spans = bundle.spans
    s = bundle.summary
    lines = [
        f"correlation id {bundle.correlation_id}  process {s.get('process', '')}  entity {s.get('entity', '')}",
        f"{len(spans)} spans, {int(s.get('failed_spans', 0))} failed, "
        f"{_plain(s.get('start'))} → {_plain(s.get('end'))}",
    ]
    if bundle.verdict:
        v = bundle.verdict
        lines.append(
            f"evaluator: {v.get('status', '')} {v.get('category', '')} — {v.get('reason', '')}".rstrip(" —")
        )
    if bundle.truncated:
        lines.append(f"(truncated to the first {len(spans)} spans)")
    total = float((spans["offset_ms"] + spans["duration_ms"]).max()) if len(spans) else 0.0
    header = f"{'#':>3} {'offset':>8} {'took':>8}  {'system':<10} {'stage':<28} {'try':>3} {'outcome':<14} {'category / code':<34} timeline"
    lines += ["", header, "-" * len(header) + "-" * width]
    for i, row in enumerate(spans.itertuples(index=False), start=1):
        start = int(width * float(row.offset_ms) / total) if total else 0
        length = max(1, int(width * float(row.duration_ms) / total)) if total else 1
        mark = "!" if row.outcome in _FAILED else "#"
        bar = " " * min(start, width - 1) + mark * min(length, width - min(start, width - 1))
        reason = " ".join(str(x) for x in (row.category, row.error_code or (row.http_status or "")) if x)
        lines.append(
            f"{i:>3} {_ms(float(row.offset_ms)):>8} {_ms(float(row.duration_ms)):>8}  {row.system!s:<10.10} "
            f"{row.stage!s:<28.28} {int(row.attempt):>3} {row.outcome!s:<14.14} {reason:<34.34} |{bar}"
        )
    if bundle.events is not None and len(bundle.events):
        payloads = bundle.events[bundle.events["event"] == EVENT_PAYLOAD]
        lines += [
            "",
            f"{len(payloads)} payload snapshot(s), {len(transformations(bundle))} transformation(s)",
        ]
    if len(bundle.related):
        lines += ["", "related transactions (shared object references):"]
        for row in bundle.related.itertuples(index=False):
            lines.append(f"  {row.correlation_id}  via {', '.join(str(r) for r in row.shared_refs)}")
    if len(bundle.actions):
        lines += ["", "operator actions:"]
        for row in bundle.actions.itertuples(index=False):
            lines.append(f"  #{row.seq} {_plain(row.at)} {row.actor} ({row.role}) {row.action}: {row.note}")
    return "\n".join(lines)


# --- exports --------------------------------------------------------------------------------


def to_json(bundle: TraceBundle, exported_by: str = "") -> str:
    """The whole trail as one JSON document."""
    doc = {
        "correlation_id": bundle.correlation_id,
        "exported_at": _plain(dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        "exported_by": exported_by,
        "summary": {k: _plain(v) for k, v in bundle.summary.items()},
        "verdict": {k: _plain(v) for k, v in (bundle.verdict or {}).items()} or None,
        "truncated": bundle.truncated,
        "spans": _records(bundle.spans),
        "payloads": None if bundle.events is None else _records(bundle.events),
        "transformations": [
            {
                "span_id": t.span_id,
                "stage": t.stage,
                "from": t.source_kind,
                "to": t.target_kind,
                "mapping": t.mapping,
                "changes": [c.__dict__ for c in field_diff(t.before, t.after)],
            }
            for t in transformations(bundle)
        ],
        "related": _records(bundle.related),
        "actions": _records(bundle.actions),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


_CSV_COLUMNS: Final = (
    "record",
    "at",
    "offset_ms",
    "duration_ms",
    "system",
    "vendor",
    "stage",
    "attempt",
    "outcome",
    "category",
    "error_code",
    "http_status",
    "object_type",
    "object_id",
    "amount",
    "currency",
    "idempotency_key",
    "trace_id",
    "span_id",
    "detail",
)


def _csv_safe(value: Any) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ is data, not a formula.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(bundle: TraceBundle) -> str:
    """One row per span, payload snapshot, transformation and operator action, in time order."""
    rows: list[dict[str, Any]] = []
    for span in _records(bundle.spans):
        rows.append(
            {
                **{k: span.get(k) for k in _CSV_COLUMNS},
                "record": "span",
                "at": span["start"],
                "detail": span.get("status_message"),
            }
        )
    for event in _records(bundle.events):
        detail = (
            event["body"]
            if event["event"] == EVENT_PAYLOAD
            else f"{event['transform_from']} -> {event['transform_to']} ({event['mapping']})"
        )
        kind = event["kind"] or "transform"
        rows.append(
            {
                "record": f"{event['event']}:{kind}",
                "at": event["at"],
                "stage": event["stage"],
                "span_id": event["span_id"],
                "system": event["system"],
                "detail": detail,
            }
        )
    for action in _records(bundle.actions):
        rows.append(
            {
                "record": f"action:{action['action']}",
                "at": action["at"],
                "detail": f"{action['actor']} ({action['role']}): {action['note']}",
            }
        )
    rows.sort(key=lambda r: str(r.get("at") or ""))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(_CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_safe(row.get(k)) for k in _CSV_COLUMNS})
    return out.getvalue()


_CSS: Final = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.bar{position:relative;height:14px;background:#f7f7f7;min-width:300px}
.bar span{position:absolute;top:1px;height:12px;border-radius:2px}.failed{background:#d62728!important}
.crm{background:#1f77b4}.billing{background:#9467bd}.erp{background:#2ca02c}.middleware{background:#ff7f0e}.other{background:#7f7f7f}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.8rem}.meta td:first-child{font-weight:bold;width:12rem}
.added{background:#e6ffec}.removed{background:#ffebe9}.changed{background:#fff8c5}
"""


def _e(value: Any) -> str:
    plain = _plain(value)
    return html.escape("" if plain is None else str(plain))


def _table(records: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in columns) + "</tr>" for r in records)
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(bundle: TraceBundle, exported_by: str = "") -> str:
    """A self-contained HTML report: inline CSS only, no scripts, every value escaped."""
    s = bundle.summary
    spans = bundle.spans
    total = float((spans["offset_ms"] + spans["duration_ms"]).max()) if len(spans) else 0.0
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>revtrace audit trail {_e(bundle.correlation_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Audit trail — correlation id <code>{_e(bundle.correlation_id)}</code></h1>",
        "<table class='meta'>",
        *(
            f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
            for k, v in (
                ("process", s.get("process")),
                ("legal entity", s.get("entity")),
                ("first span", s.get("start")),
                ("last span", s.get("end")),
                ("spans", len(spans)),
                ("failed spans", s.get("failed_spans")),
                (
                    "evaluator",
                    " · ".join(str(bundle.verdict.get(k, "")) for k in ("status", "category", "reason"))
                    if bundle.verdict
                    else "—",
                ),
                (
                    "exported",
                    f"{_plain(dt.datetime.now(dt.UTC).replace(tzinfo=None))} by {exported_by or 'revtrace'}",
                ),
            )
        ),
        "</table>",
        "<h2>Waterfall</h2><table><tr><th>#</th><th>offset</th><th>took</th><th>system</th><th>stage</th>"
        "<th>try</th><th>outcome</th><th>category / code</th><th>timeline</th></tr>",
    ]
    for i, row in enumerate(spans.itertuples(index=False), start=1):
        left = 100 * float(row.offset_ms) / total if total else 0
        width = max(0.5, 100 * float(row.duration_ms) / total) if total else 100
        css = str(row.system) if str(row.system) in ("crm", "billing", "erp", "middleware") else "other"
        failed = " failed" if row.outcome in _FAILED else ""
        parts.append(
            f"<tr><td>{i}</td><td>{_e(_ms(float(row.offset_ms)))}</td><td>{_e(_ms(float(row.duration_ms)))}</td>"
            f"<td>{_e(row.system)}</td><td>{_e(row.stage)}</td><td>{_e(row.attempt)}</td><td>{_e(row.outcome)}</td>"
            f"<td>{_e(' '.join(str(x) for x in (row.category, row.error_code) if x))}</td>"
            f"<td><div class='bar'><span class='{css}{failed}' style='left:{left:.2f}%;width:{min(width, 100 - left):.2f}%'></span></div></td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Spans</h2>")
    parts.append(
        _table(
            _records(spans),
            [
                "start",
                "duration_ms",
                "service",
                "system",
                "vendor",
                "stage",
                "object_type",
                "object_id",
                "amount",
                "currency",
                "idempotency_key",
                "attempt",
                "outcome",
                "category",
                "error_code",
                "http_status",
                "span_id",
            ],
        )
    )
    parts.append("<h2>Payload snapshots</h2>")
    if bundle.events is None:
        parts.append("<p>Not included: the exporting role may not see payloads.</p>")
    else:
        payloads = bundle.events[bundle.events["event"] == EVENT_PAYLOAD]
        if not len(payloads):
            parts.append("<p>None recorded.</p>")
        for row in payloads.itertuples(index=False):
            notes = []
            if row.truncated:
                notes.append("truncated")
            if len(row.redacted_fields):
                notes.append("redacted: " + ", ".join(str(x) for x in row.redacted_fields))
            parts.append(
                f"<h3>{_e(row.stage)} — {_e(row.kind)} ({_e(row.system)}) {_e('; '.join(notes))}</h3>"
                f"<pre>{_e(pretty(str(row.body)))}</pre>"
            )
        parts.append("<h2>Transformations</h2>")
        steps = transformations(bundle)
        if not steps:
            parts.append("<p>None recorded.</p>")
        for t in steps:
            parts.append(f"<h3>{_e(t.stage)}: {_e(t.source_kind)} → {_e(t.target_kind)} {_e(t.mapping)}</h3>")
            changes = field_diff(t.before, t.after)
            parts.append(
                "<table><tr><th>field</th><th>change</th><th>before</th><th>after</th></tr>"
                + "".join(
                    f"<tr class='{_e(c.change)}'><td>{_e(c.path)}</td><td>{_e(c.change)}</td><td>{_e(c.before)}</td><td>{_e(c.after)}</td></tr>"
                    for c in changes
                )
                + "</table>"
            )
            parts.append(f"<pre>{_e(unified_diff(t.before, t.after, t.source_kind, t.target_kind))}</pre>")
    parts.append("<h2>Related transactions</h2>")
    parts.append(
        _table(_records(bundle.related), ["correlation_id", "shared_refs", "first_seen", "last_seen"])
        if len(bundle.related)
        else "<p>None.</p>"
    )
    parts.append("<h2>Operator actions</h2>")
    parts.append(
        _table(_records(bundle.actions), ["seq", "at", "actor", "role", "action", "note", "details", "hash"])
        if len(bundle.actions)
        else "<p>None.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def render(bundle: TraceBundle, fmt: str, exported_by: str = "") -> str:
    """The bundle in ``fmt``: ``table``, ``json``, ``csv`` or ``html``."""
    if fmt == "table":
        return waterfall_text(bundle)
    if fmt == "json":
        return to_json(bundle, exported_by)
    if fmt == "csv":
        return to_csv(bundle)
    if fmt == "html":
        return to_html(bundle, exported_by)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
