"""The demo workload: a simulated world (customers, sales reps, deal desk,
finance) driving realistic quote-to-cash traffic through the simulated CRM
and billing, the engine syncing it, faults injected per the profile, and the
ground truth written as it goes.

:class:`Runtime` is the async core (tests drive it inside their own loop);
:class:`Workload` runs it in a background thread for ``revtrace demo`` and
``python -m sync_engine``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter

import tracer
from sync_engine._clock import Clock
from sync_engine._config import EngineConfig
from sync_engine._engine import SyncEngine
from sync_engine._errors import ConfigError
from sync_engine._groundtruth import GroundTruth, ScenarioRecord
from sync_engine._metrics import otlp_meter_provider
from sync_engine._profile import FaultProfile, FaultSpec, load_profile
from sync_engine._reference import CRM_ONLY_SKUS, ERP_MISSING_COST_CENTERS, LEGAL_ENTITIES, PRODUCTS, money
from sync_engine._scenarios import SCENARIO_PROCESS, FaultKind, Scenario
from sync_engine._sims import Simulators
from sync_engine._store import TERMINAL_STATES
from tracer.semconv import Process, Stage, System

__all__ = ["Driver", "Runtime", "Workload", "WorkloadConfig"]

log = logging.getLogger("sync_engine")

_NAMES_A: Final = (
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Wingtip",
    "Litware",
    "Proseware",
    "Lucerne",
    "Alpine",
    "Coho",
    "Humongous",
    "Trey",
    "Woodgrove",
    "Relecloud",
    "VanArsdel",
    "Bluebird",
    "Graphic",
    "Nod",
    "Southridge",
    "Datum",
)
_NAMES_B: Final = (
    "Logistics",
    "Analytics",
    "Health",
    "Retail",
    "Robotics",
    "Media",
    "Energy",
    "Foods",
    "Travel",
    "Capital",
    "Labs",
    "Systems",
    "Insurance",
    "Mobility",
)
_ADDRESSES: Final = {
    "DE": (
        ("Friedrichstraße 68", "Berlin", "10117"),
        ("Leopoldstraße 28", "München", "80802"),
        ("Jungfernstieg 7", "Hamburg", "20354"),
    ),
    "GB": (("1 Finsbury Avenue", "London", "EC2M 2PF"), ("20 Deansgate", "Manchester", "M3 1RH")),
    "US": (
        ("500 Congress Ave", "Austin", "78701"),
        ("1201 3rd Ave", "Seattle", "98101"),
        ("100 Federal St", "Boston", "02110"),
    ),
    "SG": (("8 Marina View", "Singapore", "018960"), ("1 Raffles Place", "Singapore", "048616")),
}
_WINDOW: Final = 500
"""How many of the most recent objects a scenario picks its target from."""
_FX: Final = {"EUR": Decimal(1), "GBP": Decimal("0.86"), "USD": Decimal("1.08"), "SGD": Decimal("1.45")}
_LEGAL_FORM: Final = {"DE": "GmbH", "GB": "Ltd", "US": "Inc.", "SG": "Pte. Ltd."}
_ENTITY_WEIGHTS: Final = {"ACME-DE": 4, "ACME-UK": 2, "ACME-US": 3, "ACME-SG": 1}
_PLANNED_IN_SIMULATORS: Final = frozenset(
    {
        FaultKind.TRANSIENT,
        FaultKind.RATE_LIMIT,
        FaultKind.TIMEOUT,
        FaultKind.AUTH,
        FaultKind.DUPLICATE_DELIVERY,
        FaultKind.DROPPED_WEBHOOK,
        FaultKind.ERP_SLOW,
        FaultKind.DUPLICATE_EFFECT,
    }
)


def _tax_agrees(lines: Sequence[tuple[str, str, int, Decimal]], rate: Decimal) -> bool:
    """Billing rounds tax once per invoice, ERP once per line: do they agree?"""
    amounts = [money(price * quantity) for _, _, quantity, price in lines]
    return money(sum(amounts, Decimal(0)) * rate) == sum((money(a * rate) for a in amounts), Decimal(0))


@dataclass
class _Account:
    id: str
    name: str
    country: str
    home_entity: str
    entities: set[str] = field(default_factory=set)
    orders: list[str] = field(default_factory=list)
    """Correlation ids of its orders."""


class Driver:
    """The simulated world: picks scenarios by the profile's mix, plans at most
    one fault per transaction, builds realistic data and acts in CRM and billing."""

    def __init__(
        self,
        sims: Simulators,
        engine: SyncEngine,
        profile: FaultProfile,
        seed: int,
        register: Callable[[ScenarioRecord], None],
    ) -> None:
        self.sims = sims
        self.engine = engine
        self.profile = profile
        self.rng = random.Random(seed)
        self.register = register
        self.accounts: list[_Account] = []
        self._used: set[str] = set()
        """Accounts with a change being made, invoices in dunning."""
        self._refunded: set[str] = set()
        self.started: Counter[str] = Counter()
        scenarios = [s for s, w in profile.mix.items() if w > 0]
        self._scenarios = scenarios
        self._weights = [profile.mix[s] for s in scenarios]

    # -- planning -----------------------------------------------------------------------------------
    def pick(self) -> Scenario:
        """A scenario by the profile's weights."""
        return self.rng.choices(self._scenarios, self._weights)[0]

    def plan_fault(self, scenario: Scenario) -> FaultSpec | None:
        """The profile's faults in order; the first whose draw hits is planned."""
        for spec in self.profile.faults:
            if scenario in spec.scenarios and self.rng.random() < spec.rate:
                return spec
        return None

    def _begin(
        self,
        scenario: Scenario,
        legal_entity: str | None,
        spec: FaultSpec | None = None,
        process: Process | None = None,
    ) -> str:
        cid = tracer.new_correlation_id()
        self.register(
            ScenarioRecord(
                cid,
                process or SCENARIO_PROCESS[scenario],
                scenario.value,
                legal_entity,
                dt.datetime.now(dt.UTC),
            )
        )
        if spec is not None and spec.kind in _PLANNED_IN_SIMULATORS:
            self.sims.world.plan.plan(cid, spec, scenario)
        return cid

    # -- what is ready for the next scenario ---------------------------------------------------------
    def _quiet(self, stream: str) -> bool:
        """Every event billing sent for this object has been applied by the engine."""
        applied = self.engine.ctx.xref.stream_applied.get(stream, 0)
        return applied >= self.sims.billing.sequence(stream)

    def _orders_done(self, account: _Account) -> bool:
        return all(
            self.engine.transactions.get(cid) is not None
            and self.engine.transactions[cid].state in TERMINAL_STATES
            for cid in account.orders
        )

    def _posted(self, invoice_id: str) -> bool:
        return self.sims.erp.find_by_external_id("invoice", invoice_id) is not None

    @staticmethod
    def _recent(objects: dict[str, Any] | list[Any], n: int = _WINDOW) -> list[Any]:
        """The ``n`` most recent objects (a long demo does not scan its whole history)."""
        if isinstance(objects, dict):
            return list(itertools.islice(reversed(objects.values()), n))
        return list(itertools.islice(reversed(objects), n))

    def _candidates(self, scenario: Scenario) -> list[Any]:
        billing = self.sims.billing
        if scenario in (Scenario.PAYMENT, Scenario.PAYMENT_FAILURE):
            return [
                i
                for i in self._recent(billing.invoices)
                if i["status"] == "open"
                and i["id"] not in self._used
                and self._posted(i["id"])
                and self._quiet(f"invoice:{i['id']}")
            ]
        if scenario is Scenario.REFUND:
            out = []
            succeeded = {
                p["invoice"]: p for p in self._recent(billing.payment_intents) if p["status"] == "succeeded"
            }
            for invoice in self._recent(billing.invoices):
                if (
                    invoice["status"] != "paid"
                    or invoice["id"] in self._refunded
                    or not self._quiet(f"invoice:{invoice['id']}")
                ):
                    continue
                paid = succeeded.get(invoice["id"])
                if (
                    paid is not None
                    and self.sims.erp.find_by_external_id("customerPayment", paid["id"]) is not None
                ):
                    out.append(invoice)
            return out
        if scenario in (Scenario.RENEWAL, Scenario.SUBSCRIPTION_CHANGE):
            return [
                s
                for s in self._recent(billing.subscriptions)
                if s["id"] in self.engine.ctx.xref.subscription
                and s.get("latest_invoice")
                and self._posted(s["latest_invoice"])
                and self._quiet(f"subscription:{s['id']}")
                and self._quiet(f"invoice:{s['latest_invoice']}")
            ]
        if scenario is Scenario.ACCOUNT_UPDATE:
            return [
                a
                for a in self._recent(self.accounts)
                if a.id in self.engine.ctx.xref.erp_customer
                and self._orders_done(a)
                and a.id not in self._used
                and self.engine.ctx.xref.stream_applied.get(f"account:{a.id}", 0)
                >= self.sims.crm.record_sequence(a.id)
            ]
        if scenario is Scenario.UPSELL_NEW_ENTITY:
            return [
                a
                for a in self._recent(self.accounts)
                if a.id in self.engine.ctx.xref.erp_customer
                and self._orders_done(a)
                and len(a.entities) < 3
                and a.id not in self._used
            ]
        return []

    # -- running scenarios ------------------------------------------------------------------------------
    async def run(self, scenario: Scenario) -> None:
        """Run one scenario (falling back to a new sale when nothing is ready for it)."""
        if scenario is not Scenario.NEW_SALE:
            candidates = self._candidates(scenario)
            if not candidates:
                scenario = Scenario.NEW_SALE
            else:
                target = self.rng.choice(candidates)
                self.started[scenario.value] += 1
                await getattr(self, f"_{scenario.value}")(target)
                return
        self.started[scenario.value] += 1
        await self._new_sale(None)

    def _new_account(self, entity: str) -> _Account:
        country = LEGAL_ENTITIES[entity].country
        name = f"{self.rng.choice(_NAMES_A)} {self.rng.choice(_NAMES_B)} {_LEGAL_FORM[country]}"
        street, city, postal = self.rng.choice(_ADDRESSES[country])
        slug = name.split()[0].lower()
        fields: dict[str, Any] = {
            "Name": name,
            "BillingStreet": street,
            "BillingCity": city,
            "BillingPostalCode": postal,
            "BillingCountry": country,
            "Industry": self.rng.choice(("Technology", "Manufacturing", "Retail")),
            "Website": f"https://www.{slug}.example",
            "Billing_Email__c": f"ap@{slug}.example",
        }
        if country in ("DE", "GB"):
            fields["VAT_Number__c"] = f"{country}{self.rng.randrange(10**8, 10**9)}"
        account = _Account(self.sims.crm.create_account(fields), name, country, entity)
        self.accounts.append(account)
        return account

    def _lines(self, entity: str, spec: FaultSpec | None) -> list[tuple[str, str, int, Decimal]]:
        currency = LEGAL_ENTITIES[entity].currency
        rate = LEGAL_ENTITIES[entity].tax_rate
        discounted = spec is not None and spec.kind is FaultKind.TAX_ROUNDING
        for _ in range(200):
            skus = [self.rng.choice(("PLAT-CORE", "PLAT-PRO")), self.rng.choice(("SEAT-STD", "SEAT-PRO"))]
            if self.rng.random() < 0.3:
                skus.append("API-ADDON")
            if self.rng.random() < 0.2:
                skus.append("SUPPORT-PREM")
            lines: list[tuple[str, str, int, Decimal]] = []
            for sku in skus:
                product = PRODUCTS[sku]
                quantity = 1 if product.family != "seats" else self.rng.randrange(5, 120)
                price = product.prices[currency]
                if discounted:
                    price = money(price * (1 - Decimal(self.rng.randrange(300, 1700)) / 10_000))
                lines.append((sku, product.name, quantity, price))
            if _tax_agrees(lines, rate) != discounted:
                break
        if spec is not None and spec.kind is FaultKind.UNKNOWN_SKU:
            sku, (name, price) = next(iter(CRM_ONLY_SKUS.items()))
            lines.append((sku, name, 1, money(price * _FX[currency])))
        return lines

    async def _order(self, scenario: Scenario, account: _Account, entity: str, spec: FaultSpec | None) -> str:
        team = self.rng.choice(("Enterprise", "Mid-Market", "Partner Channel"))
        if spec is not None and spec.kind is FaultKind.MISSING_COST_CENTER:
            entity, team = next(iter(ERP_MISSING_COST_CENTERS))
        while (entity, team) in ERP_MISSING_COST_CENTERS and (
            spec is None or spec.kind is not FaultKind.MISSING_COST_CENTER
        ):
            team = self.rng.choice(("Enterprise", "Mid-Market"))
        today = dt.datetime.now(dt.UTC).date()
        close = today
        if spec is not None and spec.kind is FaultKind.CLOSED_PERIOD:
            close = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=min(today.day, 20))
        lines = self._lines(entity, spec)
        cid = self._begin(scenario, entity, spec)
        opportunity = self.sims.crm.create_opportunity(
            account.id,
            {
                "Name": f"{account.name} – {'Expansion ' + LEGAL_ENTITIES[entity].region if account.entities else 'New'}",
                "CurrencyIsoCode": LEGAL_ENTITIES[entity].currency,
                "CloseDate": close.isoformat(),
                "Service_Start_Date__c": close.isoformat(),
                "Term_Months__c": 12,
                "Legal_Entity__c": entity,
                "Sales_Team__c": team,
                "Type": "Existing Business" if account.entities else "New Business",
            },
            lines,
        )
        self._log_data_fault(cid, spec, lines)
        account.entities.add(entity)
        account.orders.append(cid)
        self.sims.crm.approve(opportunity, cid, Process.QUOTE_TO_CASH.value)
        return cid

    def _log_data_fault(
        self, cid: str, spec: FaultSpec | None, lines: list[tuple[str, str, int, Decimal]]
    ) -> None:
        if spec is None:
            return
        logged = self.sims.world.log
        if spec.kind is FaultKind.UNKNOWN_SKU:
            logged.record(cid, spec.kind, System.CRM, Stage.MIDDLEWARE_ORDER_VALIDATE, sku=lines[-1][0])
        elif spec.kind is FaultKind.MISSING_COST_CENTER:
            logged.record(
                cid,
                spec.kind,
                System.ERP,
                Stage.ERP_INVOICE_POST,
                legal_entity="ACME-SG",
                team="Partner Channel",
            )
        elif spec.kind is FaultKind.CLOSED_PERIOD:
            logged.record(cid, spec.kind, System.ERP, Stage.ERP_INVOICE_POST, period="previous month")
        elif spec.kind is FaultKind.TAX_ROUNDING:
            logged.record(
                cid, spec.kind, System.ERP, Stage.ERP_INVOICE_POST, rounding="per line vs per invoice"
            )

    async def _new_sale(self, _: object) -> None:
        spec = self.plan_fault(Scenario.NEW_SALE)
        entity = self.rng.choices(list(_ENTITY_WEIGHTS), list(_ENTITY_WEIGHTS.values()))[0]
        if spec is not None and spec.kind is FaultKind.MISSING_COST_CENTER:
            entity = "ACME-SG"
        await self._order(Scenario.NEW_SALE, self._new_account(entity), entity, spec)

    async def _upsell_new_entity(self, account: _Account) -> None:
        spec = self.plan_fault(Scenario.UPSELL_NEW_ENTITY)
        home_region = LEGAL_ENTITIES[account.home_entity].region
        choices = [
            e for e in LEGAL_ENTITIES if e not in account.entities and LEGAL_ENTITIES[e].region != home_region
        ]
        if spec is not None and spec.kind is FaultKind.MISSING_COST_CENTER:
            choices = ["ACME-SG"] if "ACME-SG" not in account.entities else []
        if not choices:
            spec = None if spec is not None and spec.kind is FaultKind.MISSING_COST_CENTER else spec
            choices = [e for e in LEGAL_ENTITIES if e not in account.entities] or [account.home_entity]
        self._used.add(account.id)
        try:
            await self._order(Scenario.UPSELL_NEW_ENTITY, account, self.rng.choice(choices), spec)
        finally:
            self._used.discard(account.id)

    def _invoice_entity(self, invoice: Mapping[str, Any]) -> str | None:
        customer = self.sims.billing.customers.get(str(invoice.get("customer")), {})
        return (customer.get("metadata") or {}).get("legal_entity")

    async def _payment(self, invoice: dict[str, Any]) -> None:
        spec = self.plan_fault(Scenario.PAYMENT)
        cid = self._begin(Scenario.PAYMENT, self._invoice_entity(invoice), spec)
        self.sims.billing.pay_invoice(invoice["id"], cid, Process.PAYMENT_UPDATE.value, succeed=True)

    async def _payment_failure(self, invoice: dict[str, Any]) -> None:
        spec = self.plan_fault(Scenario.PAYMENT_FAILURE)
        self._used.add(invoice["id"])
        entity = self._invoice_entity(invoice)
        cid = self._begin(Scenario.PAYMENT_FAILURE, entity, spec)
        billing = self.sims.billing
        billing.pay_invoice(
            invoice["id"],
            cid,
            Process.PAYMENT_UPDATE.value,
            succeed=False,
            decline_code=self.rng.choice(("insufficient_funds", "expired_card", "do_not_honor")),
        )
        # Dunning: the next automatic retry, once the failure has been synced.
        clock = self.sims.world.clock
        deadline = time.monotonic() + clock.real(self.profile.stuck_after)
        while not self._quiet(f"invoice:{invoice['id']}") and time.monotonic() < deadline:
            await clock.sleep(1.0)
        await clock.sleep(self.rng.uniform(3.0, 8.0))
        retry = self._begin(Scenario.PAYMENT_FAILURE, entity)
        billing.pay_invoice(invoice["id"], retry, Process.PAYMENT_UPDATE.value, succeed=True)
        self._used.discard(invoice["id"])

    async def _refund(self, invoice: dict[str, Any]) -> None:
        spec = self.plan_fault(Scenario.REFUND)
        self._refunded.add(invoice["id"])
        cid = self._begin(Scenario.REFUND, self._invoice_entity(invoice), spec)
        self.sims.billing.refund_invoice(invoice["id"], cid, Process.REFUND.value)

    async def _renewal(self, subscription: dict[str, Any]) -> None:
        spec = self.plan_fault(Scenario.RENEWAL)
        info = self.engine.ctx.xref.subscription[subscription["id"]]
        cid = self._begin(Scenario.RENEWAL, str(info["legal_entity"]), spec)
        self.sims.billing.renew_subscription(subscription["id"], cid, Process.RENEWAL.value)

    async def _subscription_change(self, subscription: dict[str, Any]) -> None:
        spec = self.plan_fault(Scenario.SUBSCRIPTION_CHANGE)
        info = self.engine.ctx.xref.subscription[subscription["id"]]
        entity = str(info["legal_entity"])
        seats = next(
            (i for i in subscription["items"]["data"] if "Seat" in str(i["price"]["nickname"])),
            subscription["items"]["data"][-1],
        )
        first = self._begin(Scenario.SUBSCRIPTION_CHANGE, entity)
        second = self._begin(Scenario.SUBSCRIPTION_CHANGE, entity)
        planned = self.sims.world.plan.plan(second, spec, Scenario.SUBSCRIPTION_CHANGE) if spec else None
        quantity = int(seats["quantity"])
        process = Process.SUBSCRIPTION_CHANGE.value
        self.sims.billing.change_seats(
            subscription["id"],
            [
                (first, process, quantity + self.rng.randrange(1, 10)),
                (second, process, quantity + self.rng.randrange(10, 25)),
            ],
            out_of_order=planned,
        )

    async def _account_update(self, account: _Account) -> None:
        spec = self.plan_fault(Scenario.ACCOUNT_UPDATE)
        current = self.sims.crm.records["Account"][account.id].get("BillingStreet")
        street, city, postal = self.rng.choice([a for a in _ADDRESSES[account.country] if a[0] != current])
        changes: dict[str, Any] = {"BillingStreet": street, "BillingCity": city, "BillingPostalCode": postal}
        if self.rng.random() < 0.3:
            account.name = account.name.replace(" ", " & Co ", 1) if "&" not in account.name else account.name
            changes["Name"] = account.name
        self._used.add(account.id)
        cid = self._begin(Scenario.ACCOUNT_UPDATE, account.home_entity, spec)
        self.sims.crm.edit_account(account.id, changes, cid, Process.CUSTOMER_SYNC.value)
        self._used.discard(account.id)


