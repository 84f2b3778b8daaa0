"""Fault profiles: strict, versioned YAML mapped once to frozen dataclasses.

A profile says how the simulated CRM, billing and ERP behave: their latency,
the workload's scenario mix, the faults planned per transaction, outage
windows and the invoice-posting SLA the ground truth is judged against.
Durations are simulated seconds (see :class:`sync_engine.Clock`)::

    version: revtrace/v1
    kind: FaultProfile
    name: transient
    sla: {invoice_posting_seconds: 60}
    latency: {crm: {median: 0.08, p99: 0.4}, ...}
    mix: {new_sale: 3, payment: 1}
    faults:
      - {kind: transient, rate: 0.5, system: erp, stage: erp.invoice.post, count: 2}
    outages:
      - {system: erp, start: 120, duration: 45}

Unknown keys are rejected and every problem is reported at once, with its
path and value: ``faults[2].count: must be an integer >= 1, got 0``.
Profiles shipped with the package live in ``sync_engine/profiles/``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from sync_engine._errors import ProfileError
from sync_engine._scenarios import API_STAGES, PLANNED_FAULT_KINDS, FaultKind, Scenario, eligible_scenarios
from tracer.semconv import Stage, System

__all__ = [
    "PROFILE_KIND",
    "PROFILE_VERSION",
    "FaultProfile",
    "FaultSpec",
    "LatencySpec",
    "OutageSpec",
    "builtin_profiles",
    "load_profile",
    "parse_profile",
]

PROFILE_VERSION: Final = "revtrace/v1"
PROFILE_KIND: Final = "FaultProfile"
LATENCY_KEYS: Final = ("crm", "billing", "erp", "webhook")
"""Latency distributions a profile sets: one per system's API, and the delay
before a system delivers an event (billing finalizing an invoice, CRM
publishing a change)."""


@dataclass(frozen=True)
class LatencySpec:
    """A log-normal latency distribution given by its median and 99th percentile."""

    median: float
    p99: float

    @property
    def sigma(self) -> float:
        """The log-normal shape parameter (p99 is 2.326 sigmas above the median)."""
        return math.log(self.p99 / self.median) / 2.326 if self.p99 > self.median else 0.0


@dataclass(frozen=True)
class FaultSpec:
    """One kind of fault, planned for a fraction (``rate``) of the transactions
    of the scenarios it can hit. Parameters not used by a kind keep their defaults."""

    kind: FaultKind
    rate: float
    system: System | None = None
    stage: Stage | None = None
    count: int = 1
    """How many consecutive calls fail (transient, rate_limit, timeout)."""
    status: int = 503
    """HTTP status of a transient failure."""
    retry_after: float = 2.0
    """``Retry-After`` of a rate-limit response, simulated seconds."""
    delay: float = 0.0
    """erp_slow: added to each ERP call; out_of_order: how late the earlier event arrives."""
    same_event_id: bool = True
    """duplicate_delivery: the copy has the same event id (else a new id, same content)."""
    scenarios: tuple[Scenario, ...] = ()
    """The scenarios it is planned for (default: every scenario it can hit)."""


@dataclass(frozen=True)
class OutageSpec:
    """A window during which a whole system answers 503."""

    system: System
    start: float
    duration: float
    status: int = 503


@dataclass(frozen=True)
class FaultProfile:
    """A validated fault profile."""

    name: str
    description: str
    invoice_posting_sla: float
    """``sla.invoice_posting_seconds``: invoice finalized in billing → posted in ERP."""
    stuck_after: float
    """``sla.stuck_after_seconds``: a transaction waiting longer than this is stuck."""
    latency: Mapping[str, LatencySpec]
    mix: Mapping[Scenario, float]
    faults: tuple[FaultSpec, ...] = ()
    outages: tuple[OutageSpec, ...] = ()
    search_lag: float = 5.0
    """Seconds before a new billing customer shows in search (eventual consistency)."""
    source: str = field(default="<memory>", compare=False)


class _Checker:
    """Collects problems while reading a YAML document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str, value: Any) -> None:
        self.problems.append(f"{path}: {message}, got {value!r}")

    def mapping(
        self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.add(path, "must be a mapping", value)
            return {}
        for key in value:
            if key not in allowed:
                self.problems.append(f"{path}.{key}: unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.problems.append(f"{path}.{key}: is required")
        return value

    def number(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0.0,
        exclusive: bool = False,
        maximum: float | None = None,
    ) -> float:
        if key not in mapping:
            return default
        value = mapping[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and (
            value < minimum or (exclusive and value == minimum) or (maximum is not None and value > maximum)
        ):
            ok = False
        if not ok:
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            if maximum is not None:
                bound += f" and <= {maximum:g}"
            self.add(f"{path}.{key}", f"must be a number {bound}", value)
            return default
        return float(value)

    def integer(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int,
        maximum: int | None = None,
    ) -> int:
        if key not in mapping:
            return default
        value = mapping[key]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            self.add(f"{path}.{key}", f"must be an integer {bound}", value)
            return default
        return value

    def enum(
        self,
        mapping: Mapping[str, Any],
        key: str,
        path: str,
        cast: Callable[[str], Any],
        choices: tuple[str, ...],
    ) -> Any:
        if key not in mapping:
            return None
        value = mapping[key]
        if isinstance(value, str) and value in choices:
            return cast(value)
        self.add(f"{path}.{key}", f"must be one of {', '.join(choices)}", value)
        return None


_FAULT_KEYS: Final[dict[FaultKind, tuple[str, ...]]] = {
    FaultKind.TRANSIENT: ("system", "stage", "count", "status"),
    FaultKind.RATE_LIMIT: ("system", "stage", "count", "retry_after"),
    FaultKind.TIMEOUT: ("system", "stage", "count"),
    FaultKind.AUTH: ("system", "stage"),
    FaultKind.UNKNOWN_SKU: (),
    FaultKind.MISSING_COST_CENTER: (),
    FaultKind.CLOSED_PERIOD: (),
    FaultKind.DUPLICATE_DELIVERY: ("system", "same_event_id"),
    FaultKind.OUT_OF_ORDER: ("delay",),
    FaultKind.DROPPED_WEBHOOK: (),
    FaultKind.TAX_ROUNDING: (),
    FaultKind.ERP_SLOW: ("delay",),
    FaultKind.DUPLICATE_EFFECT: (),
}
_NEEDS_SYSTEM: Final = (FaultKind.TRANSIENT, FaultKind.RATE_LIMIT, FaultKind.TIMEOUT, FaultKind.AUTH)
_DEFAULT_DELAY: Final = {FaultKind.OUT_OF_ORDER: 3.0, FaultKind.ERP_SLOW: 25.0}
_DEFAULT_COUNT: Final = {FaultKind.TRANSIENT: 2}
_SYSTEMS: Final = tuple(s.value for s in (System.CRM, System.BILLING, System.ERP))
_SCENARIOS: Final = tuple(s.value for s in Scenario)


def _fault(check: _Checker, raw: Any, path: str, mix: Mapping[Scenario, float]) -> FaultSpec | None:
    kinds = tuple(k.value for k in PLANNED_FAULT_KINDS)
    if not isinstance(raw, dict):
        check.add(path, "must be a mapping", raw)
        return None
    kind = check.enum(raw, "kind", path, FaultKind, kinds)
    if "kind" not in raw:
        check.problems.append(f"{path}.kind: is required")
    if kind is None:
        return None
    allowed = ("kind", "rate", "scenarios", *_FAULT_KEYS[kind])
    check.mapping(raw, path, allowed, required=("rate",))
    rate = check.number(raw, "rate", path, 0.0, minimum=0.0, exclusive=True, maximum=1.0)
    system = check.enum(raw, "system", path, System, _SYSTEMS)
    if kind in _NEEDS_SYSTEM and "system" not in raw:
        check.problems.append(f"{path}.system: is required for {kind.value}")
    if kind is FaultKind.DUPLICATE_DELIVERY and system not in (None, System.BILLING, System.CRM):
        check.add(f"{path}.system", "must be billing or crm (the systems that send events)", raw["system"])
        system = None
    stage: Stage | None = None
    if "stage" in raw:
        choices = tuple(s.value for s in API_STAGES.get(system, ())) if system else ()
        if system is None:
            check.add(f"{path}.stage", "needs a valid system", raw["stage"])
        else:
            stage = check.enum(raw, "stage", path, Stage, choices)
    count = check.integer(raw, "count", path, _DEFAULT_COUNT.get(kind, 1), minimum=1, maximum=50)
    status = check.integer(raw, "status", path, 503, minimum=500, maximum=599)
    retry_after = check.number(raw, "retry_after", path, 2.0)
    delay = check.number(raw, "delay", path, _DEFAULT_DELAY.get(kind, 0.0))
    same_id = raw.get("same_event_id", True)
    if not isinstance(same_id, bool):
        check.add(f"{path}.same_event_id", "must be true or false", same_id)
        same_id = True
    eligible = eligible_scenarios(kind, system, stage)
    scenarios: tuple[Scenario, ...] = eligible
    if "scenarios" in raw:
        value = raw["scenarios"]
        if not isinstance(value, list) or not value:
            check.add(f"{path}.scenarios", "must be a non-empty list of scenario names", value)
        else:
            picked = []
            for i, name in enumerate(value):
                if name not in _SCENARIOS:
                    check.add(f"{path}.scenarios[{i}]", f"must be one of {', '.join(_SCENARIOS)}", name)
                elif Scenario(name) not in eligible:
                    allowed_names = ", ".join(s.value for s in eligible) or "none"
                    check.add(
                        f"{path}.scenarios[{i}]", f"cannot experience this fault (can: {allowed_names})", name
                    )
                else:
                    picked.append(Scenario(name))
            scenarios = tuple(picked)
    if scenarios and not any(mix.get(s, 0) > 0 for s in scenarios):
        check.add(
            f"{path}",
            "no scenario of the mix can experience it (scenarios: "
            + ", ".join(s.value for s in scenarios)
            + ")",
            kind.value,
        )
    return FaultSpec(kind, rate, system, stage, count, status, retry_after, delay, same_id, scenarios)


def parse_profile(document: Any, source: str = "<memory>") -> FaultProfile:
    """Validate a parsed YAML document and build the profile; raises
    :class:`ProfileError` listing every problem."""
    check = _Checker()
    doc = check.mapping(
        document,
        "profile",
        (
            "version",
            "kind",
            "name",
            "description",
            "sla",
            "latency",
            "mix",
            "faults",
            "outages",
            "search_lag",
        ),
        required=("version", "kind", "name", "mix"),
    )
    if "version" in doc and doc["version"] != PROFILE_VERSION:
        check.add("version", f"must be {PROFILE_VERSION}", doc["version"])
    if "kind" in doc and doc["kind"] != PROFILE_KIND:
        check.add("kind", f"must be {PROFILE_KIND}", doc["kind"])
    name = doc.get("name", "")
    if "name" in doc and (not isinstance(name, str) or not name.strip()):
        check.add("name", "must be a non-empty string", name)
    description = doc.get("description", "")
    if not isinstance(description, str):
        check.add("description", "must be a string", description)
        description = ""

    sla = check.mapping(doc.get("sla", {}), "sla", ("invoice_posting_seconds", "stuck_after_seconds"))
    posting_sla = check.number(sla, "invoice_posting_seconds", "sla", 60.0, exclusive=True)
    stuck_after = check.number(sla, "stuck_after_seconds", "sla", posting_sla * 3, exclusive=True)
    if stuck_after < posting_sla:
        check.add("sla.stuck_after_seconds", "must be >= sla.invoice_posting_seconds", stuck_after)

    latency_raw = check.mapping(doc.get("latency", {}), "latency", LATENCY_KEYS)
    defaults = {
        "crm": LatencySpec(0.08, 0.4),
        "billing": LatencySpec(0.12, 0.6),
        "erp": LatencySpec(0.25, 1.5),
        "webhook": LatencySpec(0.8, 3.0),
    }
    latency: dict[str, LatencySpec] = {}
    for key in LATENCY_KEYS:
        if key not in latency_raw:
            latency[key] = defaults[key]
            continue
        path = f"latency.{key}"
        spec = check.mapping(latency_raw[key], path, ("median", "p99"), required=("median", "p99"))
        median = check.number(spec, "median", path, defaults[key].median, exclusive=True)
        p99 = check.number(spec, "p99", path, defaults[key].p99, exclusive=True)
        if "median" in spec and "p99" in spec and p99 < median:
            check.add(f"{path}.p99", "must be >= median", p99)
            p99 = median
        latency[key] = LatencySpec(median, p99)

    mix: dict[Scenario, float] = {}
    mix_raw = doc.get("mix", {})
    if not isinstance(mix_raw, dict) or not mix_raw:
        if "mix" in doc:
            check.add("mix", "must be a non-empty mapping of scenario to weight", mix_raw)
    else:
        for key, _weight in mix_raw.items():
            if key not in _SCENARIOS:
                check.add(f"mix.{key}", f"unknown scenario (known: {', '.join(_SCENARIOS)})", key)
                continue
            w = check.number(mix_raw, key, "mix", 0.0)
            mix[Scenario(key)] = w
        if mix and sum(mix.values()) <= 0:
            check.add("mix", "needs at least one weight > 0", mix_raw)

    faults: list[FaultSpec] = []
    faults_raw = doc.get("faults", [])
    if not isinstance(faults_raw, list):
        check.add("faults", "must be a list", faults_raw)
    else:
        for i, raw in enumerate(faults_raw):
            spec_ = _fault(check, raw, f"faults[{i}]", mix)
            if spec_ is not None:
                faults.append(spec_)

    outages: list[OutageSpec] = []
    outages_raw = doc.get("outages", [])
    if not isinstance(outages_raw, list):
        check.add("outages", "must be a list", outages_raw)
    else:
        for i, raw in enumerate(outages_raw):
            path = f"outages[{i}]"
            spec = check.mapping(
                raw, path, ("system", "start", "duration", "status"), required=("system", "start", "duration")
            )
            system = check.enum(spec, "system", path, System, _SYSTEMS)
            start = check.number(spec, "start", path, 0.0)
            duration = check.number(spec, "duration", path, 0.0, exclusive=True)
            status = check.integer(spec, "status", path, 503, minimum=500, maximum=599)
            if system is not None:
                outages.append(OutageSpec(system, start, duration, status))

    search_lag = check.number(doc, "search_lag", "profile", 5.0)
    if check.problems:
        raise ProfileError(source, check.problems)
    return FaultProfile(
        name=name,
        description=description.strip(),
        invoice_posting_sla=posting_sla,
        stuck_after=stuck_after,
        latency=latency,
        mix=mix,
        faults=tuple(faults),
        outages=tuple(outages),
        search_lag=search_lag,
        source=source,
    )


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``sync_engine/profiles``."""
    folder = resources.files("sync_engine") / "profiles"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> FaultProfile:
    """Load a shipped profile by name (``default``, ``clean``, ``transient``, …)
    or a profile file by path."""
    text: str
    source: str
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
        source = str(path)
    else:
        resource = resources.files("sync_engine") / "profiles" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ProfileError(
                str(name_or_path), [f"no such profile (shipped: {', '.join(builtin_profiles())})"]
            )
        text = resource.read_text(encoding="utf-8")
        source = f"sync_engine/profiles/{name_or_path}.yaml"
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(source, [f"not valid YAML: {exc}"]) from exc
    return parse_profile(document, source)
