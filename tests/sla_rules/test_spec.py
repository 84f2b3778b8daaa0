"""The rules spec: golden in/out pairs, the bad/ folder, the shipped packs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sla_rules import RuleError, builtin_pack, load_rules, parse_rules
from sla_rules._spec import PACKS, parse_duration, resolve_env
from tests.sla_rules.conftest import TESTDATA, check_golden

GOOD = sorted(p for p in TESTDATA.glob("in-*.yaml") if not p.name.startswith("in-eval-"))
BAD = sorted((TESTDATA / "bad").glob("*.yaml"))


@pytest.mark.parametrize("source", GOOD, ids=lambda p: p.stem)
def test_golden_rules(source: Path) -> None:
    ruleset = load_rules(source)
    check_golden(source.with_name(source.name.replace("in-", "out-").replace(".yaml", ".json")), ruleset)


def _expected(path: Path) -> list[str]:
    return [
        line.split("expect:", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


@pytest.mark.parametrize("source", BAD, ids=lambda p: p.stem)
def test_bad_rules_are_rejected_with_every_problem(source: Path) -> None:
    expected = _expected(source)
    assert expected, f"{source.name} needs '# expect:' lines"
    with pytest.raises(RuleError) as info:
        load_rules(source)
    message = str(info.value)
    for text in expected:
        assert text in message, f"{source.name}: {text!r} not in:\n{message}"
    assert len(info.value.problems) >= len(expected)


def test_problem_paths_name_the_rule_index() -> None:
    doc = yaml.safe_load((TESTDATA / "bad" / "objective-out-of-range.yaml").read_text())
    with pytest.raises(RuleError) as info:
        parse_rules(doc)
    assert info.value.problems == ("rules[2].objective: must be in (0, 100], got 120",)


@pytest.mark.parametrize("name", PACKS)
def test_shipped_packs_load(name: str) -> None:
    pack = builtin_pack(name)
    kinds = {r.kind for r in pack.rules}
    assert kinds == {
        "latency", "completeness", "success_rate", "error_rate", "burn_rate",
        "duplicate", "ordering", "reconciliation", "mttr",
    }  # fmt: skip
    names = {r.name for r in pack.rules}
    assert {"invoice-posting-latency", "payment-propagation-erp", "customer-sync-success-rate",
            "duplicate-transactions", "stuck-invoice-posting", "invoice-reconciliation",
            "mttr-failed-integrations"} <= names  # fmt: skip


def test_demo_pack_has_the_same_rules_in_seconds() -> None:
    default, demo = builtin_pack("quote_to_cash"), builtin_pack("demo")
    assert [r.name for r in default.rules] == [r.name for r in demo.rules]
    assert [r.kind for r in default.rules] == [r.kind for r in demo.rules]
    latency = demo.rule("invoice-posting-latency")
    assert getattr(latency, "deadline") < default.rule("invoice-posting-latency").deadline  # type: ignore[attr-defined]  # noqa: B009


def test_demo_pack_matches_the_sync_engine_demo_profile() -> None:
    profile = Path(__file__).parents[2] / "sync_engine" / "profiles" / "default.yaml"
    if not profile.exists():
        pytest.skip("the sync engine's default profile is not there")
    sla = yaml.safe_load(profile.read_text())["sla"]
    demo = builtin_pack("demo")
    assert demo.rule("invoice-posting-latency").deadline == sla["invoice_posting_seconds"]  # type: ignore[union-attr]
    assert demo.rule("stuck-invoice-posting").within == sla["stuck_after_seconds"]  # type: ignore[union-attr]


def test_unknown_pack() -> None:
    with pytest.raises(RuleError, match="no built-in pack 'nope'"):
        builtin_pack("nope")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("5m", 300.0), ("4h", 14400.0), ("1d", 86400.0), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "5 minutes", True, None, float("inf")])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_env_references_resolve_only_from_the_environment() -> None:
    assert resolve_env("https://hooks/${TOKEN}/x", {"TOKEN": "abc"}) == "https://hooks/abc/x"
    with pytest.raises(KeyError, match="MISSING"):
        resolve_env("${MISSING}", {})


def test_directory_merges_files_and_rejects_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text((TESTDATA / "in-minimal.yaml").read_text())
    (tmp_path / "b.yaml").write_text((TESTDATA / "in-defaults.yaml").read_text())
    merged = load_rules(tmp_path)
    assert [r.name for r in merged.rules] == ["invoice-posting-latency", "a-rate", "b-mttr", "c-dup"]
    (tmp_path / "c.yml").write_text((TESTDATA / "in-minimal.yaml").read_text())
    with pytest.raises(RuleError, match="is also defined in"):
        load_rules(tmp_path)
