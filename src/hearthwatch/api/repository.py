"""The Open Inference Protocol's repository extension, as Triton serves it: the index of every
model with its state, and explicit load and unload of the model zoo's models. The detector is
always loaded: it is listed READY, loading it succeeds, unloading it is refused. Models come
from the models file only: a load that carries a configuration or files is refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hearthwatch.api.body import read_body
from hearthwatch.api.enrich import zoo_model
from hearthwatch.api.errors import ApiError
from hearthwatch.api.json_body import parse_json
from hearthwatch.api.schemas import RepositoryModel
from hearthwatch.api.state import services_of
from hearthwatch.runtime.zoo.registry import State

router = APIRouter(prefix="/v2/repository", tags=["repository"])

_STATES = {
    State.LOADED: ("READY", ""),
    State.LOADING: ("LOADING", ""),
    State.UNLOADED: ("UNAVAILABLE", "unloaded"),
    State.EVICTING: ("UNAVAILABLE", "being evicted"),
    State.ON_HOST: ("UNAVAILABLE", "evicted; kept in host memory"),
}


async def _json_body(request: Request) -> dict[str, Any]:
    """The optional JSON object body of a repository request ({} when empty)."""
    raw = await read_body(request, 1024 * 1024)
    if not raw.strip():
        return {}
    body = parse_json(raw, "body")
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _refuse_load_parameters(body: dict[str, Any]) -> None:
    """A load request may carry no parameters: the models file alone defines each model."""
    parameters = body.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise ApiError(400, "'parameters' must be an object")
    if "config" in parameters:
        raise ApiError(
            400,
            "parameters.config is not supported: a model's configuration comes from the "
            "models file (ENRICH_MODELS_FILE), not from the load request",
        )
    if any(key.startswith("file:") for key in parameters):
        raise ApiError(
            400,
            "parameters 'file:…' are not supported: model files are not uploaded; put the "
            "weights under MODELS_DIR and name them in the models file",
        )
    if parameters:
        unknown = next(iter(parameters))[:64]
        raise ApiError(400, f"parameters.{unknown} is not supported; a load takes no parameters")


@router.post("/index", response_model=list[RepositoryModel])
async def index(request: Request) -> list[RepositoryModel]:
    ready_only = (await _json_body(request)).get("ready", False)
    if not isinstance(ready_only, bool):
        raise ApiError(400, "'ready' must be true or false")
    services = services_of(request)
    rows = [RepositoryModel(name=name, state="READY") for name in services.models]
    if services.enrichment is not None:
        service = services.enrichment
        for config in service.catalog:
            if config.name in service.unavailable:
                reason = service.unavailable[config.name]
                rows.append(RepositoryModel(name=config.name, state="UNAVAILABLE", reason=reason))
                continue
            state, reason = _STATES[service.zoo.state(config.name)]
            rows.append(RepositoryModel(name=config.name, state=state, reason=reason))
    return [row for row in rows if row.state == "READY" or not ready_only]


@router.post("/models/{name}/load")
async def load(request: Request, name: str) -> dict[str, Any]:
    _refuse_load_parameters(await _json_body(request))
    services = services_of(request)
    if name in services.models:
        return {}
    service = zoo_model(request, name)
    await service.zoo.load(name, services.settings.enrich_timeout_ms / 1000)
    return {}


@router.post("/models/{name}/unload")
async def unload(request: Request, name: str) -> dict[str, Any]:
    await _json_body(request)
    services = services_of(request)
    if name in services.models:
        raise ApiError(400, f"model {name!r} is the served detector; only zoo models unload")
    service = zoo_model(request, name)
    try:
        await service.zoo.unload(name, services.settings.enrich_timeout_ms / 1000)
    except TimeoutError:
        raise ApiError(503, f"model {name!r} is still in use", {"Retry-After": "1"}) from None
    return {}
