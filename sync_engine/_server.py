"""Serving an ASGI app with uvicorn inside an already running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

import orjson
import uvicorn
from starlette.responses import Response

__all__ = ["HttpServer", "JsonResponse"]

log = logging.getLogger("sync_engine")

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


class JsonResponse(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _InFlight:
    """ASGI middleware keeping the HTTP requests being handled, so that stopping
    ends the ones still running on its own terms: cancelled quietly and answered
    503. Left to uvicorn, each would be cancelled after its graceful-shutdown
    timeout and logged as an error with the traceback of wherever it was waiting
    (a simulator sleeping through an injected delay)."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        sent = {"start": False, "end": False}

        async def tracked(message: _Message) -> None:
            if message["type"] == "http.response.start":
                sent["start"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["end"] = True
            await send(message)

        self.tasks.add(task)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            task.uncancel()  # our own cancellation (see stop()): finish the exchange instead
            log.debug("%s: %s %s cut short by shutdown", self.name, scope.get("method"), scope.get("path"))
            with contextlib.suppress(Exception):  # the client may be gone already
                if not sent["start"]:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
                        }
                    )
                if not sent["end"]:
                    await send({"type": "http.response.body", "body": b"shutting down", "more_body": False})
        finally:
            self.tasks.discard(task)

    async def end(self, grace: float) -> None:
        """Let the requests being handled finish for up to ``grace`` seconds, then
        cancel the rest (each answers 503) and wait for them."""
        self.stopping = True
        running = [t for t in self.tasks if not t.done()]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        running = [t for t in self.tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1.0)


class HttpServer:
    """One ASGI app on ``host:port`` (port 0: an ephemeral port), started and
    stopped from a coroutine of the loop it runs in."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "server") -> None:
        self._requests = _InFlight(app, name)
        self._config = uvicorn.Config(
            self._requests,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="none",
            ws="none",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        self._server = _EmbeddedServer(self._config)
        self._task: asyncio.Task[None] | None = None
        self.name = name

    async def start(self) -> None:
        """Bind and serve; returns once the socket listens."""
        self._task = asyncio.create_task(self._server.serve(), name=f"http:{self.name}")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the bind error
                raise RuntimeError(f"{self.name}: server exited during start-up")
            await asyncio.sleep(0.005)

    @property
    def port(self) -> int:
        """The port actually bound."""
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._config.host}:{self.port}"

    @property
    def handling(self) -> int:
        """HTTP requests being handled right now."""
        return sum(1 for t in self._requests.tasks if not t.done())

    async def stop(self, grace: float = 1.0) -> None:
        """Let running requests finish (``grace`` seconds at most), answer the
        rest 503, stop accepting and close, without logging anything."""
        if self._task is None:
            return
        await self._requests.end(grace)
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
