"""Fault profiles: every shipped one is valid; invalid ones are rejected with
every problem, each naming its path and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_engine import FaultKind, ProfileError, Scenario, builtin_profiles, load_profile, parse_profile
from sync_engine._cli import main
from sync_engine._scenarios import PLANNED_FAULT_KINDS

BAD = Path(__file__).parent / "testdata" / "bad"


def test_every_fault_kind_has_its_own_shipped_profile() -> None:
    shipped = set(builtin_profiles())
    assert {"default", "clean", "erp_outage"} <= shipped
    assert {k.value for k in PLANNED_FAULT_KINDS} <= shipped
    for name in shipped:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.description
        if name in {k.value for k in PLANNED_FAULT_KINDS}:
            assert {f.kind.value for f in profile.faults} == {name}


def test_clean_has_no_faults_and_default_is_mostly_clean() -> None:
    clean = load_profile("clean")
    assert clean.faults == () and clean.outages == ()
    default = load_profile("default")
    assert {f.kind for f in default.faults} == set(PLANNED_FAULT_KINDS)
    assert all(f.rate <= 0.3 for f in default.faults)
    assert default.outages and default.outages[0].system.value == "erp"


def test_defaults_fill_in_what_a_fault_leaves_out() -> None:
    profile = parse_profile(
        {
            "version": "revtrace/v1",
            "kind": "FaultProfile",
            "name": "x",
            "mix": {"new_sale": 1},
            "faults": [
                {"kind": "erp_slow", "rate": 0.1},
                {"kind": "transient", "rate": 1, "system": "billing"},
            ],
        }
    )
    slow, transient = profile.faults
    assert slow.kind is FaultKind.ERP_SLOW and slow.delay == 25.0
    assert Scenario.RENEWAL in slow.scenarios
    assert transient.count == 2 and transient.status == 503 and transient.stage is None
    assert profile.invoice_posting_sla == 60.0 and profile.stuck_after == 180.0


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_bad_profiles_report_every_problem(path: Path) -> None:
    expected = [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    problems = caught.value.problems
    for message in expected:
        assert any(p.startswith(message) for p in problems), (message, problems)
    assert caught.value.source == str(path)


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"no such profile .*default"):
        load_profile("nope")


def test_validate_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: revtrace/v1\nkind: FaultProfile\nname: good\nmix: {new_sale: 1}\n")
    assert main(["validate", str(good)]) == 0
    assert "good.yaml: ok" in capsys.readouterr().out
    assert main(["validate", str(good), str(BAD / "bad-values.yaml")]) == 1
    err = capsys.readouterr().err
    assert "bad-values.yaml: invalid" in err
    assert "faults[0].count: must be an integer >= 1 and <= 50, got 0" in err
