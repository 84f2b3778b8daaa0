"""The exceptions of :mod:`sla_rules`.

Exceptions::

    SlaError
     ├── RuleError          a rules file is invalid; ``problems`` lists every one
     ├── EvaluationError    a query or a write of one evaluation failed (retryable
     │                      when the store was unreachable)
     └── DeliveryError      a notification could not be delivered; ``retryable``
                            says whether the outbox should try again
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DeliveryError", "EvaluationError", "RuleError", "SlaError"]


class SlaError(Exception):
    """Anything that went wrong in the SLA rules, evaluator or notifier."""

    retryable = False


class RuleError(SlaError):
    """A rules document is invalid. ``problems`` holds every problem found,
    each as ``path: message, got value``."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n  ".join(self.problems)
        super().__init__(f"{where}{len(self.problems)} problem(s):\n  {lines}")


class EvaluationError(SlaError):
    """One evaluation step failed (a query, a write)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryError(SlaError):
    """A receiver did not take a notification. ``retryable`` is False when trying
    again cannot help (a 4xx other than 408/429, a malformed address)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
