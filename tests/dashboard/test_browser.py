"""A real headless Chromium against a real ``revtrace up``: the dashboard served
in-process beside the collector on the embedded store, fed over OTLP.

Every page opens without an error element, its charts render, and a screenshot
is kept under ``artifacts/screenshots/``. The CLI's ``trace`` and ``audit verify``
run through the running process (the store is held by it).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard import workload

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (`make browser` installs it)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Up:
    """A running ``revtrace up`` and how to reach it."""

    base: str
    otlp: str
    env: dict[str, str]
    log: Path


def _cli(up: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "revtrace.cli", *args], env=up.env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("up")
    http_port, dash_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVTRACE_", "OTEL_"))}
    env.update(
        REVTRACE_DATA_DIR=str(root / "data"),
        REVTRACE_USERS_FILE=str(root / "no-users.json"),
        REVTRACE_DASHBOARD_REFRESH_S="2",
    )
    log = root / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "revtrace.cli",
                "up",
                "--http-port",
                str(http_port),
                "--grpc-port",
                "-1",
                "--dashboard-port",
                str(dash_port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Up(f"http://127.0.0.1:{dash_port}", f"http://127.0.0.1:{http_port}", env, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{running.base}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"revtrace up did not start:\n{log.read_text()}")
            time.sleep(0.2)
        now = time.time()
        workload.send(running.otlp, now)
        workload.send_metrics(running.otlp, now)
        deadline = time.monotonic() + 30
        last = next(t for t in reversed(workload.transactions()))
        while _cli(running, "trace", last.correlation_id).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workload did not arrive:\n{log.read_text()}")
            time.sleep(0.3)
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def _open(browser: Any, url: str, title: str, ready: str | re.Pattern[str]) -> Any:
    """Open ``url`` and wait until the page has run to ``ready``, a text near its end."""
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=30_000)
    page.get_by_text(ready).first.wait_for(timeout=30_000)
    page.dialogs = dialogs
    return page


# The evaluator runs inside `up` too: the reconciliation page shows runs or says there are none.
RECON_READY = re.compile("No reconciliation run|Differences by system and period|No item matches")

PAGES = [
    # (screenshot name, path, title, a text near the end of the page, charts at least)
    ("overview", "/", "Overview", "Firing alerts by category", 4),
    ("objects", "/objects?status=inconsistent", "Business objects", "Systems disagree", 0),
    ("latency", "/latency", "Latency", "Breaches and stuck transactions", 3),
    ("alerts", "/alerts", "Alerts", "Silences", 0),
    ("sync-engine", "/sync", "Sync engine", "Collector health", 5),
    ("trace", "/trace?correlation_id=q2c-ok-0", "Trace", "Download HTML", 1),
    ("workbench", "/workbench", "Workbench", "Verify the hash chain", 0),
    ("reconciliation", "/reconciliation", "Reconciliation", RECON_READY, 0),
]


@pytest.mark.parametrize(("name", "path", "title", "ready", "min_charts"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_renders(
    up: Up, browser: Any, name: str, path: str, title: str, ready: str | re.Pattern[str], min_charts: int
) -> None:
    page = _open(browser, up.base + path, title, ready)
    try:
        assert page.locator('[data-testid="stException"]').count() == 0
        charts = page.locator('[data-testid="stPlotlyChart"]')
        if min_charts:
            charts.nth(min_charts - 1).wait_for(timeout=15_000)
        for i in range(charts.count()):
            charts.nth(i).locator("svg.main-svg").first.wait_for(timeout=15_000)  # drawn, not just placed
        assert page.get_by_text("Open access on localhost").count() == 1
        assert not page.dialogs  # nothing in the data ran as script
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    finally:
        page.close()


def test_trace_page_shows_payloads_as_text(up: Up, browser: Any) -> None:
    page = _open(browser, up.base + "/trace?correlation_id=q2c-ok-0", "Trace", "Download HTML")
    try:
        page.get_by_text("crm-to-canonical@3").first.wait_for(timeout=15_000)
        page.locator("code", has_text="DROP TABLE revtrace_spans").first.wait_for(timeout=15_000)
        assert not page.dialogs
    finally:
        page.close()


def test_deep_link_filters_and_auto_refresh(up: Up, browser: Any) -> None:
    page = _open(browser, up.base + "/?entity=US01", "Overview", "Firing alerts by category")
    try:
        us = [t for t in workload.transactions() if t.entity == "US01"]
        caption = page.get_by_text(f"{len(us)} transactions", exact=False)
        assert caption.count() == 1
        extra = workload.Tx(
            "late-us-1",
            "customer_sync",
            "US01",
            [workload.SpanSpec("billing.customer.upsert", 5, 0.2, object_id="cus_late")],
        )
        workload.send(up.otlp, txs=[extra])
        # No reload: the page refreshes itself (every 2 s here; query results live 10 s).
        page.get_by_text(f"{len(us) + 1} transactions", exact=False).wait_for(timeout=30_000)
    finally:
        page.close()


def test_cli_runs_through_the_running_up(up: Up) -> None:
    report = _cli(up, "trace", "q2c-ok-0", "--format", "html")
    assert report.returncode == 0, report.stderr
    assert "via the running revtrace up" in report.stderr
    assert report.stdout.startswith("<!DOCTYPE html>")
    verify = _cli(up, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit log is empty" in verify.stdout
