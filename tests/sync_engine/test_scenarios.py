"""One run per shipped fault profile: the ground truth says what a perfect
observer should conclude, and the spans must show exactly that, where it says."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from sync_engine import Runtime, Scenario, load_profile
from sync_engine._store import TxState
from tests.sync_engine.conftest import TIME_SCALE, Spans, test_engine_config
from tracer.semconv import CANONICAL_STAGES, RECONCILIATION_STAGES, System

_STAGES = set(CANONICAL_STAGES) | {s.value for s in RECONCILIATION_STAGES}

_ANY = None  # the profile's own pick
_SALE, _CHANGE = Scenario.NEW_SALE, Scenario.SUBSCRIPTION_CHANGE


@dataclass(frozen=True)
class Case:
    """How to run a profile and what its ground truth must contain."""

    batches: list[list[Scenario | None]]
    """Scenarios started together, batch after batch."""
    produces: set[tuple[str, str | None]]
    """(outcome, category) pairs that must occur."""
    absorbs: set[str] = field(default_factory=set)
    """Absorbed categories that must occur."""
    engine: dict[str, Any] = field(default_factory=dict)
    seed: int = 1
    """The world's seed: deterministic draws of which fault each transaction gets."""


CASES: dict[str, Case] = {
    "clean": Case([[_ANY] * 4, [_ANY] * 6], {("ok", None)}),
    "transient": Case([[_ANY] * 6], {("failed", "transient"), ("ok", None)}, {"transient"}),
    "rate_limit": Case(
        [[_ANY] * 4],
        {("held", "rate_limited"), ("ok", None)},
        {"rate_limited"},
        {"requeue_delays": (5.0, 5.0, 5.0)},
        seed=3,
    ),
    "timeout": Case([[_ANY] * 2], {("ok", None)}, {"transient"}, {"timeouts": {s: 20.0 for s in System}}),
    "auth": Case([[_ANY] * 2], {("held", "auth")}),
    "unknown_sku": Case([[_ANY] * 2], {("failed", "mapping")}),
    "missing_cost_center": Case([[_ANY], [_ANY] * 2], {("held", "master_data")}),
    "closed_period": Case([[_ANY] * 2], {("held", "business_rule")}),
    "duplicate_delivery": Case([[_ANY] * 3, [_ANY] * 5], {("ok", None)}, {"duplicate"}),
    "out_of_order": Case(
        [[_SALE] * 5, [_CHANGE] * 5], {("ok", None), ("failed", "out_of_order")}, {"out_of_order"}
    ),
    "dropped_webhook": Case([[_ANY] * 2], {("stuck", "stuck")}),
    "tax_rounding": Case([[_ANY] * 2], {("ok", "mismatch")}),
    "erp_slow": Case([[_ANY] * 2], {("ok", "latency")}),
    "duplicate_effect": Case(
        [[_ANY] * 2], {("ok", "duplicate")}, {"transient"}, {"timeouts": {s: 20.0 for s in System}}
    ),
    "erp_outage": Case([[_ANY] * 4], {("ok", "latency")}, {"transient"}),
}


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _ok(spans: list[ReadableSpan], stage: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == stage and _attrs(s)["biz.outcome"] == "ok"]


