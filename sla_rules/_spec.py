"""SLA rules as code: the strict, versioned YAML spec and the frozen model.

A rules document looks like::

    version: revtrace/v1
    name: quote-to-cash
    evaluator: {lookback: 7d, lateness: 2m, interval: 30s}
    defaults: {severity: warning, group_by: [legal_entity]}
    rules:
      - name: invoice-posting-latency
        kind: latency
        process: quote_to_cash
        from: billing.invoice.create
        to: erp.invoice.post
        deadline: 4h
        objectives: [{percentile: 95, threshold: 1h, window: 1d}]
    classification: {...}   # optional: how failures get their category
    alerting: {...}         # optional: route tree, receivers, inhibition

It is read once by :func:`parse_rules` into frozen dataclasses. Unknown keys
are rejected, and every problem is reported at once with its path and value
(``rules[2].objective: must be in (0, 100], got 120``). Durations are numbers
of seconds or strings like ``90s``, ``5m``, ``4h``, ``1d``.

Receiver secrets are never in the file: fields that hold them (Slack URLs,
PagerDuty routing keys, SMTP passwords) must be ``${ENV_VAR}`` references,
resolved when a notification is sent.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml

from sla_rules._errors import RuleError
from sla_rules._windows import GOOGLE_SRE_WORKBOOK, BurnWindow
from tracer.semconv import STAGE_PATTERN, FailureCategory, Process

__all__ = [
    "DIMENSIONS",
    "SEVERITIES",
    "SPEC_VERSION",
    "AlertingSpec",
    "BurnRateRule",
    "ClassificationPolicy",
    "CompletenessRule",
    "DuplicateRule",
    "EmailConfig",
    "EvaluatorSpec",
    "InhibitRule",
    "LatencyObjective",
    "LatencyRule",
    "MttrRule",
    "OrderingRule",
    "PagerDutyConfig",
    "RateRule",
    "ReceiverSpec",
    "ReconciliationRule",
    "Route",
    "Rule",
    "RuleBase",
    "RuleSet",
    "SlackConfig",
    "VendorCode",
    "WebhookConfig",
    "builtin_pack",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "resolve_env",
    "scale_durations",
]

SPEC_VERSION: Final = "revtrace/v1"
"""The only ``version`` this code reads."""

DIMENSIONS: Final = {
    "legal_entity": "LegalEntity",
    "region": "Region",
    "vendor": "Vendor",
    "process": "Process",
}
"""Grouping dimensions a rule may use → the ``revtrace_spans`` column behind each."""

SEVERITIES: Final = ("critical", "warning", "info")
"""Severities, most urgent first."""

RULE_KINDS: Final = (
    "latency",
    "completeness",
    "success_rate",
    "error_rate",
    "duplicate",
    "ordering",
    "reconciliation",
    "burn_rate",
    "mttr",
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"4h"``, ``"1d"`` → seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("not a duration")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match[1]) * _UNITS[match[2] or "s"]
    raise ValueError("not a duration")


def resolve_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` references with the environment's values.

    Raises KeyError naming the first variable that is not set.
    """
    env = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match[1]
        if name not in env:
            raise KeyError(name)
        return env[name]

    return _ENV_REF.sub(sub, value)


# --- the model ------------------------------------------------------------------


@dataclass(frozen=True)
class RuleBase:
    """What every rule has."""

    name: str
    kind: str
    description: str = ""
    process: str = ""
    """Only transactions of this process (``""``: every process)."""
    severity: str = "warning"
    interval: float = 30.0
    """How often the rule is evaluated, seconds."""
    group_by: tuple[str, ...] = ()
    """Grouping dimensions (:data:`DIMENSIONS`)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    category_override: FailureCategory | None = None
    """``category:`` in the file: the category this rule's findings carry
    instead of its kind's (an ERP error-rate rule can say ``transient``)."""

    @property
    def category(self) -> FailureCategory:
        """The failure category this rule's findings carry."""
        return self.category_override or _KIND_CATEGORY[self.kind]


@dataclass(frozen=True)
class LatencyObjective:
    """``percentile`` of the stage-to-stage time within ``window`` must stay ≤ ``threshold``."""

    percentile: float
    threshold: float
    window: float


@dataclass(frozen=True)
class LatencyRule(RuleBase):
    """Stage-to-stage latency: from the first successful ``from_stage`` to the
    first successful ``to_stage`` of one transaction (or object)."""

    from_stage: str = ""
    to_stage: str = ""
    per: str = "transaction"
    """``transaction`` (same correlation id) or ``object`` (same object id)."""
    deadline: float | None = None
    """A transaction whose time exceeds this is a latency finding on its own."""
    objectives: tuple[LatencyObjective, ...] = ()


@dataclass(frozen=True)
class CompletenessRule(RuleBase):
    """After ``after`` succeeded, ``expect`` must succeed within ``within``; a
    transaction still waiting past it is stuck (no span has to arrive for that)."""

    after: str = ""
    expect: str = ""
    within: float = 0.0
    idle: bool = False
    """``idle: true`` instead of after/expect: a transaction with work pending (a
    retry scheduled, an event parked) and no new span for ``within`` is stuck."""


@dataclass(frozen=True)
class RateRule(RuleBase):
    """Success rate (``success_rate``: at least ``objective`` %) or error rate
    (``error_rate``: at most ``threshold`` %) of steps over ``window``."""

    stage: str = ""
    system: str = ""
    vendor: str = ""
    objective: float = 0.0
    """success_rate: minimum percent of steps that succeed."""
    threshold: float = 0.0
    """error_rate: maximum percent of steps that fail."""
    window: float = 3600.0
    min_events: int = 1
    """Fewer steps than this in the window: no verdict (too little data)."""
    unit: str = "step"
    """``step``: a step (stage of a transaction) counts once, ok if any attempt
    succeeded; ``attempt``: every attempt counts (what an outage shows)."""


