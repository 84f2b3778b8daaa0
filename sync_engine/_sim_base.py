"""What the three simulated systems share: the world they live in (clock,
fault plan and log, outage windows, credentials), the gate every API call
passes (credentials, outage, planned call faults, latency) and outbound event
delivery with retries.

The simulators stand in for SaaS products, so they do not use our tracer to
read context: they read the correlation id from the W3C ``baggage`` header
(API calls) or the object's metadata (events) like any vendor-side script
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sync_engine._clock import Clock
from sync_engine._faults import FaultLog, FaultPlan, LatencySampler, OutageSchedule, PlannedFault
from sync_engine._ids import IdFactory
from sync_engine._profile import FaultProfile
from sync_engine._scenarios import FaultKind
from sync_engine._server import JsonResponse
from sync_engine._wire import baggage_value
from tracer.semconv import BAGGAGE_CORRELATION_ID, Stage, System

__all__ = ["Dispatcher", "JsonResponse", "SimSystem", "SimWorld"]

HANG_SECONDS = 300.0
"""How long a timed-out call hangs (simulated seconds): longer than any client timeout."""


class SimWorld:
    """State the simulated systems share."""

    def __init__(self, profile: FaultProfile, clock: Clock, seed: int) -> None:
        self.profile = profile
        self.clock = clock
        self.seed = seed
        self.plan = FaultPlan()
        self.log = FaultLog()
        self.outages = OutageSchedule(profile.outages, clock)
        self.webhook_targets: dict[System, str] = {}
        """Where each system delivers its events (the engine's webhook URLs)."""
        rng = random.Random(seed)
        self.api_keys: dict[System, str] = {
            System.CRM: "00D" + secrets.token_hex(8) + "!AQ" + secrets.token_urlsafe(24),
            System.BILLING: "sk_test_" + "".join(rng.choices("abcdefghijkLMNOPQRSTUVWXYZ0123456789", k=32)),
            System.ERP: "nsoauth2_" + secrets.token_hex(24),
        }
        """The credential each system accepts (``Authorization: Bearer …``)."""
        self.webhook_secrets: dict[System, str] = {
            System.CRM: secrets.token_hex(16),
            System.BILLING: "whsec_" + secrets.token_hex(16),
        }
        """Secrets the systems sign their events with."""
        self.closing = asyncio.Event()
        """Set when the simulators stop: hanging calls give up."""

    async def hang(self) -> None:
        """Hang like a stuck backend (past any client timeout), until closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), self.clock.real(HANG_SECONDS))


class Dispatcher:
    """Delivers one system's events to its webhook target, in the background,
    retrying like vendors do (exponential backoff, honouring ``Retry-After``)."""

    MAX_ATTEMPTS = 8

    def __init__(self, world: SimWorld, system: System, sign: Callable[[bytes], Mapping[str, str]]) -> None:
        self._world = world
        self._system = system
        self._sign = sign
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=httpx.Limits(max_connections=32))
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[str, asyncio.Task[None]] = {}
        self.pending: Counter[str] = Counter()
        """Deliveries not yet done, per correlation id."""
        self.delivered = 0
        self.failed = 0

    def send(
        self,
        body: dict[str, Any],
        correlation_id: str | None,
        delay: float = 0.0,
        order_key: str | None = None,
    ) -> asyncio.Task[None]:
        """Deliver ``body`` after ``delay`` simulated seconds. Events with the
        same ``order_key`` (one object's history) are delivered one after the
        other, in the order sent; events without one may overtake."""
        key = correlation_id or ""
        self.pending[key] += 1
        after = self._last.get(order_key) if order_key is not None else None
        task = asyncio.create_task(
            self._deliver(body, key, delay, after), name=f"deliver:{self._system.value}"
        )
        if order_key is not None:
            self._last[order_key] = task
            task.add_done_callback(
                lambda t: self._last.pop(order_key, None) if self._last.get(order_key) is t else None
            )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(
        self, body: dict[str, Any], key: str, delay: float, after: asyncio.Task[None] | None
    ) -> None:
        try:
            await self._world.clock.sleep(delay)
            if after is not None and not after.done():
                await asyncio.wait([after])
            payload = orjson.dumps(body)
            for attempt in range(self.MAX_ATTEMPTS):
                target = self._world.webhook_targets.get(self._system)
                wait = min(2.0**attempt, 60.0)
                if target is not None:
                    try:
                        headers = {"content-type": "application/json", **self._sign(payload)}
                        response = await self._client.post(target, content=payload, headers=headers)
                        if response.status_code < 300:
                            self.delivered += 1
                            return
                        retry_after = response.headers.get("retry-after")
                        if retry_after and retry_after.isdigit():
                            wait = max(wait, float(retry_after))
                    except httpx.HTTPError:
                        pass
                await self._world.clock.sleep(wait)
            self.failed += 1
        finally:
            self.pending[key] -= 1
            if self.pending[key] <= 0:
                del self.pending[key]

    @property
    def in_flight(self) -> int:
        """Deliveries scheduled or running."""
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel what is left and close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()


Handler = Callable[[Request], Awaitable[Response]]


class SimSystem(ABC):
    """Base of a simulated system: an HTTP API behind :meth:`gate`."""

    system: ClassVar[System]
    vendor: ClassVar[str]

    def __init__(self, world: SimWorld, seed: int) -> None:
        self.world = world
        self.ids = IdFactory(seed)
        self.rng = random.Random(seed ^ 0x5EED)
        self.latency = LatencySampler(world.profile.latency[self.system.value], self.rng)
        self.event_delay = LatencySampler(world.profile.latency["webhook"], random.Random(seed ^ 0xE7E))
        self._background: set[asyncio.Task[Any]] = set()

    # -- what vendors answer; each simulator speaks its vendor's error format ----------
    @abstractmethod
    def unavailable(self, status: int) -> Response:
        """A 5xx answer."""

    @abstractmethod
    def rate_limited(self, retry_after: float) -> Response:
        """A rate-limit answer with ``Retry-After``."""

    @abstractmethod
    def unauthorized(self, expired: bool) -> Response:
        """A 401 answer."""

    # -- the gate ----------------------------------------------------------------------------
    @staticmethod
    def correlation_id(request: Request) -> str | None:
        """The correlation id the caller sent in its W3C baggage."""
        return baggage_value(request.headers.get("baggage"), BAGGAGE_CORRELATION_ID)

    async def gate(self, request: Request, stages: tuple[Stage, ...]) -> tuple[str | None, Response | None]:
        """Every API call passes here: credentials, outage window, the call fault
        planned for this transaction and stage, then the sampled latency.
        Returns the correlation id and, when the call fails here, the answer."""
        world = self.world
        cid = self.correlation_id(request)
        stage = stages[0] if stages else None
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {world.api_keys[self.system]}":
            await world.clock.sleep(self.latency.sample())
            return cid, self.unauthorized(expired=False)
        outage = world.outages.active(self.system)
        if outage is not None:
            world.log.record(cid, FaultKind.OUTAGE, self.system, stage, status=outage.status)
            await world.clock.sleep(self.latency.sample())
            return cid, self.unavailable(outage.status)
        planned = world.plan.take_call(cid, self.system, stages) if stages else None
        if planned is not None:
            return cid, await self._inject(planned, cid)
        slow = world.plan.get(cid, FaultKind.ERP_SLOW)
        if slow is not None and self.system is System.ERP and stages:
            world.log.record(cid, FaultKind.ERP_SLOW, self.system, stage, delay=slow.spec.delay)
            await world.clock.sleep(slow.spec.delay)
        await world.clock.sleep(self.latency.sample())
        return cid, None

    async def _inject(self, planned: PlannedFault, cid: str | None) -> Response:
        spec = planned.spec
        log = self.world.log
        if spec.kind is FaultKind.TRANSIENT:
            log.record(cid, spec.kind, self.system, planned.stage, status=spec.status)
            await self.world.clock.sleep(self.latency.sample())
            return self.unavailable(spec.status)
        if spec.kind is FaultKind.RATE_LIMIT:
            log.record(cid, spec.kind, self.system, planned.stage, retry_after=spec.retry_after)
            return self.rate_limited(spec.retry_after)
        if spec.kind is FaultKind.AUTH:
            log.record(cid, spec.kind, self.system, planned.stage, status=401)
            await self.world.clock.sleep(self.latency.sample())
            return self.unauthorized(expired=True)
        # timeout: hang past any client timeout; the caller has given up by the time we answer
        log.record(cid, spec.kind, self.system, planned.stage, committed=False)
        await self.world.hang()
        return self.unavailable(504)

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Run background work (finalizing invoices, publishing events)."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def busy(self) -> int:
        """Background jobs still scheduled."""
        return len(self._background)

    async def close(self) -> None:
        """Cancel background jobs."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
