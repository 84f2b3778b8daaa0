"""Evaluation as pure functions: rules and statistics in, findings and verdicts out.

Nothing here does I/O or reads a clock: the queries that produce the
statistics live in :mod:`sla_rules._queries`, and ``now`` is an argument, so
every answer can be reproduced (``revtrace sla check --at``).

- :func:`evaluate` — one rule over its statistics → :class:`Finding` s.
- :func:`measure` — one rule over its statistics → :class:`SlaPoint` s for the trend charts.
- :func:`classify` — one transaction, its findings → its :class:`Verdict`,
  with exactly one primary category and the evidence that decided it.
- :func:`reconcile` — snapshots of several systems → reconciliation items.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sla_rules._model import (
    OK_OUTCOMES,
    BurnStats,
    Finding,
    GroupCount,
    LatencyStats,
    MttrStats,
    RateStats,
    ReconStats,
    SlaPoint,
    SpanSignal,
    TransactionFacts,
    TransactionStats,
    TxStatus,
    Verdict,
)
from sla_rules._spec import (
    BurnRateRule,
    ClassificationPolicy,
    CompletenessRule,
    DuplicateRule,
    LatencyRule,
    MttrRule,
    OrderingRule,
    RateRule,
    ReconciliationRule,
    Rule,
)
from tracer.semconv import FailureCategory, Outcome, ReconStatus

__all__ = ["ReconItem", "classify", "evaluate", "format_seconds", "measure", "pending", "reconcile"]

_MISSING: Final = ReconStatus.MISSING.value

TRANSACTION_KINDS: Final = ("latency", "completeness", "duplicate", "ordering", "reconciliation")
"""Rule kinds that judge single transactions (besides any window statistics)."""

_FINDING_STEPS: Final = {
    "stuck": FailureCategory.STUCK,
    "latency": FailureCategory.LATENCY,
    "mismatch": FailureCategory.MISMATCH,
    "duplicate": FailureCategory.DUPLICATE,
    "out_of_order": FailureCategory.OUT_OF_ORDER,
}


def _seconds(now: dt.datetime | float) -> float:
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        return now.timestamp()
    return float(now)


def format_seconds(seconds: float) -> str:
    """``3725`` → ``1h2m``; ``42.5`` → ``42.5s``."""
    if seconds < 0:
        return "-" + format_seconds(-seconds)
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{v}{u}" for v, u in parts if v][:2]
    return "".join(shown) or "0s"


def _iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _applies(rule: Rule, tx: TransactionFacts) -> bool:
    return not rule.process or tx.process == rule.process


def _tx_labels(rule: Rule, tx: TransactionFacts) -> dict[str, str]:
    values = {"legal_entity": tx.legal_entity, "region": tx.region, "process": tx.process, "vendor": ""}
    return {dim: values[dim] for dim in rule.group_by}


def _tx_finding(
    rule: Rule, tx: TransactionFacts, category: FailureCategory, reason: str, **kw: Any
) -> Finding:
    objects = kw.pop("objects", ())
    return Finding(
        rule=rule.name,
        kind=rule.kind,
        category=category,
        severity=rule.severity,
        reason=reason,
        labels=_tx_labels(rule, tx),
        correlation_ids=(tx.correlation_id,),
        objects=tuple(objects),
        **kw,
    )


# --- per-transaction rules ------------------------------------------------------------


def _completeness(rule: CompletenessRule, stats: TransactionStats, now: float) -> list[Finding]:
    out: list[Finding] = []
    for tx in stats.transactions:
        if not _applies(rule, tx):
            continue
        if rule.idle:
            idle = now - tx.last_seen
            if idle <= rule.within:
                continue
            _, _, waiting, _ = _stage_states(tx.spans)
            if waiting:
                span = waiting[0]
                out.append(
                    _tx_finding(
                        rule,
                        tx,
                        rule.category,
                        f"{span.stage} has been {span.outcome or 'pending'} with nothing new for "
                        f"{format_seconds(idle)} (limit {format_seconds(rule.within)})",
                        value=idle,
                        objective=rule.within,
                        evidence={"stage": span.stage, "span": span.brief(), "idle_s": round(idle, 3)},
                    )
                )
            continue
        start = tx.first_ok(rule.after)
        if start is None:
            continue
        done = tx.first_ok(rule.expect)
        if done is None and now - start > rule.within:
            waited = now - start
            evidence = _expect_evidence(rule, start)
            out.append(
                _tx_finding(
                    rule,
                    tx,
                    rule.category,
                    f"{rule.expect} has not happened {format_seconds(waited)} after {rule.after} "
                    f"(limit {format_seconds(rule.within)})",
                    value=waited,
                    objective=rule.within,
                    evidence={**evidence, "waited_s": round(waited, 3), "stage": rule.expect},
                )
            )
        elif done is not None and done - start > rule.within:
            took = done - start
            evidence = _expect_evidence(rule, start)
            out.append(
                _tx_finding(
                    rule,
                    tx,
                    FailureCategory.LATENCY,
                    f"{rule.expect} came {format_seconds(took)} after {rule.after} "
                    f"(limit {format_seconds(rule.within)})",
                    value=took,
                    objective=rule.within,
                    evidence={**evidence, "took_s": round(took, 3), "stage": rule.expect},
                )
            )
    return out


def _expect_evidence(rule: CompletenessRule, start: float) -> dict[str, Any]:
    return {"after": {"stage": rule.after, "at": _iso(start)}, "expect": rule.expect, "within_s": rule.within}


def _latency_tx(rule: LatencyRule, stats: TransactionStats, now: float) -> list[Finding]:
    if rule.deadline is None or rule.per != "transaction":
        return []
    out: list[Finding] = []
    for tx in stats.transactions:
        if not _applies(rule, tx):
            continue
        start = tx.first_ok(rule.from_stage)
        if start is None:
            continue
        done = tx.first_ok(rule.to_stage)
        took = (done if done is not None else now) - start
        if took <= rule.deadline:
            continue
        state = "took" if done is not None else "has waited"
        out.append(
            _tx_finding(
                rule,
                tx,
                rule.category,
                f"{rule.from_stage} → {rule.to_stage} {state} {format_seconds(took)} "
                f"(deadline {format_seconds(rule.deadline)})",
                value=took,
                objective=rule.deadline,
                evidence={
                    "from": {"stage": rule.from_stage, "at": _iso(start)},
                    "to": {"stage": rule.to_stage, "at": _iso(done) if done is not None else None},
                    "seconds": round(took, 3),
                    "deadline_s": rule.deadline,
                    "stage": rule.to_stage,
                },
            )
        )
    return out


def _duplicate_tx(rule: DuplicateRule, stats: TransactionStats) -> list[Finding]:
    out: list[Finding] = []
    for tx in stats.transactions:
        if not _applies(rule, tx):
            continue
        by_stage = tx.duplicate_candidates
        for stage in rule.stages:
            effects = by_stage.get(stage, ())
            if len(effects) < 2:
                continue
            if rule.key == "object":
                keys = Counter(s.object_id for s in effects if s.object_id)
                twice = sorted(keys) if len(keys) > 1 else []
                what = f"{len(keys)} different {stage.split('.')[1]} objects"
            else:
                attr = "idempotency_key" if rule.key == "idempotency_key" else "event_id"
                keys = Counter(getattr(s, attr) for s in effects if getattr(s, attr))
                twice = sorted(k for k, n in keys.items() if n > 1)
                what = f"{rule.key} applied {max(keys.values(), default=0)} times"
            if not twice:
                continue
            objects = tuple(f"{s.system}:{s.object_type}/{s.object_id}" for s in effects if s.object_id)
            out.append(
                _tx_finding(
                    rule,
                    tx,
                    rule.category,
                    f"{stage} took effect twice: {what}",
                    value=float(len(effects)),
                    objects=tuple(dict.fromkeys(objects)),
                    evidence={
                        "stage": stage,
                        "key": rule.key,
                        "keys": twice,
                        "spans": [s.brief() for s in effects],
                    },
                )
            )
        for key in stats.duplicate_keys.get(tx.correlation_id, ()):
            out.append(
                _tx_finding(
                    rule,
                    tx,
                    rule.category,
                    f"{rule.key} {key!r} was already applied by another transaction",
                    value=2.0,
                    evidence={"key": rule.key, "keys": [key]},
                )
            )
    return out


def _ordering_tx(rule: OrderingRule, stats: TransactionStats) -> list[Finding]:
    out: list[Finding] = []
    by_tx: dict[str, list[Any]] = defaultdict(list)
    for v in stats.sequence_violations:
        if not rule.stages or v.stage in rule.stages:
            by_tx[v.correlation_id].append(v)
    for tx in stats.transactions:
        if not _applies(rule, tx):
            continue
        for first, then in rule.dependencies:
            f, t = tx.first_ok(first), tx.first_ok(then)
            if f is not None and t is not None and t < f:
                out.append(
                    _tx_finding(
                        rule,
                        tx,
                        rule.category,
                        f"{then} was applied {format_seconds(f - t)} before {first}",
                        value=f - t,
                        evidence={
                            "first": first,
                            "then": then,
                            "then_at": _iso(t),
                            "first_at": _iso(f),
                            "stage": then,
                        },
                    )
                )
        for v in by_tx.get(tx.correlation_id, ()):
            out.append(
                _tx_finding(
                    rule,
                    tx,
                    rule.category,
                    f"{v.stage} applied event #{v.sequence} of {v.object_type}/{v.object_id} after #{v.after_sequence}",
                    value=float(v.after_sequence - v.sequence),
                    objects=(f"{v.object_type}/{v.object_id}",),
                    evidence={
                        "stage": v.stage,
                        "span_id": v.span_id,
                        "sequence": v.sequence,
                        "after_sequence": v.after_sequence,
                    },
                )
            )
    return out


def _mismatch_tx(rule: ReconciliationRule, stats: TransactionStats) -> list[Finding]:
    if not rule.match_from:
        return []
    out: list[Finding] = []
    for tx in stats.transactions:
        if not _applies(rule, tx):
            continue
        a = next(
            (s for s in tx.spans if s.stage == rule.match_from and s.effect and s.amount is not None), None
        )
        b = next(
            (s for s in tx.spans if s.stage == rule.match_to and s.effect and s.amount is not None), None
        )
        if a is None or b is None or a.amount is None or b.amount is None:
            continue
        diff = abs(a.amount - b.amount)
        if diff <= Decimal(str(rule.tolerance)):
            continue
        out.append(
            _tx_finding(
                rule,
                tx,
                rule.category,
                f"amount {a.amount} at {rule.match_from} but {b.amount} at {rule.match_to} (difference {diff})",
                value=float(diff),
                objective=rule.tolerance,
                objects=tuple(f"{s.system}:{s.object_type}/{s.object_id}" for s in (a, b) if s.object_id),
                evidence={
                    "from": {**a.brief(), "amount": str(a.amount)},
                    "to": {**b.brief(), "amount": str(b.amount)},
                    "difference": str(diff),
                    "stage": rule.match_to,
                },
            )
        )
    return out


# --- window rules ----------------------------------------------------------------------


def _labels_text(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if v) or "all"


def _latency_window(rule: LatencyRule, stats: LatencyStats) -> list[Finding]:
    out: list[Finding] = []
    for objective in rule.objectives:
        for group in stats.windows.get(objective.window, ()):
            value = group.quantiles.get(objective.percentile)
            if value is None or value <= objective.threshold:
                continue
            out.append(
                Finding(
                    rule=rule.name,
                    kind=rule.kind,
                    category=rule.category,
                    severity=rule.severity,
                    reason=f"p{objective.percentile:g} {rule.from_stage} → {rule.to_stage} is "
                    f"{format_seconds(value)} over {format_seconds(objective.window)} "
                    f"(objective {format_seconds(objective.threshold)}; {_labels_text(group.labels)})",
                    labels=dict(group.labels),
                    value=value,
                    objective=objective.threshold,
                    correlation_ids=group.worst,
                    evidence={
                        "percentile": objective.percentile,
                        "window_s": objective.window,
                        "count": group.count,
                    },
                )
            )
    return out


def _rate(rule: RateRule, stats: RateStats) -> list[Finding]:
    out: list[Finding] = []
    for g in stats.groups:
        if g.total < rule.min_events:
            continue
        success = 100.0 * g.good / g.total
        if rule.kind == "success_rate":
            if success >= rule.objective:
                continue
            value, objective = success, rule.objective
            reason = f"{success:.2f}% of {g.total} succeeded (objective {rule.objective:g}%)"
        else:
            error = 100.0 - success
            if error <= rule.threshold:
                continue
            value, objective = error, rule.threshold
            reason = f"{error:.2f}% of {g.total} failed (threshold {rule.threshold:g}%)"
        out.append(
            Finding(
                rule=rule.name,
                kind=rule.kind,
                category=rule.category,
                severity=rule.severity,
                reason=f"{reason} over {format_seconds(rule.window)}; {_labels_text(g.labels)}",
                labels=dict(g.labels),
                value=value,
                objective=objective,
                correlation_ids=g.examples,
                evidence={"good": g.good, "total": g.total, "window_s": rule.window, "unit": rule.unit},
            )
        )
    return out


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _burn(rule: BurnRateRule, stats: BurnStats) -> list[Finding]:
    budget = 1.0 - rule.objective / 100.0
    rates: dict[float, dict[tuple[tuple[str, str], ...], tuple[float, GroupCount]]] = {}
    for window, groups in stats.windows.items():
        rates[window] = {
            _key(g.labels): ((1.0 - g.good / g.total) / budget if g.total else 0.0, g) for g in groups
        }
    out: list[Finding] = []
    keys = {k for groups in rates.values() for k in groups}
    for key in sorted(keys):
        for w in rule.windows:
            long = rates.get(w.long, {}).get(key)
            short = rates.get(w.short, {}).get(key)
            if long is None or short is None or long[0] <= w.factor or short[0] <= w.factor:
                continue
            out.append(
                Finding(
                    rule=rule.name,
                    kind=rule.kind,
                    category=rule.category,
                    severity=w.severity,
                    reason=f"error budget of {rule.objective:g}% burning {long[0]:.1f}x over "
                    f"{format_seconds(w.long)} and {short[0]:.1f}x over {format_seconds(w.short)} "
                    f"(alert at {w.factor:g}x; {_labels_text(dict(key))})",
                    labels=dict(key),
                    value=long[0],
                    objective=w.factor,
                    correlation_ids=long[1].examples,
                    evidence={
                        "long_s": w.long,
                        "short_s": w.short,
                        "factor": w.factor,
                        "long_burn": round(long[0], 4),
                        "short_burn": round(short[0], 4),
                        "long_good": long[1].good,
                        "long_total": long[1].total,
                    },
                )
            )
            break  # the most urgent window that fires speaks for the group
    return out


def _mttr(rule: MttrRule, stats: MttrStats) -> list[Finding]:
    out: list[Finding] = []
    for labels, count, mean in stats.groups:
        if count and mean > rule.threshold:
            out.append(
                Finding(
                    rule=rule.name,
                    kind=rule.kind,
                    category=rule.category,
                    severity=rule.severity,
                    reason=f"failed integrations took {format_seconds(mean)} on average to resolve "
                    f"({count} resolved over {format_seconds(rule.window)}; objective {format_seconds(rule.threshold)})",
                    labels=dict(labels),
                    value=mean,
                    objective=rule.threshold,
                    evidence={"resolved": count, "unresolved": stats.unresolved},
                )
            )
    return out


@dataclass(frozen=True)
class ReconItem:
    """One comparison of a reconciliation: a measure of an object type in a
    period across systems."""

    rule: str
    period: str
    object_type: str
    legal_entity: str
    measure: str
    systems: tuple[str, ...]
    values: tuple[float, ...]
    difference: float
    status: str
    correlation_ids: tuple[str, ...] = ()


def reconcile(rule: ReconciliationRule, stats: ReconStats) -> list[ReconItem]:
    """Compare the systems' snapshots per period, object type and legal entity."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(dict)
    for snap in stats.snapshots:
        if rule.object_type and snap.object_type != rule.object_type:
            continue
        if snap.system in rule.systems:
            groups[(snap.period, snap.object_type, snap.legal_entity)][snap.system] = snap
    items: list[ReconItem] = []
    for (period, object_type, entity), by_system in sorted(groups.items()):
        systems = tuple(s for s in rule.systems if s in by_system)
        cids = tuple(by_system[s].correlation_id for s in systems if by_system[s].correlation_id)
        if len(systems) < len(rule.systems):
            items.append(
                ReconItem(
                    rule.name, period, object_type, entity, "snapshot", systems, (), 0.0, _MISSING, cids
                )
            )
            continue
        measures: list[tuple[str, tuple[float, ...], float]] = []
        if "count" in rule.compare:
            counts = tuple(float(by_system[s].count or 0) for s in systems)
            measures.append(("count", counts, 0.0))
        if "amount" in rule.compare:
            amounts = tuple(float(by_system[s].amount or 0) for s in systems)
            measures.append(("amount", amounts, rule.tolerance))
        if "statuses" in rule.compare:
            names = sorted({k for s in systems for k in by_system[s].statuses})
            for name in names:
                values = tuple(float(by_system[s].statuses.get(name, 0)) for s in systems)
                measures.append((f"status:{name}", values, 0.0))
        for measure, values, tolerance in measures:
            diff = max(values) - min(values)
            status = ReconStatus.OK.value if diff <= tolerance + 1e-9 else ReconStatus.MISMATCH.value
            items.append(
                ReconItem(
                    rule.name, period, object_type, entity, measure, systems, values, diff, status, cids
                )
            )
    return items


