"""The ``revtrace`` commands of the SLA rules.

Store commands are ``fn(store, **args) -> CommandOutput`` so they run here or
inside a running ``revtrace up`` (see :mod:`revtrace.runtime`); ``validate``
needs no store.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collector.store import Store
from revtrace.runtime import CommandOutput
from sla_rules._alerting import add_silence, expire_silence, list_silences, parse_matchers
from sla_rules._errors import RuleError
from sla_rules._evaluate import format_seconds
from sla_rules._evaluator import CycleResult, Evaluator, configured_rules
from sla_rules._model import TxStatus
from sla_rules._spec import ReconciliationRule, RuleSet, load_rules, parse_duration
from tracer.semconv import AlertStatus

__all__ = ["check", "parse_time", "reconcile", "silence_add", "silence_expire", "silence_list", "validate"]


def parse_time(text: str | None) -> float | None:
    """``2026-12-03T10:00:00Z`` (RFC 3339, UTC if no zone) or epoch seconds → epoch seconds."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at: expected an RFC 3339 time like 2026-12-03T10:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _rules(rules: str | None) -> RuleSet:
    return load_rules(rules) if rules else configured_rules()


def validate(paths: Sequence[str]) -> CommandOutput:
    """Validate rules files (or directories); report every problem of each."""
    lines: list[str] = []
    bad = 0
    for path in paths:
        try:
            ruleset = load_rules(Path(path))
        except RuleError as exc:
            bad += 1
            lines.append(str(exc))
            continue
        kinds = Counter(r.kind for r in ruleset.rules)
        shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        lines.append(f"{path}: ok — {len(ruleset.rules)} rules ({shown})")
    return CommandOutput("\n".join(lines), exit_code=1 if bad else 0)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _report(result: CycleResult, fmt: str) -> tuple[str, int]:
    failing = result.failing
    findings = result.findings
    fired = bool(failing or findings)
    if fmt == "json":
        items: list[dict[str, Any]] = []
        for v in failing:
            items.append(
                {
                    "rule": str(v.evidence.get("rule", "classification")),
                    "category": v.category,
                    "severity": v.severity,
                    "status": v.status,
                    "reason": v.reason,
                    "labels": {"process": v.process, "legal_entity": v.legal_entity, "stage": v.stage},
                    "correlation_ids": [v.correlation_id],
                    "objects": list(v.objects),
                    "evidence": dict(v.evidence),
                }
            )
        items += [{**f.as_dict(), "status": AlertStatus.FIRING.value} for f in findings]
        tx = result.transactions
        doc = {
            "at": _iso(result.at),
            "fired": fired,
            "transactions": {
                "evaluated": (len(tx.verdicts) + tx.clean) if tx else 0,
                "by_status": dict(Counter(v.status for v in tx.verdicts)) if tx else {},
            },
            "findings": items,
        }
        if tx is not None:
            doc["transactions"]["by_status"].setdefault(TxStatus.OK, 0)  # type: ignore[index]
            doc["transactions"]["by_status"][TxStatus.OK] += tx.clean  # type: ignore[index]
        return json.dumps(doc, indent=2, sort_keys=True, default=str), 1 if fired else 0
    lines = [f"as of {_iso(result.at)}"]
    by_category: dict[str, list[str]] = {}
    for v in failing:
        by_category.setdefault(v.category, []).append(
            f"  {v.status:<7} {v.correlation_id}  {v.process}/{v.legal_entity or '-'}  {v.reason}"
        )
    for f in findings:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(f.labels.items()) if v)
        by_category.setdefault(f.category.value, []).append(
            f"  {f.severity:<8} {f.rule}{' {' + labels + '}' if labels else ''}: {f.reason}"
        )
    for category in sorted(by_category):
        entries = by_category[category]
        lines.append(f"{category} ({len(entries)})")
        lines.extend(entries[:50])
        if len(entries) > 50:
            lines.append(f"  … {len(entries) - 50} more (use --format json)")
    tx = result.transactions
    if tx is not None:
        pending = sum(1 for v in tx.verdicts if v.status == TxStatus.IN_PROGRESS)
        lines.append(
            f"{len(tx.verdicts) + tx.clean} transactions: {tx.clean + sum(1 for v in tx.verdicts if v.status == TxStatus.OK)} ok, "
            f"{pending} in progress, {len(failing)} need attention; {len(findings)} window finding(s)"
        )
    if not fired:
        lines.append("nothing fires")
    return "\n".join(lines), 1 if fired else 0


def check(
    store: Store, at: str | None = None, format: str = "text", rules: str | None = None
) -> CommandOutput:
    """Evaluate every rule now (or as of ``at``) without writing; print the
    categorized findings. Exit status 1 when something fires, 2 for a bad ``at`` or
    rules file."""
    try:
        ruleset = _rules(rules)
        moment = parse_time(at)
    except (RuleError, ValueError) as exc:
        return CommandOutput(f"error: {exc}", exit_code=2)
    evaluator = Evaluator(store, ruleset)
    result = evaluator.cycle(moment, write=False, incremental=False, notify=False)
    text, code = _report(result, format)
    return CommandOutput(text, exit_code=code)