@dataclass(frozen=True)
class WorkloadConfig:
    """Settings of a demo run. Durations are real seconds unless noted."""

    rate_per_s: float = 2.0
    """Scenarios started per second (Poisson arrivals)."""
    profile: str | Path | FaultProfile = "default"
    seed: int = 0
    otlp_endpoint: str | None = "http://127.0.0.1:4318"
    """Collector base URL for traces and metrics (None: no OTLP export)."""
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    otlp_protocol: str | None = None
    """``http/protobuf`` (default) or ``grpc``, for traces and metrics."""
    ground_truth_path: Path | None = None
    duration_s: float | None = None
    """Stop starting scenarios after this long (None: until ``stop()``)."""
    max_scenarios: int | None = None
    """Stop starting scenarios after this many (tests)."""
    time_scale: float = 1.0
    """Real seconds per simulated second (latencies, backoffs, outages, SLA)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    span_exporter: SpanExporter | None = None
    """Export spans here instead of OTLP (tests: ``InMemorySpanExporter``)."""
    metric_readers: Sequence[MetricReader] = ()
    """Extra readers of the engine's metrics (tests: ``InMemoryMetricReader``)."""
    configure_tracer: bool = True
    """Call ``tracer.configure`` (False: the caller already did)."""
    metrics_interval_s: float = 10.0
    drain_timeout_s: float = 30.0
    """How long ``stop()`` waits for transactions in flight to finish."""
    service_name: str = "revtrace-sync-engine"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid setting."""
        problems = []
        if not self.rate_per_s > 0:
            problems.append(f"rate_per_s: must be > 0, got {self.rate_per_s!r}")
        if self.duration_s is not None and not self.duration_s > 0:
            problems.append(f"duration_s: must be > 0 or None, got {self.duration_s!r}")
        if self.max_scenarios is not None and self.max_scenarios < 1:
            problems.append(f"max_scenarios: must be >= 1 or None, got {self.max_scenarios!r}")
        if not self.time_scale > 0:
            problems.append(f"time_scale: must be > 0, got {self.time_scale!r}")
        if self.drain_timeout_s < 0:
            problems.append(f"drain_timeout_s: must be >= 0, got {self.drain_timeout_s!r}")
        if self.otlp_protocol not in (None, "http/protobuf", "grpc"):
            problems.append(f"otlp_protocol: must be http/protobuf or grpc, got {self.otlp_protocol!r}")
        try:
            self.engine.validate()
        except ConfigError as exc:
            problems.extend(f"engine.{p}" for p in exc.problems)
        if problems:
            raise ConfigError(problems)


class Runtime:
    """Simulators, engine, driver and ground truth in the running event loop."""

    def __init__(
        self,
        config: WorkloadConfig,
        profile: FaultProfile,
        meter_provider: MeterProvider | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.profile = profile
        self.clock = clock or Clock(config.time_scale)
        self.sims = Simulators(profile, clock=self.clock, seed=config.seed)
        self.engine: SyncEngine | None = None
        self.truth: GroundTruth | None = None
        self.driver: Driver | None = None
        self._meter_provider = meter_provider
        self._scenario_tasks: set[asyncio.Task[None]] = set()
        self._generating = False
        self.started_at = time.monotonic()
        self.finished_at: float | None = None

    async def start(self) -> None:
        """Start the simulators and the engine and connect them."""
        await self.sims.start()
        self.engine = SyncEngine(
            self.sims.endpoints(),
            self.config.engine,
            clock=self.clock,
            meter_provider=self._meter_provider,
            seed=self.config.seed,
        )
        await self.engine.start()
        self.sims.connect(self.engine.url)
        self.truth = GroundTruth(
            self.config.ground_truth_path, self.profile, self.clock, self.sims.world.log, self.engine
        )
        self.engine.ctx.on_transaction = self.truth.track
        self.driver = Driver(self.sims, self.engine, self.profile, self.config.seed, self.truth.register)

    def launch(self, scenario: Scenario | None = None) -> asyncio.Task[None]:
        """Start one scenario (the profile's pick when None) in the background."""
        assert self.driver is not None
        task = asyncio.create_task(self._guarded(scenario or self.driver.pick()), name="scenario")
        self._scenario_tasks.add(task)
        task.add_done_callback(self._scenario_tasks.discard)
        return task

    async def _guarded(self, scenario: Scenario) -> None:
        assert self.driver is not None
        try:
            await self.driver.run(scenario)
        except Exception:
            log.exception("scenario %s failed to start", scenario.value)

    async def generate(self, stop: asyncio.Event) -> None:
        """Start scenarios at the configured rate until ``stop``, the duration or
        the scenario count says so, writing settled ground truth meanwhile."""
        assert self.truth is not None
        rng = random.Random(self.config.seed ^ 0xA11)
        deadline = None if self.config.duration_s is None else time.monotonic() + self.config.duration_s
        count = 0
        self._generating = True
        next_at = time.monotonic()
        last_truth = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if self.config.max_scenarios is not None and count >= self.config.max_scenarios:
                break
            if now >= next_at:
                self.launch()
                count += 1
                next_at += rng.expovariate(self.config.rate_per_s)
            if now - last_truth > 0.5:
                self.truth.write_settled()
                last_truth = now
            wait = max(0.0, min(next_at - time.monotonic(), 0.5))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        self._generating = False

    def quiet(self) -> bool:
        """Nothing in flight: no scenario starting, no event undelivered, no engine work."""
        assert self.engine is not None
        return not self._scenario_tasks and self.sims.pending() == 0 and self.engine.busy == 0

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` real seconds) until everything in flight has settled."""
        assert self.truth is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.quiet():
            self.truth.write_settled()
            await asyncio.sleep(0.05)
        # Let late echoes land, then one last reconciliation snapshot for the record.
        await asyncio.sleep(min(0.2, self.clock.real(1.0)))
        assert self.engine is not None
        if self.config.engine.reconcile_every > 0:
            with contextlib.suppress(Exception):
                await self.engine.reconcile()

    async def stop(self) -> None:
        """Write the remaining ground truth and stop everything."""
        for task in list(self._scenario_tasks):
            task.cancel()
        if self.truth is not None:
            self.truth.write_all()
            self.truth.close()
        if self.engine is not None:
            await self.engine.stop()
        await self.sims.stop()
        self.finished_at = time.monotonic()

    def summary(self) -> dict[str, Any]:
        """What the run did (see :meth:`Workload.summary`)."""
        out: dict[str, Any] = {
            "profile": self.profile.name,
            "time_scale": self.clock.scale,
            "elapsed_s": round((self.finished_at or time.monotonic()) - self.started_at, 3),
        }
        if self.driver is not None:
            out["scenarios"] = dict(sorted(self.driver.started.items()))
        if self.truth is not None:
            out.update(self.truth.summary())
            out["ground_truth_path"] = str(self.truth.path) if self.truth.path else None
        if self.engine is not None:
            out["spans_emitted"] = self.engine.spans_emitted
            out["spans_dropped"] = tracer.dropped_spans()
            out["engine"] = self.engine.stats()
        out["faults_injected"] = len(self.sims.world.log)
        dispatchers = (self.sims.crm.dispatcher, self.sims.billing.dispatcher)
        out["webhooks"] = {
            "delivered": sum(d.delivered for d in dispatchers),
            "undeliverable": sum(d.failed for d in dispatchers),
        }
        return out


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # uvicorn[standard] brings it; a cheaper loop for a workload that is mostly I/O
    except ImportError:  # pragma: no cover - depends on the installation
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Workload:
    """The demo workload as a service object: ``start()`` returns once the
    engine listens (``engine_url``); ``wait()`` blocks until the run ends
    (duration or ``max_scenarios`` reached and drained); ``stop()`` ends it
    gracefully and flushes telemetry; ``summary()`` reports."""

    def __init__(self, config: WorkloadConfig) -> None:
        config.validate()
        self.config = config
        self.profile = (
            config.profile if isinstance(config.profile, FaultProfile) else load_profile(config.profile)
        )
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._runtime: Runtime | None = None
        self._meter_provider: MeterProvider | None = None
        self._configured_tracer = False
        self._summary: dict[str, Any] = {}

    # -- public --------------------------------------------------------------------------------------
    @property
    def engine_url(self) -> str:
        """Where the engine listens: webhooks, ``/healthz`` and the ``/api/v1`` replay API."""
        if self._runtime is None or self._runtime.engine is None:
            raise RuntimeError("the workload is not started")
        return self._runtime.engine.url

    @property
    def replay_token(self) -> str:
        """The bearer token the replay API requires."""
        if self._runtime is None or self._runtime.engine is None:
            raise RuntimeError("the workload is not started")
        return self._runtime.engine.replay_token

    def start(self) -> None:
        """Configure telemetry, start simulators, engine and traffic; returns
        once the engine listens. Raises what start-up raised."""
        if self._thread is not None:
            raise RuntimeError("the workload was already started")
        self._setup_telemetry()
        self._thread = threading.Thread(target=self._thread_main, name="sync-engine-workload", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._teardown_telemetry()
            raise self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (True) or ``timeout`` passed (False)."""
        return self._finished.wait(timeout)

    def stop(self) -> None:
        """Stop starting scenarios, let what is in flight finish (up to
        ``drain_timeout_s``), write the ground truth, stop, flush telemetry."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._finished.is_set():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None
        self._teardown_telemetry()

    def summary(self) -> dict[str, Any]:
        """Transactions, spans emitted (and dropped by the tracer), and per
        failure category the faults injected vs the transactions whose expected
        category it is. While running, a snapshot taken in the workload's loop."""
        runtime, loop = self._runtime, self._loop
        if runtime is not None and loop is not None and not self._finished.is_set():

            async def snapshot() -> dict[str, Any]:
                return runtime.summary()

            with contextlib.suppress(RuntimeError, TimeoutError, concurrent.futures.CancelledError):
                return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=10)
        return dict(self._summary)

    # -- internals --------------------------------------------------------------------------------------
    def _setup_telemetry(self) -> None:
        config = self.config
        exporting = config.otlp_endpoint is not None or config.span_exporter is not None
        if config.configure_tracer and exporting:
            tracer.configure(
                config.service_name,
                endpoint=config.otlp_endpoint if config.span_exporter is None else None,
                protocol=config.otlp_protocol,
                headers=dict(config.otlp_headers) or None,
                span_exporter=config.span_exporter,
                metric_readers=[] if config.otlp_endpoint is None else None,
            )
            self._configured_tracer = True
        if config.otlp_endpoint is not None and config.span_exporter is None:
            self._meter_provider = otlp_meter_provider(
                config.otlp_endpoint,
                config.otlp_headers,
                service_name=config.service_name,
                protocol=config.otlp_protocol,
                interval_seconds=config.metrics_interval_s,
                readers=config.metric_readers,
            )
        elif config.metric_readers:
            self._meter_provider = MeterProvider(metric_readers=list(config.metric_readers))

    def _teardown_telemetry(self) -> None:
        tracer.force_flush()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()
            self._meter_provider = None
        if self._configured_tracer:
            tracer.shutdown()
            self._configured_tracer = False

    def _thread_main(self) -> None:
        runner = asyncio.Runner(loop_factory=_new_loop)
        try:
            runner.run(self._main())
        except BaseException as exc:  # start-up failures are re-raised by start()
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("sync engine workload crashed")
        finally:
            runner.close()
            self._ready.set()
            self._finished.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runtime = self._runtime = Runtime(self.config, self.profile, self._meter_provider)
        try:
            await runtime.start()
        except BaseException:
            await runtime.stop()
            raise
        self._ready.set()
        try:
            await runtime.generate(self._stop)
            await runtime.drain(self.config.drain_timeout_s)
        finally:
            await runtime.stop()
            self._summary = runtime.summary()
