"""The demo's service object and ``python -m sync_engine``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_engine import ConfigError, EngineConfig, Workload, WorkloadConfig, parse_profile
from sync_engine._cli import main

_KEYS = {"correlation_id", "process", "scenario", "legal_entity", "started_at", "faults", "expected"}


def test_workload_runs_in_the_background_and_accounts_for_every_transaction(
    tmp_path: Path, spans: Any
) -> None:
    truth = tmp_path / "truth" / "ground-truth.jsonl"
    workload = Workload(
        WorkloadConfig(
            rate_per_s=40,
            profile="default",
            seed=4,
            otlp_endpoint=None,
            configure_tracer=False,
            time_scale=0.02,
            max_scenarios=12,
            ground_truth_path=truth,
            drain_timeout_s=20,
            engine=EngineConfig(replay_token="s3cret", reconcile_every=20),
        )
    )
    with pytest.raises(RuntimeError):
        _ = workload.engine_url
    workload.start()
    try:
        health = httpx.get(f"{workload.engine_url}/healthz").json()
        assert health["status"] == "ok" and workload.replay_token == "s3cret"
        live = workload.summary()
        assert live["profile"] == "default"
        assert workload.wait(timeout=60)
    finally:
        workload.stop()
    summary = workload.summary()
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert summary["transactions"] == len(lines) > 12
    assert sum(summary["scenarios"].values()) == 12
    assert summary["spans_emitted"] > 50
    assert set(summary["outcomes"]) <= {"ok", "failed", "held", "stuck"}
    for category, counts in summary["categories"].items():
        assert set(counts) == {"injected", "expected"}, category
    for line in lines:
        assert set(line) >= _KEYS
        assert set(line["expected"]) >= {"outcome", "category", "absorbed"}
    assert len({line["correlation_id"] for line in lines}) == len(lines)
    # Every transaction that left a span has its line of ground truth.
    spans.refresh()
    assert set(spans.by_cid) <= {line["correlation_id"] for line in lines}
    workload.stop()  # idempotent


def test_workload_config_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        Workload(
            WorkloadConfig(
                rate_per_s=0, time_scale=-1, otlp_protocol="udp", engine=EngineConfig(port=70000, park_ttl=0)
            )
        )
    problems = caught.value.problems
    assert "rate_per_s: must be > 0, got 0" in problems
    assert "time_scale: must be > 0, got -1" in problems
    assert "otlp_protocol: must be http/protobuf or grpc, got 'udp'" in problems
    assert "engine.port: must be 0..65535, got 70000" in problems
    assert "engine.park_ttl: must be > 0, got 0" in problems


def test_command_line_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.jsonl"
    status = main(
        [
            "--duration",
            "0.5",
            "--rate",
            "12",
            "--time-scale",
            "0.02",
            "--otlp-endpoint",
            "none",
            "--profile",
            "clean",
            "--seed",
            "3",
            "-q",
            "--ground-truth",
            str(truth),
            "--drain-timeout",
            "15",
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["profile"] == "clean" and summary["transactions"] >= 1
    assert summary["outcomes"] == {"ok": summary["transactions"]}
    assert len(truth.read_text().splitlines()) == summary["transactions"]
    assert main(["--profile", "nope", "--otlp-endpoint", "none"]) == 2
    assert "no such profile" in capsys.readouterr().err


def test_the_run_command_line_parser_is_public() -> None:
    from sync_engine import build_parser

    options = build_parser().parse_args(
        ["--duration", "5", "--rate", "3", "--profile", "clean", "--otlp-header", "authorization=Bearer t"]
    )
    assert (options.duration, options.rate, options.profile) == (5.0, 3.0, "clean")
    assert options.otlp_header == [("authorization", "Bearer t")]
    assert build_parser().parse_args([]).otlp_endpoint == "http://127.0.0.1:4318"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rate", "fast"])


def test_stopping_with_calls_in_flight_logs_one_line_per_transaction_and_no_traceback(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """ERP sleeps through a long injected delay on every call; the workload is
    stopped while those calls are being answered. Each transaction cut short
    gets one line; nobody logs a cancelled task's traceback (uvicorn used to,
    once per request, after its graceful-shutdown timeout)."""
    profile = parse_profile(
        {
            "version": "revtrace/v1",
            "kind": "FaultProfile",
            "name": "erp-asleep",
            "mix": {"new_sale": 1},
            "latency": {"webhook": {"median": 0.3, "p99": 1.0}},
            "faults": [{"kind": "erp_slow", "rate": 1.0, "delay": 100_000}],
        }
    )
    caplog.set_level(logging.DEBUG)
    workload = Workload(
        WorkloadConfig(
            rate_per_s=20,
            profile=profile,
            seed=2,
            otlp_endpoint=None,
            configure_tracer=False,
            time_scale=0.02,
            max_scenarios=4,
            drain_timeout_s=0,
            engine=EngineConfig(reconcile_every=0),
        )
    )
    # uvicorn's loggers do not propagate to the root, and its servers configure them
    # when they are built: listen once the workload has started.
    uvicorn_log = logging.getLogger("uvicorn")
    try:
        workload.start()
        uvicorn_log.addHandler(caplog.handler)
        erp = workload._runtime.sims.erp.server  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while erp.handling < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert erp.handling >= 2
        workload.stop()
    finally:
        workload.stop()
        uvicorn_log.removeHandler(caplog.handler)
    assert "Traceback" not in capfd.readouterr().err
    records = [r for r in caplog.records if r.levelno >= logging.INFO and r.name != "httpx"]
    messages = [f"{r.name}: {r.getMessage()}" for r in records]
    assert not [r for r in records if r.exc_info or r.name.startswith("uvicorn")], messages
    cancelled = [r.getMessage() for r in records if "cancelled in flight" in r.getMessage()]
    assert cancelled and len(cancelled) == len(records), messages
    cids = [message.split("transaction ", 1)[1].split(" ", 1)[0] for message in cancelled]
    assert len(cids) == len(set(cids))


def test_a_request_cut_short_by_stop_is_answered_503(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sync_engine._server import HttpServer

    async def forever(request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def run() -> tuple[int, int, str]:
        server = HttpServer(Starlette(routes=[Route("/hang", forever)]), name="test")
        await server.start()
        async with httpx.AsyncClient(base_url=server.url) as client:
            call = asyncio.create_task(client.get("/hang"))
            while server.handling == 0:
                await asyncio.sleep(0.005)
            await server.stop(grace=0)
            response = await call
        return response.status_code, server.handling, response.text

    caplog.set_level(logging.DEBUG)
    assert asyncio.run(run()) == (503, 0, "shutting down")
    assert [r.getMessage() for r in caplog.records if r.name == "sync_engine"] == [
        "test: GET /hang cut short by shutdown"
    ]
