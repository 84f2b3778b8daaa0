"""The evaluator against the reference sync engine's ground truth: precision
and recall per category (``sla_rules.score``)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from collector.service import Collector
from collector.store import Store
from sla_rules import Evaluator, RuleSet, Score, builtin_pack, load_ground_truth, score
from sla_rules._scoring import store_verdicts
from sla_rules._spec import scale_durations
from tests.sla_rules.conftest import TESTDATA

PROFILE = TESTDATA / "profiles" / "every-category.yaml"
TIME_SCALE = 0.05
"""The engine runs 20× faster than its simulated clock; the rules are scaled to match."""


def test_score_counts_per_category() -> None:
    truth = {
        "a": {"expected": {"category": "stuck"}},
        "b": {"expected": {"category": "stuck"}},
        "c": {"expected": {"category": None}},
        "d": {"expected": {"category": "mapping"}},
        "e": {"expected": {"category": "mapping"}},
    }
    verdicts = {
        "a": ("stuck", "stuck"),
        "b": ("failed", "latency"),
        "c": ("failed", "latency"),
        "d": ("failed", "mapping"),
    }
    s = score(truth, verdicts)
    assert (s.categories["stuck"].tp, s.categories["stuck"].fn, s.categories["stuck"].recall) == (1, 1, 0.5)
    assert (s.categories["latency"].fp, s.categories["latency"].precision) == (2, 0.0)
    assert (s.categories["mapping"].precision, s.categories["mapping"].recall) == (1.0, 0.5)
    assert s.missing == 1
    assert s.confusion[("mapping", "")] == 1
    assert "stuck → latency: 1" in s.table()
    assert s.as_dict()["categories"]["stuck"]["recall"] == 0.5


def rules_for(profile_path: str | Path, time_scale: float) -> RuleSet:
    """The demo pack with the SLAs of the profile (a shipped name or a path), on the engine's clock."""
    from sync_engine import load_profile

    profile = load_profile(profile_path)
    base = builtin_pack("demo")
    rules = []
    for rule in base.rules:
        if rule.name == "invoice-posting-latency":
            rule = dataclasses.replace(rule, deadline=profile.invoice_posting_sla)
        elif rule.kind == "completeness":
            rule = dataclasses.replace(rule, within=profile.stuck_after)
        rules.append(rule)
    return scale_durations(dataclasses.replace(base, rules=tuple(rules)), time_scale)


def run_and_score(
    store: Store,
    collector: Collector,
    tmp_path: Path,
    profile: str | Path,
    *,
    rate: float,
    duration: float,
    seed: int,
) -> Score:
    """Run the reference engine with ``profile`` into ``collector``, evaluate once
    everything waiting is past its deadline, and score the verdicts."""
    sync_engine = pytest.importorskip("sync_engine")
    truth_path = tmp_path / "ground-truth.jsonl"
    workload = sync_engine.Workload(
        sync_engine.WorkloadConfig(
            rate_per_s=rate,
            profile=profile,
            seed=seed,
            otlp_endpoint=collector.http_endpoint,
            ground_truth_path=truth_path,
            duration_s=duration,
            time_scale=TIME_SCALE,
            metrics_interval_s=1,
            engine=sync_engine.EngineConfig(reconcile_every=0.0),
        )
    )
    workload.start()
    try:
        workload.wait(timeout=120)
    finally:
        workload.stop()
    emitted = workload.summary()["spans_emitted"]
    deadline = time.monotonic() + 30
    while (
        store.query("SELECT count() FROM revtrace_spans").scalar() < emitted and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    rules = rules_for(profile, TIME_SCALE)
    # Judge once everything still waiting is past its deadline, as the ground truth does.
    at = time.time() + rules.rule("stuck-invoice-posting").within + 1  # type: ignore[union-attr]
    Evaluator(store, rules).cycle(at, notify=False)
    truth = load_ground_truth(truth_path)
    result = score(truth, store_verdicts(store))
    print(result.table())
    (tmp_path / "score.json").write_text(json.dumps(result.as_dict(), indent=2))
    return result


def test_precision_and_recall_against_the_reference_engine(
    store: Store, collector: Collector, tmp_path: Path
) -> None:
    """Issue 5's bar: precision and recall of at least 0.95 overall and for
    every category seen at least five times. About 400 transactions give five
    to six categories five or more (the rarest, business_rule and
    rate_limited, stay under five); below twenty, one wrong verdict already
    fails its category. Runs with seeds 11, 12 and 13 scored 1.0 for every
    category whenever every transaction had a verdict."""
    result = run_and_score(store, collector, tmp_path, PROFILE, rate=12, duration=30, seed=11)
    report = result.table()
    assert result.missing == 0, report
    assert result.transactions >= 250, report
    assert (result.precision or 0) >= 0.95 and (result.recall or 0) >= 0.95, report
    measured = 0
    for name, c in result.categories.items():
        if c.tp + c.fn >= 5:
            measured += 1
            assert (c.recall or 0) >= 0.95, f"{name}\n{report}"
        if c.tp + c.fp >= 5:
            assert (c.precision or 0) >= 0.95, f"{name}\n{report}"
    assert measured >= 4, report


def test_a_duplicate_billing_customer_is_seen(store: Store, collector: Collector, tmp_path: Path) -> None:
    """Every order of the duplicate_effect profile makes two billing customers,
    the first by a call whose response timed out: billing's customer.created
    webhooks put both on the transaction, and the duplicate rule finds them."""
    result = run_and_score(store, collector, tmp_path, "duplicate_effect", rate=12, duration=4, seed=5)
    report = result.table()
    duplicate = result.categories["duplicate"]
    assert result.missing == 0, report
    assert duplicate.tp + duplicate.fn >= 20, report
    assert (duplicate.recall or 0) >= 0.95 and (duplicate.precision or 0) >= 0.95, report
