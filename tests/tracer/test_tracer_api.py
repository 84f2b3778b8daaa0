"""The public surface is locked: changing it is a decision, not an accident."""

from __future__ import annotations

import importlib
import inspect

import pytest

import tracer
import tracer.semconv as semconv

EXPECTED_API = [
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


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, Classes, functions."""
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


def test_public_surface_is_locked() -> None:
    assert tracer.__all__ == EXPECTED_API


def test_public_surface_is_sorted_and_importable() -> None:
    assert tracer.__all__ == sorted(tracer.__all__, key=_isort_key)
    for name in tracer.__all__:
        assert getattr(tracer, name) is not None, name


@pytest.mark.parametrize(
    "module",
    [
        "tracer",
        "tracer.semconv",
        "tracer.environment_variables",
        "tracer.vendors",
        "tracer.vendors.stripe",
        "tracer.vendors.salesforce",
        "tracer.vendors.netsuite",
    ],
)
def test_every_public_callable_and_class_has_a_docstring(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__
    assert mod.__all__ == sorted(mod.__all__, key=_isort_key), module
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


def test_semconv_exports_every_public_name() -> None:
    public = {n for n in vars(semconv) if not n.startswith("_") and (n.isupper() or n[0].isupper())}
    public |= {"format_object_ref", "parse_object_ref", "parse_stage"}
    public -= {"Final", "StrEnum"}
    assert set(semconv.__all__) == public


def test_importing_the_tracer_loads_neither_the_sdk_nor_optional_clients() -> None:
    """The API half stands alone: the SDK comes with configure(), httpx and
    requests with their hooks."""
    import subprocess
    import sys

    code = (
        "import sys, tracer, tracer.vendors.stripe, tracer.vendors.salesforce, tracer.vendors.netsuite;"
        "bad = sorted(m for m in ('httpx', 'requests', 'clickhouse_connect', 'streamlit', 'collector', "
        "'opentelemetry.sdk.trace', 'opentelemetry.sdk.metrics', 'opentelemetry.exporter') "
        "if m in sys.modules); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
