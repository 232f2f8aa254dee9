"""Open Inference Protocol v2 (KServe / Triton HTTP), so stock clients such as ``tritonclient``
work unchanged: health, server and model metadata, Triton-style model configuration,
statistics and inference with JSON or binary tensors.

A detector takes ``IMAGE`` (BYTES, one encoded JPEG/PNG per batch item; base64 strings in
JSON) or ``IMAGE_RGB`` (UINT8, [batch, height, width, 3]) and returns ``num_detections``,
``detection_boxes``, ``detection_scores``, ``detection_classes`` and ``detection_labels``,
padded to the most detections of any image in the request. Request parameters:
``confidence_threshold``, ``all_classes``, ``timeout`` (µs, at most an hour).

Every model the repository index lists answers here too: the model zoo's enrichment models with
their own signature (:mod:`hearthwatch.api.v2_zoo`). Request bodies are parsed by
:mod:`hearthwatch.api.v2_codec`, off the event loop when large. Each model route is registered
twice: unversioned (no version parameter) and under ``/versions/{version}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearthwatch import __version__
from hearthwatch.api.body import read_body
from hearthwatch.api.detection_reply import reported
from hearthwatch.api.errors import ApiError
from hearthwatch.api.state import Services, services_of
from hearthwatch.api.v2_codec import (
    InferRequest,
    InputCheck,
    InputTensor,
    OutputTensor,
    bad_request,
    check_encoded_images,
    check_signature,
    encode_infer_response,
    only_input,
    read_infer_request,
    request_timeout_s,
    scheduling_config,
    validate_requested_outputs,
)
from hearthwatch.api.v2_zoo import (
    ZOO_VERSION,
    not_ready_reason,
    zoo_config,
    zoo_infer,
    zoo_input_check,
    zoo_metadata,
    zoo_model_config,
    zoo_stats,
)
from hearthwatch.runtime.enrichment.catalog import ZooModelConfig
from hearthwatch.runtime.imaging.device_decode import Image
from hearthwatch.runtime.serving.served_model import InferenceOutcome, ServedModel

NOT_READY_RETRY_S = "1"  # readiness is polled; a not-ready answer says when to look again

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

EXTENSIONS = [
    "binary_tensor_data", "statistics", "model_configuration", "schedule_policy",
    "model_repository",
]  # fmt: skip
IMAGE_INPUTS = {"IMAGE": ("BYTES", [-1, 1]), "IMAGE_RGB": ("UINT8", [-1, -1, -1, 3])}
OUTPUTS = {
    "num_detections": ("INT32", [-1, 1]),
    "detection_boxes": ("FP32", [-1, -1, 4]),
    "detection_scores": ("FP32", [-1, -1]),
    "detection_classes": ("INT32", [-1, -1]),
    "detection_labels": ("BYTES", [-1, -1]),
}
TRITON_TYPES = {
    "BYTES": "TYPE_STRING",
    "UINT8": "TYPE_UINT8",
    "INT32": "TYPE_INT32",
    "FP32": "TYPE_FP32",
}


def _model(services: Services, name: str, version: str | None) -> ServedModel | ZooModelConfig:
    """The detector or zoo model ``name``, if it has ``version`` (any version when None)."""
    found: ServedModel | ZooModelConfig | None = services.models.get(name)
    if found is None:
        found = zoo_config(services, name)
    if found is None:
        zoo = [c.name for c in services.enrichment.catalog] if services.enrichment else []
        known = ", ".join([*sorted(services.models), *zoo]) or "none"
        raise ApiError(404, f"unknown model '{name}'; served models: {known}")
    has = found.version if isinstance(found, ServedModel) else ZOO_VERSION
    if version is not None and version != has:
        raise ApiError(404, f"model '{name}' has no version '{version}'; it has '{has}'")
    return found


def _register(path: str, handler: Callable[..., Awaitable[Any]], method: str) -> None:
    """``handler`` at the unversioned and the versioned form of the model route ``path``; the
    unversioned form has no version parameter."""

    async def latest(request: Request, name: str) -> Any:
        return await handler(request, name)

    latest.__name__ = f"{handler.__name__}_latest"
    latest.__annotations__["return"] = handler.__annotations__["return"]
    router.add_api_route(f"/models/{{name}}{path}", latest, methods=[method])
    router.add_api_route(f"/models/{{name}}/versions/{{version}}{path}", handler, methods=[method])


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return {"name": "hearthwatch", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    services = services_of(request)
    not_ready = [n for n, m in services.models.items() if not m.ready]
    if not_ready:
        message = f"models not ready: {', '.join(not_ready)}"
        return JSONResponse({"error": message}, 503, headers={"Retry-After": NOT_READY_RETRY_S})
    return JSONResponse({"ready": True})


async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    services = services_of(request)
    model = _model(services, name, version)
    if isinstance(model, ServedModel):
        reason = None if model.ready else "starting"
    else:
        reason = not_ready_reason(services, model)
    if reason is not None:
        message = f"model '{name}' is not ready: {reason}"
        return JSONResponse({"error": message}, 503, headers={"Retry-After": NOT_READY_RETRY_S})
    return JSONResponse({"name": name, "ready": True})


async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    model = _model(services_of(request), name, version)
    if not isinstance(model, ServedModel):
        return zoo_metadata(model)

    def tensors(specs: dict[str, tuple[str, list[int]]]) -> list[dict[str, Any]]:
        return [{"name": n, "datatype": d, "shape": s} for n, (d, s) in specs.items()]

    return {
        "name": model.name,
        "versions": [model.version],
        "platform": model.detector.platform,
        "inputs": tensors(IMAGE_INPUTS),
        "outputs": tensors(OUTPUTS),
    }


async def model_config(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    services = services_of(request)
    model = _model(services, name, version)
    if not isinstance(model, ServedModel):
        return zoo_model_config(services, model)
    batching = model.batching
    return {
        "name": model.name,
        "platform": model.detector.platform,
        "backend": "hearthwatch",
        "max_batch_size": batching.max_batch_size,
        "input": [
            {"name": n, "data_type": TRITON_TYPES[d], "dims": s[1:], "optional": True}
            for n, (d, s) in IMAGE_INPUTS.items()
        ],
        "output": [
            {"name": n, "data_type": TRITON_TYPES[d], "dims": s[1:]}
            for n, (d, s) in OUTPUTS.items()
        ],
        **scheduling_config(batching, services.settings.request_timeout_ms, services.device.type),
        "optimization": {"applied": list(model.detector.optimizations)},
        "parameters": {
            "class_names": {"string_value": ",".join(model.detector.class_names)},
            "confidence_threshold": {
                "string_value": str(services.settings.detection_confidence_threshold)
            },
        },
    }


async def model_stats(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    services = services_of(request)
    model = _model(services, name, version)
    if not isinstance(model, ServedModel):
        return {"model_stats": [zoo_stats(services, model)]}
    return {"model_stats": [model.stats.triton_stats()]}


@router.get("/models/stats")
async def all_model_stats(request: Request) -> dict[str, Any]:
    models = services_of(request).models.values()
    return {"model_stats": [m.stats.triton_stats() for m in models]}


for _path, _handler in (
    ("/ready", model_ready),
    ("", model_metadata),
    ("/config", model_config),
    ("/stats", model_stats),
):
    _register(_path, _handler, "GET")


def _request_options(request: InferRequest, services: Services) -> tuple[float, bool, float]:
    params = request.parameters
    threshold = params.get("confidence_threshold", services.settings.detection_confidence_threshold)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise bad_request("parameter confidence_threshold must be a number between 0 and 1")
    all_classes = params.get("all_classes", False)
    if not isinstance(all_classes, bool):
        raise bad_request("parameter all_classes must be true or false")
    timeout_s = request_timeout_s(params, services.settings.request_timeout_ms / 1000)
    if params.get("priority", 0) not in (0, None):
        raise bad_request("priority scheduling is not supported: requests are served oldest first")
    return float(threshold), all_classes, timeout_s


def _input_check(services: Services, model: ServedModel) -> InputCheck:
    """The detector's check of each input, before its data is read."""

    def check(name: str, datatype: str, shape: list[int]) -> None:
        check_signature(IMAGE_INPUTS, name, datatype)
        most = model.batching.max_batch_size
        if name == "IMAGE":
            check_encoded_images(name, shape, most)
            return
        if len(shape) != 4 or shape[3] != 3:
            raise bad_request(
                f"input 'IMAGE_RGB' must have shape [batch, height, width, 3], got {shape}"
            )
        batch, height, width = shape[:3]
        if batch == 0:
            raise bad_request("input 'IMAGE_RGB' holds no images")
        if height == 0 or width == 0:
            raise bad_request(f"input 'IMAGE_RGB' has images with no pixels: shape {shape}")
        if batch > most:
            raise bad_request(f"batch of {batch} is over max_batch_size {most}")
        if height * width > services.settings.max_image_pixels:
            raise ApiError(413, f"images of {width}x{height} are over the pixel limit")

    return check