def _recon_window(rule: ReconciliationRule, stats: ReconStats) -> list[Finding]:
    out: list[Finding] = []
    for item in reconcile(rule, stats):
        if item.status != ReconStatus.MISMATCH:
            continue
        shown = ", ".join(f"{s}={v:g}" for s, v in zip(item.systems, item.values, strict=True))
        out.append(
            Finding(
                rule=rule.name,
                kind=rule.kind,
                category=rule.category,
                severity=rule.severity,
                reason=f"{item.object_type} {item.measure} for {item.period} differs: {shown}",
                labels={"legal_entity": item.legal_entity, "period": item.period, "measure": item.measure},
                value=item.difference,
                objective=rule.tolerance if item.measure == "amount" else 0.0,
                correlation_ids=item.correlation_ids,
                evidence={
                    "systems": list(item.systems),
                    "values": list(item.values),
                    "object_type": item.object_type,
                },
            )
        )
    return out


# --- the entry points -------------------------------------------------------------------

Stats = TransactionStats | LatencyStats | RateStats | BurnStats | MttrStats | ReconStats


def evaluate(rule: Rule, stats: Stats, now: dt.datetime | float) -> list[Finding]:
    """What ``rule`` finds wrong in ``stats`` as of ``now`` (no I/O).

    Per-transaction kinds take :class:`TransactionStats`; window kinds take
    their own statistics. A rule given statistics it does not read finds nothing.
    """
    t = _seconds(now)
    if isinstance(stats, TransactionStats):
        if isinstance(rule, CompletenessRule):
            return _completeness(rule, stats, t)
        if isinstance(rule, LatencyRule):
            return _latency_tx(rule, stats, t)
        if isinstance(rule, DuplicateRule):
            return _duplicate_tx(rule, stats)
        if isinstance(rule, OrderingRule):
            return _ordering_tx(rule, stats)
        if isinstance(rule, ReconciliationRule):
            return _mismatch_tx(rule, stats)
        return []
    if isinstance(rule, LatencyRule) and isinstance(stats, LatencyStats):
        return _latency_window(rule, stats)
    if isinstance(rule, RateRule) and isinstance(stats, RateStats):
        return _rate(rule, stats)
    if isinstance(rule, BurnRateRule) and isinstance(stats, BurnStats):
        return _burn(rule, stats)
    if isinstance(rule, MttrRule) and isinstance(stats, MttrStats):
        return _mttr(rule, stats)
    if isinstance(rule, ReconciliationRule) and isinstance(stats, ReconStats):
        return _recon_window(rule, stats)
    return []