@dataclass(frozen=True)
class DuplicateRule(RuleBase):
    """The same business effect twice: two successful ``stages`` steps with
    different object ids (``key: object``), the same idempotency key or the
    same event id applied twice."""

    stages: tuple[str, ...] = ()
    key: str = "object"
    threshold: float = 0.0
    """Maximum percent of transactions with a duplicate effect within ``window``."""
    window: float = 86400.0


@dataclass(frozen=True)
class OrderingRule(RuleBase):
    """Events applied against their order: a lower ``biz.event.sequence``
    applied after a higher one of the same object, or a ``then`` stage applied
    before its ``first`` stage."""

    stages: tuple[str, ...] = ()
    """Restrict the sequence check to these stages (``()``: all)."""
    dependencies: tuple[tuple[str, str], ...] = ()
    """``(first, then)`` pairs: ``then`` must not be applied before ``first``."""
    window: float = 86400.0


@dataclass(frozen=True)
class ReconciliationRule(RuleBase):
    """Counts, amounts and statuses equal across systems per period (from
    reconciliation snapshot spans), and per transaction the amount of
    ``match_from`` equal to that of ``match_to``."""

    object_type: str = ""
    systems: tuple[str, ...] = ()
    compare: tuple[str, ...] = ("count", "amount", "statuses")
    tolerance: float = 0.01
    match_from: str = ""
    match_to: str = ""
    window: float = 86400.0


@dataclass(frozen=True)
class BurnRateRule(RuleBase):
    """An SLO on the success of steps, alerted on with multi-window,
    multi-burn-rate windows (:mod:`sla_rules._windows`)."""

    stage: str = ""
    system: str = ""
    vendor: str = ""
    objective: float = 99.0
    period: float = 30 * 86400.0
    windows: tuple[BurnWindow, ...] = GOOGLE_SRE_WORKBOOK


@dataclass(frozen=True)
class MttrRule(RuleBase):
    """Mean time to resolve failed integrations: from a step's final failure
    (dead-lettered, failed, parked) to its later success, within ``window``."""

    threshold: float = 4 * 3600.0
    window: float = 7 * 86400.0


Rule: TypeAlias = (
    LatencyRule
    | CompletenessRule
    | RateRule
    | DuplicateRule
    | OrderingRule
    | ReconciliationRule
    | BurnRateRule
    | MttrRule
)

_KIND_CATEGORY: Final = {
    "latency": FailureCategory.LATENCY,
    "completeness": FailureCategory.STUCK,
    "success_rate": FailureCategory.UNKNOWN,
    "error_rate": FailureCategory.UNKNOWN,
    "duplicate": FailureCategory.DUPLICATE,
    "ordering": FailureCategory.OUT_OF_ORDER,
    "reconciliation": FailureCategory.MISMATCH,
    "burn_rate": FailureCategory.UNKNOWN,
    "mttr": FailureCategory.LATENCY,
}


@dataclass(frozen=True)
class VendorCode:
    """A vendor error code (``biz.error.code``) and the category it means."""

    code: str
    category: FailureCategory
    vendor: str = ""


PRECEDENCE_STEPS: Final = (
    "explicit",
    "vendor_code",
    "http_status",
    "error_type",
    "stuck",
    "duplicate",
    "mismatch",
    "latency",
    "out_of_order",
)
"""What can decide a failing transaction's category, default order first."""

DEFAULT_HTTP_STATUS: Final[Mapping[str, FailureCategory]] = {
    "429": FailureCategory.RATE_LIMITED,
    "408": FailureCategory.TRANSIENT,
    "401": FailureCategory.AUTH,
    "403": FailureCategory.AUTH,
    "400": FailureCategory.MAPPING,
    "422": FailureCategory.MAPPING,
    "5xx": FailureCategory.TRANSIENT,
}
DEFAULT_ERROR_TYPES: Final[Mapping[str, FailureCategory]] = {
    "timeout": FailureCategory.TRANSIENT,
    "connect": FailureCategory.TRANSIENT,
    "circuit": FailureCategory.TRANSIENT,
    "ratelimit": FailureCategory.RATE_LIMITED,
    "unauthorized": FailureCategory.AUTH,
}
DEFAULT_CATEGORY_SEVERITY: Final[Mapping[FailureCategory, str]] = {
    FailureCategory.AUTH: "critical",
    FailureCategory.MASTER_DATA: "critical",
    FailureCategory.MAPPING: "critical",
    FailureCategory.BUSINESS_RULE: "warning",
    FailureCategory.DUPLICATE: "critical",
    FailureCategory.MISMATCH: "critical",
    FailureCategory.STUCK: "critical",
    FailureCategory.TRANSIENT: "warning",
    FailureCategory.RATE_LIMITED: "warning",
    FailureCategory.OUT_OF_ORDER: "warning",
    FailureCategory.LATENCY: "warning",
    FailureCategory.UNKNOWN: "warning",
}


