"""revtrace SLA rules: rules as code, the evaluator that categorizes every
transaction, alerts that reach on-call, and reconciliation.

- :func:`load_rules` / :func:`parse_rules` / :func:`builtin_pack` read the
  strict ``revtrace/v1`` YAML into a frozen :class:`RuleSet`.
- :func:`evaluate`, :func:`classify`, :func:`measure` are pure: statistics in,
  findings, verdicts and SLO points out.
- :class:`Evaluator` runs a rule set against a store, on demand or scheduled
  (APScheduler); :class:`EvaluatorRole` is its ``revtrace up`` role.
- :func:`score` compares verdicts with the reference sync engine's ground truth.
- :class:`TransactionStatus`, :class:`AlertStatus`, :class:`ReconStatus`: the
  values of the ``Status`` columns the evaluator writes (defined in
  :mod:`tracer.semconv`, where the dashboard reads them too).

Exceptions: :class:`SlaError` ← :class:`RuleError`, :class:`EvaluationError`,
:class:`DeliveryError` (see :mod:`sla_rules._errors`).
"""

from sla_rules._alerting import (
    Alert,
    add_silence,
    expire_silence,
    fingerprint,
    list_silences,
    match_routes,
    parse_matchers,
)
from sla_rules._errors import DeliveryError, EvaluationError, RuleError, SlaError
from sla_rules._evaluate import classify, evaluate, measure, reconcile
from sla_rules._evaluator import CycleResult, Evaluator, EvaluatorRole, configured_rules
from sla_rules._model import Finding, SlaPoint, SpanSignal, TransactionFacts, TransactionStats, Verdict
from sla_rules._scoring import Score, load_ground_truth, score
from sla_rules._spec import RuleSet, builtin_pack, load_rules, parse_rules
from sla_rules._windows import GOOGLE_SRE_WORKBOOK, BurnWindow
from tracer.semconv import AlertStatus, ReconStatus, TransactionStatus

__all__ = [
    "GOOGLE_SRE_WORKBOOK",
    "Alert",
    "AlertStatus",
    "BurnWindow",
    "CycleResult",
    "DeliveryError",
    "EvaluationError",
    "Evaluator",
    "EvaluatorRole",
    "Finding",
    "ReconStatus",
    "RuleError",
    "RuleSet",
    "Score",
    "SlaError",
    "SlaPoint",
    "SpanSignal",
    "TransactionFacts",
    "TransactionStats",
    "TransactionStatus",
    "Verdict",
    "add_silence",
    "builtin_pack",
    "classify",
    "configured_rules",
    "evaluate",
    "expire_silence",
    "fingerprint",
    "list_silences",
    "load_ground_truth",
    "load_rules",
    "match_routes",
    "measure",
    "parse_matchers",
    "parse_rules",
    "reconcile",
    "score",
]
