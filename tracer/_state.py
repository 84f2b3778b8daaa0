"""The tracer's process-wide state, set by :func:`tracer.configure`.

Before ``configure()`` the tracer is the OpenTelemetry API's global tracer: a
no-op unless the application set an SDK provider itself.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer

from tracer._classify import ClassificationRule
from tracer._redact import Redactor

__all__ = ["INSTRUMENTATION_NAME", "State", "state"]

INSTRUMENTATION_NAME = "revtrace.tracer"


class State:
    """What ``configure()`` decides; read on every business span."""

    def __init__(self) -> None:
        self.tracer: Tracer = trace.get_tracer(INSTRUMENTATION_NAME)
        self.redactor: Redactor = Redactor()
        self.rules: tuple[ClassificationRule, ...] = ()
        self.configured = False


state = State()
