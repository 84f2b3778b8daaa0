"""A Stripe-like billing system: customers, subscriptions, invoices, payment
intents and refunds over Stripe's REST shapes (form-encoded requests, amounts
in minor units, ``Idempotency-Key``, ``{"error": {...}}`` bodies), and signed
webhook events (``Stripe-Signature``) with Stripe's envelope.

One extension: every event carries ``sequence``, the position of the event in
its object's history (invoice, subscription, customer), like Chargebee's
``resource_version``. Stripe itself gives no per-object order.

Like Stripe, billing announces every customer it creates (``customer.created``),
whoever asked and whether or not the creating call's response arrived.

Customers appear in search a few seconds after they are created (Stripe's
search is eventually consistent), which is what lets a retried create make a
second customer when the vendor also ignores the idempotency key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_engine._faults import PlannedFault
from sync_engine._reference import LEGAL_ENTITIES, PRODUCTS, billing_price_id, billing_product_id, tax_rate_id
from sync_engine._scenarios import FaultKind
from sync_engine._server import HttpServer
from sync_engine._sim_base import HANG_SECONDS, Dispatcher, JsonResponse, SimSystem, SimWorld
from sync_engine._wire import STRIPE_SIGNATURE_HEADER, decode_form, stripe_signature, to_minor
from tracer.semconv import WEBHOOK_METADATA_CORRELATION_ID, WEBHOOK_METADATA_PROCESS, Stage, System

__all__ = ["API_VERSION", "BillingSim"]

API_VERSION: Final = "2024-06-20"
_SEARCH_CLAUSE: Final = re.compile(r"metadata\['(?P<key>[^']+)'\]\s*:\s*'(?P<value>[^']*)'")
_CUSTOMER: Final = (Stage.BILLING_CUSTOMER_UPSERT,)
_SUBSCRIPTION: Final = (Stage.BILLING_SUBSCRIPTION_CREATE,)
_INVOICE: Final = (Stage.BILLING_INVOICE_CREATE,)


def _now() -> int:
    return int(time.time())


def _add_month(ts: int) -> int:
    day = dt.datetime.fromtimestamp(ts, dt.UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(day.replace(year=year, month=month, day=min(day.day, 28)).timestamp())


class _Idempotent:
    __slots__ = ("body", "fingerprint", "status")

    def __init__(self, fingerprint: str, status: int, body: Any) -> None:
        self.fingerprint = fingerprint
        self.status = status
        self.body = body


class BillingSim(SimSystem):
    """The simulated billing system (vendor ``stripe``)."""

    system = System.BILLING
    vendor = "stripe"

    def __init__(self, world: SimWorld, seed: int) -> None:
        super().__init__(world, seed)
        self.customers: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        for product in PRODUCTS.values():
            for currency, price in product.prices.items():
                pid = billing_price_id(product.sku, currency)
                self.prices[pid] = {
                    "id": pid,
                    "object": "price",
                    "currency": currency.lower(),
                    "unit_amount": to_minor(price),
                    "product": billing_product_id(product.sku),
                    "nickname": product.name,
                    "lookup_key": product.sku,
                    "recurring": {"interval": "month", "interval_count": 1},
                }
        self.tax_rates = {
            tax_rate_id(code): {
                "id": tax_rate_id(code),
                "object": "tax_rate",
                "percentage": float(e.tax_rate * 100),
                "jurisdiction": e.country,
                "inclusive": False,
            }
            for code, e in LEGAL_ENTITIES.items()
        }
        self._rate_values = {tax_rate_id(code): e.tax_rate for code, e in LEGAL_ENTITIES.items()}
        self._idempotency: dict[str, _Idempotent] = {}
        self._searchable_at: dict[str, float] = {}
        self._sequences: dict[str, int] = {}
        secret = world.webhook_secrets[System.BILLING]
        self.dispatcher = Dispatcher(
            world, System.BILLING, lambda p: {STRIPE_SIGNATURE_HEADER: stripe_signature(secret, p)}
        )
        self.server = HttpServer(self._app(), name="billing")

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/customers/search", self._search_customers, methods=["GET"]),
                Route("/v1/customers", self._create_customer, methods=["POST"]),
                Route("/v1/customers", self._lister(self.customers), methods=["GET"]),
                Route("/v1/customers/{id}", self._update_customer, methods=["POST"]),
                Route(
                    "/v1/customers/{id}", self._getter(self.customers, "customer", _CUSTOMER), methods=["GET"]
                ),
                Route("/v1/subscriptions", self._create_subscription, methods=["POST"]),
                Route("/v1/subscriptions", self._lister(self.subscriptions), methods=["GET"]),
                Route(
                    "/v1/subscriptions/{id}",
                    self._getter(self.subscriptions, "subscription", _SUBSCRIPTION),
                    methods=["GET"],
                ),
                Route("/v1/invoices", self._create_invoice, methods=["POST"]),
                Route("/v1/invoices", self._lister(self.invoices), methods=["GET"]),
                Route("/v1/invoices/{id}", self._getter(self.invoices, "invoice", _INVOICE), methods=["GET"]),
                Route("/v1/payment_intents", self._lister(self.payment_intents), methods=["GET"]),
                Route("/v1/refunds", self._lister(self.refunds), methods=["GET"]),
            ]
        )

    # -- Stripe's error format -------------------------------------------------------------
    @staticmethod
    def error(
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            body["code"] = code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            body["param"] = param
        return JsonResponse(
            {"error": body},
            status_code=status,
            headers={
                "request-id": "req_" + hashlib.sha1(message.encode()).hexdigest()[:14],
                **(headers or {}),
            },
        )

    def unavailable(self, status: int) -> Response:
        return self.error(status, "api_error", "An unknown error occurred while processing your request.")

    def rate_limited(self, retry_after: float) -> Response:
        return self.error(
            429,
            "invalid_request_error",
            "Request rate limit exceeded. Retry after the delay.",
            code="rate_limit",
            headers={"Retry-After": f"{max(1, round(retry_after))}"},
        )

    def unauthorized(self, expired: bool) -> Response:
        if expired:
            return self.error(
                401,
                "invalid_request_error",
                "Expired API Key provided: sk_live_****Y0u4",
                code="api_key_expired",
            )
        return self.error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")

    # -- helpers -------------------------------------------------------------------------------
    def _fingerprint(self, request: Request, body: bytes) -> str:
        return hashlib.sha256(request.method.encode() + request.url.path.encode() + body).hexdigest()

    def _replayed(self, key: str | None, fingerprint: str) -> Response | None:
        if not key or key not in self._idempotency:
            return None
        entry = self._idempotency[key]
        if entry.fingerprint != fingerprint:
            return self.error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                "were first used with.",
            )
        return JsonResponse(entry.body, status_code=entry.status, headers={"Idempotent-Replayed": "true"})

    def _remember(self, key: str | None, fingerprint: str, body: Any) -> None:
        if key:
            self._idempotency[key] = _Idempotent(fingerprint, 200, body)

    @staticmethod
    def _metadata(form: dict[str, Any]) -> dict[str, str]:
        raw = form.get("metadata") or {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def _getter(self, store: dict[str, dict[str, Any]], kind: str, stages: tuple[Stage, ...]) -> Any:
        async def get(request: Request) -> Response:
            _, failed = await self.gate(request, stages)
            if failed is not None:
                return failed
            obj = store.get(request.path_params["id"])
            if obj is None:
                return self.error(
                    404,
                    "invalid_request_error",
                    f"No such {kind}: '{request.path_params['id']}'",
                    code="resource_missing",
                    param="id",
                )
            return JsonResponse(obj)

        return get

    def _lister(self, store: dict[str, dict[str, Any]]) -> Any:
        async def list_(request: Request) -> Response:
            _, failed = await self.gate(request, ())
            if failed is not None:
                return failed
            q = request.query_params
            gte = int(q.get("created[gte]", "0") or 0)
            lt = int(q.get("created[lt]", str(2**62)) or 2**62)
            limit = max(1, min(100, int(q.get("limit", "10") or 10)))
            after = q.get("starting_after")
            items = [o for o in store.values() if gte <= o["created"] < lt]
            if after:
                ids = [o["id"] for o in items]
                items = items[ids.index(after) + 1 :] if after in ids else []
            page = items[:limit]
            return JsonResponse(
                {"object": "list", "url": request.url.path, "has_more": len(items) > limit, "data": page}
            )

        return list_

    def _next_sequence(self, stream: str) -> int:
        self._sequences[stream] = self._sequences.get(stream, 0) + 1
        return self._sequences[stream]

    def _emit(
        self,
        type_: str,
        obj: dict[str, Any],
        stream: str,
        *,
        previous: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        delay: float = 0.0,
        ordered: bool = True,
    ) -> asyncio.Task[None] | None:
        event: dict[str, Any] = {
            "id": self.ids.stripe("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": _now(),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {
                "id": self.ids.stripe("req") if idempotency_key else None,
                "idempotency_key": idempotency_key,
            },
            "data": {"object": orjson.loads(orjson.dumps(obj))},
            "sequence": self._next_sequence(stream),
        }
        if previous is not None:
            event["data"]["previous_attributes"] = previous
        cid = obj.get("metadata", {}).get(WEBHOOK_METADATA_CORRELATION_ID)
        return self._deliver(event, cid, delay, stream if ordered else None)

    def _deliver(
        self, event: dict[str, Any], cid: str | None, delay: float, order_key: str | None
    ) -> asyncio.Task[None] | None:
        """Send an event (in order within its object's history), applying the
        delivery fault planned for its transaction."""
        planned = self.world.plan.get(cid)
        log = self.world.log
        # Delivery faults are planned for the transaction's business events (an
        # invoice, a payment), not for the notice that its customer was created.
        if (
            planned is not None
            and not planned.state.get("delivery_fault_done")
            and event["type"] != "customer.created"
        ):
            kind = planned.spec.kind
            if kind is FaultKind.DROPPED_WEBHOOK and event["type"] == "invoice.finalized":
                planned.state["delivery_fault_done"] = True
                log.record(
                    cid,
                    kind,
                    System.BILLING,
                    Stage.ERP_INVOICE_POST,
                    event_id=event["id"],
                    event_type=event["type"],
                )
                return None
            if kind is FaultKind.DUPLICATE_DELIVERY and planned.spec.system in (None, System.BILLING):
                planned.state["delivery_fault_done"] = True
                copy = dict(event)
                if not planned.spec.same_event_id:
                    copy["id"] = self.ids.stripe("evt")
                log.record(
                    cid,
                    kind,
                    System.BILLING,
                    None,
                    event_id=event["id"],
                    copy_event_id=copy["id"],
                    event_type=event["type"],
                )
                task = self.dispatcher.send(event, cid, delay, order_key)
                self.dispatcher.send(copy, cid, delay + 0.3)
                return task
        return self.dispatcher.send(event, cid, delay, order_key)

    # -- customers -----------------------------------------------------------------------------
    async def _create_customer(self, request: Request) -> Response:
        cid, failed = await self.gate(request, _CUSTOMER)
        if failed is not None:
            return failed
        body = await request.body()
        key = request.headers.get("idempotency-key")
        fingerprint = self._fingerprint(request, body)
        planned = self.world.plan.get(cid, FaultKind.DUPLICATE_EFFECT)
        replay = self._replayed(key, fingerprint)
        if replay is not None:
            if planned is None or planned.state.get("duplicated") or not planned.state.get("committed"):
                return replay
            # The vendor loses the idempotency record: the retry creates the customer again.
            planned.state["duplicated"] = True
            self.world.log.record(
                cid,
                FaultKind.DUPLICATE_EFFECT,
                System.BILLING,
                Stage.BILLING_CUSTOMER_UPSERT,
                idempotency_key=key,
                first_customer=planned.state.get("first_customer"),
            )
        form = decode_form(body)
        if not form.get("name"):
            return self.error(
                400,
                "invalid_request_error",
                "Missing required param: name.",
                code="parameter_missing",
                param="name",
            )
        customer = self._new_customer(form)
        self._remember(key, fingerprint, customer)
        self.spawn(
            self._emit_later("customer.created", customer, f"customer:{customer['id']}", None, key),
            name="customer.created",
        )
        lag = self.world.profile.search_lag
        if planned is not None and not planned.state.get("committed"):
            lag = HANG_SECONDS * 10  # the search index is far behind: a retry will not find it
        self._searchable_at[customer["id"]] = time.monotonic() + self.world.clock.real(lag)
        if planned is not None and not planned.state.get("committed"):
            # Committed, then the response never makes it back in time.
            planned.state["committed"] = True
            planned.state["first_customer"] = customer["id"]
            self.world.log.record(
                cid,
                FaultKind.TIMEOUT,
                System.BILLING,
                Stage.BILLING_CUSTOMER_UPSERT,
                committed=True,
                customer=customer["id"],
            )
            await self.world.hang()
            return self.unavailable(504)
        return JsonResponse(customer)

    def _new_customer(self, form: dict[str, Any]) -> dict[str, Any]:
        cus_id = self.ids.stripe("cus")
        raw_address = form.get("address")
        address: dict[str, Any] = raw_address if isinstance(raw_address, dict) else {}
        customer = {
            "id": cus_id,
            "object": "customer",
            "created": _now(),
            "name": form.get("name"),
            "email": form.get("email"),
            "address": {
                k: address.get(k) for k in ("line1", "line2", "city", "postal_code", "state", "country")
            },
            "currency": (form.get("currency") or "").lower() or None,
            "invoice_prefix": "".join(self.rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=8)),
            "preferred_locales": form.get("preferred_locales") or [],
            "tax_exempt": "none",
            "livemode": False,
            "metadata": self._metadata(form),
        }
        self.customers[cus_id] = customer
        self._sequences[f"customer:{cus_id}"] = 0
        return customer

    async def _update_customer(self, request: Request) -> Response:
        cid, failed = await self.gate(request, _CUSTOMER)
        if failed is not None:
            return failed
        customer = self.customers.get(request.path_params["id"])
        if customer is None:
            return self.error(
                404,
                "invalid_request_error",
                f"No such customer: '{request.path_params['id']}'",
                code="resource_missing",
                param="id",
            )
        body = await request.body()
        key = request.headers.get("idempotency-key")
        fingerprint = self._fingerprint(request, body)
        replay = self._replayed(key, fingerprint)
        if replay is not None:
            return replay
        form = decode_form(body)
        previous: dict[str, Any] = {}
        for field in ("name", "email"):
            if field in form and form[field] != customer.get(field):
                previous[field] = customer.get(field)
                customer[field] = form[field]
        if isinstance(form.get("address"), dict):
            new_address = {**customer["address"], **form["address"]}
            if new_address != customer["address"]:
                previous["address"] = dict(customer["address"])
                customer["address"] = new_address
        if "metadata" in form:
            new_meta = {**customer["metadata"], **self._metadata(form)}
            if new_meta != customer["metadata"]:
                previous["metadata"] = dict(customer["metadata"])
                customer["metadata"] = new_meta
        self._remember(key, fingerprint, customer)
        if previous:
            event_obj = dict(customer)
            event_obj["metadata"] = {**customer["metadata"]}
            if cid is not None:
                event_obj["metadata"][WEBHOOK_METADATA_CORRELATION_ID] = cid
            self._emit_object_event(
                "customer.updated", event_obj, f"customer:{customer['id']}", previous, key
            )
        return JsonResponse(customer)

    def _emit_object_event(
        self, type_: str, obj: dict[str, Any], stream: str, previous: dict[str, Any], key: str | None
    ) -> None:
        self.spawn(self._emit_later(type_, obj, stream, previous, key), name=type_)

    async def _emit_later(
        self, type_: str, obj: dict[str, Any], stream: str, previous: dict[str, Any] | None, key: str | None
    ) -> None:
        await asyncio.sleep(0)  # after the response is on its way
        self._emit(
            type_, obj, stream, previous=previous, idempotency_key=key, delay=self.event_delay.sample()
        )

    async def _search_customers(self, request: Request) -> Response:
        _, failed = await self.gate(request, _CUSTOMER)
        if failed is not None:
            return failed
        query = request.query_params.get("query", "")
        clauses = [_SEARCH_CLAUSE.fullmatch(part.strip()) for part in re.split(r"\s+AND\s+", query.strip())]
        if not query.strip() or any(c is None for c in clauses):
            return self.error(
                400,
                "invalid_request_error",
                f"Unsupported search query: {query!r}",
                code="parameter_invalid_string_empty",
                param="query",
            )
        wanted = {c["key"]: c["value"] for c in clauses if c is not None}
        now = time.monotonic()
        found = [
            c
            for c in self.customers.values()
            if all(c["metadata"].get(k) == v for k, v in wanted.items())
            and self._searchable_at.get(c["id"], 0) <= now
        ]
        return JsonResponse(
            {
                "object": "search_result",
                "url": "/v1/customers/search",
                "has_more": False,
                "next_page": None,
                "data": found,
            }
        )

    # -- subscriptions -----------------------------------------------------------------------
    async def _create_subscription(self, request: Request) -> Response:
        _, failed = await self.gate(request, _SUBSCRIPTION)
        if failed is not None:
            return failed
        body = await request.body()
        key = request.headers.get("idempotency-key")
        fingerprint = self._fingerprint(request, body)
        replay = self._replayed(key, fingerprint)
        if replay is not None:
            return replay
        form = decode_form(body)
        customer = self.customers.get(str(form.get("customer", "")))
        if customer is None:
            return self.error(
                400,
                "invalid_request_error",
                f"No such customer: '{form.get('customer')}'",
                code="resource_missing",
                param="customer",
            )
        items_raw = form.get("items") if isinstance(form.get("items"), list) else []
        if not items_raw:
            return self.error(
                400,
                "invalid_request_error",
                "Missing required param: items.",
                code="parameter_missing",
                param="items",
            )
        items: list[dict[str, Any]] = []
        for i, item in enumerate(items_raw):
            price = self._item_price(item or {})
            if price is None:
                return self.error(
                    400,
                    "invalid_request_error",
                    f"No such price: '{(item or {}).get('price')}'",
                    code="resource_missing",
                    param=f"items[{i}][price]",
                )
            try:
                quantity = int((item or {}).get("quantity", 1))
            except ValueError:
                return self.error(
                    400,
                    "invalid_request_error",
                    "Invalid integer: quantity",
                    code="parameter_invalid_integer",
                    param=f"items[{i}][quantity]",
                )
            items.append(
                {
                    "id": self.ids.stripe("si"),
                    "object": "subscription_item",
                    "price": price,
                    "quantity": quantity,
                }
            )
        start = int(form.get("backdate_start_date") or _now())
        sub_id = self.ids.stripe("sub")
        subscription = {
            "id": sub_id,
            "object": "subscription",
            "customer": customer["id"],
            "status": "active",
            "currency": items[0]["price"]["currency"],
            "created": _now(),
            "start_date": start,
            "current_period_start": start,
            "current_period_end": _add_month(start),
            "collection_method": form.get("collection_method", "send_invoice"),
            "days_until_due": int(form.get("days_until_due") or 30),
            "default_tax_rates": [
                dict(self.tax_rates[t]) for t in form.get("default_tax_rates") or [] if t in self.tax_rates
            ],
            "items": {"object": "list", "data": items},
            "latest_invoice": None,
            "metadata": self._metadata(form),
        }
        self.subscriptions[sub_id] = subscription
        self._sequences[f"subscription:{sub_id}"] = 0
        self._remember(key, fingerprint, subscription)
        return JsonResponse(subscription)

    def _item_price(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """A catalog price by id, or an inline one from ``price_data`` (a negotiated price)."""
        if "price_data" not in item:
            return self.prices.get(str(item.get("price", "")))
        data = item["price_data"] if isinstance(item["price_data"], dict) else {}
        product = str(data.get("product", ""))
        nickname = next((p["nickname"] for p in self.prices.values() if p["product"] == product), None)
        if nickname is None or not str(data.get("unit_amount", "")).isdigit():
            return None
        return {
            "id": self.ids.stripe("price"),
            "object": "price",
            "currency": str(data.get("currency", "")).lower(),
            "unit_amount": int(data["unit_amount"]),
            "product": product,
            "nickname": nickname,
            "lookup_key": None,
            "recurring": {"interval": "month", "interval_count": 1},
        }

    # -- invoices ------------------------------------------------------------------------------
    def _tax_rate(self, subscription: dict[str, Any]) -> Decimal:
        rates = [
            self._rate_values[r["id"]]
            for r in subscription.get("default_tax_rates", [])
            if r.get("id") in self._rate_values
        ]
        return sum(rates, Decimal(0))

    def _build_invoice(
        self, subscription: dict[str, Any], metadata: dict[str, str], reason: str
    ) -> dict[str, Any]:
        customer = self.customers[subscription["customer"]]
        lines = []
        subtotal = 0
        for item in subscription["items"]["data"]:
            amount = item["price"]["unit_amount"] * item["quantity"]
            subtotal += amount
            lines.append(
                {
                    "id": self.ids.stripe("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": subscription["currency"],
                    "description": f"{item['quantity']} × "
                    f"{item['price']['nickname']} (at {item['price']['unit_amount'] / 100:.2f} / month)",
                    "price": item["price"],
                    "quantity": item["quantity"],
                    "period": {
                        "start": subscription["current_period_start"],
                        "end": subscription["current_period_end"],
                    },
                }
            )
        rate = self._tax_rate(subscription)
        # Billing computes tax once on the invoice subtotal.
        tax = int((Decimal(subtotal) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        invoice = {
            "id": self.ids.stripe("in"),
            "object": "invoice",
            "customer": customer["id"],
            "subscription": subscription["id"],
            "status": "draft",
            "number": None,
            "billing_reason": reason,
            "collection_method": subscription["collection_method"],
            "currency": subscription["currency"],
            "created": _now(),
            "period_start": subscription["current_period_start"],
            "period_end": subscription["current_period_end"],
            "lines": {"object": "list", "data": lines},
            "subtotal": subtotal,
            "tax": tax,
            "total": subtotal + tax,
            "amount_due": subtotal + tax,
            "amount_paid": 0,
            "amount_remaining": subtotal + tax,
            "attempt_count": 0,
            "auto_advance": True,
            "status_transitions": {"finalized_at": None, "paid_at": None},
            "metadata": metadata,
        }
        self.invoices[invoice["id"]] = invoice
        subscription["latest_invoice"] = invoice["id"]
        return invoice

    async def _create_invoice(self, request: Request) -> Response:
        _, failed = await self.gate(request, _INVOICE)
        if failed is not None:
            return failed
        body = await request.body()
        key = request.headers.get("idempotency-key")
        fingerprint = self._fingerprint(request, body)
        replay = self._replayed(key, fingerprint)
        if replay is not None:
            return replay
        form = decode_form(body)
        subscription = self.subscriptions.get(str(form.get("subscription", "")))
        if subscription is None or subscription["customer"] != form.get("customer"):
            return self.error(
                400,
                "invalid_request_error",
                f"No such subscription: '{form.get('subscription')}'",
                code="resource_missing",
                param="subscription",
            )
        invoice = self._build_invoice(subscription, self._metadata(form), "subscription_create")
        self._remember(key, fingerprint, invoice)
        if str(form.get("auto_advance", "true")) == "true":
            self.spawn(self._finalize_later(invoice["id"]), name="finalize")
        return JsonResponse(invoice)

    async def _finalize_later(self, invoice_id: str, after: asyncio.Task[None] | None = None) -> None:
        if after is not None and not after.done():
            await asyncio.wait([after])  # a renewal invoice follows the subscription's renewal
        await self.world.clock.sleep(self.event_delay.sample())
        invoice = self.invoices[invoice_id]
        customer = self.customers[invoice["customer"]]
        count = sum(1 for i in self.invoices.values() if i["customer"] == customer["id"] and i["number"])
        invoice["status"] = "open"
        invoice["number"] = f"{customer['invoice_prefix']}-{count + 1:04d}"
        invoice["status_transitions"]["finalized_at"] = _now()
        self._emit("invoice.finalized", invoice, f"invoice:{invoice_id}")

    # -- what the world does in billing (the workload calls these) ------------------------
    def sequence(self, stream: str) -> int:
        """How many events an object stream (``invoice:in_…``) has had."""
        return self._sequences.get(stream, 0)

    @staticmethod
    def _with_cid(metadata: dict[str, str], cid: str, process: str) -> dict[str, str]:
        return {**metadata, WEBHOOK_METADATA_CORRELATION_ID: cid, WEBHOOK_METADATA_PROCESS: process}

    def pay_invoice(
        self,
        invoice_id: str,
        cid: str,
        process: str,
        *,
        succeed: bool,
        decline_code: str = "insufficient_funds",
    ) -> str:
        """The customer's payment of an open invoice succeeds or fails; returns
        the payment intent id. Emits ``payment_intent.succeeded`` /
        ``payment_intent.payment_failed``."""
        invoice = self.invoices[invoice_id]
        pi = {
            "id": self.ids.stripe("pi"),
            "object": "payment_intent",
            "amount": invoice["amount_remaining"],
            "amount_received": invoice["amount_remaining"] if succeed else 0,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "invoice": invoice_id,
            "created": _now(),
            "status": "succeeded" if succeed else "requires_payment_method",
            "latest_charge": self.ids.stripe("ch"),
            "last_payment_error": None
            if succeed
            else {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": "Your card has insufficient funds."
                if decline_code == "insufficient_funds"
                else "Your card was declined.",
            },
            "metadata": self._with_cid({}, cid, process),
        }
        self.payment_intents[pi["id"]] = pi
        invoice["attempt_count"] += 1
        if succeed:
            invoice["amount_paid"] = invoice["amount_remaining"]
            invoice["amount_remaining"] = 0
            invoice["status"] = "paid"
            invoice["status_transitions"]["paid_at"] = _now()
        type_ = "payment_intent.succeeded" if succeed else "payment_intent.payment_failed"
        self._emit(type_, pi, f"invoice:{invoice_id}", delay=self.event_delay.sample())
        return str(pi["id"])

    def refund_invoice(self, invoice_id: str, cid: str, process: str) -> str:
        """Finance refunds a paid invoice in full from the billing dashboard;
        returns the refund id. Emits ``refund.created``."""
        self.invoices[invoice_id]
        pi = next(
            p
            for p in self.payment_intents.values()
            if p["invoice"] == invoice_id and p["status"] == "succeeded"
        )
        refund = {
            "id": self.ids.stripe("re"),
            "object": "refund",
            "amount": pi["amount_received"],
            "currency": pi["currency"],
            "charge": pi["latest_charge"],
            "payment_intent": pi["id"],
            "created": _now(),
            "reason": "requested_by_customer",
            "status": "succeeded",
            "metadata": self._with_cid({"invoice": invoice_id}, cid, process),
        }
        self.refunds[refund["id"]] = refund
        self._emit("refund.created", refund, f"invoice:{invoice_id}", delay=self.event_delay.sample())
        return str(refund["id"])

    def renew_subscription(self, subscription_id: str, cid: str, process: str) -> str:
        """The billing period rolls over: the subscription advances
        (``customer.subscription.updated``) and the renewal invoice is created and
        finalized (``invoice.finalized``). Returns the invoice id."""
        sub = self.subscriptions[subscription_id]
        previous = {
            "current_period_start": sub["current_period_start"],
            "current_period_end": sub["current_period_end"],
        }
        sub["current_period_start"] = sub["current_period_end"]
        sub["current_period_end"] = _add_month(sub["current_period_start"])
        sub["metadata"] = self._with_cid(sub["metadata"], cid, process)
        updated = self._emit(
            "customer.subscription.updated",
            sub,
            f"subscription:{subscription_id}",
            previous=previous,
            delay=self.event_delay.sample(),
        )
        invoice = self._build_invoice(sub, self._with_cid({}, cid, process), "subscription_cycle")
        self.spawn(self._finalize_later(invoice["id"], after=updated), name="finalize")
        return str(invoice["id"])

    def change_seats(
        self,
        subscription_id: str,
        changes: list[tuple[str, str, int]],
        out_of_order: PlannedFault | None = None,
        delays: list[float] | None = None,
    ) -> None:
        """The customer changes seat quantities in the portal, in quick
        succession: one ``customer.subscription.updated`` per ``(correlation id,
        process, new quantity)``. With an ``out_of_order`` fault the first event
        is held back by the fault's delay, so the second arrives first. With
        ``delays`` (tests) each event is sent after its own delay, unordered."""
        sub = self.subscriptions[subscription_id]
        seat = next(
            (i for i in sub["items"]["data"] if "Seat" in str(i["price"]["nickname"])),
            sub["items"]["data"][-1],
        )
        base = self.event_delay.sample()
        for n, (cid, process, quantity) in enumerate(changes):
            previous = {"items": {"data": [{"id": seat["id"], "quantity": seat["quantity"]}]}}
            seat["quantity"] = quantity
            sub["metadata"] = self._with_cid(sub["metadata"], cid, process)
            delay = base + n * 0.2 if delays is None else delays[n]
            reordered = delays is not None or (out_of_order is not None and len(changes) > 1 and n == 0)
            if out_of_order is not None and len(changes) > 1:
                if n == 0:
                    delay += out_of_order.spec.delay
                    self.world.log.record(
                        cid,
                        FaultKind.OUT_OF_ORDER,
                        System.BILLING,
                        None,
                        category=None,
                        role="delayed",
                        delay=out_of_order.spec.delay,
                    )
                else:
                    self.world.log.record(
                        cid,
                        FaultKind.OUT_OF_ORDER,
                        System.BILLING,
                        Stage.BILLING_SUBSCRIPTION_UPDATE,
                        role="overtaking",
                        delay=out_of_order.spec.delay,
                    )
            self._emit(
                "customer.subscription.updated",
                sub,
                f"subscription:{subscription_id}",
                previous=previous,
                delay=delay,
                ordered=not reordered,
            )

    async def close(self) -> None:
        """Stop background work and deliveries."""
        await super().close()
        await self.dispatcher.close()
