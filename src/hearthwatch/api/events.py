"""``/api/events``: events listed (filtered, newest first, cursor pages), one event with what
it rests on (window, tracks, detections with their ids, enrichments, reasons), and its
snapshot and clip. Served only while the camera pipeline is enabled.

Store reads run on worker threads; files are streamed from the data directory by the
response, off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from hearthwatch.api.cameras import pipeline_of
from hearthwatch.api.errors import ApiError
from hearthwatch.security.evidence import LEVELS

router = APIRouter(tags=["events"])

EventId = Annotated[str, Path(max_length=64, description="The event's id.")]


def _names(value: str | None, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    if value is None:
        return []
    names = [part.strip() for part in value.split(",") if part.strip()]
    if allowed is not None:
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise ApiError(
                400, f"{what}: unknown {', '.join(unknown)}; one of {', '.join(allowed)}"
            )
    return names


def event_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "camera": row.camera_id,
        "window_id": row.window_id,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "score": row.score,
        "level": row.level,
        "reasons": [{"text": r.text, "detection_ids": list(r.detection_ids)} for r in row.reasons],
        "analyser": row.analyser,
        "summary": row.summary,
        "labels": list(row.labels),
        "zones": list(row.zones),
        "created_at": row.created_at,
        "has_snapshot": row.snapshot_path is not None,
        "has_clip": row.clip_path is not None,
        "provisional": row.provisional,
        "recommended_action": row.recommended_action,
        "details": row.details,
    }


@router.get("/api/events", summary="Events, newest first, filtered; `next_cursor` pages on.")
async def list_events(
    request: Request,
    camera: Annotated[str | None, Query(description="Camera ids, comma-separated.")] = None,
    level: Annotated[str | None, Query(description="Levels, comma-separated.")] = None,
    min_score: Annotated[float | None, Query(ge=0.0, le=100.0)] = None,
    max_score: Annotated[float | None, Query(ge=0.0, le=100.0)] = None,
    after: Annotated[
        float | None, Query(ge=0.0, description="Started at or after (epoch s).")
    ] = None,
    before: Annotated[float | None, Query(ge=0.0, description="Started before (epoch s).")] = None,
    stored_after: Annotated[
        float | None,
        Query(
            ge=0.0,
            description="Stored after (epoch s, the server's clock): events whose `created_at` "
            "is greater than this, whenever they started. An event is stored when its window "
            "closes (or when it is analysed after a restart), which may be long after it "
            "started: to follow new events, pass the largest `created_at` seen so far, less a "
            "margin (events written at nearly the same time may be stored a little out of "
            "order; `hearthwatch events tail` uses a minute), and skip the ids already seen.",
        ),
    ] = None,
    label: Annotated[str | None, Query(max_length=64, description="An object class seen.")] = None,
    kind: Annotated[str | None, Query(pattern="^(window|health)$")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    pipeline = pipeline_of(request)
    rows, next_cursor = await asyncio.to_thread(
        pipeline.store.list_events,
        cameras=_names(camera, "camera") or None,
        levels=_names(level, "level", LEVELS) or None,  # type: ignore[arg-type]
        min_score=min_score,
        max_score=max_score,
        after=after,
        before=before,
        stored_after=stored_after,
        label=label,
        kind=kind,  # type: ignore[arg-type]
        cursor=cursor,
        limit=limit,
    )
    return JSONResponse({"events": [event_json(r) for r in rows], "next_cursor": next_cursor})


async def _detail(request: Request, event_id: str) -> Any:
    from hearthwatch.security.errors import UnknownEventError

    detail = await asyncio.to_thread(pipeline_of(request).store.get_event, event_id)
    if detail is None:
        raise UnknownEventError(event_id)
    return detail


@router.get("/api/events/{event_id}", summary="One event with its window's evidence.")
async def get_event(request: Request, event_id: EventId) -> JSONResponse:
    detail = await _detail(request, event_id)
    body = {**event_json(detail.event), "camera_name": detail.camera_name}
    window = detail.window
    if window is not None:
        body["window"] = {
            "id": window.window.id,
            "opened_at": window.window.opened_at,
            "closed_at": window.window.closed_at,
            "status": window.window.status,
            "linked_window_ids": list(window.linked_window_ids),
        }
        body["tracks"] = [
            {
                "id": t.key,
                "label": t.label,
                "first_seen": t.first_seen,
                "last_seen": t.last_seen,
                "zones_entered": list(t.zones_entered),
                "stationary": t.stationary,
                "best_detection_id": t.best_detection_id,
            }
            for t in window.tracks
        ]
        body["detections"] = [
            {
                "id": d.id,
                "frame_id": d.frame_id,
                "track_id": d.track_key,
                "label": d.label,
                "score": d.score,
                "box": list(d.box),
                "zones": list(d.zones),
                "captured_at": d.captured_at,
            }
            for d in window.detections
        ]
    body["enrichments"] = [
        {
            "track_id": e.track_key,
            "detection_id": e.detection_id,
            "model": e.model,
            "result": e.result,
            "embedding_size": None if e.embedding is None else int(e.embedding.shape[0]),
            "created_at": e.created_at,
        }
        for e in detail.enrichments
    ]
    return JSONResponse(body)


async def _media(request: Request, event_id: str, kind: str, media_type: str) -> FileResponse:
    detail = await _detail(request, event_id)
    relative = getattr(detail.event, f"{kind}_path")
    if relative is None:
        raise ApiError(404, f"event '{event_id}' has no {kind}")
    data_dir = pipeline_of(request).data_dir.resolve()
    path = (data_dir / relative).resolve()
    if not path.is_relative_to(data_dir) or not await asyncio.to_thread(path.is_file):
        raise ApiError(404, f"event '{event_id}' has no {kind} any more")
    return FileResponse(path, media_type=media_type)


@router.get(
    "/api/events/{event_id}/snapshot.jpg",
    response_class=FileResponse,
    summary="The event's best frame with its detections drawn.",
)
async def event_snapshot(request: Request, event_id: EventId) -> FileResponse:
    return await _media(request, event_id, "snapshot", "image/jpeg")


@router.get(
    "/api/events/{event_id}/clip.mp4",
    response_class=FileResponse,
    summary="The event's clip: its window's frames with detections, as H.264 MP4.",
)
async def event_clip(request: Request, event_id: EventId) -> FileResponse:
    return await _media(request, event_id, "clip", "video/mp4")
