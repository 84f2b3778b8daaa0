"""A Salesforce-like CRM: accounts, opportunities with line items and
products over Salesforce's REST API (``/services/data/v60.0/sobjects/…``, 18-character
ids, ``attributes`` on records, error lists with ``errorCode``), a SOQL subset
for reconciliation, and two event channels delivered to the engine:

* ``/event/Order_Approved__e`` — a platform event a Flow publishes when an
  opportunity is approved;
* ``/data/AccountChangeEvent`` — Change Data Capture for accounts, with
  ``changeOrigin`` naming the API client that made the change.

Events arrive as Bayeux-style JSON (``{"channel", "data": {"schema", "payload",
"event": {"replayId", "EventUuid"}}}``) signed with ``X-Sfdc-Signature``. One
extension: ``ChangeEventHeader.sequenceNumber`` counts changes per record
(real CDC counts within a transaction). A Flow copies the correlation id of
the change (the caller's W3C baggage, or the user action's) into the event as
``revtrace_correlation_id``.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_engine._query import QueryError, parse_query, run_query
from sync_engine._scenarios import FaultKind
from sync_engine._server import HttpServer
from sync_engine._sim_base import Dispatcher, JsonResponse, SimSystem, SimWorld
from sync_engine._wire import SFDC_SIGNATURE_HEADER, sign_hmac
from tracer.semconv import WEBHOOK_METADATA_CORRELATION_ID, WEBHOOK_METADATA_PROCESS, Stage, System

__all__ = ["ACCOUNT_FIELDS", "API_BASE", "CrmSim"]

API_BASE: Final = "/services/data/v60.0"
ACCOUNT_FIELDS: Final = frozenset(
    {
        "Name",
        "BillingStreet",
        "BillingCity",
        "BillingPostalCode",
        "BillingCountry",
        "Website",
        "Industry",
        "VAT_Number__c",
        "Billing_Email__c",
        "Payment_Status__c",
        "MRR__c",
        "Subscription_Status__c",
        "Billing_Customer_Id__c",
        "ERP_Customer_Id__c",
        "Last_Sync_Correlation_Id__c",
        "Renewal_Date__c",
    }
)
"""Account fields the API accepts."""
_READ: Final = (Stage.CRM_ORDER_APPROVE, Stage.CRM_ACCOUNT_UPDATE)
_USER_ID: Final = "005Dn000001sYncAAA"


def _iso(ts: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(ts if ts is not None else time.time(), dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CrmSim(SimSystem):
    """The simulated CRM (vendor ``salesforce``)."""

    system = System.CRM
    vendor = "salesforce"

    def __init__(self, world: SimWorld, seed: int) -> None:
        super().__init__(world, seed)
        self.records: dict[str, dict[str, dict[str, Any]]] = {
            "Account": {},
            "Opportunity": {},
            "OpportunityLineItem": {},
            "Product2": {},
        }
        self._record_sequence: dict[str, int] = {}
        self._replay_id = 1000 + self.rng.randrange(0, 50_000)
        secret = world.webhook_secrets[System.CRM]
        self.dispatcher = Dispatcher(
            world, System.CRM, lambda p: {SFDC_SIGNATURE_HEADER: sign_hmac(secret, p)}
        )
        self.server = HttpServer(self._app(), name="crm")

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{API_BASE}/query", self._query, methods=["GET"]),
                Route(
                    f"{API_BASE}/sobjects/Opportunity/{{id}}/OpportunityLineItems",
                    self._line_items,
                    methods=["GET"],
                ),
                Route(f"{API_BASE}/sobjects/{{sobject}}/{{id}}", self._get, methods=["GET"]),
                Route(f"{API_BASE}/sobjects/Account/{{id}}", self._patch_account, methods=["PATCH"]),
            ]
        )

    # -- Salesforce's error format ----------------------------------------------------------
    @staticmethod
    def error(
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return JsonResponse(
            [{"message": message, "errorCode": code, "fields": fields or []}],
            status_code=status,
            headers=headers,
        )

    def unavailable(self, status: int) -> Response:
        return self.error(status, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again.")

    def rate_limited(self, retry_after: float) -> Response:
        return self.error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            headers={"Retry-After": f"{max(1, round(retry_after))}"},
        )

    def unauthorized(self, expired: bool) -> Response:
        return self.error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    # -- records ---------------------------------------------------------------------------
    def _attributes(self, sobject: str, record_id: str) -> dict[str, str]:
        return {"type": sobject, "url": f"{API_BASE}/sobjects/{sobject}/{record_id}"}

    def _new(self, sobject: str, fields: dict[str, Any]) -> dict[str, Any]:
        record_id = self.ids.salesforce(sobject)
        now = _iso()
        record = {
            "attributes": self._attributes(sobject, record_id),
            "Id": record_id,
            **fields,
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "CreatedById": _USER_ID,
        }
        self.records[sobject][record_id] = record
        self._record_sequence[record_id] = 0
        return record

    async def _get(self, request: Request) -> Response:
        _, failed = await self.gate(request, _READ)
        if failed is not None:
            return failed
        record = self.records.get(request.path_params["sobject"], {}).get(request.path_params["id"])
        if record is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        return JsonResponse(record)

    async def _line_items(self, request: Request) -> Response:
        _, failed = await self.gate(request, (Stage.CRM_ORDER_APPROVE,))
        if failed is not None:
            return failed
        opp_id = request.path_params["id"]
        if opp_id not in self.records["Opportunity"]:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        lines = [r for r in self.records["OpportunityLineItem"].values() if r["OpportunityId"] == opp_id]
        return JsonResponse({"totalSize": len(lines), "done": True, "records": lines})

    async def _patch_account(self, request: Request) -> Response:
        cid, failed = await self.gate(request, (Stage.CRM_ACCOUNT_UPDATE,))
        if failed is not None:
            return failed
        account = self.records["Account"].get(request.path_params["id"])
        if account is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return self.error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return self.error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object.")
        unknown = sorted(set(body) - ACCOUNT_FIELDS)
        if unknown:
            return self.error(
                400,
                "INVALID_FIELD",
                f"No such column '{unknown[0]}' on sobject of type Account",
                fields=unknown,
            )
        options = request.headers.get("sforce-call-options", "")
        client = options.partition("client=")[2].split(",")[0] or "unknown"
        self._change_account(account, body, cid, None, f"com/salesforce/api/rest/60.0;client={client}")
        return Response(status_code=204)

    def _change_account(
        self,
        account: dict[str, Any],
        changes: dict[str, Any],
        cid: str | None,
        process: str | None,
        origin: str,
    ) -> None:
        changed = [k for k, v in changes.items() if account.get(k) != v]
        if not changed:
            return
        for key in changed:
            account[key] = changes[key]
        account["LastModifiedDate"] = account["SystemModstamp"] = _iso()
        self._record_sequence[account["Id"]] += 1
        payload: dict[str, Any] = {
            "ChangeEventHeader": {
                "entityName": "Account",
                "recordIds": [account["Id"]],
                "changeType": "UPDATE",
                "changeOrigin": origin,
                "transactionKey": self.ids.uuid(),
                "sequenceNumber": self._record_sequence[account["Id"]],
                "commitTimestamp": int(time.time() * 1000),
                "commitNumber": self._next_replay() * 7,
                "commitUser": _USER_ID,
                "changedFields": changed,
            },
            **{k: changes[k] for k in changed},
            "LastModifiedDate": account["LastModifiedDate"],
        }
        if cid is not None:
            payload[WEBHOOK_METADATA_CORRELATION_ID] = cid
            if process is not None:
                payload[WEBHOOK_METADATA_PROCESS] = process
        self._publish("/data/AccountChangeEvent", payload, cid, order_key=account["Id"])

    def _next_replay(self) -> int:
        self._replay_id += 1
        return self._replay_id

    def _publish(
        self, channel: str, payload: dict[str, Any], cid: str | None, order_key: str | None = None
    ) -> None:
        body: dict[str, Any] = {
            "channel": channel,
            "data": {
                "schema": "Wb0d4ZLNgw3Rmz-eFvHM3Q",
                "payload": payload,
                "event": {"replayId": self._next_replay(), "EventUuid": self.ids.uuid()},
            },
        }
        planned = self.world.plan.get(cid)
        delay = self.event_delay.sample()
        if (
            planned is not None
            and planned.spec.kind is FaultKind.DUPLICATE_DELIVERY
            and planned.spec.system is System.CRM
            and not planned.state.get("delivery_fault_done")
        ):
            planned.state["delivery_fault_done"] = True
            copy = orjson.loads(orjson.dumps(body))
            if not planned.spec.same_event_id:
                copy["data"]["event"]["EventUuid"] = self.ids.uuid()
            self.world.log.record(
                cid,
                FaultKind.DUPLICATE_DELIVERY,
                System.CRM,
                None,
                event_id=body["data"]["event"]["EventUuid"],
                copy_event_id=copy["data"]["event"]["EventUuid"],
                event_type=channel,
            )
            self.dispatcher.send(copy, cid, delay + 0.3)
        self.dispatcher.send(body, cid, delay, order_key)

    async def _query(self, request: Request) -> Response:
        _, failed = await self.gate(request, ())
        if failed is not None:
            return failed
        try:
            query = parse_query(request.query_params.get("q", ""))
        except QueryError as exc:
            return self.error(400, "MALFORMED_QUERY", str(exc))
        store = self.records.get(query.table)
        if store is None:
            return self.error(400, "INVALID_TYPE", f"sObject type '{query.table}' is not supported.")
        rows = run_query(query, store.values())
        return JsonResponse({"totalSize": len(rows), "done": True, "records": rows})

    # -- what the world does in the CRM (the workload calls these) ----------------------
    def record_sequence(self, record_id: str) -> int:
        """How many change events a record has had."""
        return self._record_sequence.get(record_id, 0)

    def create_account(self, fields: dict[str, Any]) -> str:
        """A sales rep creates an account; returns its id."""
        return str(self._new("Account", {"Payment_Status__c": "Current", **fields})["Id"])

    def product_id(self, sku: str, name: str) -> str:
        """The Product2 id for a SKU (created on first use)."""
        for product in self.records["Product2"].values():
            if product["ProductCode"] == sku:
                return str(product["Id"])
        return str(self._new("Product2", {"ProductCode": sku, "Name": name, "IsActive": True})["Id"])

    def create_opportunity(
        self, account_id: str, fields: dict[str, Any], lines: list[tuple[str, str, int, Decimal]]
    ) -> str:
        """An opportunity with line items ``(sku, name, quantity, unit price)``; returns its id."""
        amount = sum((Decimal(q) * p for _, _, q, p in lines), Decimal(0))
        opp = self._new(
            "Opportunity",
            {
                "AccountId": account_id,
                "StageName": "Proposal/Price Quote",
                "Approval_Status__c": "Pending",
                "Amount": float(amount),
                **fields,
            },
        )
        for sku, name, quantity, price in lines:
            self._new(
                "OpportunityLineItem",
                {
                    "OpportunityId": opp["Id"],
                    "Product2Id": self.product_id(sku, name),
                    "ProductCode": sku,
                    "Name": name,
                    "Quantity": quantity,
                    "UnitPrice": float(price),
                    "TotalPrice": float(Decimal(quantity) * price),
                },
            )
        return str(opp["Id"])

    def approve(self, opportunity_id: str, cid: str, process: str) -> None:
        """Deal desk approves the order: the opportunity is Closed Won and a Flow
        publishes ``Order_Approved__e``."""
        opp = self.records["Opportunity"][opportunity_id]
        opp.update(StageName="Closed Won", Approval_Status__c="Approved", LastModifiedDate=_iso())
        payload = {
            "Opportunity_Id__c": opportunity_id,
            "Account_Id__c": opp["AccountId"],
            "Legal_Entity__c": opp.get("Legal_Entity__c"),
            "Approved_By__c": _USER_ID,
            "CreatedDate": _iso(),
            "CreatedById": _USER_ID,
            WEBHOOK_METADATA_CORRELATION_ID: cid,
            WEBHOOK_METADATA_PROCESS: process,
        }
        self._publish("/event/Order_Approved__e", payload, cid)

    def edit_account(self, account_id: str, changes: dict[str, Any], cid: str, process: str) -> None:
        """A user edits an account in the UI (Change Data Capture follows)."""
        self._change_account(
            self.records["Account"][account_id], changes, cid, process, "com/salesforce/ui;client=lightning"
        )

    async def close(self) -> None:
        """Stop background work and deliveries."""
        await super().close()
        await self.dispatcher.close()
