"""The dashboard's store commands for the ``revtrace`` CLI.

Each is ``fn(store, **args) -> CommandOutput``, so it runs here or inside a
running ``revtrace up`` (see :mod:`revtrace.runtime`).
"""

from __future__ import annotations

from collector.store import Store
from dashboard import data, report
from revtrace.runtime import CommandOutput

__all__ = ["audit_verify", "trace"]


def trace(store: Store, correlation_id: str, format: str = "table", payloads: bool = True) -> CommandOutput:
    """One transaction's audit trail: a waterfall table, or JSON, CSV or HTML.

    Exit 1 when no span carries the correlation id, 2 for an unknown format.
    The terminal is a privileged place (it holds the store), so payloads are
    included unless ``payloads`` is false.
    """
    if format not in report.FORMATS:
        return CommandOutput(f"error: --format must be one of {', '.join(report.FORMATS)}", 2)
    bundle = data.load_trace(store, correlation_id, payloads)
    if bundle is None:
        return CommandOutput(
            f"no transaction with correlation id {correlation_id!r} "
            f"(searched {store.config.describe()}; spans may still be arriving)",
            1,
        )
    return CommandOutput(report.render(bundle, format, exported_by="revtrace trace"))


def audit_verify(store: Store) -> CommandOutput:
    """Check the workbench audit log's hash chain; exit 1 naming the first broken link."""
    if not data.table_exists(store, data.AUDIT_TABLE):
        return CommandOutput(f"no audit log in {store.config.describe()} (run `revtrace db migrate`)", 1)
    result = data.verify_audit_log(store)
    return CommandOutput(result.describe(), 0 if result.ok else 1)
