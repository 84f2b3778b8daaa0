"""``python -m sync_engine``: run the demo workload alone, or validate profiles.

::

    python -m sync_engine --duration 20 --rate 5 --profile default --otlp-endpoint http://127.0.0.1:4318
    python -m sync_engine validate my-profile.yaml other.yaml
    python -m sync_engine profiles
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sync_engine._config import EngineConfig
from sync_engine._errors import ConfigError, ProfileError
from sync_engine._profile import builtin_profiles, load_profile
from sync_engine._workload import Workload, WorkloadConfig

__all__ = ["build_parser", "main"]


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected name=value, got {value!r}")
    return name.strip(), content.strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of a ``python -m sync_engine`` run (not of the
    ``validate`` and ``profiles`` commands): what deployment files may pass."""
    parser = argparse.ArgumentParser(
        prog="python -m sync_engine",
        description="Run the reference quote-to-cash sync engine with simulated CRM, billing and ERP. "
        "Other commands: 'validate FILE...' checks fault profiles, 'profiles' lists the shipped ones.",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to generate traffic (default: until Ctrl-C)"
    )
    parser.add_argument("--rate", type=float, default=2.0, help="scenarios started per second (default 2)")
    parser.add_argument(
        "--profile", default="default", help="shipped profile name or YAML path (default: default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--otlp-endpoint",
        default="http://127.0.0.1:4318",
        help="collector base URL; 'none' to export nothing",
    )
    parser.add_argument("--otlp-protocol", choices=("http/protobuf", "grpc"), default=None)
    parser.add_argument(
        "--otlp-header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="header for OTLP export (repeatable), e.g. authorization='Bearer …'",
    )
    parser.add_argument("--ground-truth", type=Path, default=None, help="write ground-truth JSON lines here")
    parser.add_argument("--time-scale", type=float, default=1.0, help="real seconds per simulated second")
    parser.add_argument(
        "--engine-port", type=int, default=0, help="port of the engine's webhooks and API (0: any)"
    )
    parser.add_argument(
        "--replay-token",
        default=None,
        help="bearer token of the replay API (default: $REVTRACE_REPLAY_TOKEN, else random and printed)",
    )
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def _validate(paths: Sequence[str]) -> int:
    if not paths:
        print("usage: python -m sync_engine validate FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            profile = load_profile(Path(path))
        except ProfileError as exc:
            status = 1
            print(f"{exc.source}: invalid", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            print(
                f"{path}: ok ({profile.name}: {len(profile.faults)} faults, {len(profile.outages)} outages)"
            )
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["validate"]:
        return _validate(args[1:])
    if args[:1] == ["profiles"]:
        for name in builtin_profiles():
            print(f"{name}: {load_profile(name).description}")
        return 0
    options = build_parser().parse_args(args)
    logging.basicConfig(
        level=logging.WARNING if options.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        workload = Workload(
            WorkloadConfig(
                rate_per_s=options.rate,
                profile=options.profile,
                seed=options.seed,
                otlp_endpoint=None if options.otlp_endpoint == "none" else options.otlp_endpoint,
                otlp_protocol=options.otlp_protocol,
                otlp_headers=dict(options.otlp_header),
                ground_truth_path=options.ground_truth,
                duration_s=options.duration,
                time_scale=options.time_scale,
                drain_timeout_s=options.drain_timeout,
                engine=EngineConfig(port=options.engine_port, replay_token=options.replay_token),
            )
        )
        workload.start()
    except (ProfileError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not options.quiet:
        print(
            f"engine listening on {workload.engine_url} (replay token: {workload.replay_token})",
            file=sys.stderr,
        )
    interrupted = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        interrupted.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not workload.wait(0.2) and not interrupted.is_set():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        workload.stop()
    print(json.dumps(workload.summary(), indent=2))
    return 0
