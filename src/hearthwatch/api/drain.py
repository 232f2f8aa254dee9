"""Bounded shutdown of the HTTP server: :class:`RequestDrain` tracks the requests in flight and
:class:`DrainingServer` drains them before uvicorn's own shutdown. Both are
event-loop-confined."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearthwatch.api.errors import error_response

log = logging.getLogger(__name__)

SHUTDOWN_RETRY_AFTER_S = 5
"""Retry-After of the 503s a shutting-down server answers: about a restart's time."""
CANCEL_WAIT_S = 2
"""How long cancelled requests get to unwind (release slots, answer 503) after the grace."""


class _Reply:
    """The ``send`` of one request, remembering whether its response has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.cut = False  # cancelled by the drain, not by the client or the server

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def _send_shutting_down(scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"Retry-After": str(SHUTDOWN_RETRY_AFTER_S), "Connection": "close"}
    message = "server is shutting down; retry shortly"
    await error_response(503, message, headers, path=scope["path"])(scope, receive, send)


class RequestDrain:
    """Wraps an ASGI app and tracks its HTTP requests in flight, so that :meth:`drain` can
    shut it down in bounded time: new requests are answered 503 with ``Retry-After``, those in
    flight get ``grace_s`` to finish, then each still running is cancelled and, if nothing of
    its response was sent yet, answered 503 with ``Retry-After`` (a response already
    streaming is cut and its connection closed)."""

    def __init__(self, app: ASGIApp, on_drain: Callable[[], None] | None = None) -> None:
        self.app = app
        self._on_drain = on_drain
        self.draining = False
        self._in_flight: dict[asyncio.Task[None], _Reply] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.draining:
            await _send_shutting_down(scope, receive, send)
            return
        reply = _Reply(send)
        task = asyncio.ensure_future(self.app(scope, receive, reply.send))
        self._in_flight[task] = reply
        try:
            await task
        except asyncio.CancelledError:
            if not reply.cut:
                raise
            if not reply.started:
                await _send_shutting_down(scope, receive, send)
        finally:
            self._in_flight.pop(task, None)

    async def drain(self, grace_s: float) -> None:
        self.draining = True
        if self._on_drain is not None:
            self._on_drain()  # what waits in the services' queues is answered 503 now
        in_flight = dict(self._in_flight)
        if not in_flight:
            return
        log.info("shutting down: %d requests in flight, %g s to finish", len(in_flight), grace_s)
        _, late = await asyncio.wait(in_flight, timeout=grace_s)
        if not late:
            return
        log.warning("shutting down: cancelling %d requests still running", len(late))
        for task in late:
            in_flight[task].cut = True
            task.cancel()
        await asyncio.wait(late, timeout=CANCEL_WAIT_S)


class DrainingServer(uvicorn.Server):
    """uvicorn's server that, on SIGTERM or SIGINT, stops accepting connections and drains
    ``drain`` for at most ``grace_s`` before its own shutdown (closing connections, the
    app's lifespan end), which then finds nothing left to wait for."""

    def __init__(self, config: uvicorn.Config, drain: RequestDrain, grace_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self._drain.drain(self._grace_s)
        await super().shutdown(sockets)
