"""Serving an ASGI app with uvicorn inside an already running event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import orjson
import uvicorn
from starlette.responses import Response

__all__ = ["HttpServer", "JsonResponse"]


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


class HttpServer:
    """One ASGI app on ``host:port`` (port 0: an ephemeral port), started and
    stopped from a coroutine of the loop it runs in."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "server") -> None:
        self._config = uvicorn.Config(
            app,
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

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (1 s at most), close."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