def measure(rule: Rule, stats: Stats, now: dt.datetime | float) -> list[SlaPoint]:
    """The rule's measurements for the trend charts (no I/O)."""
    out: list[SlaPoint] = []
    if isinstance(rule, LatencyRule) and isinstance(stats, LatencyStats):
        for o in rule.objectives:
            for g in stats.windows.get(o.window, ()):
                value = g.quantiles.get(o.percentile)
                if value is not None:
                    out.append(
                        SlaPoint(
                            rule.name, rule.kind, f"p{o.percentile:g}", o.window, dict(g.labels), value,
                            o.threshold, "seconds", total=g.count, breached=value > o.threshold,
                        )
                    )  # fmt: skip
    elif isinstance(rule, RateRule) and isinstance(stats, RateStats):
        for gc in stats.groups:
            if not gc.total:
                continue
            success = 100.0 * gc.good / gc.total
            if rule.kind == "success_rate":
                value, objective, breached = success, rule.objective, success < rule.objective
            else:
                value, objective, breached = 100.0 - success, rule.threshold, 100.0 - success > rule.threshold
            out.append(
                SlaPoint(
                    rule.name, rule.kind, rule.kind, rule.window, dict(gc.labels), value, objective, "percent",
                    gc.good, gc.total, breached and gc.total >= rule.min_events,
                )
            )  # fmt: skip
    elif isinstance(rule, BurnRateRule) and isinstance(stats, BurnStats):
        budget = 1.0 - rule.objective / 100.0
        for window, groups in sorted(stats.windows.items()):
            for bc in groups:
                burn = (1.0 - bc.good / bc.total) / budget if bc.total else 0.0
                factor = min((w.factor for w in rule.windows if window in (w.long, w.short)), default=1.0)
                out.append(
                    SlaPoint(
                        rule.name, rule.kind, "burn_rate", window, dict(bc.labels), burn, factor, "ratio",
                        bc.good, bc.total, burn > factor,
                    )
                )  # fmt: skip
    elif isinstance(rule, MttrRule) and isinstance(stats, MttrStats):
        for labels, count, mean in stats.groups:
            out.append(
                SlaPoint(
                    rule.name, rule.kind, "mttr", rule.window, dict(labels), mean, rule.threshold, "seconds",
                    total=count, breached=mean > rule.threshold,
                )
            )  # fmt: skip
    elif isinstance(rule, ReconciliationRule) and isinstance(stats, ReconStats):
        items = reconcile(rule, stats)
        bad = sum(1 for i in items if i.status != "ok")
        out.append(
            SlaPoint(rule.name, rule.kind, "exceptions", rule.window, {}, float(bad), 0.0, "count",
                     len(items) - bad, len(items), bad > 0)
        )  # fmt: skip
    return out