async def _images(services: Services, model: ServedModel, tensor: InputTensor) -> list[Image]:
    if tensor.name == "IMAGE_RGB":
        return [np.array(image) for image in tensor.data]  # writable copies of the body
    encoded = tensor.data.reshape(-1)
    return list(
        await asyncio.gather(
            *(
                model.intake(bytes(e), services.decoder, f"IMAGE[{i}]")
                for i, e in enumerate(encoded)
            )
        )
    )


def _output_tensors(
    model: ServedModel,
    services: Services,
    outcomes: list[InferenceOutcome],
    threshold: float,
    all_classes: bool,
) -> list[OutputTensor]:
    kept = [
        reported(services, model, o.detections, threshold=threshold, all_classes=all_classes)
        for o in outcomes
    ]
    batch, most = len(kept), max((len(k) for k in kept), default=0)
    counts = np.array([[len(k)] for k in kept], np.int32)
    boxes = np.zeros((batch, most, 4), np.float32)
    scores = np.zeros((batch, most), np.float32)
    classes = np.full((batch, most), -1, np.int32)
    labels = np.full((batch, most), b"", dtype=object)
    for i, k in enumerate(kept):
        n, found = len(k), k.detections
        boxes[i, :n], scores[i, :n], classes[i, :n] = found.boxes, found.scores, found.class_ids
        labels[i, :n] = [label.encode() for label in k.labels]
    return [
        OutputTensor("num_detections", "INT32", counts),
        OutputTensor("detection_boxes", "FP32", boxes),
        OutputTensor("detection_scores", "FP32", scores),
        OutputTensor("detection_classes", "INT32", classes),
        OutputTensor("detection_labels", "BYTES", labels),
    ]


async def _detect(
    services: Services, model: ServedModel, request: InferRequest
) -> list[OutputTensor]:
    validate_requested_outputs(request, list(OUTPUTS))
    threshold, all_classes, timeout_s = _request_options(request, services)
    tensor = only_input(request, list(IMAGE_INPUTS))
    images = await _images(services, model, tensor)
    outcomes = await model.infer_many(images, timeout_s)
    return _output_tensors(model, services, outcomes, threshold, all_classes)


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    started = time.monotonic()
    services = services_of(request)
    model = _model(services, name, version)
    body = await read_body(request, services.settings.max_body_bytes)
    declared = request.headers.get("inference-header-content-length")
    if isinstance(model, ServedModel):
        parsed = await read_infer_request(body, declared, _input_check(services, model))
        tensors = await _detect(services, model, parsed)
        content, header_length = encode_infer_response(model.name, model.version, parsed, tensors)
    else:
        parsed = await read_infer_request(body, declared, zoo_input_check(services, model))
        tensors = await zoo_infer(services, model, parsed)
        content, header_length = encode_infer_response(model.name, ZOO_VERSION, parsed, tensors)
    services.metrics.request_duration.labels(name, "v2_infer").observe(time.monotonic() - started)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


_register("/infer", infer, "POST")
