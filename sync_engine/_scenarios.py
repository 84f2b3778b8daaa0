"""The workload's scenarios and fault kinds: what each scenario does, which
API stages it calls, which faults can hit it and what category each fault
stands for. Profiles are validated against these tables."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from tracer.semconv import FailureCategory, Process, Stage, System

__all__ = [
    "API_STAGES",
    "FAULT_CATEGORY",
    "PLANNED_FAULT_KINDS",
    "SCENARIO_PROCESS",
    "SCENARIO_STAGES",
    "FaultKind",
    "Scenario",
    "eligible_scenarios",
]


class Scenario(StrEnum):
    """Business situations the workload drives."""

    NEW_SALE = "new_sale"
    """A new customer signs: order approved in CRM → billing → ERP."""
    UPSELL_NEW_ENTITY = "upsell_new_entity"
    """An existing customer buys through a legal entity of another region."""
    RENEWAL = "renewal"
    """Billing renews a subscription and issues the renewal invoice."""
    PAYMENT = "payment"
    """The customer pays an open invoice."""
    PAYMENT_FAILURE = "payment_failure"
    """A payment fails, the account goes past due, dunning collects later."""
    REFUND = "refund"
    """Finance refunds a paid invoice in billing."""
    ACCOUNT_UPDATE = "account_update"
    """Sales edits an account's name or address in CRM."""
    SUBSCRIPTION_CHANGE = "subscription_change"
    """The customer changes seats in the billing portal (twice, quickly)."""


class FaultKind(StrEnum):
    """Kinds of injected fault. The first group is planned per transaction by a
    profile's ``faults``; the second is recorded when the environment or the
    engine's own protection made a call fail."""

    TRANSIENT = "transient"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    AUTH = "auth"
    UNKNOWN_SKU = "unknown_sku"
    MISSING_COST_CENTER = "missing_cost_center"
    CLOSED_PERIOD = "closed_period"
    DUPLICATE_DELIVERY = "duplicate_delivery"
    OUT_OF_ORDER = "out_of_order"
    DROPPED_WEBHOOK = "dropped_webhook"
    TAX_ROUNDING = "tax_rounding"
    ERP_SLOW = "erp_slow"
    DUPLICATE_EFFECT = "duplicate_effect"
    OUTAGE = "outage"
    CIRCUIT_OPEN = "circuit_open"


PLANNED_FAULT_KINDS: Final = tuple(
    k for k in FaultKind if k not in (FaultKind.OUTAGE, FaultKind.CIRCUIT_OPEN)
)

FAULT_CATEGORY: Final[dict[FaultKind, FailureCategory]] = {
    FaultKind.TRANSIENT: FailureCategory.TRANSIENT,
    FaultKind.RATE_LIMIT: FailureCategory.RATE_LIMITED,
    FaultKind.TIMEOUT: FailureCategory.TRANSIENT,
    FaultKind.AUTH: FailureCategory.AUTH,
    FaultKind.UNKNOWN_SKU: FailureCategory.MAPPING,
    FaultKind.MISSING_COST_CENTER: FailureCategory.MASTER_DATA,
    FaultKind.CLOSED_PERIOD: FailureCategory.BUSINESS_RULE,
    FaultKind.DUPLICATE_DELIVERY: FailureCategory.DUPLICATE,
    FaultKind.OUT_OF_ORDER: FailureCategory.OUT_OF_ORDER,
    FaultKind.DROPPED_WEBHOOK: FailureCategory.STUCK,
    FaultKind.TAX_ROUNDING: FailureCategory.MISMATCH,
    FaultKind.ERP_SLOW: FailureCategory.LATENCY,
    FaultKind.DUPLICATE_EFFECT: FailureCategory.DUPLICATE,
    FaultKind.OUTAGE: FailureCategory.TRANSIENT,
    FaultKind.CIRCUIT_OPEN: FailureCategory.TRANSIENT,
}
"""The failure category each fault kind stands for."""

SCENARIO_PROCESS: Final[dict[Scenario, Process]] = {
    Scenario.NEW_SALE: Process.QUOTE_TO_CASH,
    Scenario.UPSELL_NEW_ENTITY: Process.QUOTE_TO_CASH,
    Scenario.RENEWAL: Process.RENEWAL,
    Scenario.PAYMENT: Process.PAYMENT_UPDATE,
    Scenario.PAYMENT_FAILURE: Process.PAYMENT_UPDATE,
    Scenario.REFUND: Process.REFUND,
    Scenario.ACCOUNT_UPDATE: Process.CUSTOMER_SYNC,
    Scenario.SUBSCRIPTION_CHANGE: Process.SUBSCRIPTION_CHANGE,
}

