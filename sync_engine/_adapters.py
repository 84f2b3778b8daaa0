"""The engine's calls to each vendor's API, on top of :class:`SystemClient`:
paths, request shapes and response parsing, nothing about retries or spans."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from sync_engine._client import SystemClient
from sync_engine._wire import encode_form

__all__ = ["BillingApi", "CrmApi", "ErpApi"]


def _json(content: bytes) -> Any:
    return orjson.loads(content) if content else None


class CrmApi:
    """Salesforce REST."""

    BASE = "/services/data/v60.0"

    def __init__(self, client: SystemClient) -> None:
        self.client = client

    async def record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """One record."""
        response = await self.client.request("GET", f"{self.BASE}/sobjects/{sobject}/{record_id}")
        return dict(_json(response.content))

    async def line_items(self, opportunity_id: str) -> list[dict[str, Any]]:
        """An opportunity's line items."""
        response = await self.client.request(
            "GET", f"{self.BASE}/sobjects/Opportunity/{opportunity_id}/OpportunityLineItems"
        )
        return list(_json(response.content)["records"])

    async def update_account(self, account_id: str, fields: dict[str, Any]) -> None:
        """PATCH account fields."""
        await self.client.request("PATCH", f"{self.BASE}/sobjects/Account/{account_id}", json=fields)

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """A SOQL query's records."""
        response = await self.client.request("GET", f"{self.BASE}/query", params={"q": soql})
        return list(_json(response.content)["records"])


class BillingApi:
    """Stripe REST (form-encoded requests, idempotency keys)."""

    def __init__(self, client: SystemClient) -> None:
        self.client = client

    async def search_customers(self, account_id: str, legal_entity: str) -> list[dict[str, Any]]:
        """Customers of a CRM account in a legal entity (search is eventually consistent)."""
        query = f"metadata['crm_account_id']:'{account_id}' AND metadata['legal_entity']:'{legal_entity}'"
        response = await self.client.request("GET", "/v1/customers/search", params={"query": query})
        return sorted(_json(response.content)["data"], key=lambda c: (c["created"], c["id"]))

    async def post(self, path: str, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """Create or update an object."""
        response = await self.client.request(
            "POST", path, form=encode_form(body), idempotency_key=idempotency_key
        )
        return dict(_json(response.content))

    async def get(self, path: str) -> dict[str, Any]:
        """Read an object."""
        return dict(_json((await self.client.request("GET", path)).content))

    async def list_all(self, resource: str, gte: int, lt: int) -> list[dict[str, Any]]:
        """Every object of a list endpoint created in ``[gte, lt)`` (follows pagination)."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {"created[gte]": str(gte), "created[lt]": str(lt), "limit": "100"}
            if after:
                params["starting_after"] = after
            page = _json((await self.client.request("GET", f"/v1/{resource}", params=params)).content)
            out.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                return out
            after = page["data"][-1]["id"]


class ErpApi:
    """NetSuite REST records and SuiteQL."""

    RECORDS = "/services/rest/record/v1"

    def __init__(self, client: SystemClient) -> None:
        self.client = client

    async def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        """Create or update by external id; returns the internal id (from ``Location``)."""
        response = await self.client.request(
            "PUT", f"{self.RECORDS}/{record_type}/eid:{quote(external_id, safe='')}", json=body
        )
        return str(response.headers.get("location", "")).rstrip("/").rsplit("/", 1)[-1]

    async def patch(self, record_type: str, internal_id: str, body: dict[str, Any]) -> None:
        """Update some fields."""
        await self.client.request("PATCH", f"{self.RECORDS}/{record_type}/{internal_id}", json=body)

    async def get(self, record_type: str, ref: str) -> dict[str, Any]:
        """One record by internal id (or ``eid:…``)."""
        return dict(_json((await self.client.request("GET", f"{self.RECORDS}/{record_type}/{ref}")).content))

    async def suiteql(self, query: str) -> list[dict[str, Any]]:
        """Every row of a SuiteQL query (follows paging)."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self.client.request(
                "POST",
                "/services/rest/query/v1/suiteql",
                json={"q": query},
                params={"limit": "1000", "offset": str(offset)},
            )
            page = _json(response.content)
            out.extend(page["items"])
            if not page["hasMore"]:
                return out
            offset += len(page["items"])
