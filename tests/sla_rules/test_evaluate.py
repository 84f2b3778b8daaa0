"""The pure evaluation: golden in/out pairs and single behaviours."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sla_rules import TransactionFacts, TransactionStats, builtin_pack, classify, evaluate, load_rules
from sla_rules._evaluate import TRANSACTION_KINDS, format_seconds, pending
from sla_rules._model import SpanSignal
from sla_rules._spec import RuleSet, parse_duration
from tests.sla_rules.conftest import TESTDATA, check_golden

EVAL = sorted(TESTDATA.glob("in-eval-*.yaml"))


def _at(now: float, offset: str) -> float:
    sign = -1.0 if offset.startswith("-") else 1.0
    return now + sign * parse_duration(offset.lstrip("+-"))


def _rules(spec: Any, base: Path) -> RuleSet:
    if isinstance(spec, str) and spec.startswith("builtin:"):
        return builtin_pack(spec.removeprefix("builtin:"))
    return load_rules(base / str(spec))


def transactions_from(doc: dict[str, Any], now: float) -> list[TransactionFacts]:
    out = []
    for tx in doc["transactions"]:
        spans = []
        for i, s in enumerate(tx["spans"]):
            start = _at(now, str(s["at"]))
            otype, _, oid = str(s.get("object", "")).partition("/")
            spans.append(
                SpanSignal(
                    stage=s["stage"],
                    start=start,
                    end=start + parse_duration(s.get("dur", "1s")),
                    outcome=str(s.get("outcome", "ok")),
                    status_code=str(s.get("status", "Unset")),
                    error_category=str(s.get("error_category", "")),
                    error_code=str(s.get("error_code", "")),
                    error_type=str(s.get("error_type", "")),
                    http_status=int(s.get("http", 0)),
                    vendor=str(s.get("vendor", "")),
                    system=s["stage"].split(".")[0],
                    attempt=int(s.get("attempt", 1)),
                    object_type=otype,
                    object_id=oid,
                    amount=Decimal(s["amount"]) if "amount" in s else None,
                    span_id=f"{tx['id']}-{i}",
                )
            )
        out.append(
            TransactionFacts(
                correlation_id=tx["id"],
                process=tx.get("process", "quote_to_cash"),
                legal_entity=tx.get("legal_entity", "ACME-DE"),
                region=tx.get("region", "EMEA"),
                first_seen=min(s.start for s in spans),
                last_seen=max(s.end for s in spans),
                last_stage=max(spans, key=lambda s: s.end).stage,
                spans=tuple(spans),
            )
        )
    return out


@pytest.mark.parametrize("source", EVAL, ids=lambda p: p.stem)
def test_golden_evaluation(source: Path) -> None:
    doc = yaml.safe_load(source.read_text())
    now = dt.datetime.fromisoformat(doc["now"].replace("Z", "+00:00"))
    rules = _rules(doc["rules"], source.parent)
    txs = transactions_from(doc, now.timestamp())
    stats = TransactionStats(tuple(txs))
    tx_rules = [r for r in rules.rules if r.kind in TRANSACTION_KINDS]
    findings = [f for r in tx_rules for f in evaluate(r, stats, now)]
    verdicts = []
    for tx in txs:
        mine = [f for f in findings if tx.correlation_id in f.correlation_ids]
        v = classify(tx, mine, rules.classification, tx_rules, now)
        verdicts.append({k: val for k, val in v.as_dict().items() if k not in ("objects",)})
    check_golden(
        source.with_name(source.name.replace("in-", "out-").replace(".yaml", ".json")),
        {"verdicts": verdicts, "findings": [f.as_dict() for f in findings]},
    )


def _tx(*spans: SpanSignal, cid: str = "c1", process: str = "quote_to_cash") -> TransactionFacts:
    return TransactionFacts(
        cid, process, "ACME-DE", "EMEA", spans[0].start, spans[-1].end, spans[-1].stage, spans
    )


def _span(stage: str, at: float, **kw: Any) -> SpanSignal:
    return SpanSignal(stage=stage, start=at, end=at + 1.0, system=stage.split(".")[0], **kw)


POLICY = builtin_pack().classification
RULES = [r for r in builtin_pack().rules if r.kind in TRANSACTION_KINDS]


def test_a_retry_that_succeeds_absorbs_the_failure() -> None:
    tx = _tx(
        _span("billing.invoice.create", 0),
        _span("erp.invoice.post", 10, outcome="retrying", http_status=503, attempt=1),
        _span("erp.invoice.post", 20, attempt=2),
    )
    v = classify(tx, [], POLICY, RULES, 100)
    assert (v.status, v.category) == ("ok", "")
    assert v.evidence["absorbed"] == [
        {"stage": "erp.invoice.post", "failed_attempts": 1, "categories": [], "http_status": [503]}
    ]


@pytest.mark.parametrize(
    ("span", "category", "decided_by"),
    [
        (dict(error_category="auth", http_status=503), "auth", "explicit"),
        (
            dict(http_status=503, error_code="INVALID_KEY_OR_REF", vendor="netsuite"),
            "transient",
            "http_status",
        ),
        (dict(http_status=422), "mapping", "http_status"),
        (dict(http_status=504), "transient", "http_status"),
        (dict(error_type="ConnectTimeout"), "transient", "error_type"),
        (dict(), "unknown", "none"),
    ],
)
def test_precedence_of_span_evidence(span: dict[str, Any], category: str, decided_by: str) -> None:
    tx = _tx(
        _span("crm.order.approve", 0), _span("billing.customer.upsert", 5, outcome="dead_lettered", **span)
    )
    v = classify(tx, [], POLICY, RULES, 100)
    assert (v.status, v.category, v.evidence["decided_by"]) == ("failed", category, decided_by)


def test_vendor_codes_from_the_policy() -> None:
    doc = yaml.safe_load((TESTDATA / "in-full.yaml").read_text())
    policy = load_rules(TESTDATA / "in-full.yaml").classification
    assert doc["classification"]["vendor_codes"][0]["code"] == "INVALID_KEY_OR_REF"
    tx = _tx(
        _span("erp.invoice.post", 0, outcome="failed", error_code="invalid_key_or_ref", vendor="netsuite")
    )
    precedence_without_http = type(policy)(
        **{**policy.__dict__, "precedence": ("vendor_code", "http_status")}
    )
    v = classify(tx, [], precedence_without_http, [], 10)
    assert (v.category, v.evidence["decided_by"]) == ("master_data", "vendor_code")


def test_stuck_needs_no_span_of_the_missing_stage() -> None:
    tx = _tx(_span("billing.invoice.create", 0))
    within = builtin_pack().rule("stuck-invoice-posting").within  # type: ignore[union-attr]
    assert classify(tx, [], POLICY, RULES, within - 5).status == "in_progress"
    stats = TransactionStats((tx,))
    findings = [f for r in RULES for f in evaluate(r, stats, within + 5)]
    v = classify(tx, findings, POLICY, RULES, within + 5)
    assert (v.status, v.category, v.evidence["rule"]) == ("stuck", "stuck", "stuck-invoice-posting")


def test_pending_lists_open_expectations() -> None:
    tx = _tx(_span("billing.invoice.create", 0))
    assert any("erp.invoice.post" in p for p in pending(RULES, tx, 60))
    assert pending(RULES, tx, 10 * 86400) == []


def test_window_rules_ignore_transaction_stats() -> None:
    rule = builtin_pack().rule("customer-sync-success-rate")
    assert evaluate(rule, TransactionStats(()), 0) == []


@pytest.mark.parametrize(("seconds", "text"), [(42.5, "42.5s"), (3725, "1h2m"), (90000, "1d1h"), (0, "0s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text
