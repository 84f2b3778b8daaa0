"""The dashboard reads the evaluator's tables and the sync engine's metrics by
names from ``tracer.semconv``; it never spells them itself (and never imports
``sla_rules``)."""

from __future__ import annotations

import ast
from pathlib import Path

from dashboard import model
from tracer import semconv

_ROOT = Path(__file__).resolve().parents[2] / "dashboard"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(_ROOT.rglob("*.py"))]


def test_statuses_and_metric_names_are_not_spelled_in_the_dashboard() -> None:
    # The statuses distinctive enough to search for: "ok", "failed", "firing",
    # "resolved" and "missing" are also column names and words of other vocabularies.
    wanted = {
        semconv.TransactionStatus.IN_PROGRESS,
        semconv.TransactionStatus.STUCK,
        semconv.TransactionStatus.HELD,
        semconv.AlertStatus.SUPPRESSED,
        semconv.ReconStatus.MISMATCH,
        *(v for k, v in vars(semconv).items() if k.startswith("METRIC_SYNCENGINE_")),
    }
    spelled = [
        f"{path.relative_to(_ROOT.parent)}:{node.lineno} {node.value!r}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in wanted
    ]
    assert not spelled, spelled


def test_the_dashboard_never_imports_the_evaluator() -> None:
    imported = {
        f"{path.relative_to(_ROOT.parent)}: {name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if name.split(".")[0] == "sla_rules"
    }
    assert not imported, imported


def test_sync_engine_levels_and_counters_are_the_engines_metric_names() -> None:
    assert model.SYNC_LEVELS == (
        semconv.METRIC_SYNCENGINE_QUEUE_DEPTH,
        semconv.METRIC_SYNCENGINE_INFLIGHT,
        semconv.METRIC_SYNCENGINE_DLQ_SIZE,
    )
    assert model.SYNC_COUNTERS == (
        semconv.METRIC_SYNCENGINE_RETRIES,
        semconv.METRIC_SYNCENGINE_TRANSACTIONS,
        semconv.METRIC_SYNCENGINE_RATELIMIT_WAITS,
    )
