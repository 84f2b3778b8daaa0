"""The correlation id and the process, carried as W3C Baggage in the context."""

from __future__ import annotations

import re
import uuid
from types import TracebackType
from typing import Final

from opentelemetry import baggage, context
from opentelemetry.context import Context

from tracer._log import logger
from tracer.semconv import BAGGAGE_CORRELATION_ID, BAGGAGE_PROCESS

__all__ = [
    "Correlation",
    "correlation",
    "current_correlation_id",
    "current_process",
    "new_correlation_id",
    "valid_id",
    "with_correlation",
]

# Baggage arrives from other systems; only ids of this shape are believed. The
# limit keeps a hostile header from putting kilobytes into every span.
_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,127}$")


def valid_id(value: object) -> str | None:
    """``value`` if it looks like a correlation id or process name, else None."""
    if isinstance(value, str) and _ID_PATTERN.match(value):
        return value
    return None


def new_correlation_id() -> str:
    """A fresh correlation id (a random UUID, 36 characters)."""
    return str(uuid.uuid4())


def current_correlation_id(ctx: Context | None = None) -> str | None:
    """The correlation id in the current (or given) context's baggage, if any."""
    try:
        return valid_id(baggage.get_baggage(BAGGAGE_CORRELATION_ID, ctx))
    except Exception:  # never into adapter code
        logger.debug("reading baggage failed", exc_info=True)
        return None


def current_process(ctx: Context | None = None) -> str | None:
    """The business process in the current (or given) context's baggage, if any."""
    try:
        return valid_id(baggage.get_baggage(BAGGAGE_PROCESS, ctx))
    except Exception:
        logger.debug("reading baggage failed", exc_info=True)
        return None


def with_correlation(ctx: Context | None, correlation_id: str | None, process: str | None) -> Context:
    """``ctx`` (default: current) with the correlation id and process set in its
    baggage; ``None`` values leave what is there."""
    if ctx is None:
        ctx = context.get_current()
    if correlation_id is not None:
        ctx = baggage.set_baggage(BAGGAGE_CORRELATION_ID, correlation_id, ctx)
    if process is not None:
        ctx = baggage.set_baggage(BAGGAGE_PROCESS, process, ctx)
    return ctx


class Correlation:
    """Context manager returned by :func:`correlation`; entering it puts the
    correlation id (and process) into the current baggage and returns the id."""

    __slots__ = ("_token", "correlation_id", "process")

    def __init__(self, correlation_id: str | None = None, process: str | None = None) -> None:
        cid = valid_id(correlation_id) if correlation_id is not None else None
        if correlation_id is not None and cid is None:
            logger.warning(
                "correlation id %.64r is not a valid id; a new one is used instead", correlation_id
            )
        self.correlation_id: str = cid or new_correlation_id()
        """The id this scope puts into the baggage."""
        self.process: str | None = valid_id(process) if process is not None else None
        """The process this scope puts into the baggage (or None)."""
        self._token: object | None = None

    def __enter__(self) -> str:
        try:
            self._token = context.attach(with_correlation(None, self.correlation_id, self.process))
        except Exception:
            logger.debug("attaching correlation baggage failed", exc_info=True)
        return self.correlation_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                context.detach(token)  # type: ignore[arg-type]
            except Exception:
                logger.debug("detaching correlation baggage failed", exc_info=True)

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def correlation(correlation_id: str | None = None, process: str | None = None) -> Correlation:
    """Make ``correlation_id`` (a new one when None) and ``process`` the current
    business transaction for the ``with`` block::

        with correlation(order.correlation_id, process="quote_to_cash") as cid:
            ...  # business spans and outgoing calls here carry cid

    An id that does not look like one (over 128 characters, spaces, control
    characters) is replaced by a new id and a warning is logged.
    """
    return Correlation(correlation_id, process)
