"""The risk routes: the arm mode (``/api/arm``), people's feedback on events
(``/api/events/{id}/feedback``) and its export as labelled scenarios for the risk benchmark
(``/api/feedback/export``), the risk rules in force (``/api/risk/rules``) and the incidents
re-identification found (``/api/incidents``).

Store work runs on worker threads; bodies are small JSON objects checked before any work.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from hearthwatch.api.body import read_body
from hearthwatch.api.camera_schemas import ArmMode, FeedbackIn
from hearthwatch.api.cameras import pipeline_of
from hearthwatch.api.errors import ApiError
from hearthwatch.api.events import EventId
from hearthwatch.api.json_body import parse_json_off_loop

router = APIRouter(tags=["risk"])

MAX_BODY_BYTES = 16 * 1024
MAX_EXPORTED = 1_000


async def _body(request: Request, model: type[BaseModel], what: str) -> Any:
    raw = await read_body(request, MAX_BODY_BYTES)
    fields = await parse_json_off_loop(raw, what)
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ApiError(400, f"invalid {what}: {problems}") from None


@router.get("/api/arm", summary="The arm mode: home, away or night.")
async def get_arm(request: Request) -> JSONResponse:
    return JSONResponse({"mode": pipeline_of(request).arm_mode})


@router.put("/api/arm", summary="Switch the arm mode (kept across restarts).")
async def put_arm(request: Request) -> JSONResponse:
    body: ArmMode = await _body(request, ArmMode, "arm mode")
    pipeline = pipeline_of(request)
    await pipeline.set_arm_mode(body.mode)
    return JSONResponse({"mode": pipeline.arm_mode})


@router.get("/api/risk/rules", summary="The risk rules in force (from the settings).")
async def get_rules(request: Request) -> JSONResponse:
    rules = pipeline_of(request).settings.parsed_risk_rules()
    return JSONResponse(rules.model_dump(mode="json"))


def _feedback_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "verdict": row.verdict,
        "note": row.note,
        "created_at": row.created_at,
    }


@router.post(
    "/api/events/{event_id}/feedback",
    status_code=201,
    summary="Mark an event a false alarm or confirm it.",
)
async def add_feedback(request: Request, event_id: EventId) -> JSONResponse:
    body: FeedbackIn = await _body(request, FeedbackIn, "feedback")
    feedback = _feedback_store(request)
    row = await asyncio.to_thread(
        feedback.add, event_id, body.verdict, body.note, created_at=time.time()
    )
    return JSONResponse(_feedback_json(row), status_code=201)


@router.get("/api/events/{event_id}/feedback", summary="The feedback given on an event.")
async def list_feedback(request: Request, event_id: EventId) -> JSONResponse:
    rows = await asyncio.to_thread(_feedback_store(request).list, event_id=event_id)
    return JSONResponse({"feedback": [_feedback_json(r) for r in rows]})


@router.get(
    "/api/feedback/export",
    summary="Events people gave feedback on, as labelled scenarios for bench/risk_eval.py.",
)
async def export_feedback(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORTED)] = MAX_EXPORTED,
) -> JSONResponse:
    from hearthwatch.security.risk_quality.feedback_scenarios import exported_scenarios

    return JSONResponse(await exported_scenarios(pipeline_of(request), limit))


def _feedback_store(request: Request) -> Any:
    from hearthwatch.security.errors import PipelineClosedError

    feedback = pipeline_of(request).feedback
    if feedback is None:
        raise PipelineClosedError()
    return feedback


def _incident_json(row: Any) -> dict[str, Any]:
    entries = [
        {
            "event_id": e.event_id,
            "camera": e.camera_id,
            "camera_name": e.camera_name,
            "started_at": e.started_at,
            "track_id": e.track_id,
            "similarity": e.similarity,
        }
        for e in row.events
    ]
    return {
        "id": row.id,
        "label": row.label,
        "descriptor": row.descriptor,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "summary": incident_summary(row),
        "events": entries,
    }


def incident_summary(row: Any) -> str:
    """ "same person: front_door 14:02 → back_door 14:07" (UTC times: the cameras' zones may
    differ)."""
    steps = " → ".join(
        f"{e.camera_name} {time.strftime('%H:%M', time.gmtime(e.started_at))}" for e in row.events
    )
    return f"same {row.label}: {steps}"


@router.get("/api/incidents", summary="Events linked by the same person or vehicle.")
async def list_incidents(
    request: Request,
    event: Annotated[str | None, Query(max_length=64, description="Only this event's.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    from hearthwatch.security.errors import PipelineClosedError

    incidents = pipeline_of(request).incidents
    if incidents is None:
        raise PipelineClosedError()
    rows = await asyncio.to_thread(incidents.list, limit=limit, event_id=event)
    return JSONResponse({"incidents": [_incident_json(r) for r in rows]})
