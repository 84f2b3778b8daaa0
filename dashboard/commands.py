"""The dashboard's store commands for the ``revtrace`` CLI.

Each is ``fn(store, **args) -> CommandOutput``, so it runs here or inside a
running ``revtrace up`` (see :mod:`revtrace.runtime`).
"""

from __future__ import annotations

from collector.store import Store
from dashboard import data, report
from dashboard.audit import parse_head
from revtrace.runtime import CommandOutput

__all__ = ["audit_head", "audit_verify", "trace"]


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


def audit_verify(store: Store, head: str | None = None) -> CommandOutput:
    """Check the workbench audit log's hash chain — and, given ``head`` (``SEQ:HASH``
    recorded earlier), that no entry up to it was removed; exit 1 naming the first
    broken link, 2 for a malformed head."""
    anchor = None
    if head:
        try:
            anchor = parse_head(head)
        except ValueError as exc:
            return CommandOutput(f"error: --head: {exc}", 2)
    if not data.table_exists(store, data.AUDIT_TABLE):
        return CommandOutput(f"no audit log in {store.config.describe()} (run `revtrace db migrate`)", 1)
    result = data.verify_audit_log(store, anchor)
    text = result.describe()
    if result.ok and anchor is not None:
        text += f"; holds the recorded head (entry {anchor[0]})"
    return CommandOutput(text, 0 if result.ok else 1)


def audit_head(store: Store) -> CommandOutput:
    """The chain's head as ``SEQ:HASH``: keep it outside the store (a ticket, a
    vault) and pass it to ``revtrace audit verify --head`` later. Exit 1 when the
    chain is empty or broken."""
    if not data.table_exists(store, data.AUDIT_TABLE):
        return CommandOutput(f"no audit log in {store.config.describe()} (run `revtrace db migrate`)", 1)
    result = data.verify_audit_log(store)
    if not result.ok:
        return CommandOutput(result.describe(), 1)
    if not result.entries:
        return CommandOutput("audit log is empty: no head yet", 1)
    return CommandOutput(f"{result.entries}:{result.head}")
