"""The FastAPI application (routers, error handlers, the services' lifetime) and its bounded
shutdown: :class:`RequestDrain` tracks the requests in flight and :class:`DrainingServer` drains
them before uvicorn's own shutdown. Both are event-loop-confined."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearthwatch import __version__
from hearthwatch.api import detect, enrich, llm, openapi, repository, system, v2
from hearthwatch.api.body import BodyReadDeadline
from hearthwatch.api.errors import error_response, install_error_handlers
from hearthwatch.api.services import Services, build_services
from hearthwatch.config import Settings

log = logging.getLogger(__name__)

SHUTDOWN_RETRY_AFTER_S = 5
"""Retry-After of the 503s a shutting-down server answers: about a restart's time."""
CANCEL_WAIT_S = 2
"""How long cancelled requests get to unwind (release slots, answer 503) after the grace."""


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """An app serving ``settings``' detector; models load and warm up at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = (
            services if services is not None else await asyncio.to_thread(build_services, settings)
        )
        await asyncio.to_thread(running.start)
        app.state.services = running
        try:
            yield
        finally:
            if running.llm is not None:
                await running.llm.close()
            await asyncio.to_thread(running.stop)

    app = FastAPI(title="hearthwatch", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyReadDeadline, timeout_s=settings.body_read_timeout_s)
    install_error_handlers(app)
    app.include_router(detect.router)
    app.include_router(v2.router)
    app.include_router(repository.router)
    app.include_router(enrich.router)
    app.include_router(system.router)
    app.include_router(llm.router)
    openapi.install(app)
    return app


def drain_services(app: FastAPI) -> None:
    """Answer 503 to every request waiting in the app's services' queues, if they started."""
    services = getattr(app.state, "services", None)
    if services is not None:
        services.drain()


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
