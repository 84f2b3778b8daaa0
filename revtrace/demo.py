"""``revtrace demo``: the sidecar plus the reference sync engine driving
realistic quote-to-cash traffic with injected faults, on the embedded store.

Interactive by default (runs until Ctrl-C, the dashboard shows the traffic);
``--duration`` makes a bounded run that ends with a summary: transactions,
spans stored, and per failure category what was injected vs what revtrace
reported (precision and recall against the engine's ground truth).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.service import CollectorConfig
from revtrace.sidecar import RoleFactory, Sidecar

__all__ = ["DEMO_DASHBOARD_QUERY", "DemoOptions", "DemoRun", "run_demo"]

log = logging.getLogger(__name__)

# The demo evaluates with thresholds compressed to seconds (the sync engine's
# demo profile), unless the user points REVTRACE_RULES elsewhere; the
# dashboard's SLA cards follow the same objectives (sla_rules/packs/demo.yaml).
DEMO_RULES = "builtin:demo"
DEMO_DASHBOARD_SLAS = {
    "REVTRACE_SLA_INVOICE_POSTING_S": "30",
    "REVTRACE_SLA_PAYMENT_PROPAGATION_S": "30",
    "REVTRACE_SLA_MTTR_S": "300",
}
DEMO_DASHBOARD_QUERY = "?range=15m"
"""The dashboard link the demo prints: a range that fits minutes of traffic."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``revtrace demo`` was asked for."""

    rate_per_s: float = 3.0
    profile: str = "default"
    seed: int = 0
    duration_s: float | None = None
    headless: bool = False
    settle_s: float = 20.0
    """After a bounded run, how long to wait for in-flight transactions and the evaluator."""


@dataclass
class DemoRun:
    """A finished bounded run: the summary and the ground truth behind it."""

    summary: dict[str, Any]
    ground_truth: Path
    score_table: str


def run_demo(
    config: CollectorConfig,
    options: DemoOptions,
    roles: list[RoleFactory],
    *,
    on_ready: Any = None,
    stop_event: threading.Event | None = None,
) -> DemoRun | None:
    """Start the sidecar and the workload; for a bounded run, return its summary."""
    from sync_engine import Workload, WorkloadConfig

    os.environ.setdefault("REVTRACE_RULES", DEMO_RULES)
    for name, value in DEMO_DASHBOARD_SLAS.items():
        os.environ.setdefault(name, value)
    run_dir = config.data_dir / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    ground_truth = run_dir / f"ground-truth-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    sidecar = Sidecar(config, roles=roles)
    stop = stop_event or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    workload = None
    try:
        sidecar.start()
        workload = Workload(
            WorkloadConfig(
                rate_per_s=options.rate_per_s,
                profile=options.profile,
                seed=options.seed,
                otlp_endpoint=sidecar.collector.http_endpoint,
                otlp_headers=_ingest_headers(config),
                ground_truth_path=ground_truth,
                duration_s=options.duration_s,
                metrics_interval_s=5.0,
                # Ctrl-C on an interactive demo should not wait long for stragglers.
                drain_timeout_s=30.0 if options.duration_s is not None else 5.0,
            )
        )
        workload.start()
        # After every role started: Streamlit installs its own handlers on start-up.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        # The dashboard's workbench replays through the engine's API.
        os.environ["REVTRACE_REPLAY_URL"] = workload.engine_url
        os.environ["REVTRACE_REPLAY_TOKEN"] = workload.replay_token
        if on_ready is not None:
            on_ready(sidecar, workload)
        if options.duration_s is None:
            while not stop.wait(0.5):
                pass
            return None
        deadline = time.monotonic() + options.duration_s + 120
        while not workload.wait(0.5):
            if stop.is_set() or time.monotonic() > deadline:
                break
        workload.stop()
        summary = dict(workload.summary())
        workload = None
        return _settle_and_score(sidecar, ground_truth, summary, options.settle_s)
    finally:
        if workload is not None:
            workload.stop()
        sidecar.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ingest_headers(config: CollectorConfig) -> dict[str, str]:
    if config.ingest_tokens:
        return {"authorization": f"Bearer {config.ingest_tokens[0]}"}
    return {}


def _settle_and_score(
    sidecar: Sidecar, ground_truth: Path, summary: dict[str, Any], settle_s: float
) -> DemoRun:
    """Flush the spool, let the evaluator pass over the last transactions, then score."""
    from sla_rules import EvaluatorRole
    from sla_rules._scoring import load_ground_truth, score, store_verdicts

    assert sidecar.collector.writer is not None
    sidecar.collector.writer.flush(60)
    evaluator = next((r for r in sidecar.roles if isinstance(r, EvaluatorRole)), None)
    truth = load_ground_truth(ground_truth) if ground_truth.exists() else {}
    # Transactions the end of the run cut short have no final answer to score.
    cut_short = [cid for cid, line in truth.items() if line.get("expected", {}).get("incomplete")]
    # Nor have stuck ones whose completeness window has not passed yet: no
    # observer can call them stuck before then.
    not_due = _stuck_not_yet_due(truth, evaluator.evaluator.rules.rules if evaluator else (), time.time())
    deadline = time.monotonic() + settle_s
    result = None
    while True:
        if evaluator is not None:
            evaluator.evaluator.cycle(notify=False)
        result = score(truth, store_verdicts(sidecar.store), skip=[*cut_short, *not_due])
        if result.missing == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    ids = list(truth)
    spans = 0
    if ids:
        spans = int(
            sidecar.store.query(
                "SELECT count() FROM revtrace_spans WHERE CorrelationId IN {ids:Array(String)}", {"ids": ids}
            ).scalar()
        )
    summary = {
        **summary,
        "spans_stored": spans,
        "cut_short": len(cut_short),
        "stuck_not_yet_due": len(not_due),
        "score": result.as_dict(),
    }
    return DemoRun(summary=summary, ground_truth=ground_truth, score_table=result.table())


def _stuck_not_yet_due(truth: dict[str, Any], rules: Sequence[Any], now: float) -> list[str]:
    """Expected-stuck transactions whose completeness window (from the stuck fault on)
    ends after ``now``."""
    from sla_rules._spec import CompletenessRule

    windows = {r.expect: r.within for r in rules if isinstance(r, CompletenessRule) and r.expect}
    idle = [r.within for r in rules if isinstance(r, CompletenessRule) and r.idle]
    fallback = max([*windows.values(), *idle], default=0.0)
    out: list[str] = []
    for cid, line in truth.items():
        if (line.get("expected") or {}).get("category") != "stuck":
            continue
        for fault in line.get("faults") or ():
            if fault.get("category") != "stuck" or not fault.get("at"):
                continue
            at = dt.datetime.fromisoformat(str(fault["at"]).replace("Z", "+00:00")).timestamp()
            if at + windows.get(str(fault.get("stage", "")), fallback) > now:
                out.append(cid)
                break
    return out