_Q2C_STAGES: Final = (
    Stage.CRM_ORDER_APPROVE,
    Stage.BILLING_CUSTOMER_UPSERT,
    Stage.BILLING_SUBSCRIPTION_CREATE,
    Stage.BILLING_INVOICE_CREATE,
    Stage.ERP_CUSTOMER_UPSERT,
    Stage.ERP_INVOICE_POST,
)

SCENARIO_STAGES: Final[dict[Scenario, tuple[Stage, ...]]] = {
    Scenario.NEW_SALE: _Q2C_STAGES,
    Scenario.UPSELL_NEW_ENTITY: _Q2C_STAGES,
    Scenario.RENEWAL: (Stage.CRM_ACCOUNT_UPDATE, Stage.ERP_INVOICE_POST),
    Scenario.PAYMENT: (Stage.ERP_PAYMENT_APPLY,),
    Scenario.PAYMENT_FAILURE: (Stage.CRM_ACCOUNT_UPDATE,),
    Scenario.REFUND: (Stage.ERP_REFUND_POST,),
    Scenario.ACCOUNT_UPDATE: (
        Stage.CRM_ACCOUNT_UPDATE,
        Stage.BILLING_CUSTOMER_UPSERT,
        Stage.ERP_CUSTOMER_UPSERT,
    ),
    Scenario.SUBSCRIPTION_CHANGE: (Stage.CRM_ACCOUNT_UPDATE,),
}
"""The stages at which each scenario's (first) transaction calls a system's API."""

API_STAGES: Final[dict[System, tuple[Stage, ...]]] = {
    System.CRM: (Stage.CRM_ORDER_APPROVE, Stage.CRM_ACCOUNT_UPDATE),
    System.BILLING: (
        Stage.BILLING_CUSTOMER_UPSERT,
        Stage.BILLING_SUBSCRIPTION_CREATE,
        Stage.BILLING_INVOICE_CREATE,
    ),
    System.ERP: (
        Stage.ERP_CUSTOMER_UPSERT,
        Stage.ERP_INVOICE_POST,
        Stage.ERP_PAYMENT_APPLY,
        Stage.ERP_REFUND_POST,
    ),
}
"""The stages that call each simulated system's API (where call faults can hit)."""

_Q2C: Final = (Scenario.NEW_SALE, Scenario.UPSELL_NEW_ENTITY)
_WITH_INVOICE: Final = (*_Q2C, Scenario.RENEWAL)

_DATA_FAULT_SCENARIOS: Final[dict[FaultKind, tuple[Scenario, ...]]] = {
    FaultKind.UNKNOWN_SKU: _Q2C,
    FaultKind.MISSING_COST_CENTER: _Q2C,
    FaultKind.CLOSED_PERIOD: _Q2C,
    FaultKind.TAX_ROUNDING: _Q2C,
    FaultKind.DUPLICATE_EFFECT: (Scenario.NEW_SALE,),
    FaultKind.ERP_SLOW: _WITH_INVOICE,
    FaultKind.DROPPED_WEBHOOK: _WITH_INVOICE,
    FaultKind.OUT_OF_ORDER: (Scenario.SUBSCRIPTION_CHANGE,),
}

_DELIVERY_SCENARIOS: Final[dict[System, tuple[Scenario, ...]]] = {
    System.BILLING: (*_WITH_INVOICE, Scenario.PAYMENT, Scenario.PAYMENT_FAILURE, Scenario.REFUND),
    System.CRM: (*_Q2C, Scenario.ACCOUNT_UPDATE),
}


def eligible_scenarios(kind: FaultKind, system: System | None, stage: Stage | None) -> tuple[Scenario, ...]:
    """The scenarios whose transaction can experience this fault."""
    if kind in _DATA_FAULT_SCENARIOS:
        return _DATA_FAULT_SCENARIOS[kind]
    if kind is FaultKind.DUPLICATE_DELIVERY:
        return _DELIVERY_SCENARIOS.get(system or System.BILLING, ())
    if kind in (FaultKind.OUTAGE, FaultKind.CIRCUIT_OPEN):
        return ()
    out = []
    for scenario, stages in SCENARIO_STAGES.items():
        if stage is not None:
            if stage in stages:
                out.append(scenario)
        elif system is not None and any(s.value.startswith(f"{system.value}.") for s in stages):
            out.append(scenario)
    return tuple(out)