def check_line(line: dict[str, Any], spans: list[ReadableSpan], runtime: Runtime) -> None:
    """The spans of one transaction agree with its ground-truth line."""
    expected = line["expected"]
    outcome, category = expected["outcome"], expected["category"]
    cid = line["correlation_id"]
    assert spans or outcome == "stuck", f"{cid}: no spans"
    for span in spans:
        attrs = _attrs(span)
        assert span.name in _STAGES and attrs["biz.stage"] == span.name
        assert attrs["biz.process"] == line["process"]
        if line["legal_entity"] and line["process"] != "reconciliation":
            assert attrs.get("biz.legal_entity") == line["legal_entity"], span.name
        assert attrs["biz.outcome"] in {
            "ok",
            "failed",
            "retrying",
            "skipped_duplicate",
            "parked",
            "dead_lettered",
        }
        if attrs["biz.outcome"] in ("retrying", "failed", "dead_lettered"):
            assert "biz.error.category" in attrs, span.name
    by_stage: dict[str, list[int]] = {}
    for span in spans:
        if ("biz.attempt" in _attrs(span) and span.kind.name != "CONSUMER") or span.name in (
            "middleware.order.validate",
        ):
            by_stage.setdefault(span.name, []).append(_attrs(span)["biz.attempt"])
    for stage, attempts in by_stage.items():
        assert attempts == list(range(1, len(attempts) + 1)), (stage, attempts)
    failures = [s for s in spans if _attrs(s)["biz.outcome"] in ("failed", "dead_lettered")]
    if outcome == "ok":
        assert not failures, [(_attrs(s)["biz.stage"], _attrs(s).get("biz.error.category")) for s in failures]
    if outcome in ("failed", "held"):
        assert any(_attrs(s).get("biz.error.category") == category for s in failures), (category, failures)
    if line["process"] in ("quote_to_cash", "renewal") and outcome in ("ok", "held"):
        assert _ok(spans, "billing.invoice.create") or line["process"] == "renewal"
    if outcome == "held":
        assert not _ok(spans, "erp.invoice.post")
        assert runtime.engine.transactions[cid].state is TxState.HELD
    if outcome == "stuck":
        assert _ok(spans, "billing.invoice.create") and not [s for s in spans if s.name == "erp.invoice.post"]
    if category == "mismatch":
        billed = Decimal(str(_attrs(_ok(spans, "billing.invoice.create")[-1])["biz.amount"]))
        booked = Decimal(str(_attrs(_ok(spans, "erp.invoice.post")[-1])["biz.amount"]))
        assert billed != booked and abs(billed - booked) < Decimal("1.00")
    if category == "latency":
        created = _ok(spans, "billing.invoice.create")[-1].end_time or 0
        posted = _ok(spans, "erp.invoice.post")[-1].end_time or 0
        assert (posted - created) / 1e9 > line["measured"]["sla_seconds"]
    if category == "duplicate":
        account = next(
            r.split("/", 1)[1] for r in runtime.engine.transactions[cid].refs if r.startswith("crm:account/")
        )
        twins = [
            c
            for c in runtime.sims.billing.customers.values()
            if c["metadata"].get("crm_account_id") == account
        ]
        assert len(twins) == 2
        upserts = [(s.kind.name, _attrs(s)) for s in spans if s.name == "billing.customer.upsert"]
        calls = [attrs for kind, attrs in upserts if kind == "CLIENT"]
        assert calls[0]["biz.outcome"] == "retrying" and calls[-1]["biz.outcome"] == "ok"
        # Both customers show: billing's customer.created webhook for each, on the transaction.
        notified = [attrs for kind, attrs in upserts if kind == "CONSUMER" and attrs["biz.outcome"] == "ok"]
        assert {a["biz.object.id"] for a in notified} == {c["id"] for c in twins}
        assert all(f"crm:account/{account}" in a["biz.object.refs"] for a in notified)
    if (
        line["scenario"] in ("new_sale", "upsell_new_entity")
        and outcome in ("ok", "held")
        and category != "duplicate"
    ):
        # One customer: the engine's and the one billing announced (when billing created it) are the same.
        customers = {_attrs(s)["biz.object.id"] for s in _ok(spans, "billing.customer.upsert")}
        assert len(customers) == 1, customers
    if category == "out_of_order":
        outcomes = [_attrs(s)["biz.outcome"] for s in spans]
        assert "parked" in outcomes and "dead_lettered" in outcomes
    for absorbed in expected["absorbed"]:
        if absorbed in ("transient", "rate_limited"):
            assert any(
                _attrs(s).get("biz.error.category") == absorbed and _attrs(s)["biz.outcome"] == "retrying"
                for s in spans
            ), absorbed
        elif absorbed == "duplicate":
            assert any(_attrs(s)["biz.outcome"] == "skipped_duplicate" for s in spans)
        elif absorbed == "out_of_order":
            assert any(_attrs(s)["biz.outcome"] == "parked" for s in spans)
    for fault in line["faults"]:
        assert fault["kind"] and fault["system"] in ("crm", "billing", "erp")


@pytest.mark.parametrize("profile", list(CASES))
def test_profile_faults_show_in_the_spans_where_the_ground_truth_says(
    profile: str, world: Any, spans: Spans
) -> None:
    case = CASES[profile]
    runtime = world(profile, case.batches, seed=case.seed, engine=test_engine_config(**case.engine))
    spans.refresh()
    lines = [line for line in runtime.truth.lines if line["process"] != "reconciliation"]
    assert lines
    produced = {(line["expected"]["outcome"], line["expected"]["category"]) for line in lines}
    assert case.produces <= produced, produced
    absorbed = {c for line in lines for c in line["expected"]["absorbed"]}
    assert case.absorbs <= absorbed, absorbed
    for line in lines:
        assert line["time_scale"] == TIME_SCALE and "incomplete" not in line["expected"]
        check_line(line, spans.of(line["correlation_id"]), runtime)
    kinds = {fault["kind"] for line in lines for fault in line["faults"]}
    planned = {f.kind.value for f in load_profile(profile).faults}
    assert planned <= kinds or profile in ("clean", "erp_outage")
    if profile == "clean":
        assert all(
            not line["faults"] and line["expected"] == {"outcome": "ok", "category": None, "absorbed": []}
            for line in lines
        )
