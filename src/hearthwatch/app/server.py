"""The FastAPI application and the HTTP server: :func:`create_app` wires the api's routers,
error handlers and body deadline to the services :func:`~hearthwatch.app.services.build_services`
builds (at start-up, in the app's lifespan), and :func:`serve` runs it under uvicorn with a
bounded shutdown (:mod:`hearthwatch.api.drain`).

The app and its lifespan are event-loop-confined; building, starting and stopping the services
run on a worker thread so the loop never waits on model loads.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from hearthwatch import __version__
from hearthwatch.api import detect, enrich, llm, openapi, repository, system, v2
from hearthwatch.api.body import BodyReadDeadline
from hearthwatch.api.drain import CANCEL_WAIT_S, DrainingServer, RequestDrain
from hearthwatch.api.errors import install_error_handlers
from hearthwatch.api.state import Services as RouterServices
from hearthwatch.app.services import Services, build_pipeline, build_services
from hearthwatch.config import Settings


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """An app serving ``settings``' detector; models load and warm up at start-up (or
    ``services``, built already, start then)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = (
            services if services is not None else await asyncio.to_thread(build_services, settings)
        )
        await asyncio.to_thread(running.start)
        try:
            if settings.pipeline_enabled:
                running.pipeline = build_pipeline(running)
                await running.pipeline.start()
            state: RouterServices = running  # what the routers read (checked here, by mypy)
            app.state.services = state
            yield
        finally:
            if running.pipeline is not None:
                await running.pipeline.stop()
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
    if settings.pipeline_enabled:
        from hearthwatch.api import cameras, events, risk

        app.include_router(cameras.router)
        app.include_router(events.router)
        app.include_router(risk.router)
    openapi.install(app)
    return app


def drain_services(app: FastAPI) -> None:
    """Answer 503 to every request waiting in the app's services' queues, if they started."""
    services = getattr(app.state, "services", None)
    if services is not None:
        services.drain()


def serve(settings: Settings) -> None:
    """Serve ``settings`` until SIGTERM or SIGINT, then drain for at most
    ``shutdown_grace_s`` and stop. A bad cameras file stops it first, with an error naming the
    camera and the field."""
    if settings.pipeline_enabled:
        # Alembic announces each of its plugins at INFO when imported: a line each, every start
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        from hearthwatch.security.pipeline import check_cameras_file

        check_cameras_file(settings)
    served = create_app(settings)
    app = RequestDrain(served, on_drain=lambda: drain_services(served))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=False,
        # after the drain, what is left (WebSockets) gets this long before it is cancelled
        timeout_graceful_shutdown=CANCEL_WAIT_S,
    )
    DrainingServer(config, app, settings.shutdown_grace_s).run()