def reconcile(
    store: Store, at: str | None = None, rules: str | None = None, format: str = "text"
) -> CommandOutput:
    """Run the reconciliation rules now: record a run with its items, raise or
    resolve their alerts, and print the exceptions. Exit status 1 on exceptions, 2 for a
    bad ``at`` or rules file."""
    try:
        ruleset = _rules(rules)
        moment = parse_time(at)
    except (RuleError, ValueError) as exc:
        return CommandOutput(f"error: {exc}", exit_code=2)
    evaluator = Evaluator(store, ruleset)
    recon = [r for r in ruleset.rules if isinstance(r, ReconciliationRule) and r.systems]
    if not recon:
        return CommandOutput("no reconciliation rules with systems to compare", exit_code=0)
    out: list[dict[str, Any]] = []
    for rule in recon:
        findings, points = evaluator.window(rule, moment, write=True)
        out += [f.as_dict() for f in findings]
        for p in points:
            out.append(
                {"rule": p.rule, "measure": p.measure, "value": p.value, "total": p.total, "kind": "summary"}
            )
    exceptions = [o for o in out if o.get("kind") != "summary"]
    if format == "json":
        return CommandOutput(json.dumps(out, indent=2, default=str), exit_code=1 if exceptions else 0)
    lines = []
    for o in out:
        if o.get("kind") == "summary":
            lines.append(f"{o['rule']}: {int(o['value'])} exception(s) in {o['total']} comparison(s)")
        else:
            lines.append(f"  {o['severity']:<8} {o['reason']}")
    window = max(r.window for r in recon)
    lines.append(f"(snapshots of the last {format_seconds(window)})")
    return CommandOutput("\n".join(lines), exit_code=1 if exceptions else 0)


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matcher_text(silence: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(silence["matchers"].items())]
    parts += [f"{k}=~{v}" for k, v in sorted(silence["matchers_re"].items())]
    return " ".join(parts)


def silence_add(
    store: Store,
    matchers: Sequence[str],
    duration: str = "2h",
    comment: str = "",
    created_by: str = "",
    start: str | None = None,
) -> CommandOutput:
    """Silence the alerts whose labels match every matcher (``name=value``, ``name=~regex``)
    from ``start`` (default now) for ``duration``. A comment and an author are required,
    as in Alertmanager. Exit status 2 for bad input."""
    try:
        equal, regex = parse_matchers(matchers)
        length = parse_duration(duration)
        begins = parse_time(start)
    except (RuleError, ValueError) as exc:
        return CommandOutput(f"error: {exc}", exit_code=2)
    if length <= 0:
        return CommandOutput("error: --duration must be positive", exit_code=2)
    if not comment.strip():
        return CommandOutput("error: say why with --comment (it is shown beside the silence)", exit_code=2)
    if not created_by.strip():
        return CommandOutput("error: say who with --author", exit_code=2)
    starts = time.time() if begins is None else begins
    silence_id = add_silence(
        store,
        equal,
        matchers_re=regex,
        starts_at=starts,
        ends_at=starts + length,
        created_by=created_by.strip(),
        comment=comment.strip(),
    )
    text = _matcher_text({"matchers": equal, "matchers_re": regex})
    return CommandOutput(
        f"silence {silence_id}: {text} from {_utc(starts)} until {_utc(starts + length)}\n"
        "(the evaluator applies it on its next notify tick)"
    )


def silence_list(store: Store, expired: bool = False, format: str = "text") -> CommandOutput:
    """Silences in force or pending (with ``expired``, also the ended ones), newest first."""
    now = time.time()
    rows = list_silences(store, now, include_expired=expired)
    if format == "json":
        return CommandOutput(json.dumps(rows, indent=2))
    if not rows:
        return CommandOutput("no silence" + ("" if expired else " in force or pending"))
    lines = [f"{'id':<32}  {'state':<8}  {'ends (UTC)':<20}  {'author':<16}  matchers · comment"]
    for r in rows:
        lines.append(
            f"{r['id']:<32}  {r['state']:<8}  {_utc(r['ends_at']):<20}  {r['created_by'][:16]:<16}  "
            f"{_matcher_text(r)} · {r['comment']}"
        )
    return CommandOutput("\n".join(lines))


def silence_expire(store: Store, silence_id: str) -> CommandOutput:
    """End a silence now. Exit status 1 when no such silence is in force or pending."""
    if expire_silence(store, silence_id.strip(), time.time()):
        return CommandOutput(f"silence {silence_id} expired")
    return CommandOutput(f"no silence {silence_id!r} in force or pending", exit_code=1)