@dataclass(frozen=True)
class ClassificationPolicy:
    """How a failing transaction gets its one primary category.

    ``precedence`` orders the deciders (:data:`PRECEDENCE_STEPS`); the first
    that has something to say wins. ``http_status`` keys are ``"503"`` or
    ``"5xx"``; ``error_types`` keys are case-insensitive substrings of
    ``error.type``.
    """

    precedence: tuple[str, ...] = PRECEDENCE_STEPS
    http_status: Mapping[str, FailureCategory] = field(default_factory=lambda: dict(DEFAULT_HTTP_STATUS))
    error_types: Mapping[str, FailureCategory] = field(default_factory=lambda: dict(DEFAULT_ERROR_TYPES))
    vendor_codes: tuple[VendorCode, ...] = ()
    severity: Mapping[FailureCategory, str] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_SEVERITY))
    held_after: tuple[str, ...] = ()
    """Stages after whose success a step that fails for good leaves the
    transaction ``held`` rather than ``failed`` (the business effect exists
    upstream and waits for a human, e.g. an invoice not posted to the ERP)."""


@dataclass(frozen=True)
class EvaluatorSpec:
    """How the evaluator walks time."""

    lookback: float = 7 * 86400.0
    """On a cold start, transactions active this far back are evaluated."""
    lateness: float = 30.0
    """Each tick re-reads the writes this much older than its watermark (the
    store's time of the last tick): inserts that were still committing then."""
    interval: float = 30.0
    """Default rule interval, seconds."""
    alert_horizon: float = 86400.0
    """A failed transaction keeps its alert firing this long after it was last seen."""


@dataclass(frozen=True)
class WebhookConfig:
    """Alertmanager-compatible webhook (payload version 4)."""

    url: str
    send_resolved: bool = True
    max_alerts: int = 0


@dataclass(frozen=True)
class SlackConfig:
    """Slack incoming webhook; ``url`` is an ``${ENV}`` reference."""

    url: str
    channel: str = ""
    send_resolved: bool = True


@dataclass(frozen=True)
class PagerDutyConfig:
    """PagerDuty Events API v2; ``routing_key`` is an ``${ENV}`` reference."""

    routing_key: str
    url: str = "https://events.pagerduty.com/v2/enqueue"
    send_resolved: bool = True


@dataclass(frozen=True)
class EmailConfig:
    """E-mail over SMTP; ``password`` (if any) is an ``${ENV}`` reference."""

    to: tuple[str, ...]
    sender: str
    smarthost: str
    username: str = ""
    password: str = ""
    starttls: bool = False
    send_resolved: bool = True


@dataclass(frozen=True)
class ReceiverSpec:
    """A named receiver and its integrations."""

    name: str
    webhook: tuple[WebhookConfig, ...] = ()
    slack: tuple[SlackConfig, ...] = ()
    pagerduty: tuple[PagerDutyConfig, ...] = ()
    email: tuple[EmailConfig, ...] = ()


@dataclass(frozen=True)
class Route:
    """A node of the routing tree. Unset options are inherited from the parent."""

    receiver: str
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    match: Mapping[str, str] = field(default_factory=dict)
    match_re: Mapping[str, str] = field(default_factory=dict)
    continue_: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source_*`` fires, alerts matching ``target_*``
    with the same values of ``equal`` labels are suppressed."""

    source_match: Mapping[str, str] = field(default_factory=dict)
    target_match: Mapping[str, str] = field(default_factory=dict)
    equal: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertingSpec:
    """Routing tree, receivers and inhibition rules."""

    route: Route
    receivers: tuple[ReceiverSpec, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()


DEFAULT_ROUTE: Final = Route(
    receiver="null",
    group_by=("alertname", "category"),
    group_wait=30.0,
    group_interval=300.0,
    repeat_interval=4 * 3600.0,
)


@dataclass(frozen=True)
class RuleSet:
    """A validated rules document (or several merged)."""

    name: str
    rules: tuple[Rule, ...]
    evaluator: EvaluatorSpec = field(default_factory=EvaluatorSpec)
    classification: ClassificationPolicy = field(default_factory=ClassificationPolicy)
    alerting: AlertingSpec = field(default_factory=lambda: AlertingSpec(route=DEFAULT_ROUTE))
    sources: tuple[str, ...] = ()

    def rule(self, name: str) -> Rule:
        """The rule called ``name``."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# --- reading ----------------------------------------------------------------------


# A problem quotes the value it is about, shortened: a few bytes of YAML (aliases
# of aliases) can be a structure whose full repr runs to gigabytes.
_SHORT: Final = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 120, 120, 60


