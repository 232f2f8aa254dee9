"""``POST /enrich`` (an image and its detections → each triggered model's results) and the
model zoo's table at ``/api/zoo``, with pin and unpin."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from hearthwatch.api.body import read_body
from hearthwatch.api.errors import ApiError
from hearthwatch.api.json_body import parse_json_off_loop
from hearthwatch.api.schemas import (
    DetectorRow,
    EnrichRequest,
    EnrichResponse,
    ZooModelRow,
    ZooResponse,
)
from hearthwatch.api.state import Services, services_of
from hearthwatch.runtime.accel.device import device_name
from hearthwatch.runtime.detection.settings import SourceConfig
from hearthwatch.runtime.enrichment.service import EnrichmentService, InputDetection
from hearthwatch.weights.packaged import WeightsOrigin

MAX_ENRICH_VALUES = 32 * 1000  # 1000 detections of a dozen values each, and the rest; base64
# image text holds no commas or brackets, so an image of any size fits

router = APIRouter(tags=["enrichment"])


def enrichment_of(services: Services) -> EnrichmentService:
    if services.enrichment is None:
        raise ApiError(404, "the enrichment service is off (ENRICH_ENABLED=false)")
    return services.enrichment


async def _parse(body: bytes) -> EnrichRequest:
    """The request, parsed off the loop when large; numbers must be finite."""
    value = await parse_json_off_loop(body, max_values=MAX_ENRICH_VALUES)
    try:
        return EnrichRequest.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(400, f"invalid request: {problems}") from None


@router.post("/enrich", response_model=EnrichResponse)
async def enrich(request: Request) -> dict[str, Any]:
    started = time.monotonic()
    services = services_of(request)
    service = enrichment_of(services)
    body = await _parse(await read_body(request, services.settings.max_body_bytes))
    try:
        data = await asyncio.to_thread(base64.b64decode, body.image, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image: not valid base64") from None
    image = await services.decoder.decode(data, "image")
    detections = [
        InputDetection(d.class_name, (d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2))
        for d in body.detections
    ]
    timeout_s = services.settings.enrich_timeout_ms / 1000
    result = await service.enrich(image, detections, timeout_s, body.models)
    return {
        "image": {"width": image.shape[1], "height": image.shape[0]},
        "detections": [
            {**d.model_dump(), "enrichments": found}
            for d, found in zip(body.detections, result.detections, strict=True)
        ],
        "frame": result.frame,
        "models_run": result.models_run,
        "unavailable": result.unavailable,
        "total_ms": round((time.monotonic() - started) * 1000, 2),
    }


def _origins(service: EnrichmentService, detector: SourceConfig) -> dict[str | None, WeightsOrigin]:
    """Each zoo model's weights' origin, licence and size, and the detector's (keyed None).
    File-system reads, a first one hashing a file: off the loop."""
    found: dict[str | None, WeightsOrigin] = {c.name: c.source.origin() for c in service.catalog}
    found[None] = detector.origin()
    return found


@router.get("/api/zoo", response_model=ZooResponse)
async def zoo_table(request: Request) -> dict[str, Any]:
    services = services_of(request)
    service = enrichment_of(services)
    stats = {row.name: row for row in service.zoo.stats()}
    settings = services.settings
    origins = await asyncio.to_thread(_origins, service, settings.detector)
    served = services.models[settings.model_name]
    detector = DetectorRow(
        name=settings.model_name,
        source=settings.detector.type,
        platform=served.detector.platform,
        **origins[None].model_dump(),
    )
    rows: list[ZooModelRow] = []
    for config in service.catalog:
        common = {
            "name": config.name,
            "priority": config.priority,
            "triggers": config.triggers,
            "source": config.source.type,
            **origins[config.name].model_dump(),
        }
        row = stats.get(config.name)
        if row is None:
            reason = service.unavailable[config.name]
            rows.append(ZooModelRow(**common, state="unavailable", reason=reason))
        else:
            counts = service.models[config.name].counts
            batching = {"batches": counts.batches, "batched_items": counts.items}
            rows.append(ZooModelRow(**{**row.model_dump(), **common, **batching}))
    return {
        "device": device_name(services.device),
        "budget_bytes": service.zoo.budget_bytes,
        "resident_bytes": service.zoo.resident_bytes,
        "detector": detector,
        "models": rows,
    }


def zoo_model(request: Request, name: str) -> EnrichmentService:
    service = enrichment_of(services_of(request))
    if name in service.unavailable:
        raise ApiError(409, f"model {name!r} is unavailable: {service.unavailable[name]}")
    if name not in service.zoo:
        known = ", ".join(m.name for m in service.catalog)
        raise ApiError(404, f"unknown zoo model {name!r}; known: {known}")
    return service


@router.post("/api/zoo/{name}/pin")
async def pin(request: Request, name: str) -> dict[str, Any]:
    """Pin the model and load it: it stays on the device until unpinned. A load that fails
    (no room in time, out of memory) leaves the pin as it was, and says why."""
    zoo = zoo_model(request, name).zoo
    await zoo.pin_loaded(name, services_of(request).settings.enrich_timeout_ms / 1000)
    return {"name": name, "pinned": True}


@router.post("/api/zoo/{name}/unpin")
async def unpin(request: Request, name: str) -> dict[str, Any]:
    zoo_model(request, name).zoo.pin(name, False)
    return {"name": name, "pinned": False}
