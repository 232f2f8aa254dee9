"""``/api/cameras``: cameras listed, created, replaced and deleted; a camera's status; frames
pushed to a ``push`` camera. Served only while the camera pipeline is enabled.

Camera bodies are JSON objects of a camera's fields (the cameras file's form, plus ``id``);
answers carry the camera with any stream password shown as ``***``. Everything here runs on
the event loop; bodies are parsed off it when large.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from hearthwatch.api.body import read_body
from hearthwatch.api.errors import ApiError
from hearthwatch.api.json_body import parse_json_off_loop
from hearthwatch.api.state import services_of

if TYPE_CHECKING:
    from hearthwatch.security.pipeline import CameraView, Pipeline

router = APIRouter(tags=["cameras"])

MAX_CAMERA_BODY_BYTES = 256 * 1024
CameraId = Annotated[
    str, Path(pattern=r"^[a-z0-9_-]{1,64}$", description="The camera's id (a slug).")
]
CapturedAt = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=32_503_680_000.0,
        description="When the frame was captured, epoch seconds; default: when it arrives. "
        "A time ahead of the server's clock is taken as now.",
    ),
]


def pipeline_of(request: Request) -> Pipeline:
    pipeline = services_of(request).pipeline
    if pipeline is None:  # the routes are served only with the pipeline on
        raise ApiError(404, "the camera pipeline is disabled (PIPELINE_ENABLED=false)")
    return pipeline


def camera_json(view: CameraView) -> dict[str, Any]:
    """A camera as the API shows it: its fields, a stream's password hidden, and its origin."""
    from hearthwatch.security.sources.config import redacted_url

    fields = view.config.model_dump(mode="json")
    source = fields["source"]
    if "url" in source:
        source["url"] = redacted_url(source["url"])
    return {**fields, "origin": view.origin}


async def _camera_fields(request: Request) -> dict[str, Any]:
    body = await read_body(request, MAX_CAMERA_BODY_BYTES)
    fields = await parse_json_off_loop(body, "camera")
    if not isinstance(fields, dict):
        raise ApiError(400, "a camera is a JSON object of its fields")
    return fields


@router.get("/api/cameras", summary="Every camera, with its origin (file or api).")
async def list_cameras(request: Request) -> JSONResponse:
    views = pipeline_of(request).list_cameras()
    return JSONResponse({"cameras": [camera_json(v) for v in views]})


@router.post("/api/cameras", status_code=201, summary="Create a camera (kept in the database).")
async def create_camera(request: Request) -> JSONResponse:
    view = await pipeline_of(request).add_camera(await _camera_fields(request))
    return JSONResponse(camera_json(view), status_code=201)


@router.get("/api/cameras/{camera_id}", summary="One camera.")
async def get_camera(request: Request, camera_id: CameraId) -> JSONResponse:
    runtime = pipeline_of(request).camera(camera_id)
    from hearthwatch.security.pipeline import CameraView

    return JSONResponse(camera_json(CameraView(runtime.config, runtime.origin)))


@router.put(
    "/api/cameras/{camera_id}",
    summary="Replace a camera created through the API (cameras file ones: edit the file).",
)
async def replace_camera(request: Request, camera_id: CameraId) -> JSONResponse:
    fields = await _camera_fields(request)
    if fields.get("id", camera_id) != camera_id:
        raise ApiError(400, "id: a camera's id cannot change; create another camera")
    view = await pipeline_of(request).replace_camera(camera_id, fields)
    return JSONResponse(camera_json(view))


@router.delete("/api/cameras/{camera_id}", status_code=204, summary="Delete an API camera.")
async def delete_camera(request: Request, camera_id: CameraId) -> Response:
    await pipeline_of(request).remove_camera(camera_id)
    return Response(status_code=204)


@router.get(
    "/api/cameras/{camera_id}/status",
    summary="Frames in and detected per second, motion share, drops, reconnects, health.",
)
async def camera_status(request: Request, camera_id: CameraId) -> JSONResponse:
    return JSONResponse(pipeline_of(request).status(camera_id))


@router.post(
    "/api/cameras/{camera_id}/frames",
    status_code=202,
    summary="Push one frame (a JPEG or PNG body) to a push camera; durable once answered.",
)
async def push_frame(
    request: Request, camera_id: CameraId, captured_at: CapturedAt = None
) -> JSONResponse:
    pipeline = pipeline_of(request)
    pipeline.camera(camera_id)  # an unknown camera is a 404 before its body is read
    if captured_at is not None and not math.isfinite(captured_at):
        raise ApiError(400, "captured_at must be a finite number of epoch seconds")
    data = await read_body(request, services_of(request).settings.max_body_bytes)
    if not data:
        raise ApiError(400, "the body is empty: send the frame's JPEG or PNG bytes")
    ack = await pipeline.push_frame(camera_id, data, captured_at)
    body = {
        "camera": ack.camera_id,
        "seq": ack.seq,
        "captured_at": ack.captured_at,
        "deduplicated": ack.deduplicated,
    }
    return JSONResponse(body, status_code=200 if ack.deduplicated else 202)
