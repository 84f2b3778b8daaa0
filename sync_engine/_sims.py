"""The three simulated systems as one object: start them, point their
webhooks at the engine, hand the engine its endpoints and credentials."""

from __future__ import annotations

from sync_engine._clock import Clock
from sync_engine._config import Endpoints
from sync_engine._profile import FaultProfile
from sync_engine._sim_base import SimWorld
from sync_engine._sim_billing import BillingSim
from sync_engine._sim_crm import CrmSim
from sync_engine._sim_erp import ErpSim
from tracer.semconv import System

__all__ = ["Simulators"]


class Simulators:
    """Simulated CRM (Salesforce-like), billing (Stripe-like) and ERP
    (NetSuite-like), each an HTTP service on 127.0.0.1 (ephemeral ports)."""

    def __init__(self, profile: FaultProfile, *, clock: Clock, seed: int = 0) -> None:
        self.world = SimWorld(profile, clock, seed)
        self.crm = CrmSim(self.world, seed * 7 + 1)
        self.billing = BillingSim(self.world, seed * 7 + 2)
        self.erp = ErpSim(self.world, seed * 7 + 3)

    async def start(self) -> None:
        """Start the three HTTP services."""
        for sim in (self.crm, self.billing, self.erp):
            await sim.server.start()

    def endpoints(self) -> Endpoints:
        """URLs and credentials for the engine."""
        world = self.world
        return Endpoints(
            crm_url=self.crm.server.url,
            billing_url=self.billing.server.url,
            erp_url=self.erp.server.url,
            crm_token=world.api_keys[System.CRM],
            billing_key=world.api_keys[System.BILLING],
            erp_token=world.api_keys[System.ERP],
            billing_webhook_secret=world.webhook_secrets[System.BILLING],
            crm_webhook_secret=world.webhook_secrets[System.CRM],
        )

    def connect(self, engine_url: str) -> None:
        """Deliver events to the engine at ``engine_url``."""
        self.world.webhook_targets[System.BILLING] = f"{engine_url}/webhooks/billing"
        self.world.webhook_targets[System.CRM] = f"{engine_url}/webhooks/crm"

    def pending(self) -> int:
        """Events not yet delivered plus background jobs (invoice finalization)."""
        return (
            self.crm.dispatcher.in_flight
            + self.billing.dispatcher.in_flight
            + self.crm.busy
            + self.billing.busy
        )

    async def stop(self) -> None:
        """Stop the services, then cancel background work. Calls still being
        answered (a hang, an injected delay) are cut short at once: the engine,
        their only caller, has stopped before the simulators. The services stop
        first so that no call still running schedules an event after its
        system's deliveries were closed."""
        self.world.closing.set()
        for sim in (self.crm, self.billing, self.erp):
            await sim.server.stop(grace=0.0)
        for sim in (self.crm, self.billing, self.erp):
            await sim.close()
