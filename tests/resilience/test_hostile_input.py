"""Hostile input through the command line and the tracer: correlation ids made of
SQL metacharacters, query-parameter syntax, markup, terminal escapes, control
characters, very long strings and odd Unicode — stored by another client (the
tracer refuses such ids) and then looked up with ``revtrace trace`` in every
format and judged by ``revtrace sla check``; payload snapshots that are huge,
deeply nested, cyclic or not JSON at all, through the real tracer and collector.

Every input gets a clear answer, the process stays up, the tables stay intact,
a lookup finds exactly its own transaction, and the valid data beside the bad
is kept. (Malformed OTLP, oversized bodies and gzip bombs are in
``tests/collector/test_bad_input.py``; fuzzing of the decoders in
``test_fuzz_otlp.py``, of the rule loader in ``test_rules_fuzz.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import tracer
from collector.service import Collector, CollectorConfig
from collector.store import Store
from revtrace.cli import cli
from tests.collector.helpers import body_of
from tests.resilience import spans
from tests.resilience.conftest import Figures
from tests.resilience.harness import Server

HOSTILE_IDS: dict[str, str] = {
    "SQL quote": "x' OR '1'='1",
    "SQL statement": "x'); DROP TABLE otel_traces; --",
    "backslash escape": "x\\' OR 1=1 -- \\",
    "bound-parameter syntax": "{correlation_id:String}",
    "LIKE wildcards": "%_%",
    "shell": "$(touch /tmp/revtrace-pwned) `id`",
    "HTML": "<script>alert('rt')</script>",
    "terminal escapes": "\x1b[2J\x1b[31mred\x07",
    "line breaks": "line1\nline2\r\n",
    "NUL byte": "nul\x00byte",
    "RTL override, emoji, combining, zero-width": "\u202eINV-🧾-中文-ze\u0301\u200b",
    "JSON breaker": '"}],"x":{"',
    "CSV formula": '=HYPERLINK("http://evil.example")',
    "30,000 characters": "L" * 30_000,
}
# Looked up, never stored: none may match anything.
MISSING_IDS: dict[str, str] = {
    "always-true SQL": "' OR ''='",
    "LIKE everything": "%",
    "glob everything": "*",
    "a million characters": "M" * 1_000_000,
    "empty-looking": "\u200b",
}
RENDER_BREAKERS = {"HTML", "terminal escapes", "line breaks", "NUL byte", "JSON breaker", "CSV formula"}
NORMAL_ID = "q2c-normal-1"
FORMATS = ("table", "json", "csv", "html")


def _steps(cid: str) -> list[spans.Step]:
    return [
        spans.Step("billing.invoice.create", cid, outcome="ok"),
        spans.Step("erp.invoice.post", cid, outcome="failed", attributes={"biz.error.category": "mapping"}),
    ]


@pytest.fixture(scope="module")
def hostile_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    """``revtrace up`` holding every hostile transaction and a normal one, sent over
    OTLP/HTTP; the CLI in this process delegates its store commands to it."""
    steps = [s for cid in [NORMAL_ID, *HOSTILE_IDS.values()] for s in _steps(cid)]
    with Server(tmp_path_factory.mktemp("hostile") / "up") as server:
        response = httpx.post(
            f"{server.endpoint}/v1/traces",
            content=body_of(spans.make(steps)),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200, response.text
        status = server.wait_drained()
        assert status["ingest"]["accepted"]["traces"] == len(steps)
        assert status["ingest"]["rejected"].get("traces", 0) == 0
        yield server, len(steps)


@pytest.fixture
def delegating_cli(hostile_up: tuple[Server, int], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner whose store commands go to the running ``revtrace up``."""
    for name in ("REVTRACE_CLICKHOUSE_URL", "REVTRACE_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REVTRACE_DATA_DIR", str(hostile_up[0].data_dir))
    return CliRunner()


def _table_rows(output: str, table: str) -> int:
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == table:
            return int(parts[1])
    raise AssertionError(f"{table} not in:\n{output}")


