"""``POST /detect`` (one image) and ``POST /detect/batch`` (several) for people and scripts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from hearthwatch.api.body import read_images
from hearthwatch.api.detection_reply import Reported, reported
from hearthwatch.api.errors import ApiError
from hearthwatch.api.schemas import DetectBatchResponse, DetectResponse
from hearthwatch.api.state import served_model, services_of
from hearthwatch.runtime.imaging.device_decode import Image
from hearthwatch.runtime.serving.served_model import InferenceOutcome, ServedModel

router = APIRouter(tags=["detection"])

Confidence = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="Minimum score; default from settings.")
]
AllClasses = Annotated[
    bool, Query(description="Return every class, not only the security classes.")
]
TimeoutMs = Annotated[float | None, Query(gt=0.0, description="Deadline for this request.")]
ModelName = Annotated[str | None, Query(description="Served model; default the detector.")]


def image_result(
    reply: Reported, image: Image, outcome: InferenceOutcome, decode_s: float, total_s: float
) -> dict[str, Any]:
    """One image's entry of a /detect reply."""
    kept = reply.detections
    detections = [
        {
            "class_name": label,
            "class_id": int(cid),
            "confidence": round(float(score), 4),
            "bbox": dict(
                zip(("x1", "y1", "x2", "y2"), (round(float(v), 1) for v in box), strict=True)
            ),
        }
        for box, score, cid, label in zip(
            kept.boxes, kept.scores, kept.class_ids.tolist(), reply.labels, strict=True
        )
    ]
    return {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "detections": detections,
        "batch_size": outcome.batch_size,
        "timings_ms": {
            "decode_ms": round(decode_s * 1000, 3),
            "queue_ms": round(outcome.queue_s * 1000, 3),
            "inference_ms": round(outcome.compute_s * 1000, 3),
            "total_ms": round(total_s * 1000, 3),
        },
    }


@dataclass(frozen=True)
class DetectQuery:
    """The query parameters both detect routes take."""

    confidence: float | None = None
    all_classes: bool = False
    timeout_ms: float | None = None
    model: str | None = None


async def detect_query(
    confidence: Confidence = None,
    all_classes: AllClasses = False,
    timeout_ms: TimeoutMs = None,
    model: ModelName = None,
) -> DetectQuery:
    """A coroutine, so that FastAPI resolves it on the event loop, not on a worker thread."""
    return DetectQuery(confidence, all_classes, timeout_ms, model)


async def _detect(
    request: Request, query: DetectQuery, field: str, route: str
) -> tuple[ServedModel, list[dict[str, Any]], float]:
    """Read, decode and detect every image of the request, each queued on its own."""
    started = time.monotonic()
    services = services_of(request)
    served = served_model(services, query.model or services.settings.model_name)
    settings = services.settings
    payloads = await read_images(request, settings.max_body_bytes, field)
    single = route == "detect"
    if single and len(payloads) != 1:
        raise ApiError(400, f"/detect takes one image, got {len(payloads)}; use /detect/batch")
    images = await asyncio.gather(
        *(
            served.intake(data, services.decoder, None if single else f"{field}[{i}]")
            for i, data in enumerate(payloads)
        )
    )
    decode_s = time.monotonic() - started
    timeout_s = (query.timeout_ms or settings.request_timeout_ms) / 1000
    outcomes = await served.infer_many(images, timeout_s)
    total = time.monotonic() - started
    threshold = (
        settings.detection_confidence_threshold if query.confidence is None else query.confidence
    )
    results = [
        image_result(
            reported(
                services, served, out.detections, threshold=threshold, all_classes=query.all_classes
            ),
            img,
            out,
            decode_s,
            total,
        )
        for img, out in zip(images, outcomes, strict=True)
    ]
    services.metrics.request_duration.labels(served.name, route).observe(total)
    return served, results, total


@router.post(
    "/detect",
    response_model=None,
    responses={200: {"model": DetectResponse}},
    summary="Detect objects in one image (raw body or a multipart file).",
)
async def detect(
    request: Request, query: Annotated[DetectQuery, Depends(detect_query)]
) -> JSONResponse:
    served, results, _ = await _detect(request, query, "image", "detect")
    return JSONResponse({**results[0], "model": served.name})


@router.post(
    "/detect/batch",
    response_model=None,
    responses={200: {"model": DetectBatchResponse}},
    summary="Detect objects in several images (multipart files, e.g. -F images=@a.jpg).",
)
async def detect_batch(
    request: Request, query: Annotated[DetectQuery, Depends(detect_query)]
) -> JSONResponse:
    served, results, total = await _detect(request, query, "images", "detect_batch")
    return JSONResponse(
        {"model": served.name, "results": results, "total_ms": round(total * 1000, 3)}
    )