def pending(rules: Sequence[Rule], tx: TransactionFacts, now: dt.datetime | float) -> list[str]:
    """Expectations the transaction has not met yet but may still meet in time."""
    t = _seconds(now)
    out: list[str] = []
    for rule in rules:
        if not _applies(rule, tx):
            continue
        if isinstance(rule, CompletenessRule):
            start = tx.first_ok(rule.after)
            if start is not None and tx.first_ok(rule.expect) is None and t - start <= rule.within:
                out.append(
                    f"{rule.expect} expected within {format_seconds(rule.within)} of {rule.after} ({rule.name})"
                )
        elif isinstance(rule, LatencyRule) and rule.deadline is not None and rule.per == "transaction":
            start = tx.first_ok(rule.from_stage)
            if start is not None and tx.first_ok(rule.to_stage) is None and t - start <= rule.deadline:
                out.append(
                    f"{rule.to_stage} due within {format_seconds(rule.deadline)} of {rule.from_stage} ({rule.name})"
                )
    return out


# --- classification ----------------------------------------------------------------------


def _span_category(
    step: str, span: SpanSignal, policy: ClassificationPolicy
) -> tuple[FailureCategory, str] | None:
    if step == "explicit" and span.error_category:
        try:
            return FailureCategory(span.error_category), f"biz.error.category={span.error_category}"
        except ValueError:
            return None
    if step == "vendor_code" and span.error_code:
        for vc in policy.vendor_codes:
            if vc.code.lower() == span.error_code.lower() and (not vc.vendor or vc.vendor == span.vendor):
                return vc.category, f"{span.vendor or 'vendor'} code {span.error_code}"
        return None
    if step == "http_status" and span.http_status:
        code = str(span.http_status)
        category = policy.http_status.get(code) or policy.http_status.get(f"{code[0]}xx")
        return (category, f"http {code}") if category is not None else None
    if step == "error_type" and span.error_type:
        lowered = span.error_type.lower()
        for needle, category in policy.error_types.items():
            if needle in lowered:
                return category, f"error.type {span.error_type}"
    return None


