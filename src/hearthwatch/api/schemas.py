"""Typed request and response shapes of the HTTP routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
