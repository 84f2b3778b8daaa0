"""Dashboard benchmark: each page's first render with 10 million spans stored.

A fresh session (empty query cache) opens every page through the router under
Streamlit's AppTest, with the store holding 1 million quote-to-cash transactions
(10 million spans) spread over the last 7 days. Each page is measured with the
default time range (24 hours: 1.4 million spans in it) against the goal of 2 s,
and once more with the 7-day range — every stored span in the window — as a
stress figure. The baseline is the same page's first render against an empty
database in the same run: Streamlit's own cost plus the page's, without data.

The spans are generated with ``INSERT … SELECT FROM numbers()`` into
``otel_traces``, so the materialized views fill ``revtrace_spans``, the
correlation and object-reference tables as they do for the collector. 1 % of the
transactions fail at ERP posting (master data), 1 % are retried once, 0.5 % post
late. The measurement runs in a child process (chDB allows one data directory
per process, Streamlit one runtime). ``--quick`` uses 1/20 of the size.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import Result

TRANSACTIONS = 1_000_000
DAYS = 7
GOAL_SECONDS = 2.0
REPEATS = 3

_STAGES = (
    "crm.order.approve",
    "middleware.order.validate",
    "billing.customer.upsert",
    "billing.subscription.create",
    "billing.invoice.create",
    "erp.customer.upsert",
    "erp.invoice.post",
    "billing.payment.succeed",
    "erp.payment.apply",
    "crm.account.update",
)
_SYSTEMS = ("crm", "middleware", "billing", "billing", "billing", "erp", "erp", "billing", "erp", "crm")
# (page file, URL parameters)
PAGES: tuple[tuple[str, dict[str, str]], ...] = (
    ("overview", {}),
    ("objects", {}),
    ("latency", {}),
    ("alerts", {}),
    ("sync_engine", {}),
    ("trace", {"correlation_id": "tx-4242"}),
    ("workbench", {}),
    ("reconciliation", {}),
)


def _generate(store: Any, transactions: int, now: float, days: int = DAYS) -> None:
    """``transactions`` transactions of ten spans spread over the ``days`` before ``now``."""
    stages = "[" + ", ".join(f"'{s}'" for s in _STAGES) + "]"
    systems = "[" + ", ".join(f"'{s}'" for s in _SYSTEMS) + "]"
    span_ms = days * 86_400_000
    spacing_ms = span_ms // max(transactions, 1)
    store.command(
        f"""
        INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes,
                                 Duration, StatusCode)
        SELECT
            fromUnixTimestamp64Milli(toInt64({int(now * 1000) - span_ms} + tx * {spacing_ms} + j * 2000
                + if(tx % 200 = 21 AND j = 6, 7200000, 0)), 'UTC') AS Timestamp,
            lower(hex(cityHash64(tx))) || lower(hex(cityHash64(tx + 1))) AS TraceId,
            lower(hex(cityHash64(number))) AS SpanId,
            stage AS SpanName, 'Client', concat({systems}[j + 1], '-adapter'),
            map('biz.correlation_id', concat('tx-', toString(tx)),
                'biz.process', 'quote_to_cash',
                'biz.stage', stage,
                'biz.system', {systems}[j + 1],
                'biz.system.vendor', ['salesforce', 'mulesoft', 'stripe', 'stripe', 'stripe', 'netsuite',
                                      'netsuite', 'stripe', 'netsuite', 'salesforce'][j + 1],
                'biz.legal_entity', ['ACME-DE', 'ACME-UK', 'ACME-US', 'ACME-SG'][tx % 4 + 1],
                'biz.object.id', concat(splitByChar('.', stage)[2], '-', toString(tx)),
                'biz.object.refs', if(j IN (5, 6, 8), concat('["billing:', splitByChar('.', stage)[2], '/',
                                      splitByChar('.', stage)[2], '-', toString(tx), '"]'), ''),
                'biz.amount', if(j IN (4, 6, 7, 8), '1190.00', ''),
                'biz.currency', 'EUR',
                'biz.idempotency_key', concat('tx-', toString(tx), ':', stage),
                'biz.attempt', if(tx % 100 = 13 AND j = 9, '2', '1'),
                'biz.outcome', multiIf(tx % 100 = 7 AND j = 6, 'dead_lettered',
                                       tx % 100 = 13 AND j = 5, 'retrying', 'ok'),
                'biz.error.category', multiIf(tx % 100 = 7 AND j = 6, 'master_data',
                                              tx % 100 = 13 AND j = 5, 'transient', ''),
                'http.response.status_code', multiIf(tx % 100 = 7 AND j = 6, '400',
                                                     tx % 100 = 13 AND j = 5, '503', '200')
            ) AS SpanAttributes,
            toUInt64(200000000) AS Duration,
            if((tx % 100 = 7 AND j = 6) OR (tx % 100 = 13 AND j = 5), 'Error', 'Ok') AS StatusCode
        FROM (
            SELECT number, intDiv(number, 10) AS tx, number % 10 AS j0,
                   if(tx % 100 = 13 AND j0 = 9, 5, j0) AS j,
                   {stages}[j + 1] AS stage
            FROM numbers({transactions * 10})
        )
        """,  # noqa: S608 - numbers only, no input
        settings={
            "max_insert_threads": 2,
            "max_block_size": 1_000_000,
            "min_insert_block_size_rows": 1_000_000,
        },
    )


def _render_seconds(page: str, params: dict[str, str], range_key: str = "24h") -> float:
    """A fresh session's first render of ``page`` through the router, caches cleared."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import dashboard

    app = Path(dashboard.__file__).parent / "app.py"
    at = AppTest.from_file(str(app), default_timeout=120)
    at.query_params.update({"range": range_key})
    if page != "overview":
        at.run()  # the default page first, then switch (like following a link)
        at.switch_page(f"views/{page}.py")
        at.query_params.update(params)
    st.cache_data.clear()
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
    return elapsed


