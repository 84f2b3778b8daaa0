"""The tracer's exceptions.

::

    TracerError                      base of everything the tracer raises
    └── ConfigurationError (+ValueError)
                                     configure(), RedactionPolicy, ClassificationRule
                                     or an OTEL_* / REVTRACE_* variable is invalid

Only constructors and :func:`tracer.configure` raise. Everything adapters call
while doing business (spans, propagation, classification, redaction of a
payload) logs and counts its own failures instead of raising.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "TracerError"]


class TracerError(Exception):
    """Base class of the tracer's exceptions."""


class ConfigurationError(TracerError, ValueError):
    """A setting is invalid. The message names every problem found, each with
    the setting and the value, e.g. ``OTEL_BSP_MAX_QUEUE_SIZE: must be a
    positive integer, got 'lots'``."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("; ".join(self.problems))
