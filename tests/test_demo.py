"""``revtrace demo``: the README's first command, end to end (headless and bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from revtrace.demo import _stuck_not_yet_due
from sla_rules import builtin_pack
from tests.resilience.harness import ROOT, _env, free_port


def test_stuck_transactions_are_scored_only_once_their_window_passed() -> None:
    rules = builtin_pack("demo").rules  # stuck-invoice-posting: 240 s after the invoice
    now = time.time()

    def line(seconds_ago: float, stage: str = "erp.invoice.post") -> dict[str, object]:
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - seconds_ago)) + ".000Z"
        return {
            "expected": {"category": "stuck"},
            "faults": [{"category": "stuck", "stage": stage, "at": at}],
        }

    truth = {
        "young": line(30),
        "old": line(300),
        "failed": {"expected": {"category": "master_data"}, "faults": [{"category": "master_data"}]},
    }
    assert _stuck_not_yet_due(truth, rules, now) == ["young"]


def test_demo_runs_headless_and_scores_itself(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "revtrace.cli",
            "--data-dir",
            str(tmp_path / "data"),
            "demo",
            "--duration",
            "20",
            "--headless",
            "--json",
            "--rate",
            "4",
            "--seed",
            "5",
            "--http-port",
            str(free_port()),
            "--grpc-port",
            "-1",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert summary["transactions"] >= 40
    assert summary["spans_stored"] > 5 * summary["transactions"]
    score = summary["score"]
    assert score["missing"] == 0  # every scored transaction has a verdict
    assert score["precision"] >= 0.95, score
    assert score["recall"] >= 0.9, score
    # 20 s is shorter than the demo's 240 s stuck window: those are left out, not missed.
    assert score["categories"].get("stuck", {}).get("fn", 0) == 0, score
    assert "Traceback" not in done.stderr