def _stage_states(
    spans: Sequence[SpanSignal], held_after: Sequence[str] = ()
) -> tuple[
    list[tuple[SpanSignal, int]], list[tuple[SpanSignal, int]], list[SpanSignal], list[dict[str, Any]]
]:
    """Per stage, in order: (open failures, held, retrying, absorbed blips)."""
    failed: list[tuple[SpanSignal, int]] = []
    held: list[tuple[SpanSignal, int]] = []
    retrying: list[SpanSignal] = []
    absorbed: list[dict[str, Any]] = []
    # A span failed unless it is ok (SpanSignal.ok, spelled out: this runs for every span).
    failing = {
        span.stage
        for span in spans
        if span.outcome not in OK_OUTCOMES or (span.outcome == "" and span.status_code == "Error")
    }
    if not failing:  # most transactions: nothing to sort out
        return failed, held, retrying, absorbed
    by_stage: dict[str, list[SpanSignal]] = defaultdict(list)
    for span in spans:
        if span.stage in failing:
            by_stage[span.stage].append(span)
    for stage, attempts in by_stage.items():
        attempts.sort(key=lambda s: (s.end, s.attempt))
        failures = [s for s in attempts if s.failed]
        if not failures:
            continue
        last = attempts[-1]
        if last.ok:
            absorbed.append(
                {
                    "stage": stage,
                    "failed_attempts": len(failures),
                    "categories": sorted({s.error_category for s in failures if s.error_category}),
                    "http_status": sorted({s.http_status for s in failures if s.http_status}),
                }
            )
        elif last.outcome in (Outcome.RETRYING.value, Outcome.PARKED.value):
            # A retry is scheduled, or the event waits for the state it needs:
            # pending, until a completeness deadline says it is stuck.
            retrying.append(last)
        elif held_after and any(s.ok and s.stage in held_after and s.end <= last.end for s in spans):
            held.append((last, len(failures)))
        else:
            failed.append((last, len(failures)))
    failed.sort(key=lambda x: x[0].end)
    held.sort(key=lambda x: x[0].end)
    if failed and held:
        # One transaction, one status: the earliest step that failed for good decides.
        if held[0][0].end < failed[0][0].end:
            failed = []
        else:
            held = []
    return failed, held, retrying, absorbed


