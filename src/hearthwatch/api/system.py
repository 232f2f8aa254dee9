"""System routes: Prometheus ``/metrics``, GPU telemetry now and over time, and the
WebSocket ``/ws/system`` that pushes each sample as it is taken."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hearthwatch.api.errors import ApiError
from hearthwatch.api.schemas import GpuHistoryResponse
from hearthwatch.api.state import services_of

router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(services_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/system/gpu")
async def gpu(request: Request) -> dict[str, Any]:
    return services_of(request).telemetry.latest().as_dict()


@router.get("/api/system/gpu/history", response_model=GpuHistoryResponse)
async def gpu_history(
    request: Request,
    minutes: Annotated[float, Query(gt=0, description="How far back, in minutes.")] = 5,
) -> dict[str, Any]:
    telemetry = services_of(request).telemetry
    if minutes > telemetry.history_minutes:
        raise ApiError(
            400, f"minutes={minutes:g} is over the {telemetry.history_minutes} minutes kept"
        )
    return {
        "minutes": minutes,
        "interval_s": telemetry.interval_s,
        "samples": [s.as_dict() for s in telemetry.history(minutes)],
    }


@router.websocket("/ws/system")
async def system_socket(websocket: WebSocket) -> None:
    telemetry = websocket.app.state.services.telemetry
    await websocket.accept()
    last = None
    try:
        while True:
            sample = telemetry.latest()
            if sample is not last:
                await websocket.send_json(sample.as_dict())
                last = sample
            await asyncio.sleep(min(0.1, telemetry.interval_s / 4))
    except (WebSocketDisconnect, RuntimeError):
        return
