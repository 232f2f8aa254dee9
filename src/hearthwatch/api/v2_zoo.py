"""The Open Inference Protocol v2 face of the model zoo's enrichment models, so every model the
repository index lists answers readiness, metadata, configuration, statistics and inference.

Each zoo model takes ``IMAGE`` (BYTES [batch, 1], each an encoded JPEG/PNG: the crop for crop
models, the frame for frame models, with one box covering it) and returns ``RESULT`` (BYTES
[batch, 1], each the model's JSON result for that image). Inference runs through the enrichment
service: under a zoo lease (a model that is not loaded is loaded first, within the request's
deadline) and the model's own batcher. A model is ready while it is loaded on the device, as
the index says READY. Request parameter: ``timeout`` (µs). Event-loop-confined, like the routes
that call it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from hearthwatch.api.errors import ApiError
from hearthwatch.api.state import Services
from hearthwatch.api.v2_codec import (
    InferRequest,
    InputCheck,
    OutputTensor,
    check_encoded_images,
    check_signature,
    only_input,
    request_timeout_s,
    scheduling_config,
    validate_requested_outputs,
)
from hearthwatch.runtime.enrichment.catalog import ZooModelConfig
from hearthwatch.runtime.enrichment.service import EnrichmentService
from hearthwatch.runtime.zoo.registry import State

ZOO_VERSION = "1"
ZOO_PLATFORM = "pytorch"
ZOO_INPUTS = {"IMAGE": ("BYTES", [-1, 1])}
ZOO_OUTPUTS = {"RESULT": ("BYTES", [-1, 1])}


def zoo_config(services: Services, name: str) -> ZooModelConfig | None:
    """The catalog entry of zoo model ``name``, None when there is no such zoo model."""
    if services.enrichment is None:
        return None
    return next((c for c in services.enrichment.catalog if c.name == name), None)


def _service(services: Services) -> EnrichmentService:
    assert services.enrichment is not None  # a ZooModelConfig only comes from it
    return services.enrichment


def not_ready_reason(services: Services, config: ZooModelConfig) -> str | None:
    """Why the model is not ready, or None when it is loaded on the device."""
    service = _service(services)
    if config.name in service.unavailable:
        return f"unavailable: {service.unavailable[config.name]}"
    state = service.zoo.state(config.name)
    return None if state is State.LOADED else f"not loaded ({state.value})"


def _tensors(specs: dict[str, tuple[str, list[int]]]) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": d, "shape": s} for n, (d, s) in specs.items()]


def zoo_metadata(config: ZooModelConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "versions": [ZOO_VERSION],
        "platform": ZOO_PLATFORM,
        "inputs": _tensors(ZOO_INPUTS),
        "outputs": _tensors(ZOO_OUTPUTS),
    }


def zoo_model_config(services: Services, config: ZooModelConfig) -> dict[str, Any]:
    batching = config.batching.batching()
    service = _service(services)
    scope = service.models[config.name].enricher.scope if config.name in service.models else None
    parameters = {
        "source": {"string_value": config.source.type},
        "priority": {"string_value": config.priority},
        "triggers": {"string_value": ",".join(config.triggers)},
    }
    if scope is not None:
        parameters["scope"] = {"string_value": scope}
    return {
        "name": config.name,
        "platform": ZOO_PLATFORM,
        "backend": "hearthwatch",
        "max_batch_size": batching.max_batch_size,
        "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [{"name": "RESULT", "data_type": "TYPE_STRING", "dims": [1]}],
        **scheduling_config(batching, services.settings.enrich_timeout_ms, services.device.type),
        "parameters": parameters,
    }


def zoo_stats(services: Services, config: ZooModelConfig) -> dict[str, Any]:
    """The model's entry of Triton's ``model_stats``: its batched images and batches."""
    service = _service(services)
    model = service.models.get(config.name)
    return {
        "name": config.name,
        "version": ZOO_VERSION,
        "inference_count": model.counts.items if model is not None else 0,
        "execution_count": model.counts.batches if model is not None else 0,
    }


def zoo_input_check(services: Services, config: ZooModelConfig) -> InputCheck:
    """The zoo model's check of each input, before its data is read; a model that cannot load
    here is refused at once (409)."""
    service = _service(services)
    if config.name in service.unavailable:
        reason = service.unavailable[config.name]
        raise ApiError(409, f"model {config.name!r} is unavailable: {reason}")

    def check(name: str, datatype: str, shape: list[int]) -> None:
        check_signature(ZOO_INPUTS, name, datatype)
        check_encoded_images(name, shape, config.batching.max_batch_size)

    return check


async def zoo_infer(
    services: Services, config: ZooModelConfig, request: InferRequest
) -> list[OutputTensor]:
    """Each image of the request's ``IMAGE`` through the model: its ``RESULT`` tensor."""
    validate_requested_outputs(request, list(ZOO_OUTPUTS))
    timeout_s = request_timeout_s(request.parameters, services.settings.enrich_timeout_ms / 1000)
    tensor = only_input(request, list(ZOO_INPUTS))
    batch = tensor.shape[0]
    images = await asyncio.gather(
        *(
            services.decoder.decode(bytes(e), f"IMAGE[{i}]")
            for i, e in enumerate(tensor.data.reshape(-1))
        )
    )
    results = await _service(services).run_on_images(config.name, images, timeout_s)
    encoded = np.empty((batch, 1), dtype=object)
    encoded[:, 0] = [json.dumps(r, separators=(",", ":")).encode() for r in results]
    return [OutputTensor("RESULT", "BYTES", encoded)]
