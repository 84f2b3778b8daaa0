"""Reference data the simulated world and the engine's mappings share: legal
entities, the product catalog, sales teams and ERP cost centers.

The world is consistent on purpose except where a fault profile asks for a gap:
``LEGACY-SUPPORT`` exists in the CRM but in no mapping (unknown SKU), and the
Singapore entity has no cost center for the partner channel (missing master
data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

__all__ = [
    "CENTS",
    "CRM_ONLY_SKUS",
    "ERP_MISSING_COST_CENTERS",
    "LEGAL_ENTITIES",
    "PRODUCTS",
    "SALES_TEAMS",
    "LegalEntity",
    "Product",
    "SalesTeam",
    "billing_price_id",
    "billing_product_id",
    "money",
    "tax_rate_id",
]

CENTS: Final = Decimal("0.01")


def money(value: Decimal | int | str) -> Decimal:
    """Round to cents, half up (how both billing and ERP round)."""
    return Decimal(value).quantize(CENTS, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LegalEntity:
    """A company of the group that books revenue (a NetSuite subsidiary)."""

    code: str
    name: str
    region: str
    country: str
    currency: str
    tax_rate: Decimal
    erp_subsidiary_id: str


LEGAL_ENTITIES: Final = {
    e.code: e
    for e in (
        LegalEntity("ACME-DE", "Acme Software GmbH", "EMEA", "DE", "EUR", Decimal("0.19"), "3"),
        LegalEntity("ACME-UK", "Acme Software Ltd", "EMEA", "GB", "GBP", Decimal("0.20"), "4"),
        LegalEntity("ACME-US", "Acme Software Inc.", "AMER", "US", "USD", Decimal("0.0725"), "5"),
        LegalEntity("ACME-SG", "Acme Software Pte. Ltd.", "APAC", "SG", "SGD", Decimal("0.09"), "7"),
    )
}
"""The group's legal entities by code."""


@dataclass(frozen=True)
class SalesTeam:
    """A sales team; its ERP department is the cost center revenue books to."""

    name: str
    erp_department_id: str


SALES_TEAMS: Final = {
    t.name: t
    for t in (
        SalesTeam("Enterprise", "110"),
        SalesTeam("Mid-Market", "120"),
        SalesTeam("Partner Channel", "130"),
    )
}

ERP_MISSING_COST_CENTERS: Final = frozenset({("ACME-SG", "Partner Channel")})
"""(legal entity, team) pairs for which the ERP has no department: postings
for them are rejected as missing master data."""


@dataclass(frozen=True)
class Product:
    """A sellable product: list price per month in each currency."""

    sku: str
    name: str
    family: str
    prices: dict[str, Decimal]
    erp_item_id: str


def _prices(eur: int) -> dict[str, Decimal]:
    return {
        "EUR": Decimal(eur),
        "GBP": Decimal(round(eur * 0.86)),
        "USD": Decimal(round(eur * 1.08)),
        "SGD": Decimal(round(eur * 1.45)),
    }


PRODUCTS: Final = {
    p.sku: p
    for p in (
        Product("PLAT-CORE", "Platform Core", "platform", _prices(490), "501"),
        Product("PLAT-PRO", "Platform Professional", "platform", _prices(990), "502"),
        Product("SEAT-STD", "Standard Seat", "seats", _prices(29), "511"),
        Product("SEAT-PRO", "Professional Seat", "seats", _prices(49), "512"),
        Product("API-ADDON", "API Access Add-on", "addons", _prices(250), "521"),
        Product("SUPPORT-PREM", "Premium Support", "services", _prices(300), "531"),
    )
}
"""The catalog every system knows."""

CRM_ONLY_SKUS: Final = {"LEGACY-SUPPORT": ("Legacy Support Plus", Decimal(180))}
"""Products sales can still quote in the CRM but no mapping knows (retired)."""


def tax_rate_id(legal_entity: str) -> str:
    """The billing tax rate object (``txr_…``) of a legal entity's VAT/GST/sales tax."""
    return "txr_1" + hashlib.sha256(legal_entity.encode()).hexdigest()[:22]


def billing_product_id(sku: str) -> str:
    """The billing system's product id for ``sku`` (stable)."""
    return "prod_" + hashlib.sha256(sku.encode()).hexdigest()[:14]


def billing_price_id(sku: str, currency: str) -> str:
    """The billing system's price id for ``sku`` in ``currency`` (stable)."""
    digest = hashlib.sha256(f"{sku}/{currency}".encode()).hexdigest()[:20]
    return f"price_1{digest}"
