"""Open Inference Protocol v2 (KServe / Triton HTTP), so stock clients such as ``tritonclient``
work unchanged: health, server and model metadata, Triton-style model configuration,
statistics and inference with JSON or binary tensors.

A detector takes ``IMAGE`` (BYTES, one encoded JPEG/PNG per batch item; base64 strings in
JSON) or ``IMAGE_RGB`` (UINT8, [batch, height, width, 3]) and returns ``num_detections``,
``detection_boxes``, ``detection_scores``, ``detection_classes`` and ``detection_labels``,
padded to the most detections of any image in the request. Request parameters:
``confidence_threshold``, ``all_classes``, ``timeout`` (µs).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearthwatch import __version__
from hearthwatch.api.body import read_body
from hearthwatch.api.detect import services_of
from hearthwatch.api.errors import ApiError
from hearthwatch.api.services import Services
from hearthwatch.api.v2_codec import (
    InferRequest,
    InputTensor,
    OutputTensor,
    bad_request,
    encode_infer_response,
    parse_infer_request,
    validate_requested_outputs,
)
from hearthwatch.runtime.device_images import Image
from hearthwatch.runtime.served_model import InferenceOutcome, ServedModel

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


def _versioned(services: Services, name: str, version: str | None) -> ServedModel:
    model = services.model(name)
    if version not in (None, "", model.version):
        raise ApiError(404, f"model '{name}' has no version '{version}'; it has '{model.version}'")
    return model


def _routes(path: str) -> list[str]:
    return [f"/models/{{name}}{path}", f"/models/{{name}}/versions/{{version}}{path}"]


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
        return JSONResponse({"error": f"models not ready: {', '.join(not_ready)}"}, 503)
    return JSONResponse({"ready": True})


async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    model = _versioned(services_of(request), name, version)
    if not model.ready:
        return JSONResponse({"error": f"model '{name}' is not ready"}, 503)
    return JSONResponse({"name": name, "ready": True})


async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    model = _versioned(services_of(request), name, version)

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
    model = _versioned(services, name, version)
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
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(batching.max_queue_delay_ms * 1000),
            "preserve_ordering": False,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": int(services.settings.request_timeout_ms * 1000),
                "allow_timeout_override": True,
                "max_queue_size": batching.max_queue_size,
            },
        },
        "instance_group": [
            {"kind": "KIND_GPU" if services.device.type == "cuda" else "KIND_CPU", "count": 1}
        ],
        "optimization": {"applied": list(model.detector.optimizations)},
        "parameters": {
            "class_names": {"string_value": ",".join(model.detector.class_names)},
            "confidence_threshold": {
                "string_value": str(services.settings.detection_confidence_threshold)
            },
        },
    }


async def model_stats(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    model = _versioned(services_of(request), name, version)
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
    for _route in _routes(_path):
        router.add_api_route(_route, _handler, methods=["GET"])


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
    timeout_us = params.get("timeout", services.settings.request_timeout_ms * 1000)
    if isinstance(timeout_us, bool) or not isinstance(timeout_us, int | float) or timeout_us <= 0:
        raise bad_request("parameter timeout must be a positive number of microseconds")
    if params.get("priority", 0) not in (0, None):
        raise bad_request("priority scheduling is not supported: requests are served oldest first")
    return float(threshold), all_classes, timeout_us / 1e6


def _image_tensor(request: InferRequest) -> InputTensor:
    unknown = [t.name for t in request.inputs if t.name not in IMAGE_INPUTS]
    if unknown:
        raise bad_request(f"unknown input '{unknown[0]}'; this model takes IMAGE or IMAGE_RGB")
    if len(request.inputs) != 1:
        raise bad_request("give exactly one of the inputs IMAGE and IMAGE_RGB")
    tensor = request.inputs[0]
    datatype, shape = IMAGE_INPUTS[tensor.name]
    if tensor.datatype != datatype:
        raise bad_request(f"input '{tensor.name}' must be {datatype}, got {tensor.datatype}")
    if tensor.name == "IMAGE" and (
        len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1])
    ):
        raise bad_request(f"input 'IMAGE' must have shape [batch, 1], got {tensor.shape}")
    if tensor.name == "IMAGE_RGB" and (len(tensor.shape) != 4 or tensor.shape[3] != 3):
        raise bad_request(
            f"input 'IMAGE_RGB' must have shape [batch, height, width, 3], got {tensor.shape}"
        )
    if tensor.shape[0] == 0:
        raise bad_request(f"input '{tensor.name}' holds no images")
    return tensor


async def _images(services: Services, model: ServedModel, tensor: InputTensor) -> list[Image]:
    if tensor.shape[0] > model.batching.max_batch_size:
        raise bad_request(
            f"batch of {tensor.shape[0]} is over max_batch_size {model.batching.max_batch_size}"
        )
    if tensor.name == "IMAGE_RGB":
        height, width = tensor.shape[1:3]
        if height * width > services.settings.max_image_pixels:
            raise ApiError(413, f"images of {width}x{height} are over the pixel limit")
        return [np.array(image) for image in tensor.data]  # writable copies of the body
    encoded = tensor.data.reshape(-1)
    return list(
        await asyncio.gather(
            *(services.decode(model, bytes(e), f"IMAGE[{i}]") for i, e in enumerate(encoded))
        )
    )


def _output_tensors(
    model: ServedModel,
    services: Services,
    outcomes: list[InferenceOutcome],
    threshold: float,
    all_classes: bool,
) -> list[OutputTensor]:
    allowed = None if all_classes else services.security_class_ids(model)
    kept = [o.detections.select(threshold, allowed) for o in outcomes]
    batch, most = len(kept), max((len(k) for k in kept), default=0)
    counts = np.array([[len(k)] for k in kept], np.int32)
    boxes = np.zeros((batch, most, 4), np.float32)
    scores = np.zeros((batch, most), np.float32)
    classes = np.full((batch, most), -1, np.int32)
    labels = np.full((batch, most), b"", dtype=object)
    names = model.detector.class_names
    for i, k in enumerate(kept):
        n = len(k)
        boxes[i, :n], scores[i, :n], classes[i, :n] = k.boxes, k.scores, k.class_ids
        labels[i, :n] = [names[c].encode() if 0 <= c < len(names) else b"" for c in k.class_ids]
    return [
        OutputTensor("num_detections", "INT32", counts),
        OutputTensor("detection_boxes", "FP32", boxes),
        OutputTensor("detection_scores", "FP32", scores),
        OutputTensor("detection_classes", "INT32", classes),
        OutputTensor("detection_labels", "BYTES", labels),
    ]


async def infer(request: Request, name: str, version: str | None = None) -> Response:
    started = time.monotonic()
    services = services_of(request)
    model = _versioned(services, name, version)
    body = await read_body(request, services.settings.max_body_bytes)
    parsed = parse_infer_request(body, request.headers.get("inference-header-content-length"))
    validate_requested_outputs(parsed, list(OUTPUTS))
    threshold, all_classes, timeout_s = _request_options(parsed, services)
    images = await _images(services, model, _image_tensor(parsed))
    outcomes = await model.infer_many(images, timeout_s)
    tensors = _output_tensors(model, services, outcomes, threshold, all_classes)
    content, header_length = encode_infer_response(model.name, model.version, parsed, tensors)
    services.metrics.request_duration.labels(model.name, "v2_infer").observe(
        time.monotonic() - started
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


for _route in _routes("/infer"):
    router.add_api_route(_route, infer, methods=["POST"])
