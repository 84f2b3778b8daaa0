"""Merging a run of the suite into ``resilience/results.json`` and rendering
``docs/resilience.md`` from it, in the manner of the OpenTelemetry Collector
testbed's reports: per test its result, duration and measured figures (items
sent and received, memory and CPU for load; accepted against stored for faults;
inputs tried for bad input; refusals and leaks for access).

The results file keeps, per test, its latest run that was not skipped, so a
short run does not erase the soak figures of an earlier ``--soak`` run; each
entry names the run (commit, time, machine load) it comes from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["NOTES", "SECTIONS", "Section", "iso", "load", "merge", "render"]


@dataclass(frozen=True)
class Section:
    """A part of the report: which tests, which figures as columns."""

    key: str
    title: str
    intro: str
    files: tuple[str, ...]
    columns: tuple[tuple[str, tuple[str, ...]], ...]
    tests: tuple[str, ...] = field(default=())
    """Test functions (of ``files``) that belong here; empty: all of them."""


SECTIONS: Final[tuple[Section, ...]] = (
    Section(
        "load",
        "Load",
        "Adapters are separate processes using the real tracer (its accounting batch processor and the "
        "OpenTelemetry OTLP/HTTP exporter); the server is `revtrace up` (collector, evaluator and dashboard in "
        "one process) on the embedded store. *Sent* is what the adapters produced, *Stored* what the store "
        "holds afterwards (counted in another process), *Dropped* what the tracers dropped **and counted**, "
        "*Lost* what is neither stored nor counted. CPU and RSS are the server's, sampled from `/proc`.",
        ("tests/resilience/test_load.py",),
        (
            ("Sent", ("sent",)),
            ("Stored", ("stored",)),
            ("Dropped (counted)", ("dropped_counted",)),
            ("Lost", ("lost",)),
            ("Duplicates", ("duplicates",)),
            ("503s", ("refused_503",)),
            ("Exporter retries", ("exporter_retries",)),
            ("Rate avg (spans/s)", ("rate_avg",)),
            ("CPU avg/max %", ("cpu_avg_pct", "cpu_max_pct")),
            ("RSS avg/max MiB", ("rss_avg_mib", "rss_max_mib")),
        ),
    ),
    Section(
        "faults",
        "Faults",
        "After each fault, the exact count: what was accepted (a 2xx to an adapter, a notification queued) "
        "against what is stored or delivered.",
        (
            "tests/collector/test_durability.py",
            "tests/resilience/test_disk_full.py",
            "tests/resilience/test_faults.py",
        ),
        (
            ("Accepted", ("accepted", "notifications_queued")),
            ("Stored / delivered", ("stored", "delivered")),
            ("Lost", ("lost",)),
            ("Doubled", ("doubled",)),
        ),
    ),
    Section(
        "bad_input",
        "Bad input",
        "Inputs tried are counted by the tests (hypothesis examples, requests, lookups, page loads). Every "
        "one got a rows-or-clear-error answer: a test fails on any other exception, crash or hang.",
        (
            "tests/collector/test_bad_input.py",
            "tests/resilience/test_fuzz_otlp.py",
            "tests/resilience/test_rules_fuzz.py",
            "tests/resilience/test_hostile_input.py",
            "tests/resilience/test_dashboard.py",
        ),
        (
            ("Inputs tried", ("inputs", "lookups", "payloads", "page loads")),
            ("Rejected with an error", ("rejected",)),
            ("Accepted", ("accepted", "spans_stored")),
        ),
        tests=(
            "test_bad_request_gets_a_clear_4xx",
            "test_valid_data_beside_bad_requests_is_all_stored",
            "test_absurd_attribute_counts_and_lengths_are_rejected_per_span",
            "test_declared_oversize_is_refused_before_the_body_is_read",
            "test_timestamps_past_2262_are_rejected_per_span_not_stored_as_poison",
            "test_random_bytes_as_protobuf",
            "test_mutated_valid_protobuf",
            "test_truncated_valid_protobuf",
            "test_otlp_shaped_json",
            "test_any_json",
            "test_a_fuzzed_rejection_names_the_problem",
            "test_whatever_converts_is_accepted_by_the_store",
            "test_random_text_files",
            "test_random_bytes_files",
            "test_the_shipped_pack_with_random_text_edits",
            "test_random_documents",
            "test_the_shipped_pack_with_random_edits",
            "test_hostile_yaml",
            "test_hostile_correlation_ids_through_revtrace_trace",
            "test_sla_check_with_hostile_ids_in_the_store",
            "test_hostile_payload_snapshots_through_tracer_and_collector",
            "test_hostile_url_filters_on_every_page",
        ),
    ),
    Section(
        "access",
        "Access",
        "Against `revtrace up` with ingest tokens, an audit key, a replay token, OIDC and receiver secrets "
        "set; the dashboard through Streamlit's AppTest with one local account per role.",
        ("tests/resilience/test_access.py", "tests/resilience/test_dashboard.py"),
        (
            (
                "Checks",
                ("refused requests", "requests", "sent", "calls", "page loads", "secrets", "tamperings"),
            ),
            ("Refused", ("refused", "refused_and_counted")),
            ("Leaks", ("leaks", "payload_leaks")),
        ),
        tests=(
            "test_ingest_without_a_valid_token_is_refused",
            "test_tracer_with_a_wrong_token_loses_nothing_silently",
            "test_admin_api_needs_its_own_token_from_loopback",
            "test_secrets_never_logged",
            "test_revtrace_audit_verify_detects_tampering",
            "test_revtrace_audit_verify_detects_a_removed_tail",
            "test_every_role_on_every_page",
            "test_every_action_under_every_role",
        ),
    ),
)

# Behaviour worth a sentence, filled from the test's figures (shown when it has them).
NOTES: Final[dict[str, str]] = {
    "test_clock_skew_between_adapters": (
        "**Clock skew.** Spans keep the timestamps their adapter's clock gave them; nothing is dropped, "
        "rejected or reordered on ingest. With the ERP adapter 5 minutes slow, the invoice-posting latency "
        "computed from the spans is {posting_latency_min_s} s to {posting_latency_max_s} s (negative), the "
        "evaluator judged the orders {verdicts} (a negative latency meets any objective), and the trace "
        "lists steps by their own clocks: {trace_order}. An adapter a day ahead was stored as such "
        "(first span {ahead_adapter_first_span}); the evaluator and the dashboard's time filters see it "
        "only when its time comes. Keep adapter hosts on NTP."
    ),
    "test_evaluator_killed_at_every_write_of_the_alerting_cycle": (
        "**Evaluator killed mid-cycle.** Killed before each of {crash_points} writes and restarted, the "
        "evaluator ends with the same verdicts, alerts, outbox and deliveries as an uninterrupted run. A "
        "kill between a notification's send and its record re-sends it on restart ({doubled} extra "
        "deliveries: {doubled_at}): delivery is at least once. Each kill inside the facts pass left its "
        "scratch table behind ({scratch_tables_left} left)."
    ),
    "test_alert_receiver_down_for_an_hour": (
        "**Receiver down for an hour.** {attempts_refused} delivery attempts were refused during the hour "
        "(exponential back-off, capped at 10 minutes); the first delivery came {first_delivery_after_up_s} "
        "s after the receiver was back."
    ),
    "test_backpressure_exporter_retries_without_loss": (
        "**Backpressure.** The collector answered 503 + `Retry-After: 5` {refused_503} times; the adapters' "
        "exporters waited and retried {exporter_retries} times. An adapter with room in its queue (it "
        "queued up to {queue_max_roomy} spans) lost nothing; one with a 1,024-span queue dropped what did "
        "not fit and counted it. Under backpressure an adapter's throughput is bounded by the spool's room "
        "per `Retry-After`."
    ),
    "test_soak_memory_does_not_creep": (
        "**Soak.** {minutes} minutes at {rate_avg} spans/s. RSS every 5 minutes (MiB): "
        "{rss_every_5_min_mib}. The collector's memory of the last million span keys (its guard against "
        "a client re-sending a request it already spooled, about 180 MiB when full) fills in the first "
        "{steady_from_s} s; from then RSS went from {rss_at_steady_mib} MiB to {rss_end_mib} MiB, a "
        "least-squares slope of {rss_slope_mib_per_hour} MiB/hour; peak {rss_max_mib} MiB."
    ),
}

_OUTCOME: Final = {
    "passed": "PASS",
    "failed": "FAIL",
    "xfailed": "KNOWN LIMIT",
    "xpassed": "XPASS",
    "skipped": "not run (soak)",
}


def _base(nodeid: str) -> tuple[str, str]:
    """(file, test function) of a test id, parameters dropped."""
    file, _, rest = nodeid.partition("::")
    return file, rest.split("[", 1)[0]


def _stale(entry: Mapping[str, Any]) -> bool:
    return entry.get("outcome") in ("", "skipped")


def merge(
    previous: Mapping[str, Any] | None, raw: Mapping[str, Any], run: Mapping[str, Any], root: Path
) -> dict[str, Any]:
    """The results document after ``raw`` (the plugin's output of one run).

    A test keeps its previous entry when this run skipped it (a soak test in a
    short run) or did not collect it; tests whose file is gone are dropped."""
    tests: dict[str, Any] = dict((previous or {}).get("tests", {}))
    runs: dict[str, Any] = dict((previous or {}).get("runs", {}))
    run_id = f"{run['name']} {run['started_iso']}"
    runs[run_id] = dict(run)
    for entry in raw.get("tests", []):
        nodeid = str(entry["id"])
        old = tests.get(nodeid)
        if _stale(entry) and old is not None and not _stale(old):
            continue
        tests[nodeid] = {**entry, "run": run_id}
    tests = {k: v for k, v in tests.items() if (root / _base(k)[0]).exists()}
    cited = {str(t.get("run", "")) for t in tests.values()}
    runs = {k: v for k, v in runs.items() if k in cited}
    return {"generated": run["finished"], "runs": runs, "tests": dict(sorted(tests.items()))}


# --- rendering ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "—"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _title(function: str) -> str:
    words = function.removeprefix("test_").replace("_", " ")
    return words[:1].upper() + words[1:]


@dataclass
class _Row:
    file: str
    function: str
    entries: list[dict[str, Any]]

    @property
    def outcome(self) -> str:
        outcomes = {e["outcome"] for e in self.entries}
        for worst in ("failed", "xpassed", "skipped", "xfailed"):
            if worst in outcomes:
                if worst == "skipped" and len(outcomes) > 1:
                    continue
                return worst
        return "passed"

    @property
    def seconds(self) -> float:
        return float(sum(e.get("seconds", 0.0) for e in self.entries))

    @property
    def figures(self) -> dict[str, Any]:
        """Figures of one entry, or of the cases of a parametrized test: numbers
        summed (peaks as the maximum), anything else from the first case."""
        if len(self.entries) == 1:
            return dict(self.entries[0].get("figures", {}))
        out: dict[str, Any] = {}
        for entry in self.entries:
            for key, value in entry.get("figures", {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    peak = key.endswith(("_max_mib", "_max_pct", "_kib", "broken_at", "entries", "seconds"))
                    old = out.get(key, 0)
                    out[key] = max(old, value) if peak else old + value
                else:
                    out.setdefault(key, value)
        out.pop("broken_at", None)
        return out

    @property
    def name(self) -> str:
        cases = f" ({len(self.entries)} cases)" if len(self.entries) > 1 else ""
        return _title(self.function) + cases

    @property
    def doc(self) -> str:
        entry = self.entries[0]
        return str(entry.get("doc") or "")

    @property
    def run(self) -> str:
        return str(self.entries[0].get("run", ""))


def _rows(section: Section, tests: Mapping[str, Any]) -> list[_Row]:
    rows: dict[tuple[str, str], _Row] = {}
    for nodeid, entry in tests.items():
        file, function = _base(nodeid)
        if file not in section.files or (section.tests and function not in section.tests):
            continue
        rows.setdefault((file, function), _Row(file, function, [])).entries.append(dict(entry))
    order = {f: i for i, f in enumerate(section.files)}
    return sorted(rows.values(), key=lambda r: (order[r.file], _position(r, tests)))


def _position(row: _Row, tests: Mapping[str, Any]) -> int:
    """Where the test comes in its file (the order pytest collected it)."""
    return min(int(e.get("index", 0)) for e in row.entries)


def _table(section: Section, rows: Sequence[_Row]) -> list[str]:
    headers = ["Test", "Result", "Duration", *(h for h, _ in section.columns), "Details"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        figures = row.figures
        used: set[str] = set()
        ran = row.outcome != "skipped"
        cells = [
            _cell(row.name),
            _OUTCOME.get(row.outcome, row.outcome),
            f"{row.seconds:.0f} s" if ran else "—",
        ]
        for _, keys in section.columns:
            found = [k for k in keys if k in figures]
            used.update(found)
            if not found:
                cells.append("—")
            elif len(keys) == 2 and len(found) == 2 and keys[0].endswith(("avg_pct", "avg_mib")):
                cells.append(f"{_fmt(figures[keys[0]])} / {_fmt(figures[keys[1]])}")
            else:
                cells.append(_fmt(figures[found[0]]))
        details = [
            f"{k.replace('_', ' ')}: {_fmt(v)}"
            for k, v in figures.items()
            if k not in used and not isinstance(v, list)  # series are shown in the notes
        ]
        cells.append(_cell("; ".join(details)) if details else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _totals(tests: Mapping[str, Any]) -> dict[str, Any]:
    load = [t for k, t in tests.items() if _base(k)[0] == "tests/resilience/test_load.py" and not _stale(t)]
    bad = next(s for s in SECTIONS if s.key == "bad_input")
    inputs = 0
    for row in _rows(bad, tests):
        figures = row.figures
        inputs += sum(int(figures.get(k, 0)) for k in ("inputs", "lookups", "payloads"))
        if not any(k in figures for k in ("inputs", "lookups", "payloads")):
            inputs += len(row.entries)
    faults = [
        r for r in _rows(next(s for s in SECTIONS if s.key == "faults"), tests) if r.outcome != "skipped"
    ]
    ran = [t for t in tests.values() if not _stale(t)]
    spans_doubled = sum(
        int(t.get("figures", {}).get(k, 0))
        for t in ran
        for k in ("duplicates", "doubled")
        if "notification" not in str(t.get("doc", "")).lower() and "evaluator" not in str(t.get("id", ""))
    )
    return {
        "tests": len(ran),
        "passed": sum(t["outcome"] == "passed" for t in ran),
        "failed": sum(t["outcome"] in ("failed", "xpassed") for t in ran),
        "known_limits": sum(t["outcome"] == "xfailed" for t in ran),
        "burst": max((int(t["figures"].get("burst_rate", 0)) for t in load), default=0),
        "load_sent": sum(int(t["figures"].get("sent", 0)) for t in load),
        "load_stored": sum(int(t["figures"].get("stored", 0)) for t in load),
        "rss_max": max((float(t["figures"].get("rss_max_mib", 0)) for t in load), default=0.0),
        "faults": sum(r.outcome == "passed" for r in faults),
        "fault_tests": len(faults),
        "inputs": inputs,
        "lost": sum(int(t.get("figures", {}).get("lost", 0)) for t in ran),
        "spans_doubled": spans_doubled,
    }


def _machine(run: Mapping[str, Any]) -> str:
    m = run.get("machine", {})
    load = m.get("load_avg_start", [0, 0, 0])
    return (
        f"{run.get('started_iso', '')} at commit `{run.get('commit', '?')}`"
        f"{' (with local changes)' if run.get('dirty') else ''}, {run.get('seconds', 0):.0f} s; "
        f"{m.get('cpus', '?')} CPUs, {m.get('mem_total_mib', 0):,} MiB, load average "
        f"{load[0]:.1f} at the start (a shared machine: rates and durations are noisy)"
    )


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _note(template: str, figures: Mapping[str, Any]) -> str | None:
    names = _PLACEHOLDER.findall(template)
    if any(n not in figures for n in names):
        return None

    def value(match: re.Match[str]) -> str:
        figure = figures[match.group(1)]
        return figure if isinstance(figure, str) else _fmt(figure)

    return _PLACEHOLDER.sub(value, template)


def render(results: Mapping[str, Any], commands: Mapping[str, str]) -> str:
    """The whole of ``docs/resilience.md``."""
    tests: dict[str, Any] = dict(results.get("tests", {}))
    runs: dict[str, Any] = dict(results.get("runs", {}))
    totals = _totals(tests)
    out: list[str] = [
        "# Resilience",
        "",
        "<!-- Generated by `python -m resilience` from resilience/results.json: do not edit by hand. -->",
        "",
        "revtrace holds the evidence auditors rely on, so it must not lose data, fall over, or let the wrong "
        "person in. This report is the suite that proves it and the figures it measured: each test, what it "
        "does, and its numbers, in the manner of the OpenTelemetry Collector's testbed.",
        "",
        "## Summary",
        "",
        f"- **Tests:** {totals['tests']} run, {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['known_limits']} known limit(s) (strict xfail, below).",
        f"- **Load held:** bursts of {totals['burst']:,} spans/s (10x the normal rate) into `revtrace up`; "
        f"{totals['load_sent']:,} spans sent by tracer processes, {totals['load_stored']:,} stored, the rest "
        f"dropped and counted by the tracers under deliberate overload; server RSS at most "
        f"{totals['rss_max']:,.0f} MiB.",
        f"- **Faults survived:** {totals['faults']} of {totals['fault_tests']} run (SIGKILL mid-stream, crash "
        "between insert and commit, torn spool tail, the store away, full spool, full "
        "disk, a request bigger than the spool, clock skew, receiver down for an hour, evaluator killed at "
        "every write).",
        f"- **Inputs tried:** {totals['inputs']:,} hostile or random inputs (OTLP protobuf and JSON, rules "
        "files, correlation ids through the CLI and the dashboard, payload snapshots, URL filters), each "
        "answered with data or a clear error.",
        f"- **Data lost: {totals['lost']}.** Spans doubled: {totals['spans_doubled']}. Notifications are "
        "delivered at least once (see the evaluator note under Faults).",
        "",
        "## Running it",
        "",
        "```sh",
        *(f"{command:<50}  # {what}" for what, command in commands.items()),
        "```",
        "",
        "The short part also runs in CI (`make test` runs `tests/resilience`). Load figures are",
        "reported, never asserted (the machines are shared); the assertions are about correctness and",
        "bounds: nothing lost or doubled, every refusal clear, RSS under 1 GiB, no creep.",
        "",
        "Runs these figures come from:",
        "",
        *(
            f"- **{run.get('name', run_id)} run:** {_machine(run)}"
            for run_id, run in sorted(runs.items(), key=lambda item: float(item[1].get("started", 0)))
        ),
        "",
    ]
    for section in SECTIONS:
        rows = _rows(section, tests)
        if not rows:
            continue
        out += [f"## {section.title}", "", section.intro, "", *_table(section, rows), ""]
        notes = [n for r in rows if r.function in NOTES and (n := _note(NOTES[r.function], r.figures))]
        if notes:
            out += [*(f"{n}\n" for n in notes)]
        out += ["What each test does:", ""]
        for row in rows:
            where = f"`{row.file}::{row.function}`"
            started = runs.get(row.run, {}).get("started_iso", "")
            run = f" *(a soak test; from the run of {started})*" if row.entries[0].get("soak") else ""
            out.append(
                f"- **{row.name}** — {row.doc}{run} ({where})" if row.doc else f"- **{row.name}** ({where})"
            )
        out.append("")
    limits = [
        (r, e) for s in SECTIONS for r in _rows(s, tests) for e in r.entries if e.get("outcome") == "xfailed"
    ]
    failures = [(nodeid, e) for nodeid, e in tests.items() if e.get("outcome") in ("failed", "xpassed")]
    out += ["## Known limits and failures", ""]
    if not limits and not failures:
        out.append("None.")
    for row, entry in limits:
        out.append(f"- **{row.name}** (known limit): {entry.get('reason', '')}")
    for nodeid, entry in failures:
        reason = str(entry.get("reason", "")).strip().splitlines()
        out.append(f"- **FAILED** `{nodeid}`: {reason[-1] if reason else ''}")
    out.append("")
    return "\n".join(out)


def load(path: Path) -> dict[str, Any] | None:
    """The results file, if there is one."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data


def iso(seconds: float) -> str:
    """UTC time as text, to the second."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
