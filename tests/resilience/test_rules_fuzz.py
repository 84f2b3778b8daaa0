"""Fuzzing the rule loader: whatever a rules file holds (random text, random bytes,
the shipped pack with random edits, hostile YAML), ``load_rules`` and
``parse_rules`` either return a rule set or raise :class:`sla_rules.RuleError`
whose every problem names where (a path into the document, or a line) and what —
never another exception, never a hang."""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_rules import RuleError, RuleSet, load_rules, parse_rules
from tests.resilience.conftest import Figures

PACK_TEXT = resources.files("sla_rules.packs").joinpath("quote_to_cash.yaml").read_text(encoding="utf-8")
PACK: dict[str, Any] = yaml.safe_load(PACK_TEXT)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TOP_KEYS = ("version", "name", "description", "evaluator", "defaults", "rules", "classification", "alerting")
# A problem starts with where it is: a path into the document ($ is the top), a
# line of the file, or the file itself.
_WHERE = re.compile(r"^(\$|line \d+|cannot read|not valid YAML|not UTF-8|(" + "|".join(TOP_KEYS) + r")\b)")


def check_outcome(load: Any, figures: Figures) -> RuleSet | None:
    """Run ``load``; a rule set, or a RuleError with well-formed problems."""
    figures.add("inputs")
    try:
        result = load()
    except RuleError as exc:
        figures.add("rejected")
        assert exc.problems, "a RuleError without problems"
        for problem in exc.problems:
            assert ": " in problem or problem.startswith("not valid"), problem
            assert _WHERE.match(problem), f"problem does not say where: {problem!r}"
        assert str(exc)
        return None
    assert isinstance(result, RuleSet)
    figures.add("accepted")
    return result


# --- random files -----------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
def test_random_text_files(tmp_path: Path, figures: Figures, text: str) -> None:
    """Random Unicode text as a rules file."""
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_outcome(lambda: load_rules(path), figures)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_files(tmp_path: Path, figures: Figures, raw: bytes) -> None:
    """Random bytes as a rules file (mostly not UTF-8, not YAML)."""
    path = tmp_path / "rules.yaml"
    path.write_bytes(raw)
    check_outcome(lambda: load_rules(path), figures)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(PACK_TEXT) - 1),
            st.sampled_from(["delete", "insert", "replace"]),
            st.text(max_size=3),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_shipped_pack_with_random_text_edits(
    tmp_path: Path, figures: Figures, edits: list[tuple[int, str, str]]
) -> None:
    """The quote-to-cash pack's YAML with up to six characters deleted, inserted or replaced."""
    text = PACK_TEXT
    for position, action, chars in edits:
        position = min(position, len(text))
        if action == "delete":
            text = text[:position] + text[position + 1 :]
        elif action == "insert":
            text = text[:position] + chars + text[position:]
        else:
            text = text[:position] + chars + text[position + len(chars) :]
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_outcome(lambda: load_rules(path), figures)


# --- random documents ------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["30s", "5m", "4h", "1d", "-1s", "0s", "1e400h", "billing.invoice.create", "${X}", "99.9"]
    )
    | st.dates()
    | st.datetimes()
    | st.binary(max_size=4)
)
_keys = st.sampled_from(
    [*TOP_KEYS, "name", "kind", "from", "to", "objectives", "percentile", "threshold", "window", "route"]
) | st.text(max_size=8)
_documents = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(_documents)
def test_random_documents(figures: Figures, document: Any) -> None:
    """Random documents (rule-ish keys, durations, dates, bytes, NaN, huge integers) to ``parse_rules``."""
    check_outcome(lambda: parse_rules(document), figures)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PACK_PATHS = _paths(PACK)[1:]


def _mutate(document: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent, dict):  # add a sibling key
        parent[f"{last}_extra"] = value
    else:
        parent.append(value)
    return document


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(PACK_PATHS), st.sampled_from(["delete", "replace", "add"]), _documents),
        min_size=1,
        max_size=5,
    )
)
def test_the_shipped_pack_with_random_edits(
    figures: Figures, edits: list[tuple[tuple[Any, ...], str, Any]]
) -> None:
    """The pack as a document with up to five values deleted, replaced by random ones, or given siblings."""
    document = copy.deepcopy(PACK)
    for path, action, value in edits:
        try:
            document = _mutate(document, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced the path
    check_outcome(lambda: parse_rules(document), figures)


# --- hostile YAML --------------------------------------------------------------------------------

HOSTILE_YAML: dict[str, bytes] = {
    "nested 5,000 deep": b"version: revtrace/v1\nrules: " + b"[" * 5000 + b"]" * 5000,
    "mapping nested 3,000 deep": "".join("  " * i + f"k{i}:\n" for i in range(3000)).encode(),
    "recursive alias": b"version: revtrace/v1\nrules: &a [*a]\n",
    "recursive mapping": b"version: revtrace/v1\nrules:\n  - &a {name: x, kind: latency, from: *a}\n",
    "billion laughs": (
        b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nversion: revtrace/v1\nrules: *g\n"
    ),
    "python object tag": b"version: !!python/object/apply:os.system ['echo pwned']\n",
    "integer of 5,000 digits": b"version: revtrace/v1\nrules: [{name: x, kind: latency, deadline: 1"
    + b"0" * 5000
    + b"}]\n",
    "NaN duration": b"version: revtrace/v1\nrules: [{name: x, kind: latency, from: billing.invoice.create, "
    b"to: erp.invoice.post, deadline: .nan}]\n",
    "NUL byte": b"version: revtrace/v1\x00\n",
    "Latin-1, not UTF-8": b"version: revtrace/v1\nname: caf\xe9\n",
    "UTF-16": "version: revtrace/v1\n".encode("utf-16"),
    "binary value": b"version: !!binary aGVsbG8=\n",
    "date as a key": b"2024-01-01: x\n",
    "a thousand rules": b"version: revtrace/v1\nrules:\n"
    + b"".join(
        b"  - {name: r%d, kind: latency, from: a.b.c, to: d.e.f, deadline: 1h}\n" % i for i in range(1000)
    ),
    "empty": b"",
    "a lone document marker": b"---\n...\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_hostile_yaml(tmp_path: Path, figures: Figures, case: str) -> None:
    """Sixteen hostile files: nesting 5,000 deep, recursive aliases, billion laughs,
    a Python object tag, a 5,000-digit integer, NaN, NUL, Latin-1, UTF-16, a
    thousand rules, an empty file, …"""
    path = tmp_path / "rules.yaml"
    path.write_bytes(HOSTILE_YAML[case])
    check_outcome(lambda: load_rules(path), figures)
