"""httpx hook: a transport wrapper. Imported only when an adapter asks for it."""

from __future__ import annotations

from typing import Any

import httpx

from tracer._http import finish_call, start_call, wants_body
from tracer._log import logger

__all__ = ["AsyncTracingTransport", "TracingTransport", "instrument"]


def _body(response: httpx.Response) -> Any:
    return response.content if wants_body(response.status_code, response.headers) else None


class TracingTransport(httpx.BaseTransport):
    """Wraps an httpx transport: one client span per request."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = start_call(request.method, str(request.url), request.headers)
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            finish_call(call, error=exc)
            raise
        body = None
        if call is not None and wants_body(response.status_code, response.headers):
            try:
                response.read()  # cached on the response: the adapter can still read it
                body = response.content
            except Exception:
                logger.debug("reading an error body failed", exc_info=True)
        finish_call(call, status_code=response.status_code, headers=response.headers, body=body)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncTracingTransport(httpx.AsyncBaseTransport):
    """Wraps an async httpx transport: one client span per request."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = start_call(request.method, str(request.url), request.headers)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            finish_call(call, error=exc)
            raise
        body = None
        if call is not None and wants_body(response.status_code, response.headers):
            try:
                await response.aread()
                body = response.content
            except Exception:
                logger.debug("reading an error body failed", exc_info=True)
        finish_call(call, status_code=response.status_code, headers=response.headers, body=body)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument(client: Any) -> Any:
    """Wrap the client's transport and mounted transports (once)."""
    # httpx has no public setter for a built client's transport; these two
    # attributes are where every httpx release since 0.18 keeps them.
    wrap: Any
    if isinstance(client, httpx.AsyncClient):
        wrap = AsyncTracingTransport
    elif isinstance(client, httpx.Client):
        wrap = TracingTransport
    else:
        raise TypeError(
            f"instrument_httpx: expected an httpx.Client or AsyncClient, got {type(client).__name__}"
        )
    transport = getattr(client, "_transport", None)
    if transport is not None and not isinstance(transport, TracingTransport | AsyncTracingTransport):
        client._transport = wrap(transport)
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None and not isinstance(mounted, TracingTransport | AsyncTracingTransport):
                mounts[pattern] = wrap(mounted)
    return client
