"""The FastAPI application: routers, error handlers and the services' lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hearthwatch import __version__
from hearthwatch.api import detect, enrich, llm, repository, system, v2
from hearthwatch.api.errors import install_error_handlers
from hearthwatch.api.services import Services, build_services
from hearthwatch.config import Settings


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
    install_error_handlers(app)
    app.include_router(detect.router)
    app.include_router(v2.router)
    app.include_router(repository.router)
    app.include_router(enrich.router)
    app.include_router(system.router)
    app.include_router(llm.router)
    return app
