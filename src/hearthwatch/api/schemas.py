"""Typed request and response shapes of the HTTP routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hearthwatch.runtime.zoo import ZooStats


class ErrorResponse(BaseModel):
    error: str


class BoundingBox(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    class_name: str
    class_id: int
    confidence: float = Field(ge=0.0, le=1.0)
    bbox: BoundingBox


class ImageSize(BaseModel):
    width: int
    height: int


class Timings(BaseModel):
    decode_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float


class ImageResult(BaseModel):
    image: ImageSize
    detections: list[Detection]
    batch_size: int = Field(description="Requests in the model execution this image ran in.")
    timings_ms: Timings


class DetectResponse(ImageResult):
    model: str


class DetectBatchResponse(BaseModel):
    model: str
    results: list[ImageResult]
    total_ms: float


class GpuHistoryResponse(BaseModel):
    minutes: float
    interval_s: float
    samples: list[dict[str, Any]]


class EnrichDetection(BaseModel):
    """A detection to enrich; the ``/detect`` response's detections fit as they are."""

    class_name: str = Field(min_length=1)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    bbox: BoundingBox


class EnrichRequest(BaseModel):
    image: str = Field(min_length=1, description="The frame as base64 (JPEG, PNG, BMP, WebP).")
    detections: list[EnrichDetection] = Field(default_factory=list, max_length=1000)
    models: list[str] | None = Field(
        None, description="Run only these models (still only where triggered)."
    )


class EnrichedDetection(EnrichDetection):
    enrichments: dict[str, Any] = Field(description="Each triggered model's result, by model.")


class EnrichResponse(BaseModel):
    image: ImageSize
    detections: list[EnrichedDetection]
    frame: dict[str, Any] = Field(description="Frame-wide results (threats), by model.")
    models_run: list[str]
    unavailable: dict[str, str] = Field(description="Triggered models that cannot load here.")
    total_ms: float


class ZooModelRow(ZooStats):
    triggers: list[str]
    state: str = Field(description="unloaded, loading, loaded, on_host or unavailable.")
    reason: str | None = None
    batches: int = Field(0, description="Model executions.")
    batched_items: int = Field(0, description="Crops or frames run; / batches = mean batch.")


class ZooResponse(BaseModel):
    device: str
    budget_bytes: int
    resident_bytes: int
    models: list[ZooModelRow]


class RepositoryModel(BaseModel):
    name: str
    version: str = "1"
    state: str = Field(description="READY, UNAVAILABLE or LOADING, as Triton reports them.")
    reason: str = ""
