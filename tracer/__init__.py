"""revtrace tracer: business-transaction tracing for CRM/billing/ERP adapters.

The API half (everything here but :func:`configure`) depends only on the
OpenTelemetry API and is a safe no-op until :func:`configure` wires the SDK,
the accounting batch processor and the OTLP exporter::

    import tracer
    tracer.configure("billing-adapter", endpoint="http://revtrace:4318",
                     headers={"authorization": "Bearer <ingest token>"})

    with tracer.business_span("billing.invoice.create", process="quote_to_cash",
                              vendor="stripe", amount="120.00", currency="EUR") as span:
        span.record_payload("canonical", invoice)
        ...

Nothing the tracer does raises into adapter code, except :func:`configure` and
constructors, which raise :class:`ConfigurationError`::

    TracerError
    └── ConfigurationError (also a ValueError)

Importing the tracer loads only the OpenTelemetry API; the SDK and the
exporters are loaded by :func:`configure`.

The vocabulary lives in :mod:`tracer.semconv`; vendor payload mappers in
:mod:`tracer.vendors`.
"""

from __future__ import annotations

from tracer._classify import Classification, ClassificationRule, classify, parse_retry_after
from tracer._config import configure, dropped_spans, force_flush, shutdown
from tracer._correlation import (
    Correlation,
    correlation,
    current_correlation_id,
    current_process,
    new_correlation_id,
)
from tracer._errors import ConfigurationError, TracerError
from tracer._http import instrument_httpx, instrument_requests, sanitize_url
from tracer._propagation import (
    RemoteContext,
    extract_http_context,
    extract_message_context,
    extract_webhook_context,
    inject_http_headers,
    inject_message_headers,
    inject_webhook_metadata,
)
from tracer._redact import FieldAction, RedactedPayload, RedactionPolicy, Redactor
from tracer._refindex import RefIndex, RefMatch, default_ref_index
from tracer._span import BusinessSpan, business_span, current_business_span, stage
from tracer._stats import ExportStats, export_stats

__all__ = [
    "BusinessSpan",
    "Classification",
    "ClassificationRule",
    "ConfigurationError",
    "Correlation",
    "ExportStats",
    "FieldAction",
    "RedactedPayload",
    "RedactionPolicy",
    "Redactor",
    "RefIndex",
    "RefMatch",
    "RemoteContext",
    "TracerError",
    "business_span",
    "classify",
    "configure",
    "correlation",
    "current_business_span",
    "current_correlation_id",
    "current_process",
    "dropped_spans",
    "export_stats",
    "extract_http_context",
    "extract_message_context",
    "extract_webhook_context",
    "force_flush",
    "inject_http_headers",
    "inject_message_headers",
    "inject_webhook_metadata",
    "instrument_httpx",
    "instrument_requests",
    "new_correlation_id",
    "parse_retry_after",
    "ref_index",
    "sanitize_url",
    "shutdown",
    "stage",
]


def ref_index() -> RefIndex:
    """The process-wide ref → correlation index that business spans feed (each
    span's own ``<system>:<type>/<id>`` and its ``object_refs``, when it ends)
    and that :func:`extract_webhook_context` and business spans without a
    correlation id consult. Adapters may feed it too (``remember``)."""
    return default_ref_index
