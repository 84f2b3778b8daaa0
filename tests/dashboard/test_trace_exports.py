"""``revtrace trace``: the terminal waterfall and the JSON, CSV and HTML exports."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

from dashboard import commands, data
from tests.dashboard import workload
from tests.dashboard.conftest import Filled


def test_terminal_waterfall(filled: Filled) -> None:
    out = commands.trace(filled.store, "q2c-md-1")
    assert out.exit_code == 0
    lines = out.text.splitlines()
    assert lines[0].startswith("correlation id q2c-md-1  process quote_to_cash  entity DE01")
    rows = [line for line in lines if re.match(r"^\s+\d+ ", line)]
    md = next(t for t in workload.transactions() if t.correlation_id == "q2c-md-1")
    assert len(rows) == len(md.spans)
    failed = rows[-1]
    assert "erp.invoice.post" in failed and "failed" in failed and "master_data INVALID_COST_CENTER" in failed
    assert failed.rstrip().endswith("!")  # failed spans are drawn with '!'


def test_unknown_correlation_id_and_format(filled: Filled) -> None:
    assert commands.trace(filled.store, "no-such-tx").exit_code == 1
    assert commands.trace(filled.store, "q2c-ok-0", format="xml").exit_code == 2


def test_json_export_is_the_whole_trail(filled: Filled) -> None:
    doc = json.loads(commands.trace(filled.store, "q2c-ok-0", format="json").text)
    assert doc["correlation_id"] == "q2c-ok-0"
    assert len(doc["spans"]) == 7
    kinds = [p["kind"] for p in doc["payloads"] if p["event"] == "biz.payload"]
    assert kinds == ["source", "canonical", "target_request", "target_response"]
    steps = [(t["from"], t["to"], t["mapping"]) for t in doc["transformations"]]
    assert steps == [
        ("source", "canonical", "crm-to-canonical@3"),
        ("canonical", "target_request", "canonical-to-stripe@7"),
    ]
    changed = {c["path"]: c for c in doc["transformations"][1]["changes"]}
    assert changed["amount"]["change"] == "added" and changed["amount"]["after"] == "120000"
    assert {r["correlation_id"] for r in doc["related"]} == {"pay-ok-0", "pay-ok-1"}
    without = json.loads(commands.trace(filled.store, "q2c-ok-0", format="json", payloads=False).text)
    assert without["payloads"] is None and without["transformations"] == []


def test_csv_export_rows_and_formula_safety(filled: Filled) -> None:
    rows = list(csv.DictReader(io.StringIO(commands.trace(filled.store, "q2c-ok-0", format="csv").text)))
    records = [r["record"] for r in rows]
    assert records.count("span") == 7
    assert records.count("biz.payload:source") == 1
    assert records.count("biz.transform:transform") == 2
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    hostile = [r for r in rows if workload.HOSTILE[:10] in r["detail"]]
    assert hostile  # the payload text is there…
    assert all(
        not r[k].startswith(("=", "+", "-", "@")) for r in rows for k in r
    )  # …and no cell is a formula


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_self_contained_and_escaped(filled: Filled) -> None:
    page = commands.trace(filled.store, "q2c-ok-0", format="html").text
    parser = _Collect()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "img" not in tags and "link" not in tags
    assert not any(
        v and v.startswith(("http:", "https:", "//")) for _, attrs in parser.tags for v in attrs.values()
    )
    text = "".join(parser.text)
    assert workload.HOSTILE in text  # shown as text
    assert "<script>alert" not in page  # never as markup
    assert text.count("billing.invoice.create") >= 2  # in the waterfall and the spans table


def test_trace_bundle_without_payload_permission_reads_no_events(filled: Filled) -> None:
    bundle = data.load_trace(filled.store, "q2c-ok-0", False)
    assert bundle is not None and bundle.events is None
