"""The per-transaction facts kept at ingest time (``revtrace_eval_facts``,
migration 0102): a transactions pass that reads them judges exactly as one
that aggregates the spans, the back-fill of a store that had spans before is
idempotent, and the view's SQL agrees with the evaluator's."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import pytest

from collector.migrations import RenderOptions, load_migrations
from collector.store import Store
from sla_rules import Evaluator, RuleSet, builtin_pack, parse_rules
from sla_rules import _queries as q
from sla_rules._model import MttrStats
from tests.sla_rules.spans import insert_spans, span

HOUR = 3600.0
DAY = 86400.0


def _view_select() -> str:
    (migration,) = [m for m in load_migrations(RenderOptions(ttl_days=0, cluster="")) if m.version == "0102"]
    view = next(s for s in migration.statements if s.startswith("CREATE MATERIALIZED VIEW"))
    return view[view.index("AS SELECT") + len("AS ") :]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_backfill_is_the_view_over_a_time_range() -> None:
    backfill = q.backfill_sql()
    assert backfill.startswith("INSERT INTO revtrace_eval_facts\n")
    body = backfill.removeprefix("INSERT INTO revtrace_eval_facts\n")
    where = "WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp < {end:DateTime64(9)}"
    assert where in body
    assert _words(body.replace(where, "")) == _words(_view_select())


def test_the_view_judges_outcomes_as_the_evaluator_does() -> None:
    view = _view_select()
    for marker in ("OK", "EFFECT", "FINAL_FAILURE"):
        assert q._MARKERS[marker] in view, marker
    assert f"Outcome = {q._MARKERS['RETRYING']}" in view
    assert f"Outcome != {q._MARKERS['RETRYING']}" in view


def _workload(now: float) -> list[list[dict[str, Any]]]:
    """Transactions of every shape the facts distinguish, written in several inserts."""
    first = [
        span("ok-1", "crm.order.approve", now - 3 * HOUR),
        span(
            "ok-1",
            "billing.invoice.create",
            now - 2 * HOUR,
            amount="100.00",
            object_type="invoice",
            object_id="in_1",
        ),
        span(
            "blip",
            "billing.invoice.create",
            now - 2 * HOUR,
            amount="50.00",
            object_type="invoice",
            object_id="in_b",
        ),
        span("blip", "erp.invoice.post", now - 2 * HOUR + 5, outcome="retrying", http=503, attempt=1),
        span("md", "billing.invoice.create", now - HOUR, legal_entity="ACME-SG"),
        span(
            "md",
            "erp.invoice.post",
            now - HOUR + 5,
            legal_entity="ACME-SG",
            outcome="failed",
            error_category="master_data",
            error_code="INVALID_KEY_OR_REF",
            vendor="netsuite",
        ),
        span("late", "billing.invoice.create", now - 10 * HOUR),
        span("waiting", "billing.invoice.create", now - 600),
        span("mismatch", "billing.invoice.create", now - 2 * HOUR, amount="100.00"),
        span(
            "dup-one-insert",
            "billing.invoice.create",
            now - 2 * HOUR,
            object_type="invoice",
            object_id="in_7",
        ),
        span(
            "dup-one-insert",
            "billing.invoice.create",
            now - 2 * HOUR + 10,
            object_type="invoice",
            object_id="in_8",
        ),
        span(
            "dup-two-inserts",
            "billing.invoice.create",
            now - 2 * HOUR,
            object_type="invoice",
            object_id="in_9",
        ),
        span(
            "same-object-twice",
            "billing.invoice.create",
            now - 2 * HOUR,
            object_type="invoice",
            object_id="in_5",
        ),
        span("order", "billing.payment.succeed", now - 2 * HOUR),
        span("future", "billing.invoice.create", now - HOUR),
        span("old", "billing.invoice.create", now - 8 * DAY),
        span("key-twice", "billing.invoice.create", now - HOUR, idempotency_key="k1"),
        span("key-two-keys", "billing.invoice.create", now - HOUR, idempotency_key="k2"),
        span("replayed", "erp.invoice.post", now - 5 * HOUR, outcome="dead_lettered", http=500),
    ]
    second = [
        span("ok-1", "erp.invoice.post", now - 2 * HOUR + 60, amount="100.00"),
        span("blip", "erp.invoice.post", now - 2 * HOUR + 20, attempt=2, amount="50.00"),
        span("late", "erp.invoice.post", now - 5 * HOUR),
        span("mismatch", "erp.invoice.post", now - 2 * HOUR + 30, amount="101.00"),
        span(
            "dup-two-inserts",
            "billing.invoice.create",
            now - 2 * HOUR + 10,
            object_type="invoice",
            object_id="in_10",
        ),
        span(
            "same-object-twice",
            "billing.invoice.create",
            now - 2 * HOUR + 10,
            object_type="invoice",
            object_id="in_5",
        ),
        span("order", "billing.invoice.create", now - HOUR),
        span("future", "erp.invoice.post", now + HOUR),
        span("old", "erp.invoice.post", now - HOUR),
        span("key-twice", "billing.invoice.create", now - HOUR + 10, idempotency_key="k1"),
        span("key-two-keys", "billing.invoice.create", now - HOUR + 10, idempotency_key="k3"),
        span("replayed", "erp.invoice.post", now - 4 * HOUR, attempt=2),
    ]
    third = [span("waiting", "billing.invoice.create", now - 500, outcome="skipped_duplicate")]
    return [first, second, third]  # fmt: skip


def _rules() -> RuleSet:
    pack = builtin_pack()
    keys = parse_rules(
        {
            "version": "revtrace/v1",
            "rules": [
                {"name": "invoice-key-twice", "kind": "duplicate", "stages": ["billing.invoice.create"],
                 "key": "idempotency_key"},
            ],
        }
    )  # fmt: skip
    return dataclasses.replace(pack, rules=pack.rules + keys.rules)


def _verdicts(store: Store) -> dict[str, tuple[Any, ...]]:
    rows = store.query(
        "SELECT * EXCEPT EvaluatedAt FROM revtrace_transactions FINAL ORDER BY CorrelationId"
    ).rows
    return {row[0]: tuple(row) for row in rows}


def _judge(store: Store, rules: RuleSet, now: float) -> dict[str, tuple[Any, ...]]:
    store.command("TRUNCATE TABLE revtrace_transactions")
    Evaluator(store, rules, clock=lambda: now).transactions(now, incremental=False)
    return _verdicts(store)


def _from_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Evaluator, "facts_ready", lambda self, since, until, backfill=True: False)


@pytest.fixture
def now() -> float:
    return float(int(time.time()))


def test_a_pass_over_the_facts_table_judges_as_one_over_the_spans(
    store: Store, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    for batch in _workload(now):
        insert_spans(store, batch)
    rules = _rules()
    evaluator = Evaluator(store, rules, clock=lambda: now)
    # A new store: every span went through the view.
    assert evaluator.facts_ready(now - rules.evaluator.lookback, now)
    # Now, and as of an earlier time (sla check --at): what had happened by then;
    # with a row per insert (the pass combines them), then with the rows merged.
    times = (now, now - 3 * HOUR + 30)
    store.command("SYSTEM STOP MERGES revtrace_eval_facts")
    fast = [_judge(store, rules, at) for at in times]
    store.command("SYSTEM START MERGES revtrace_eval_facts")
    store.command("OPTIMIZE TABLE revtrace_eval_facts FINAL")
    merged = "SELECT max(n) FROM (SELECT count() AS n FROM revtrace_eval_facts GROUP BY CorrelationId, _partition_id)"
    assert store.query(merged).scalar() == 1
    assert [_judge(store, rules, at) for at in times] == fast
    _from_spans(monkeypatch)
    assert [_judge(store, rules, at) for at in times] == fast
    status = {cid: (row[4], row[5]) for cid, row in fast[0].items()}
    assert status == {
        "ok-1": ("ok", ""),
        "blip": ("ok", ""),  # the retry absorbed the failure
        "replayed": ("ok", ""),
        "md": ("held", "master_data"),
        "late": ("failed", "latency"),
        "waiting": ("in_progress", ""),
        "mismatch": ("failed", "mismatch"),
        "dup-one-insert": ("failed", "duplicate"),
        "dup-two-inserts": ("failed", "duplicate"),
        "same-object-twice": ("in_progress", ""),  # one object: no duplicate (its posting is due)
        "key-twice": ("failed", "duplicate"),
        "key-two-keys": ("in_progress", ""),
        "order": ("failed", "out_of_order"),
        # A span after the evaluation time is not seen yet; one before the lookback not any more.
        "future": ("in_progress", ""),
        "old": ("ok", ""),
    }
    assert set(fast[1]) < set(fast[0])


def test_a_store_with_spans_from_before_the_view_is_backfilled_idempotently(
    store: Store, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    for batch in _workload(now):
        insert_spans(store, batch)
    rules = _rules()
    with monkeypatch.context() as spans_only:
        _from_spans(spans_only)
        expected = _judge(store, rules, now)
    # As if the view came with an upgrade an hour after the span table: it saw none of these spans.
    store.command("TRUNCATE TABLE revtrace_eval_facts")
    store.command(
        "INSERT INTO revtrace_schema_migrations (version, name, checksum, applied_at, duration_ms) "
        "SELECT version, name, checksum, applied_at + 3600, duration_ms FROM revtrace_schema_migrations "
        "WHERE version = '0102'"
    )
    evaluator = Evaluator(store, rules, clock=lambda: now)
    horizon = now - rules.evaluator.lookback
    assert not evaluator.facts_ready(horizon, now, backfill=False)
    assert q.facts_complete_from(store, "") == math.inf
    days = 0
    while not evaluator.facts_ready(horizon, now):  # one day per call, newest first
        days += 1
        assert days <= 9
    complete = float(evaluator._state(q.FACTS_STATE))
    assert complete <= horizon < complete + DAY
    assert _judge(store, rules, now) == expected
    # Again, and over spans the table already holds: nothing changes.
    q.backfill_facts(store, 0.0, math.inf)
    q.backfill_facts(store, now - DAY, now + DAY)
    assert _judge(store, rules, now) == expected


def test_a_store_without_the_facts_table_reads_the_spans(store: Store, now: float) -> None:
    insert_spans(store, _workload(now)[0])
    store.command("DROP VIEW revtrace_eval_facts_mv")
    store.command("DROP TABLE revtrace_eval_facts")
    store.command("DELETE FROM revtrace_schema_migrations WHERE version = '0102'")
    evaluator = Evaluator(store, builtin_pack(), clock=lambda: now)
    assert not evaluator.facts_ready(now - DAY, now)
    result = evaluator.transactions(now)
    assert {v.correlation_id for v in result.verdicts} >= {"md", "waiting"}


def test_facts_are_one_entry_per_stage_and_insert(store: Store, now: float) -> None:
    for batch in _workload(now):
        insert_spans(store, batch)
    rows = store.query(
        "SELECT CorrelationId, Stages, Effects, arrayMap((lo, hi) -> lo < hi, ObjectMins, ObjectMaxs) "
        "FROM revtrace_eval_facts FINAL WHERE CorrelationId IN ('dup-one-insert', 'dup-two-inserts', 'blip')"
    ).rows
    steps = {cid: list(zip(stages, effects, two, strict=True)) for cid, stages, effects, two in rows}
    assert steps["dup-one-insert"] == [("billing.invoice.create", 2, True)]
    assert sorted(steps["dup-two-inserts"]) == [("billing.invoice.create", 1, False)] * 2
    assert sorted(steps["blip"]) == [
        ("billing.invoice.create", 1, False),
        ("erp.invoice.post", 0, False),
        ("erp.invoice.post", 1, False),
    ]


def test_mttr_finds_the_failed_transactions_in_the_facts_table_as_in_the_spans(
    store: Store, now: float
) -> None:
    for batch in _workload(now):
        insert_spans(store, batch)
    (rule,) = [r for r in builtin_pack().rules if r.kind == "mttr"]
    store.command("SYSTEM STOP MERGES revtrace_eval_facts")
    cases = [
        (dataclasses.replace(rule, window=window, group_by=group_by), at)
        for window in (7 * DAY, 4.5 * HOUR, 30 * 60.0)
        for group_by in ((), ("legal_entity",), ("vendor",))
        for at in (now, now - 4 * HOUR)
    ]

    def comparable(stats: MttrStats) -> tuple[Any, ...]:
        groups = sorted(
            (sorted(labels.items()), n, None if math.isnan(mean) else mean)
            for labels, n, mean in stats.groups
        )
        return (groups, stats.unresolved)

    from_spans = [comparable(q.mttr_stats(store, r, until=at)) for r, at in cases]
    assert [comparable(q.mttr_stats(store, r, until=at, facts=True)) for r, at in cases] == from_spans
    # "replayed" was dead-lettered and replayed an hour later; "md" is still failed.
    (groups, unresolved) = from_spans[0]
    assert groups == [([], 1, pytest.approx(HOUR))]
    assert unresolved == 1
    assert from_spans != [from_spans[0]] * len(cases)
