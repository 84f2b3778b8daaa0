"""A load generator: one adapter process emitting business spans through the real
tracer (its accounting batch processor and the OpenTelemetry OTLP/HTTP exporter,
which retries 429/503 after ``Retry-After``), paced to a rate profile.

At the end it shuts the tracer down (flushing its queue) and prints one JSON
line: what it produced and what the tracer says happened to every span
(exported, or dropped and counted, by reason). The test compares that with the
store::

    python -m tests.resilience.producer --endpoint http://127.0.0.1:4318 \\
        --service load-0 --profile 100x10,1000x30,100x10

``--profile`` is ``<spans per second>x<seconds>`` phases. ``--skew-s`` shifts
this adapter's clock (every span and event timestamp) by that many seconds.
Exporter settings come from the standard ``OTEL_*`` variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import tracer
from tracer.semconv import CANONICAL_STAGES

__all__ = ["Phase", "main", "parse_profile"]

# The order-to-ERP path: every transaction (correlation id) gets these stages in order.
STAGES = CANONICAL_STAGES[:7]
ENTITIES = ("DE01", "US01", "FR02", "GB01")


@dataclass(frozen=True)
class Phase:
    """``rate`` spans per second for ``seconds``."""

    rate: float
    seconds: float


def parse_profile(text: str) -> list[Phase]:
    """``100x10,1000x30`` → two phases."""
    phases = []
    for part in text.split(","):
        rate, _, seconds = part.strip().partition("x")
        phases.append(Phase(float(rate), float(seconds)))
    return phases


def _skew_clock(seconds: float) -> None:
    """Make this process's spans carry a clock that is ``seconds`` off (an adapter
    host whose NTP is broken): the SDK stamps spans and events with ``time_ns``."""
    import opentelemetry.sdk.trace as sdk_trace

    real = time.time_ns
    offset = int(seconds * 1e9)
    sdk_trace.time_ns = lambda: real() + offset  # type: ignore[attr-defined]


def _payload(n: int, size: int) -> dict[str, object]:
    return {
        "invoice": f"INV-{n}",
        "customer": {"name": f"Customer {n}", "email": f"billing{n}@example.com"},
        "lines": [{"sku": f"SKU-{i}", "amount": f"{10 + i}.00"} for i in range(max(1, size // 40))],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the profile, print the JSON summary; exit 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--service", required=True, help="service.name; also the correlation id prefix")
    parser.add_argument("--profile", required=True, type=parse_profile)
    parser.add_argument("--token", default="", help="ingest token (Authorization: Bearer)")
    parser.add_argument("--skew-s", type=float, default=0.0)
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="the stages this adapter does, per transaction, in order"
    )
    parser.add_argument("--cid-prefix", default="", help="correlation id prefix (default: the service)")
    parser.add_argument("--payload-every", type=int, default=0, help="a payload snapshot every N spans")
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--shutdown-timeout-s", type=float, default=180.0)
    parser.add_argument("--log-level", default="WARNING", help="Python logging level of this adapter")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)

    if args.skew_s:
        _skew_clock(args.skew_s)
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    tracer.configure(args.service, endpoint=args.endpoint, headers=headers, set_global=False)

    stages = [s for s in args.stages.split(",") if s]
    prefix = args.cid_prefix or args.service
    produced = 0
    max_queue = 0
    behind_s = 0.0
    started = time.monotonic()
    for phase in args.profile:
        phase_start = time.monotonic()
        phase_target = int(phase.rate * phase.seconds)
        emitted = 0
        while emitted < phase_target:
            now = time.monotonic()
            due = min(phase_target, int((now - phase_start) * phase.rate) + 1) - emitted
            if due <= 0:
                time.sleep(min(0.005, (emitted + 1) / phase.rate - (now - phase_start)))
                continue
            for _ in range(due):
                n = produced
                transaction, step = divmod(n, len(stages))
                cid = f"{prefix}-{transaction}"
                with tracer.business_span(
                    stages[step],
                    process="quote_to_cash",
                    correlation_id=cid,
                    legal_entity=ENTITIES[transaction % len(ENTITIES)],
                    amount=f"{100 + transaction % 900}.00",
                    currency="EUR",
                    idempotency_key=f"{cid}:{stages[step]}",
                ) as span:
                    if args.payload_every and n % args.payload_every == 0:
                        span.record_payload("canonical", _payload(n, args.payload_bytes))
                produced += 1
                emitted += 1
            max_queue = max(max_queue, tracer.export_stats().queued)
        behind_s = max(behind_s, time.monotonic() - phase_start - phase.seconds)
    emitting_s = time.monotonic() - started
    tracer.shutdown(int(args.shutdown_timeout_s * 1000))
    stats = tracer.export_stats()
    summary = {
        "service": args.service,
        "produced": produced,
        "exported": stats.exported,
        "dropped_queue_full": stats.dropped_queue_full,
        "dropped_export_failed": stats.dropped_export_failed,
        "dropped_shutdown": stats.dropped_shutdown,
        "dropped": stats.dropped,
        "max_queue": max_queue,
        "emitting_s": round(emitting_s, 2),
        "total_s": round(time.monotonic() - started, 2),
        "behind_s": round(behind_s, 2),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
