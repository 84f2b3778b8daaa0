"""Environment variables the tracer reads, beside the standard ``OTEL_*`` ones.

The standard variables keep their OpenTelemetry meaning (see
``opentelemetry.sdk.environment_variables``): ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SDK_DISABLED``,
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``,
``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS``, ``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT``,
``OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION``, ``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``,
``OTEL_BSP_EXPORT_TIMEOUT``, ``OTEL_METRIC_EXPORT_INTERVAL`` and
``OTEL_TRACES_SAMPLER[_ARG]``. Arguments of :func:`tracer.configure` win over
the environment, the environment wins over the defaults.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "REVTRACE_PAYLOAD_MAX_BYTES",
    "REVTRACE_REDACTION_HMAC_KEY",
    "REVTRACE_REF_INDEX_SIZE",
]

REVTRACE_REDACTION_HMAC_KEY: Final = "REVTRACE_REDACTION_HMAC_KEY"
"""Secret key for the HMAC-SHA256 that replaces fields marked ``hash`` in a
redaction policy (and for ``biz.payload.hash``). Unset: those fields are
redacted instead, because an unkeyed hash of an email can be reversed by a
dictionary. Use the same key in every process whose payloads must join."""

REVTRACE_PAYLOAD_MAX_BYTES: Final = "REVTRACE_PAYLOAD_MAX_BYTES"
"""Size cap in bytes of one redacted payload snapshot (default 8192). Larger
bodies are cut and marked ``biz.payload.truncated``."""

REVTRACE_REF_INDEX_SIZE: Final = "REVTRACE_REF_INDEX_SIZE"
"""How many object references the in-process ref → correlation index keeps
(default 10000; 0 turns it off). Oldest entries are evicted first."""
