"""A NetSuite-like ERP: customers (one primary subsidiary, more through
customer–subsidiary relationships), invoices, customer payments and credit
memos over NetSuite's REST record API (``PUT …/record/v1/<type>/eid:<externalId>``
upserts answering ``204`` with a ``Location``), SuiteQL for reconciliation, and
NetSuite's error bodies (``o:errorDetails`` with ``o:errorCode``).

Master data lives here: subsidiaries (the legal entities) with their tax
rate, departments (cost centers) per subsidiary, items, and accounting periods
(every month before the current one is closed). The ERP computes tax itself,
per line, rounded half up; billing rounds once per invoice, so some discounted
prices disagree by a cent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_engine._query import QueryError, parse_query, run_query
from sync_engine._reference import ERP_MISSING_COST_CENTERS, LEGAL_ENTITIES, PRODUCTS, SALES_TEAMS, money
from sync_engine._server import HttpServer
from sync_engine._sim_base import JsonResponse, SimSystem, SimWorld
from tracer.semconv import Stage, System

__all__ = ["RECORD_PATH", "ErpSim"]

RECORD_PATH: Final = "/services/rest/record/v1"
_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_STAGE_BY_TYPE: Final = {
    "customer": (Stage.ERP_CUSTOMER_UPSERT,),
    "customerSubsidiaryRelationship": (Stage.ERP_CUSTOMER_UPSERT,),
    "invoice": (Stage.ERP_INVOICE_POST,),
    "customerPayment": (Stage.ERP_PAYMENT_APPLY,),
    "creditMemo": (Stage.ERP_REFUND_POST,),
}


class _Rejected(Exception):
    def __init__(self, status: int, code: str, detail: str, path: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.path = status, code, detail, path


def _ref(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if isinstance(value, dict) and value.get("id") is not None:
        return str(value["id"])
    return None


class ErpSim(SimSystem):
    """The simulated ERP (vendor ``netsuite``)."""

    system = System.ERP
    vendor = "netsuite"

    def __init__(self, world: SimWorld, seed: int) -> None:
        super().__init__(world, seed)
        self.records: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in _STAGE_BY_TYPE}
        self._by_eid: dict[str, dict[str, str]] = {t: {} for t in _STAGE_BY_TYPE}
        self.subsidiaries = {e.erp_subsidiary_id: e for e in LEGAL_ENTITIES.values()}
        self.departments = {
            (e.erp_subsidiary_id, team.erp_department_id)
            for e in LEGAL_ENTITIES.values()
            for team in SALES_TEAMS.values()
            if (e.code, team.name) not in ERP_MISSING_COST_CENTERS
        }
        self.items = {p.erp_item_id: p for p in PRODUCTS.values()}
        self.server = HttpServer(self._app(), name="erp")

    def _app(self) -> Starlette:
        routes = [
            Route(f"{RECORD_PATH}/{{type}}/{{ref}}", self._upsert, methods=["PUT"]),
            Route(f"{RECORD_PATH}/{{type}}/{{ref}}", self._patch, methods=["PATCH"]),
            Route(f"{RECORD_PATH}/{{type}}/{{ref}}", self._get, methods=["GET"]),
            Route("/services/rest/query/v1/suiteql", self._suiteql, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    # -- NetSuite's error format ----------------------------------------------------------
    @staticmethod
    def error(
        status: int, code: str, detail: str, path: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        item: dict[str, Any] = {"detail": detail, "o:errorCode": code}
        if path:
            item["o:errorPath"] = path
        return JsonResponse(
            {
                "type": f"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.{5 if status < 500 else 6}",
                "title": _TITLES.get(status, "Error"),
                "status": status,
                "o:errorDetails": [item],
            },
            status_code=status,
            headers=headers,
        )

    def unavailable(self, status: int) -> Response:
        return self.error(
            status,
            "UNEXPECTED_ERROR",
            "An unexpected error occurred. The service is temporarily unavailable.",
        )

    def rate_limited(self, retry_after: float) -> Response:
        return self.error(
            429,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Request blocked because it exceeded the concurrency limit for your account.",
            headers={"Retry-After": f"{max(1, round(retry_after))}"},
        )

    def unauthorized(self, expired: bool) -> Response:
        detail = (
            "Invalid login attempt. The access token has been revoked."
            if expired
            else "Invalid login attempt."
        )
        return self.error(401, "INVALID_LOGIN", detail)

    # -- records ---------------------------------------------------------------------------
    def _find(self, type_: str, ref: str) -> dict[str, Any] | None:
        if type_ not in self.records:
            return None
        if ref.startswith("eid:"):
            internal = self._by_eid[type_].get(ref[4:])
            return self.records[type_].get(internal) if internal else None
        return self.records[type_].get(ref)

    def find_by_external_id(self, type_: str, external_id: str) -> dict[str, Any] | None:
        """A record by its external id (for the workload and tests)."""
        return self._find(type_, f"eid:{external_id}")

    def _location(self, request: Request, type_: str, internal_id: str) -> Response:
        base = str(request.base_url).rstrip("/")
        return Response(status_code=204, headers={"Location": f"{base}{RECORD_PATH}/{type_}/{internal_id}"})

    async def _get(self, request: Request) -> Response:
        type_ = request.path_params["type"]
        _, failed = await self.gate(request, _STAGE_BY_TYPE.get(type_, ()))
        if failed is not None:
            return failed
        record = self._find(type_, request.path_params["ref"])
        if record is None:
            return self.error(
                404,
                "NONEXISTENT_ID",
                f"The record instance does not exist. Provide a valid record instance ID "
                f"({request.path_params['ref']}).",
            )
        return JsonResponse(record)

    async def _patch(self, request: Request) -> Response:
        type_ = request.path_params["type"]
        _, failed = await self.gate(request, _STAGE_BY_TYPE.get(type_, ()))
        if failed is not None:
            return failed
        record = self._find(type_, request.path_params["ref"])
        if record is None or type_ != "customer":
            return self.error(404, "NONEXISTENT_ID", "The record instance does not exist.")
        body = await self._json(request)
        for field in ("companyName", "email", "defaultAddress", "custentity_billing_customer"):
            if field in body:
                record[field] = body[field]
        record["lastModifiedDate"] = _now()
        return Response(status_code=204)

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise _Rejected(400, "INVALID_CONTENT", f"Invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _Rejected(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        return body

    async def _upsert(self, request: Request) -> Response:
        type_ = request.path_params["type"]
        ref = request.path_params["ref"]
        _, failed = await self.gate(request, _STAGE_BY_TYPE.get(type_, ()))
        if failed is not None:
            return failed
        if type_ not in self.records or not ref.startswith("eid:"):
            return self.error(
                400, "INVALID_PARAMETER", f"Upsert needs a record type and an external id, got {ref}."
            )
        external_id = ref[4:]
        try:
            body = await self._json(request)
            existing = self._find(type_, ref)
            record = getattr(self, f"_upsert_{type_}")(external_id, body, existing)
        except _Rejected as rejected:
            return self.error(rejected.status, rejected.code, rejected.detail, rejected.path)
        return self._location(request, type_, record["id"])

    def _store(
        self, type_: str, external_id: str, record: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        if existing is not None:
            existing.update(record, id=existing["id"], lastModifiedDate=_now())
            return
        record["id"] = self.ids.netsuite(type_)
        record["externalId"] = external_id
        record["createdDate"] = record["lastModifiedDate"] = _now()
        record["links"] = [{"rel": "self", "href": f"{RECORD_PATH}/{type_}/{record['id']}"}]
        self.records[type_][record["id"]] = record
        self._by_eid[type_][external_id] = record["id"]

    def _subsidiary(self, body: dict[str, Any]) -> str:
        sub = _ref(body, "subsidiary")
        if sub is None or sub not in self.subsidiaries:
            raise _Rejected(
                400, "INVALID_KEY_OR_REF", f"Invalid subsidiary reference key {sub}.", "subsidiary"
            )
        return sub

    def _customer(self, body: dict[str, Any], subsidiary: str | None = None) -> dict[str, Any]:
        entity = _ref(body, "entity") or _ref(body, "customer")
        customer = self.records["customer"].get(entity or "")
        if customer is None:
            raise _Rejected(400, "INVALID_KEY_OR_REF", f"Invalid entity reference key {entity}.", "entity")
        if subsidiary is not None and subsidiary not in customer["subsidiaries"]:
            raise _Rejected(
                400,
                "INVALID_KEY_OR_REF",
                f"Invalid entity reference key {entity} for subsidiary {subsidiary}.",
                "entity",
            )
        return customer

    def _upsert_customer(
        self, external_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not body.get("companyName"):
            raise _Rejected(400, "USER_ERROR", "Please enter value(s) for: Company Name", "companyName")
        record: dict[str, Any] = {
            k: body[k]
            for k in (
                "companyName",
                "email",
                "defaultAddress",
                "custentity_billing_customer",
                "custentity_revtrace_correlation_id",
            )
            if k in body
        }
        if existing is None:
            sub = self._subsidiary(body)
            currency = self.subsidiaries[sub].currency
            record.update(
                subsidiary={"id": sub},
                currency={"refName": currency},
                subsidiaries=[sub],
                entityId=f"CUST{self.ids.sequence('customer'):05d}",
                balance=0.0,
            )
        self._store("customer", external_id, record, existing)
        return existing or record

    def _upsert_customerSubsidiaryRelationship(
        self, external_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        sub = self._subsidiary(body)
        customer = self._customer(body)
        if sub not in customer["subsidiaries"]:
            customer["subsidiaries"].append(sub)
        record = {"entity": {"id": customer["id"]}, "subsidiary": {"id": sub}}
        self._store("customerSubsidiaryRelationship", external_id, record, existing)
        return existing or record

    def _upsert_invoice(
        self, external_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if existing is not None:
            return existing  # posted documents are immutable: the upsert is a no-op
        sub = self._subsidiary(body)
        customer = self._customer(body, sub)
        dept = _ref(body, "department")
        if (sub, dept) not in self.departments:
            raise _Rejected(
                400,
                "INVALID_KEY_OR_REF",
                f"Invalid department reference key {dept} for subsidiary {sub}.",
                "department",
            )
        try:
            tran_date = dt.date.fromisoformat(str(body.get("tranDate")))
        except ValueError:
            raise _Rejected(
                400,
                "INVALID_FLD_VALUE",
                f"Invalid Field Value {body.get('tranDate')} for the following field: tranDate",
                "tranDate",
            ) from None
        today = dt.datetime.now(dt.UTC).date()
        if (tran_date.year, tran_date.month) < (today.year, today.month):
            raise _Rejected(
                400,
                "USER_ERROR",
                f"The accounting period {tran_date:%b %Y} is closed. Post the transaction in an open period.",
                "postingPeriod",
            )
        rate = self.subsidiaries[sub].tax_rate
        lines = []
        subtotal = tax_total = Decimal(0)
        for i, line in enumerate((body.get("item") or {}).get("items") or []):
            item_id = _ref(line, "item")
            if item_id not in self.items:
                raise _Rejected(
                    400,
                    "INVALID_KEY_OR_REF",
                    f"Invalid item reference key {item_id}.",
                    f"item.items[{i}].item",
                )
            try:
                quantity = Decimal(str(line["quantity"]))
                unit = Decimal(str(line["rate"]))
            except (KeyError, InvalidOperation):
                raise _Rejected(
                    400,
                    "INVALID_FLD_VALUE",
                    "Invalid Field Value for the following field: rate",
                    f"item.items[{i}]",
                ) from None
            amount = money(quantity * unit)
            tax = money(amount * rate)  # per line, half up
            subtotal += amount
            tax_total += tax
            lines.append(
                {
                    "item": {"id": item_id, "refName": self.items[item_id].name},
                    "quantity": float(quantity),
                    "rate": float(unit),
                    "amount": float(amount),
                    "taxAmount": float(tax),
                }
            )
        if not lines:
            raise _Rejected(
                400, "USER_ERROR", "You must enter at least one line item for this transaction.", "item"
            )
        total = subtotal + tax_total
        record = {
            "tranId": f"INV{sub}-{self.ids.sequence('invoice:' + sub):05d}",
            "tranDate": tran_date.isoformat(),
            "postingPeriod": {"refName": f"{tran_date:%b %Y}"},
            "entity": {"id": customer["id"], "refName": customer["companyName"]},
            "subsidiary": {"id": sub, "refName": self.subsidiaries[sub].name},
            "department": {"id": dept},
            "currency": {"refName": self.subsidiaries[sub].currency},
            "item": {"items": lines},
            "subtotal": float(subtotal),
            "taxTotal": float(tax_total),
            "total": float(total),
            "amountRemaining": float(total),
            "status": {"id": "A", "refName": "Open"},
            "memo": body.get("memo"),
            "otherRefNum": body.get("otherRefNum"),
            "custbody_crm_opportunity": body.get("custbody_crm_opportunity"),
            "custbody_revtrace_correlation_id": body.get("custbody_revtrace_correlation_id"),
        }
        self._store("invoice", external_id, record, None)
        return record

    def _upsert_customerPayment(
        self, external_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if existing is not None:
            return existing
        sub = self._subsidiary(body)
        customer = self._customer(body, sub)
        applies = (body.get("apply") or {}).get("items") or []
        if not applies:
            raise _Rejected(400, "USER_ERROR", "You must apply the payment to at least one invoice.", "apply")
        payment = Decimal(str(body.get("payment", 0)))
        for line in applies:
            invoice = self.records["invoice"].get(_ref(line, "doc") or "")
            if invoice is None:
                raise _Rejected(
                    400,
                    "INVALID_KEY_OR_REF",
                    f"Invalid doc reference key {_ref(line, 'doc')}.",
                    "apply.items.doc",
                )
            remaining = money(
                Decimal(str(invoice["amountRemaining"])) - Decimal(str(line.get("amount", payment)))
            )
            invoice["amountRemaining"] = float(max(remaining, Decimal(0)))
            if invoice["amountRemaining"] == 0:
                invoice["status"] = {"id": "B", "refName": "Paid In Full"}
        record = {
            "customer": {"id": customer["id"]},
            "subsidiary": {"id": sub},
            "payment": float(payment),
            "currency": {"refName": self.subsidiaries[sub].currency},
            "tranDate": _today(),
            "apply": {"items": applies},
            "memo": body.get("memo"),
        }
        self._store("customerPayment", external_id, record, None)
        return record

    def _upsert_creditMemo(
        self, external_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if existing is not None:
            return existing
        sub = self._subsidiary(body)
        customer = self._customer(body, sub)
        invoice = self.records["invoice"].get(_ref(body, "createdFrom") or "")
        if invoice is None:
            raise _Rejected(
                400,
                "INVALID_KEY_OR_REF",
                f"Invalid createdFrom reference key {_ref(body, 'createdFrom')}.",
                "createdFrom",
            )
        total = Decimal(str(body.get("total", invoice["total"])))
        record = {
            "entity": {"id": customer["id"]},
            "subsidiary": {"id": sub},
            "createdFrom": {"id": invoice["id"]},
            "total": float(total),
            "currency": {"refName": self.subsidiaries[sub].currency},
            "tranDate": _today(),
            "memo": body.get("memo"),
            "status": {"refName": "Fully Applied"},
        }
        invoice["status"] = {"id": "R", "refName": "Credited"}
        self._store("creditMemo", external_id, record, None)
        return record

    # -- SuiteQL ---------------------------------------------------------------------------
    async def _suiteql(self, request: Request) -> Response:
        _, failed = await self.gate(request, ())
        if failed is not None:
            return failed
        try:
            body = await self._json(request)
            query = parse_query(str(body.get("q", "")))
        except _Rejected as rejected:
            return self.error(rejected.status, rejected.code, rejected.detail)
        except QueryError as exc:
            return self.error(400, "INVALID_PARAMETER", f"Invalid search query: {exc}")
        table = query.table
        if table not in self.records:
            return self.error(400, "INVALID_PARAMETER", f"Invalid search query: unknown table {table}.")
        rows = [_flatten(r) for r in self.records[table].values()]
        items = run_query(query, rows)
        limit = max(1, min(1000, int(request.query_params.get("limit", "1000"))))
        offset = int(request.query_params.get("offset", "0"))
        page = items[offset : offset + limit]
        return JsonResponse(
            {
                "links": [],
                "count": len(page),
                "hasMore": offset + limit < len(items),
                "items": page,
                "offset": offset,
                "totalResults": len(items),
            }
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """SuiteQL columns: references become their id (``entity`` → ``"1042"``),
    the status its name, dates stay ISO text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out[key] = value.get("id") if "id" in value and key != "status" else value.get("refName")
        elif not isinstance(value, list):
            out[key] = value
    return out