def classify(
    tx: TransactionFacts,
    findings: Sequence[Finding],
    policy: ClassificationPolicy,
    rules: Sequence[Rule] = (),
    now: dt.datetime | float = 0.0,
) -> Verdict:
    """The transaction's verdict: a status and exactly one primary category,
    with the evidence that decided it (no I/O).

    A failed attempt that a later attempt of the same stage absorbed is no
    failure (it is listed in the evidence as ``absorbed``). The category of a
    step that failed for good is decided by ``policy.precedence``: the explicit
    ``biz.error.category`` of its last attempt, the vendor code, the HTTP
    status, the ``error.type``, then the rule findings (stuck, latency,
    mismatch, duplicate, out of order).
    """
    failed, held, retrying, absorbed = _stage_states(tx.spans, policy.held_after)
    decisive: tuple[SpanSignal, int] | None = failed[0] if failed else (held[0] if held else None)
    category: FailureCategory | None = None
    decided_by = ""
    detail = ""
    finding: Finding | None = None
    for step in policy.precedence:
        if step in _FINDING_STEPS:
            wanted = _FINDING_STEPS[step]
            match = next((f for f in findings if f.category == wanted), None)
            if match is not None:
                category, decided_by, finding, detail = wanted, step, match, match.reason
                break
        elif decisive is not None:
            got = _span_category(step, decisive[0], policy)
            if got is not None:
                category, detail = got
                decided_by = step
                break
    if decisive is not None and category is None:
        category, decided_by, detail = FailureCategory.UNKNOWN, "none", "nothing said why"

    evidence: dict[str, Any] = {}
    stage = vendor = ""
    if decisive is not None and finding is None:
        span, attempts = decisive
        status = TxStatus.HELD if decisive in held else TxStatus.FAILED
        stage, vendor = span.stage, span.vendor
        verb = "is held" if status == TxStatus.HELD else "failed"
        reason = f"{span.stage} {verb}: {category} ({detail}"
        reason += f", after {attempts} attempts)" if attempts > 1 else ")"
        evidence["span"] = span.brief()
        evidence["attempts"] = attempts
    elif finding is not None:
        status = TxStatus.STUCK if category == FailureCategory.STUCK else TxStatus.FAILED
        if decisive is not None:
            status = TxStatus.HELD if decisive in held else TxStatus.FAILED
            evidence["span"] = decisive[0].brief()
            vendor = decisive[0].vendor
        stage = str(finding.evidence.get("stage", ""))
        reason = f"{category}: {finding.reason} ({finding.rule})"
        evidence["rule"] = finding.rule
        evidence["finding"] = dict(finding.evidence)
    else:
        waiting = pending(rules, tx, now) if rules else []
        if retrying:
            waiting = [f"{s.stage} {s.outcome} after attempt {s.attempt}" for s in retrying] + waiting
        status = TxStatus.IN_PROGRESS if waiting else TxStatus.OK
        reason = "; ".join(waiting)
        if waiting:
            evidence["pending"] = waiting
    if decided_by:
        evidence["decided_by"] = decided_by
    if absorbed:
        evidence["absorbed"] = absorbed
    if findings:
        evidence["findings"] = [
            {"rule": f.rule, "category": f.category.value, "reason": f.reason} for f in findings
        ]
    if category is not None:
        severity = finding.severity if finding is not None else policy.severity.get(category, "warning")
    else:
        severity = ""
    objects = tuple(
        dict.fromkeys(
            f"{s.system}:{s.object_type}/{s.object_id}" for s in tx.spans if s.object_id and s.object_type
        )
    )[:20]
    return Verdict(
        correlation_id=tx.correlation_id,
        process=tx.process,
        legal_entity=tx.legal_entity,
        region=tx.region,
        status=status,
        category=category.value if category is not None else "",
        severity=severity,
        reason=reason,
        evidence=evidence,
        first_seen=tx.first_seen,
        last_seen=tx.last_seen,
        last_stage=tx.last_stage,
        amount=tx.amount,
        currency=tx.currency,
        rules=tuple(sorted({f.rule for f in findings})),
        stage=stage,
        vendor=vendor,
        objects=objects,
    )
