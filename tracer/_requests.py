"""requests hook: an adapter wrapper. Imported only when an adapter asks for it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import requests
from requests.adapters import BaseAdapter

from tracer._http import finish_call, start_call, wants_body
from tracer._log import logger

__all__ = ["TracingAdapter", "instrument"]


class TracingAdapter(BaseAdapter):
    """Wraps a mounted requests adapter (keeping its pool and retry settings):
    one client span per request."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # requests keeps str headers in a CaseInsensitiveDict typed as str | bytes values
        call = start_call(
            request.method or "GET", request.url or "", cast(MutableMapping[str, str], request.headers)
        )
        try:
            response = self.inner.send(request, *args, **kwargs)
        except Exception as exc:
            finish_call(call, error=exc)
            raise
        headers: Mapping[str, str] = response.headers
        body = None
        if call is not None and wants_body(response.status_code, headers):
            try:
                body = response.content  # cached: the adapter can still read it
            except Exception:
                logger.debug("reading an error body failed", exc_info=True)
        finish_call(call, status_code=response.status_code, headers=headers, body=body)
        return response

    def close(self) -> None:
        self.inner.close()


def instrument(session: Any) -> Any:
    """Wrap every adapter mounted on the session (once)."""
    if not isinstance(session, requests.Session):
        raise TypeError(f"instrument_requests: expected a requests.Session, got {type(session).__name__}")
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, TracingAdapter):
            session.mount(prefix, TracingAdapter(adapter))
    return session
