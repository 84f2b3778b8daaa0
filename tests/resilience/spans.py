"""Business spans for the resilience tests, made by the OpenTelemetry SDK and written
the way the collector writes them (OTLP → rows), with any attributes and times."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

from collector.ingest import convert_request
from collector.otlp import Limits
from collector.store import Store
from collector.writer import write_blocks
from tests.collector.helpers import body_of
from tracer import semconv

__all__ = ["Step", "insert", "make"]


@dataclass(frozen=True)
class Step:
    """One business span: its stage and correlation id, when, and anything else."""

    stage: str
    correlation_id: str
    legal_entity: str = "DE01"
    outcome: str = "ok"
    at_ns: int | None = None
    duration_ns: int = 5_000_000
    service: str = "resilience"
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    events: Sequence[tuple[str, Mapping[str, AttributeValue]]] = ()


def make(steps: Sequence[Step]) -> list[ReadableSpan]:
    """The SDK spans of ``steps`` (one provider per service, like separate adapters)."""
    out: list[ReadableSpan] = []
    by_service: dict[str, list[Step]] = {}
    for step in steps:
        by_service.setdefault(step.service, []).append(step)
    for service, group in by_service.items():
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("resilience")
        for step in group:
            start = step.at_ns if step.at_ns is not None else time.time_ns()
            span = tracer.start_span(step.stage, start_time=start)
            span.set_attributes(
                {
                    semconv.BIZ_CORRELATION_ID: step.correlation_id,
                    semconv.BIZ_STAGE: step.stage,
                    semconv.BIZ_PROCESS: "quote_to_cash",
                    semconv.BIZ_LEGAL_ENTITY: step.legal_entity,
                    semconv.BIZ_OUTCOME: step.outcome,
                    **step.attributes,
                }
            )
            for name, attributes in step.events:
                span.add_event(name, dict(attributes), timestamp=start + 1000)
            span.end(end_time=start + step.duration_ns)
        provider.shutdown()
        out.extend(exporter.get_finished_spans())
    return out


def insert(store: Store, steps: Sequence[Step]) -> int:
    """Convert ``steps`` as the collector does and write the rows; the span count."""
    converted = convert_request(
        "traces", body_of(make(steps)), None, "application/x-protobuf", 64 << 20, Limits()
    )
    with tempfile.TemporaryDirectory() as workdir:
        write_blocks(store, converted.blocks, None, Path(workdir))
    return converted.accepted