def test_hostile_correlation_ids_through_revtrace_trace(
    hostile_up: tuple[Server, int], delegating_cli: CliRunner, figures: Figures
) -> None:
    """Fourteen hostile correlation ids are stored (two spans each) beside a normal
    transaction in a running ``revtrace up``. ``revtrace trace <id>`` (its request
    goes to ``up`` as JSON over the admin API) in table and JSON — and in CSV and
    HTML for the ids that could break them — finds exactly that transaction for
    each, never another, never nothing, and escapes it in HTML; five ids that
    match nothing (``%``, ``*``, ``' OR ''='``, a million characters, a zero-width
    space) get exit 1 and a clear message. Afterwards the tables hold exactly what
    was sent."""
    _, sent = hostile_up
    runner = delegating_cli
    for name, cid in HOSTILE_IDS.items():
        # Every id as a table and JSON; the ids that could break a format, in all four.
        for fmt in FORMATS if name in RENDER_BREAKERS else ("table", "json"):
            result = runner.invoke(cli, ["trace", cid, "--format", fmt])
            figures.add("lookups")
            assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.output)
            assert result.exit_code == 0, (name, fmt, result.output[-2000:])
            assert "via the running revtrace up" in result.stderr
            if fmt == "json":
                document = json.loads(result.stdout)
                assert document["correlation_id"] == cid, name
                assert len(document["spans"]) == 2, (name, document["spans"])
            if fmt == "html":
                assert "<script>alert(" not in result.stdout, name
            if fmt == "table" and name == "terminal escapes":
                figures["table_escapes_raw"] = "\x1b" in result.stdout
    for name, cid in MISSING_IDS.items():
        result = runner.invoke(cli, ["trace", cid, "--format", "json"])
        figures.add("lookups")
        assert result.exit_code == 1, (name, result.output[-500:])
        assert "no transaction with correlation id" in result.stdout, name
    status = runner.invoke(cli, ["db", "status"])
    assert status.exit_code == 0, status.output
    stored = _table_rows(status.stdout, "revtrace_spans")
    figures.update(ids_stored=len(HOSTILE_IDS) + 1, spans_sent=sent, spans_stored=stored, wrong_matches=0)
    assert stored == _table_rows(status.stdout, "otel_traces") == sent


def test_sla_check_with_hostile_ids_in_the_store(delegating_cli: CliRunner, figures: Figures) -> None:
    """``revtrace sla check`` judges a store full of hostile correlation ids: every
    failed one is reported under its own id, the output is valid JSON, and a
    hostile ``--at`` gets a clear error (exit 2) instead of a traceback."""
    runner = delegating_cli
    result = runner.invoke(cli, ["sla", "check", "--format", "json"])
    assert result.exit_code in (0, 1), result.output[-2000:]
    document = json.loads(result.stdout)
    text = json.dumps(document, ensure_ascii=False)
    reported = [cid for cid in HOSTILE_IDS.values() if json.dumps(cid, ensure_ascii=False)[1:-1] in text]
    figures.update(ids_in_store=len(HOSTILE_IDS) + 1, hostile_ids_reported=len(reported))
    assert len(reported) == len(HOSTILE_IDS)  # each failed one, under its own id
    for bad_at in ("' OR 1=1 --", "9999-99-99T99:99:99Z", "x" * 10_000, "\x00"):
        result = runner.invoke(cli, ["sla", "check", "--at", bad_at])
        figures.add("bad --at values")
        assert result.exit_code == 2, result.output[-2000:]
        assert "--at: expected an RFC 3339 time" in result.stdout
        assert "Traceback" not in result.output


# --- payload snapshots ------------------------------------------------------------------------------


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": True}
    for _ in range(depth):
        node = {"child": node}
    return node


def _cyclic() -> dict[str, Any]:
    node: dict[str, Any] = {"name": "loop"}
    node["self"] = node
    return node