def _child(transactions: int, out: Path) -> None:
    import os

    os.environ.setdefault(
        "STREAMLIT_LOGGER_LEVEL", "error"
    )  # AppTest outside a server logs "no runtime" notes
    from streamlit.logger import set_log_level

    from collector.migrations import RenderOptions, migrate
    from collector.store import open_store
    from dashboard import data

    logging.basicConfig(level=logging.WARNING)
    set_log_level("error")
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    empty = open_store(f"chdb://{root}/store", database="bench_dashboard_empty")
    full = open_store(f"chdb://{root}/store", database="bench_dashboard")
    for store in (empty, full):
        migrate(store, RenderOptions(ttl_days=0))
    now = float(int(time.time()))
    started = time.monotonic()
    print(
        f"generating {transactions:,} transactions ({transactions * 10:,} spans) over {DAYS} days…",
        flush=True,
    )
    _generate(full, transactions, now)
    full.command("OPTIMIZE TABLE revtrace_spans FINAL")
    full.command("OPTIMIZE TABLE revtrace_correlations FINAL")
    generated = time.monotonic() - started
    spans = int(full.query("SELECT count() FROM revtrace_spans").scalar())
    print(f"generated {spans:,} spans in {generated:.0f} s; rendering…", flush=True)

    data.use_store(empty)
    _render_seconds("overview", {})  # imports and Plotly's first figure, paid once per process
    results: dict[str, dict[str, float]] = {}
    for page, params in PAGES:
        data.use_store(empty)
        baseline = statistics.median(_render_seconds(page, params) for _ in range(REPEATS))
        data.use_store(full)
        value = statistics.median(_render_seconds(page, params) for _ in range(REPEATS))
        stress = _render_seconds(page, params, f"{DAYS}d")
        results[page] = {"value": value, "baseline": baseline, "stress": stress}
        print(
            f"   {page}: {value:.2f} s, {DAYS} d range {stress:.2f} s (empty store {baseline:.2f} s)",
            flush=True,
        )
    data.use_store(None)
    out.write_text(
        json.dumps({"transactions": transactions, "spans": spans, "generated_s": generated, "pages": results})
    )
    empty.close()
    full.close()


def run(quick: bool) -> list[Result]:
    """Each page's first render with the spans stored vs the same page on an empty store."""
    transactions = TRANSACTIONS // 20 if quick else TRANSACTIONS
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_dashboard",
                "--transactions",
                str(transactions),
                "--out",
                str(out),
            ],
            check=True,
        )
        doc = json.loads(out.read_text())
    results = []
    size = f"{doc['spans']:,} spans over {DAYS} days" + (" (quick: 1/20)" if quick else "")
    for page, figures in doc["pages"].items():
        results.append(
            Result(
                f"dashboard.first_render.{page}",
                figures["value"],
                "s",
                baseline_name="the same page on an empty store",
                baseline=figures["baseline"],
                goal=f"< {GOAL_SECONDS:g} s, default 24 h range, {size}",
                passed=figures["value"] < GOAL_SECONDS,
                extra={"spans": doc["spans"], "median_of": REPEATS},
            )
        )
        results.append(
            Result(
                f"dashboard.first_render.{page}.{DAYS}d_range",
                figures["stress"],
                "s",
                baseline_name="the same page, default 24 h range",
                baseline=figures["value"],
                goal=f"stress: every stored span in the range ({size}); reported, no goal",
                extra={"spans": doc["spans"]},
            )
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    _child(args.transactions, args.out)
