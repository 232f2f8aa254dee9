"""The risk routes: the arm mode (``/api/arm``), people's feedback on events
(``/api/events/{id}/feedback``) and its export as labelled scenarios for the risk benchmark
(``/api/feedback/export``), and the risk rules in force (``/api/risk/rules``).

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