class _Reader:
    """Collects every problem while reading one document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, message: str, value: Any = ...) -> None:
        if value is ...:
            self.problems.append(f"{path}: {message}")
        else:
            self.problems.append(f"{path}: {message}, got {_SHORT.repr(value)}")

    def mapping(
        self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.bad(path, "must be a mapping", value)
            return {}
        for key in value:
            if key not in allowed:
                self.bad(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.bad(f"{path}.{key}", "is required")
        return value

    def string(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: str = "",
        *,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        what: str = "",
    ) -> str:
        if key not in m:
            return default
        value = m[key]
        where = f"{path}.{key}"
        if not isinstance(value, str):
            self.bad(where, "must be a string", value)
            return default
        if choices and value not in choices:
            self.bad(where, f"must be one of {', '.join(choices)}", value)
            return default
        if pattern is not None and not pattern.match(value):
            self.bad(where, f"must be {what or 'of the form ' + pattern.pattern}", value)
            return default
        return value

    def stage(self, m: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
        if key not in m:
            if required:
                self.bad(f"{path}.{key}", "is required")
            return ""
        return self.string(m, key, path, pattern=STAGE_PATTERN, what="a stage <system>.<object>.<action>")

    def duration(
        self, m: Mapping[str, Any], key: str, path: str, default: float, *, minimum: float = 0.0
    ) -> float:
        if key not in m:
            return default
        value = m[key]
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.bad(f"{path}.{key}", "must be a duration like 90s, 5m, 4h, 1d", value)
            return default
        if seconds <= minimum:
            self.bad(f"{path}.{key}", f"must be longer than {minimum:g}s", value)
            return default
        return seconds

    def number(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        low: float,
        high: float,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        if key not in m:
            return default
        value = m[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and (
                value < high if high_open else value <= high
            )
        if not ok:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            self.bad(f"{path}.{key}", f"must be in {interval}", value)
            return default
        return float(value)

    def integer(self, m: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int) -> int:
        if key not in m:
            return default
        value = m[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.bad(f"{path}.{key}", f"must be an integer >= {minimum}", value)
            return default
        return value

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in m:
            return default
        value = m[key]
        if not isinstance(value, bool):
            self.bad(f"{path}.{key}", "must be true or false", value)
            return default
        return value

    def seq(self, m: Mapping[str, Any], key: str, path: str) -> list[Any]:
        if key not in m:
            return []
        value = m[key]
        if not isinstance(value, list):
            self.bad(f"{path}.{key}", "must be a list", value)
            return []
        return value

    def strings(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.seq(m, key, path)):
            where = f"{path}.{key}[{i}]"
            if not isinstance(item, str):
                self.bad(where, "must be a string", item)
            elif choices and item not in choices:
                self.bad(where, f"must be one of {', '.join(choices)}", item)
            elif pattern is not None and not pattern.match(item):
                self.bad(where, f"must be {what or 'of the form ' + pattern.pattern}", item)
            elif item in out:
                self.bad(where, "is listed twice", item)
            else:
                out.append(item)
        return tuple(out)

    def labels(self, m: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        if key not in m:
            return {}
        value = m[key]
        if not isinstance(value, dict):
            self.bad(f"{path}.{key}", "must be a mapping of label names to strings", value)
            return {}
        out: dict[str, str] = {}
        for name, text in value.items():
            where = f"{path}.{key}.{name}"
            if not isinstance(name, str) or not _LABEL.match(name):
                self.bad(where, "label names must match [a-zA-Z_][a-zA-Z0-9_]*", name)
            elif not isinstance(text, str | int | float) or isinstance(text, bool):
                self.bad(where, "must be a string", text)
            else:
                out[name] = str(text)
        return out

    def category(self, value: Any, path: str) -> FailureCategory | None:
        try:
            return FailureCategory(value)
        except ValueError:
            self.bad(path, f"must be one of {', '.join(c.value for c in FailureCategory)}", value)
            return None

    def env_ref(self, m: Mapping[str, Any], key: str, path: str, *, required: bool) -> str:
        """A secret: must be a ``${ENV_VAR}`` reference, never the secret itself."""
        if key not in m:
            if required:
                self.bad(f"{path}.{key}", "is required")
            return ""
        value = m[key]
        if not isinstance(value, str) or not _ENV_REF.search(value):
            shown = value if not isinstance(value, str) else "<literal value hidden>"
            self.bad(f"{path}.{key}", "must reference the environment like ${SLACK_WEBHOOK_URL}", shown)
            return ""
        return value


_COMMON_KEYS: Final = (
    "name",
    "kind",
    "description",
    "process",
    "severity",
    "interval",
    "group_by",
    "labels",
    "annotations",
    "category",
)
_KIND_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "latency": ("from", "to", "per", "deadline", "objectives"),
    "completeness": ("after", "expect", "within", "idle"),
    "success_rate": ("stage", "system", "vendor", "objective", "window", "min_events", "unit"),
    "error_rate": ("stage", "system", "vendor", "threshold", "window", "min_events", "unit"),
    "duplicate": ("stages", "key", "threshold", "window"),
    "ordering": ("stages", "dependencies", "window"),
    "reconciliation": ("object_type", "systems", "compare", "tolerance", "match", "window"),
    "burn_rate": ("stage", "system", "vendor", "objective", "period", "windows"),
    "mttr": ("threshold", "window"),
}
_PROCESSES: Final = tuple(p.value for p in Process)


def _rule(
    r: _Reader, raw: Any, path: str, defaults: Mapping[str, Any], evaluator: EvaluatorSpec
) -> Rule | None:
    if not isinstance(raw, dict):
        r.bad(path, "must be a mapping", raw)
        return None
    kind = raw.get("kind")
    if kind not in RULE_KINDS:
        r.bad(f"{path}.kind", f"must be one of {', '.join(RULE_KINDS)}", kind)
        return None
    m = r.mapping(raw, path, _COMMON_KEYS + _KIND_KEYS[kind], ("name", "kind"))
    name = r.string(m, "name", path, pattern=_NAME, what="lower-case letters, digits, '-', '_', '.'")
    merged = {**defaults, **{k: v for k, v in m.items() if k in _COMMON_KEYS}}
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "description": r.string(m, "description", path),
        "process": r.string(merged, "process", path, choices=_PROCESSES),
        "severity": r.string(merged, "severity", path, "warning", choices=SEVERITIES),
        "interval": r.duration(merged, "interval", path, evaluator.interval),
        "group_by": r.strings(merged, "group_by", path, choices=tuple(DIMENSIONS)),
        "labels": r.labels(merged, "labels", path),
        "annotations": r.labels(merged, "annotations", path),
        "category_override": r.category(m["category"], f"{path}.category") if "category" in m else None,
    }
    if kind == "latency":
        objectives: list[LatencyObjective] = []
        for i, raw_obj in enumerate(r.seq(m, "objectives", path)):
            opath = f"{path}.objectives[{i}]"
            o = r.mapping(raw_obj, opath, ("percentile", "threshold", "window"), ("percentile", "threshold"))
            if o:
                objectives.append(
                    LatencyObjective(
                        percentile=r.number(o, "percentile", opath, 95.0, low=0, high=100, low_open=True),
                        threshold=r.duration(o, "threshold", opath, 3600.0),
                        window=r.duration(o, "window", opath, 86400.0),
                    )
                )
        deadline = r.duration(m, "deadline", path, 0.0) if "deadline" in m else None
        if not objectives and deadline is None:
            r.bad(path, "a latency rule needs objectives, a deadline or both")
        rule: Rule = LatencyRule(
            **common,
            from_stage=r.stage(m, "from", path, required=True),
            to_stage=r.stage(m, "to", path, required=True),
            per=r.string(m, "per", path, "transaction", choices=("transaction", "object")),
            deadline=deadline,
            objectives=tuple(objectives),
        )
        if m.get("from") is not None and m.get("from") == m.get("to"):
            r.bad(f"{path}.to", "must differ from 'from'", m.get("to"))
        return rule
    if kind == "completeness":
        if "within" not in m:
            r.bad(f"{path}.within", "is required")
        idle = r.boolean(m, "idle", path, False)
        if idle and ("after" in m or "expect" in m):
            r.bad(path, "an idle completeness rule takes no after/expect")
        return CompletenessRule(
            **common,
            after=r.stage(m, "after", path, required=not idle),
            expect=r.stage(m, "expect", path, required=not idle),
            within=r.duration(m, "within", path, 3600.0),
            idle=idle,
        )
    if kind in ("success_rate", "error_rate"):
        key = "objective" if kind == "success_rate" else "threshold"
        if key not in m:
            r.bad(f"{path}.{key}", "is required")
        return RateRule(
            **common,
            stage=r.stage(m, "stage", path),
            system=r.string(m, "system", path),
            vendor=r.string(m, "vendor", path),
            objective=r.number(m, "objective", path, 99.0, low=0, high=100, low_open=True),
            threshold=r.number(m, "threshold", path, 1.0, low=0, high=100, high_open=True),
            window=r.duration(m, "window", path, 3600.0),
            min_events=r.integer(m, "min_events", path, 1, minimum=1),
            unit=r.string(
                m, "unit", path, "step" if kind == "success_rate" else "attempt", choices=("step", "attempt")
            ),
        )
    if kind == "duplicate":
        stages = r.strings(
            m, "stages", path, pattern=STAGE_PATTERN, what="a stage <system>.<object>.<action>"
        )
        if not stages:
            r.bad(f"{path}.stages", "must list at least one stage")
        return DuplicateRule(
            **common,
            stages=stages,
            key=r.string(m, "key", path, "object", choices=("object", "idempotency_key", "event_id")),
            threshold=r.number(m, "threshold", path, 0.0, low=0, high=100, high_open=True),
            window=r.duration(m, "window", path, 86400.0),
        )
    if kind == "ordering":
        deps: list[tuple[str, str]] = []
        for i, raw_dep in enumerate(r.seq(m, "dependencies", path)):
            dpath = f"{path}.dependencies[{i}]"
            d = r.mapping(raw_dep, dpath, ("first", "then"), ("first", "then"))
            first, then = r.stage(d, "first", dpath), r.stage(d, "then", dpath)
            if first and then:
                deps.append((first, then))
        return OrderingRule(
            **common,
            stages=r.strings(
                m, "stages", path, pattern=STAGE_PATTERN, what="a stage <system>.<object>.<action>"
            ),
            dependencies=tuple(deps),
            window=r.duration(m, "window", path, 86400.0),
        )
    if kind == "reconciliation":
        systems = r.strings(m, "systems", path)
        if "systems" in m and len(systems) < 2:
            r.bad(f"{path}.systems", "must name at least two systems", m.get("systems"))
        match_from = match_to = ""
        if "match" in m:
            mm = r.mapping(m["match"], f"{path}.match", ("from", "to"), ("from", "to"))
            match_from, match_to = r.stage(mm, "from", f"{path}.match"), r.stage(mm, "to", f"{path}.match")
        if not systems and not match_from:
            r.bad(path, "a reconciliation rule needs systems (snapshots), match (per transaction) or both")
        return ReconciliationRule(
            **common,
            object_type=r.string(m, "object_type", path),
            systems=systems,
            compare=r.strings(m, "compare", path, choices=("count", "amount", "statuses"))
            or ("count", "amount", "statuses"),
            tolerance=r.number(m, "tolerance", path, 0.01, low=0, high=1e12),
            match_from=match_from,
            match_to=match_to,
            window=r.duration(m, "window", path, 86400.0),
        )
    if kind == "burn_rate":
        windows: tuple[BurnWindow, ...] = GOOGLE_SRE_WORKBOOK
        raw_windows = m.get("windows", "google-sre-workbook")
        if isinstance(raw_windows, list):
            parsed: list[BurnWindow] = []
            for i, raw_w in enumerate(raw_windows):
                wpath = f"{path}.windows[{i}]"
                w = r.mapping(
                    raw_w, wpath, ("long", "short", "factor", "severity"), ("long", "short", "factor")
                )
                long = r.duration(w, "long", wpath, 3600.0)
                short = r.duration(w, "short", wpath, 300.0)
                if short >= long and "short" in w and "long" in w:
                    r.bad(f"{wpath}.short", "must be shorter than long", w.get("short"))
                parsed.append(
                    BurnWindow(
                        long=long,
                        short=short,
                        factor=r.number(w, "factor", wpath, 1.0, low=0, high=1e6, low_open=True),
                        severity=r.string(w, "severity", wpath, "critical", choices=SEVERITIES),
                    )
                )
            windows = tuple(parsed)
            if not windows:
                r.bad(f"{path}.windows", "must list at least one window")
        elif raw_windows != "google-sre-workbook":
            r.bad(f"{path}.windows", "must be google-sre-workbook or a list of windows", raw_windows)
        return BurnRateRule(
            **common,
            stage=r.stage(m, "stage", path),
            system=r.string(m, "system", path),
            vendor=r.string(m, "vendor", path),
            objective=r.number(m, "objective", path, 99.0, low=0, high=100, low_open=True, high_open=True),
            period=r.duration(m, "period", path, 30 * 86400.0),
            windows=windows,
        )
    return MttrRule(
        **common,
        threshold=r.duration(m, "threshold", path, 4 * 3600.0),
        window=r.duration(m, "window", path, 7 * 86400.0),
    )


def _classification(r: _Reader, raw: Any, path: str) -> ClassificationPolicy:
    m = r.mapping(
        raw, path, ("precedence", "http_status", "error_types", "vendor_codes", "severity", "held_after")
    )
    default = ClassificationPolicy()
    precedence = r.strings(m, "precedence", path, choices=PRECEDENCE_STEPS) or default.precedence
    http: dict[str, FailureCategory] = dict(default.http_status)
    if "http_status" in m:
        hm = m["http_status"]
        if not isinstance(hm, dict):
            r.bad(f"{path}.http_status", "must be a mapping of status (503 or 5xx) to category", hm)
        else:
            for key, value in hm.items():
                where = f"{path}.http_status.{key}"
                if not re.match(r"^[1-5](\d\d|xx)$", str(key)):
                    r.bad(where, "status must be like 503 or 5xx", key)
                    continue
                category = r.category(value, where)
                if category is not None:
                    http[str(key)] = category
    errors: dict[str, FailureCategory] = dict(default.error_types)
    if "error_types" in m:
        em = m["error_types"]
        if not isinstance(em, dict):
            r.bad(f"{path}.error_types", "must be a mapping of error.type substring to category", em)
        else:
            for key, value in em.items():
                category = r.category(value, f"{path}.error_types.{key}")
                if category is not None:
                    errors[str(key).lower()] = category
    codes: list[VendorCode] = []
    for i, raw_code in enumerate(r.seq(m, "vendor_codes", path)):
        cpath = f"{path}.vendor_codes[{i}]"
        c = r.mapping(raw_code, cpath, ("vendor", "code", "category"), ("code", "category"))
        category = r.category(c.get("category"), f"{cpath}.category") if "category" in c else None
        code = r.string(c, "code", cpath)
        if category is not None and code:
            codes.append(VendorCode(code=code, category=category, vendor=r.string(c, "vendor", cpath)))
    severity: dict[FailureCategory, str] = dict(default.severity)
    if "severity" in m:
        sm = m["severity"]
        if not isinstance(sm, dict):
            r.bad(f"{path}.severity", "must be a mapping of category to severity", sm)
        else:
            for key, value in sm.items():
                category = r.category(key, f"{path}.severity.{key}")
                if category is None:
                    continue
                if value not in SEVERITIES:
                    r.bad(f"{path}.severity.{key}", f"must be one of {', '.join(SEVERITIES)}", value)
                else:
                    severity[category] = str(value)
    held_after = r.strings(
        m, "held_after", path, pattern=STAGE_PATTERN, what="a stage <system>.<object>.<action>"
    )
    return ClassificationPolicy(
        precedence=precedence,
        http_status=http,
        error_types=errors,
        vendor_codes=tuple(codes),
        severity=severity,
        held_after=held_after,
    )


_ROUTE_KEYS: Final = (
    "receiver",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "match",
    "match_re",
    "continue",
    "routes",
)


def _route(r: _Reader, raw: Any, path: str, parent: Route | None) -> Route:
    m = r.mapping(raw, path, _ROUTE_KEYS, ("receiver",) if parent is None else ())
    base = parent or DEFAULT_ROUTE
    match_re = r.labels(m, "match_re", path)
    for key, pattern in match_re.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            r.bad(f"{path}.match_re.{key}", f"invalid regular expression ({exc})", pattern)
    group_by = (
        r.strings(m, "group_by", path, pattern=_LABEL, what="a label name")
        if "group_by" in m
        else base.group_by
    )
    node = Route(
        receiver=r.string(m, "receiver", path, base.receiver),
        group_by=group_by,
        group_wait=r.duration(m, "group_wait", path, base.group_wait, minimum=-1),
        group_interval=r.duration(m, "group_interval", path, base.group_interval),
        repeat_interval=r.duration(m, "repeat_interval", path, base.repeat_interval),
        match=r.labels(m, "match", path),
        match_re=match_re,
        continue_=r.boolean(m, "continue", path, False),
    )
    children = tuple(
        _route(r, child, f"{path}.routes[{i}]", node) for i, child in enumerate(r.seq(m, "routes", path))
    )
    return Route(**{**node.__dict__, "routes": children})


def _receiver(r: _Reader, raw: Any, path: str) -> ReceiverSpec | None:
    m = r.mapping(raw, path, ("name", "webhook", "slack", "pagerduty", "email"), ("name",))
    name = r.string(m, "name", path, pattern=_NAME, what="lower-case letters, digits, '-', '_', '.'")
    hooks: list[WebhookConfig] = []
    for i, raw_h in enumerate(r.seq(m, "webhook", path)):
        hp = f"{path}.webhook[{i}]"
        h = r.mapping(raw_h, hp, ("url", "send_resolved", "max_alerts"), ("url",))
        url = r.string(h, "url", hp)
        if url and not (url.startswith(("http://", "https://")) or url.startswith("${")):
            r.bad(f"{hp}.url", "must be an http(s) URL or an ${ENV_VAR} reference", url)
        hooks.append(
            WebhookConfig(
                url=url,
                send_resolved=r.boolean(h, "send_resolved", hp, True),
                max_alerts=r.integer(h, "max_alerts", hp, 0, minimum=0),
            )
        )
    slacks: list[SlackConfig] = []
    for i, raw_s in enumerate(r.seq(m, "slack", path)):
        sp = f"{path}.slack[{i}]"
        s = r.mapping(raw_s, sp, ("url", "channel", "send_resolved"), ("url",))
        slacks.append(
            SlackConfig(
                url=r.env_ref(s, "url", sp, required=False),
                channel=r.string(s, "channel", sp),
                send_resolved=r.boolean(s, "send_resolved", sp, True),
            )
        )
    pds: list[PagerDutyConfig] = []
    for i, raw_p in enumerate(r.seq(m, "pagerduty", path)):
        pp = f"{path}.pagerduty[{i}]"
        p = r.mapping(raw_p, pp, ("routing_key", "url", "send_resolved"), ("routing_key",))
        pds.append(
            PagerDutyConfig(
                routing_key=r.env_ref(p, "routing_key", pp, required=False),
                url=r.string(p, "url", pp, PagerDutyConfig.url),
                send_resolved=r.boolean(p, "send_resolved", pp, True),
            )
        )
    mails: list[EmailConfig] = []
    for i, raw_e in enumerate(r.seq(m, "email", path)):
        ep = f"{path}.email[{i}]"
        e = r.mapping(
            raw_e,
            ep,
            ("to", "from", "smarthost", "username", "password", "starttls", "send_resolved"),
            ("to", "from", "smarthost"),
        )
        to = r.strings(e, "to", ep, pattern=re.compile(r"^[^@\s]+@[^@\s]+$"), what="an e-mail address")
        smarthost = r.string(e, "smarthost", ep)
        if smarthost and not re.match(r"^[^:\s]+:\d{1,5}$", smarthost):
            r.bad(f"{ep}.smarthost", "must be host:port", smarthost)
        mails.append(
            EmailConfig(
                to=to,
                sender=r.string(e, "from", ep),
                smarthost=smarthost,
                username=r.string(e, "username", ep),
                password=r.env_ref(e, "password", ep, required=False),
                starttls=r.boolean(e, "starttls", ep, False),
                send_resolved=r.boolean(e, "send_resolved", ep, True),
            )
        )
    if not name:
        return None
    return ReceiverSpec(name, tuple(hooks), tuple(slacks), tuple(pds), tuple(mails))


def _alerting(r: _Reader, raw: Any, path: str) -> AlertingSpec:
    m = r.mapping(raw, path, ("route", "receivers", "inhibit_rules"), ("route",))
    route = _route(r, m.get("route", {"receiver": "null"}), f"{path}.route", None)
    receivers: list[ReceiverSpec] = []
    for i, raw_rcv in enumerate(r.seq(m, "receivers", path)):
        rcv = _receiver(r, raw_rcv, f"{path}.receivers[{i}]")
        if rcv is not None:
            if any(x.name == rcv.name for x in receivers):
                r.bad(f"{path}.receivers[{i}].name", "is used twice", rcv.name)
            receivers.append(rcv)
    known = {x.name for x in receivers} | {"null"}

    def check(node: Route, where: str) -> None:
        if node.receiver not in known:
            r.bad(
                f"{where}.receiver", f"names no receiver (known: {', '.join(sorted(known))})", node.receiver
            )
        for i, child in enumerate(node.routes):
            check(child, f"{where}.routes[{i}]")

    check(route, f"{path}.route")
    inhibits: list[InhibitRule] = []
    for i, raw_inh in enumerate(r.seq(m, "inhibit_rules", path)):
        ip = f"{path}.inhibit_rules[{i}]"
        inh = r.mapping(
            raw_inh, ip, ("source_match", "target_match", "equal"), ("source_match", "target_match")
        )
        inhibits.append(
            InhibitRule(
                source_match=r.labels(inh, "source_match", ip),
                target_match=r.labels(inh, "target_match", ip),
                equal=r.strings(inh, "equal", ip, pattern=_LABEL, what="a label name"),
            )
        )
    return AlertingSpec(route=route, receivers=tuple(receivers), inhibit_rules=tuple(inhibits))


_TOP_KEYS: Final = (
    "version",
    "name",
    "description",
    "evaluator",
    "defaults",
    "rules",
    "classification",
    "alerting",
)


def parse_rules(document: Any, source: str = "<memory>") -> RuleSet:
    """Validate one parsed YAML document and map it to a :class:`RuleSet`.

    Raises :class:`RuleError` listing every problem found.
    """
    r = _Reader()
    m = r.mapping(document, "$", _TOP_KEYS, ("version", "rules"))
    if "version" in m and m["version"] != SPEC_VERSION:
        r.bad("version", f"must be {SPEC_VERSION}", m["version"])
    name = r.string(m, "name", "$", Path(source).stem).strip()
    ev = r.mapping(m.get("evaluator", {}), "evaluator", ("lookback", "lateness", "interval", "alert_horizon"))
    evaluator = EvaluatorSpec(
        lookback=r.duration(ev, "lookback", "evaluator", EvaluatorSpec.lookback),
        lateness=r.duration(ev, "lateness", "evaluator", EvaluatorSpec.lateness, minimum=-1),
        interval=r.duration(ev, "interval", "evaluator", EvaluatorSpec.interval),
        alert_horizon=r.duration(ev, "alert_horizon", "evaluator", EvaluatorSpec.alert_horizon),
    )
    defaults = r.mapping(
        m.get("defaults", {}),
        "defaults",
        ("process", "severity", "interval", "group_by", "labels", "annotations"),
    )
    rules: list[Rule] = []
    raw_rules = m.get("rules", [])
    if not isinstance(raw_rules, list):
        r.bad("rules", "must be a list", raw_rules)
        raw_rules = []
    elif "rules" in m and not raw_rules:
        r.bad("rules", "must list at least one rule")
    for i, raw_rule in enumerate(raw_rules):
        rule = _rule(r, raw_rule, f"rules[{i}]", defaults, evaluator)
        if rule is None:
            continue
        if rule.name and any(x.name == rule.name for x in rules):
            r.bad(f"rules[{i}].name", "is used by another rule", rule.name)
        rules.append(rule)
    classification = (
        _classification(r, m["classification"], "classification")
        if "classification" in m
        else ClassificationPolicy()
    )
    alerting = (
        _alerting(r, m["alerting"], "alerting") if "alerting" in m else AlertingSpec(route=DEFAULT_ROUTE)
    )
    if r.problems:
        raise RuleError(r.problems, source)
    return RuleSet(
        name=name,
        rules=tuple(rules),
        evaluator=evaluator,
        classification=classification,
        alerting=alerting,
        sources=(source,),
    )


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise RuleError([f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"], source) from exc
    except RecursionError as exc:  # PyYAML composes recursively
        raise RuleError(["not valid YAML: nested too deeply"], source) from exc
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise RuleError([f"not valid YAML: {exc}"], source) from exc


def load_rules(path: str | Path) -> RuleSet:
    """Load a rules file, or every ``*.yaml``/``*.yml`` of a directory merged
    (rules concatenated; classification and alerting from the first file that
    has them). Raises :class:`RuleError`."""
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))
        if not files:
            raise RuleError([f"{p}: no *.yaml rules files in the directory"], str(p))
        sets = [load_rules(f) for f in files]
        return _merge(sets, p.name)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError([f"cannot read: {exc.strerror or exc}"], str(p)) from exc
    except UnicodeDecodeError as exc:
        raise RuleError(
            [f"not UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"], str(p)
        ) from exc
    return parse_rules(_read_yaml(text, str(p)), str(p))


def _merge(sets: list[RuleSet], name: str) -> RuleSet:
    problems: list[str] = []
    seen: dict[str, str] = {}
    rules: list[Rule] = []
    for s in sets:
        for rule in s.rules:
            if rule.name in seen:
                problems.append(f"{s.sources[0]}: rule {rule.name!r} is also defined in {seen[rule.name]}")
            seen[rule.name] = s.sources[0]
            rules.append(rule)
    if problems:
        raise RuleError(problems, name)
    alerting = next((s.alerting for s in sets if s.alerting.route is not DEFAULT_ROUTE), sets[0].alerting)
    return RuleSet(
        name=name,
        rules=tuple(rules),
        evaluator=sets[0].evaluator,
        classification=sets[0].classification,
        alerting=alerting,
        sources=tuple(x for s in sets for x in s.sources),
    )


PACKS: Final = ("quote_to_cash", "demo")
"""The rule packs shipped as package data."""


def builtin_pack(name: str = "quote_to_cash") -> RuleSet:
    """A rule pack shipped with revtrace (:data:`PACKS`)."""
    if name not in PACKS:
        raise RuleError([f"no built-in pack {name!r} (known: {', '.join(PACKS)})"], name)
    entry = resources.files("sla_rules.packs").joinpath(f"{name}.yaml")
    source = f"sla_rules/packs/{name}.yaml"
    return parse_rules(_read_yaml(entry.read_text(encoding="utf-8"), source), source)


_DURATION_FIELDS: Final = frozenset(
    {
        "interval",
        "deadline",
        "threshold",
        "window",
        "within",
        "period",
        "long",
        "short",
        "lookback",
        "lateness",
        "alert_horizon",
        "group_wait",
        "group_interval",
        "repeat_interval",
    }
)


def scale_durations(ruleset: RuleSet, factor: float) -> RuleSet:
    """Every duration of the rule set multiplied by ``factor``: the rules for a
    workload whose clock runs ``1/factor`` times faster (the reference sync
    engine's ``time_scale``). Percent thresholds and counts are unchanged."""
    import dataclasses

    def scale(obj: Any) -> Any:
        if isinstance(obj, tuple):
            return tuple(scale(x) for x in obj)
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            return obj
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name in _DURATION_FIELDS and isinstance(value, float) and not _is_percent(obj, f.name):
                changes[f.name] = value * factor
            elif isinstance(value, tuple) or dataclasses.is_dataclass(value):
                changes[f.name] = scale(value)
        return dataclasses.replace(obj, **changes)

    scaled: RuleSet = scale(ruleset)
    return scaled


def _is_percent(obj: Any, name: str) -> bool:
    # RateRule and DuplicateRule thresholds are percentages, not durations.
    return name == "threshold" and isinstance(obj, RateRule | DuplicateRule)