PAYLOADS: dict[str, Any] = {
    "2 MB string": {"blob": "x" * 2_000_000},
    "nested 10,000 deep": _deep(10_000),
    "50,000 keys": {f"k{i}": i for i in range(50_000)},
    "a 200,000-item list": list(range(200_000)),
    "cyclic": _cyclic(),
    "not JSON": {
        "set": {1, 2},
        "bytes": b"\xff\x00",
        "decimal": Decimal("1.10"),
        "nan": float("nan"),
        "inf": float("-inf"),
        "object": object(),
        "unprintable": _Unprintable(),
    },
    "lone surrogate": {"name": "\ud800bad"},
    "invalid UTF-8 bytes": b"\xc3\x28\xa0\xa1",
    "None": None,
    "a generator": (i for i in range(10)),
}


def test_hostile_payload_snapshots_through_tracer_and_collector(
    store: Store, tmp_path: Path, figures: Figures
) -> None:
    """Ten hostile payload snapshots (2 MB, 10,000 levels deep, 50,000 keys,
    200,000 items, cyclic, not JSON, a lone surrogate, invalid UTF-8, None, a
    generator), each on its own business span between two normal ones, recorded
    with the real tracer and exported over OTLP/HTTP to a collector in one batch:
    nothing raises into the business code, the tracer drops nothing, every span is
    stored, each snapshot is cut to the size cap and marked truncated where it was
    too big, and the normal spans' payloads are intact."""
    config = CollectorConfig(
        http_port=0, grpc_port=-1, data_dir=tmp_path / "c", batch_ms=50, self_telemetry_s=0, ttl_days=0
    )
    before = tracer.export_stats()
    with Collector(config, store=store) as c:
        tracer.configure(
            "payload-adapter",
            endpoint=c.http_endpoint,
            set_global=False,
            schedule_delay_millis=60_000,
            max_queue_size=4096,
            max_export_batch_size=4096,
            metric_readers=[],
        )
        try:
            for name, payload in PAYLOADS.items():
                for cid, body in ((f"ok-before-{name}", {"invoice": "INV-1"}), (f"hostile-{name}", payload)):
                    with tracer.business_span("billing.invoice.create", correlation_id=_safe(cid)) as span:
                        span.record_payload("canonical", body)
                figures.add("payloads")
            assert tracer.force_flush(120_000)
        finally:
            tracer.shutdown()
        assert c.writer is not None and c.writer.flush(60)
    after = tracer.export_stats()
    expected = 2 * len(PAYLOADS)
    rows = store.query(
        "SELECT r.CorrelationId, length(e.Attributes['biz.payload.body']), e.Attributes['biz.payload.truncated'] "
        "FROM revtrace_spans AS r "
        "INNER JOIN (SELECT SpanId, arrayJoin(arrayZip(Events.Name, Events.Attributes)) AS ev, "
        "ev.1 AS Name, ev.2 AS Attributes FROM otel_traces) AS e ON e.SpanId = r.SpanId "
        "WHERE e.Name = 'biz.payload'"
    ).rows
    sizes = {str(r[0]): (int(r[1]), str(r[2])) for r in rows}
    figures.update(
        spans_sent=expected,
        spans_stored=int(store.query("SELECT count() FROM otel_traces").scalar()),
        dropped=after.dropped - before.dropped,
        largest_snapshot_bytes=max(size for size, _ in sizes.values()),
        truncated=sum(flag == "true" for _, flag in sizes.values()),
    )
    assert after.dropped == before.dropped, after
    assert figures["spans_stored"] == expected
    assert all(sizes[_safe(f"ok-before-{n}")] == (len('{"invoice":"INV-1"}'), "false") for n in PAYLOADS), (
        sizes
    )
    assert figures["largest_snapshot_bytes"] <= 8192 + 64  # the default cap and its marker
    assert sizes[_safe("hostile-2 MB string")][1] == "true"


def _safe(text: str) -> str:
    """A correlation id the tracer accepts (letters, digits and ._:/@+=-)."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._:/@+=-") else "-" for ch in text)
