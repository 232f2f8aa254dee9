"""The published OpenAPI document (``/openapi.json``): the app's routes and their parameters as
FastAPI lists them, with each operation's request body, every status code it can answer and a
concrete schema for each, declared here in one table (``OPERATIONS``). The document is built
once per app, on its first request, and is plain data after that."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from hearthwatch.api import schemas as s
from hearthwatch.llm.requests import ChatRequest, CompletionRequest

JSON = dict[str, Any]
COMPONENT_PREFIX = "#/components/schemas/"
PATH_PARAMETER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class ArrayOf:
    """A JSON array of ``model``."""

    model: type[BaseModel]


Schema = type[BaseModel] | ArrayOf | JSON

BINARY: JSON = {"type": "string", "format": "binary"}
TEXT: JSON = {"type": "string"}
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/octet-stream")
IMAGE_BODY: dict[str, Schema] = {
    **dict.fromkeys(RAW_IMAGE_TYPES, BINARY),
    "multipart/form-data": {
        "type": "object",
        "properties": {"image": {**BINARY, "description": "The image file (JPEG, PNG ...)."}},
        "required": ["image"],
    },
}
BATCH_BODY: dict[str, Schema] = {
    "multipart/form-data": {
        "type": "object",
        "properties": {
            "images": {
                "type": "array",
                "items": BINARY,
                "minItems": 1,
                "description": "One file per image, each as a part named 'images'.",
            }
        },
        "required": ["images"],
    },
    **dict.fromkeys(RAW_IMAGE_TYPES, BINARY),
}
INFER_BODY: dict[str, Schema] = {
    "application/json": s.InferRequestBody,
    "application/octet-stream": {
        **BINARY,
        "description": "Binary tensor data: the JSON request's first Inference-Header-Content-"
        "Length bytes, then each input's raw bytes in input order, sized by its "
        "parameters.binary_data_size.",
    },
}
INFER_HEADER_LENGTH: JSON = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "Length of the JSON part of a binary tensor request; absent for JSON only.",
    "schema": {"type": "integer", "minimum": 1},
}

BODY_ERRORS = (400, 408, 413, 415)  # any route that reads a request body
ERROR_MEANINGS = {
    400: "The request is invalid; the message names what was wrong.",
    404: "No such model, camera, event or route, or the service it belongs to is off.",
    408: "The request body did not arrive in time.",
    409: "The model or camera cannot take this now; the message says why.",
    413: "The body, an image or a batch is over a limit; the message names the limit.",
    415: "Unsupported Content-Type or Content-Encoding.",
    502: "The LLM engine failed on a request it was given; the server log has its reason.",
    503: "Overloaded, not ready or restarting: retry after Retry-After seconds.",
    504: "The request's deadline passed before it was served.",
}
RETRY_AFTER: JSON = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


@dataclass(frozen=True)
class Operation:
    """What one operation takes and answers beyond its parameters: its request body by media
    type, its 200 content by media type, and the error statuses it can answer."""

    ok: dict[str, Schema]
    errors: tuple[int, ...] = ()
    body: dict[str, Schema] | None = None
    body_required: bool = True
    parameters: tuple[JSON, ...] = ()
    ok_headers: JSON = field(default_factory=dict)
    openai_errors: bool = False
    ok_status: int = 200


def _json(model: Schema) -> dict[str, Schema]:
    return {"application/json": model}


def _model_routes(path: str, ok: Schema, errors: tuple[int, ...]) -> dict[str, Operation]:
    """The unversioned and the versioned form of a v2 model route."""
    return {
        f"GET /v2/models/{{name}}{path}": Operation(_json(ok), errors),
        f"GET /v2/models/{{name}}/versions/{{version}}{path}": Operation(_json(ok), errors),
    }


_INFER = Operation(
    {"application/json": s.InferResponseBody, "application/octet-stream": BINARY},
    (*BODY_ERRORS, 404, 503, 504),
    body=INFER_BODY,
    parameters=(INFER_HEADER_LENGTH,),
    ok_headers={
        "Inference-Header-Content-Length": {
            "description": "Length of the JSON part, when binary output data follows it.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
)
_LLM_ERRORS = (*BODY_ERRORS, 404, 502, 503, 504)  # 502: the engine failed on a valid request

OPERATIONS: dict[str, Operation] = {
    "POST /detect": Operation(
        _json(s.DetectResponse), (*BODY_ERRORS, 404, 503, 504), body=IMAGE_BODY
    ),
    "POST /detect/batch": Operation(
        _json(s.DetectBatchResponse), (*BODY_ERRORS, 404, 503, 504), body=BATCH_BODY
    ),
    "GET /v2": Operation(_json(s.ServerMetadata)),
    "GET /v2/health/live": Operation(_json(s.LiveResponse)),
    "GET /v2/health/ready": Operation(_json(s.ReadyResponse), (503,)),
    "GET /v2/models/stats": Operation(_json(s.ModelStatsResponse)),
    **_model_routes("/ready", s.ModelReadyResponse, (404, 503)),
    **_model_routes("", s.ModelMetadata, (404,)),
    **_model_routes("/config", s.ModelConfig, (404,)),
    **_model_routes("/stats", s.ModelStatsResponse, (404,)),
    "POST /v2/models/{name}/infer": _INFER,
    "POST /v2/models/{name}/versions/{version}/infer": _INFER,
    "POST /v2/repository/index": Operation(
        _json(ArrayOf(s.RepositoryModel)),
        BODY_ERRORS,
        body=_json(s.RepositoryIndexRequest),
        body_required=False,
    ),
    "POST /v2/repository/models/{name}/load": Operation(
        _json(s.EmptyResponse),
        (*BODY_ERRORS, 404, 409, 503),
        body=_json(s.RepositoryLoadRequest),
        body_required=False,
    ),
    "POST /v2/repository/models/{name}/unload": Operation(
        _json(s.EmptyResponse),
        (*BODY_ERRORS, 404, 409, 503),
        body=_json(s.RepositoryLoadRequest),
        body_required=False,
    ),
    "POST /enrich": Operation(
        _json(s.EnrichResponse), (*BODY_ERRORS, 404, 503, 504), body=_json(s.EnrichRequest)
    ),
    "GET /api/zoo": Operation(_json(s.ZooResponse), (404,)),
    "POST /api/zoo/{name}/pin": Operation(_json(s.PinResponse), (404, 409, 503)),
    "POST /api/zoo/{name}/unpin": Operation(_json(s.PinResponse), (404, 409)),
    "GET /metrics": Operation({"text/plain": TEXT}),
    "GET /api/system/gpu": Operation(_json(s.SystemSample)),
    "GET /api/system/gpu/history": Operation(_json(s.GpuHistoryResponse), (400,)),
    "POST /v1/chat/completions": Operation(
        {"application/json": s.ChatCompletion, "text/event-stream": s.StreamEvent},
        _LLM_ERRORS,
        body=_json(ChatRequest),
        openai_errors=True,
    ),
    "POST /v1/completions": Operation(
        {"application/json": s.TextCompletion, "text/event-stream": s.StreamEvent},
        _LLM_ERRORS,
        body=_json(CompletionRequest),
        openai_errors=True,
    ),
    "GET /v1/models": Operation(_json(s.ModelList), (404,), openai_errors=True),
    "GET /v1/models/{model}": Operation(_json(s.ModelCard), (404,), openai_errors=True),
    "GET /v1/performance/targets": Operation(
        _json(s.PerformanceTargets), (404,), openai_errors=True
    ),
    "GET /v1/engine/config": Operation(_json(s.EngineConfig), (404,), openai_errors=True),
}


def camera_operations() -> dict[str, Operation]:
    """The camera pipeline's operations; their schemas import the camera settings, so only
    where its routes are served."""
    from hearthwatch.api import camera_schemas as c

    camera_body = _json(c.CameraConfig)
    return {
        "GET /api/cameras": Operation(_json(c.CameraList)),
        "POST /api/cameras": Operation(
            _json(c.CameraOut), (*BODY_ERRORS, 409), body=camera_body, ok_status=201
        ),
        "GET /api/cameras/{id}": Operation(_json(c.CameraOut), (400, 404)),
        "PUT /api/cameras/{id}": Operation(
            _json(c.CameraOut), (*BODY_ERRORS, 404, 409), body=camera_body
        ),
        "DELETE /api/cameras/{id}": Operation({}, (400, 404, 409), ok_status=204),
        "GET /api/cameras/{id}/status": Operation(_json(c.CameraStatus), (400, 404)),
        "POST /api/cameras/{id}/frames": Operation(
            _json(c.FrameAccepted),
            (*BODY_ERRORS, 404, 409, 503),
            body={**dict.fromkeys(("image/jpeg", "image/png"), BINARY)},
            ok_status=202,
        ),
        "GET /api/events": Operation(_json(c.EventList), (400,)),
        "GET /api/events/{id}": Operation(_json(c.EventDetail), (400, 404)),
        "GET /api/events/{id}/snapshot.jpg": Operation({"image/jpeg": BINARY}, (400, 404)),
        "GET /api/events/{id}/clip.mp4": Operation({"video/mp4": BINARY}, (400, 404)),
        "GET /api/arm": Operation(_json(c.ArmMode)),
        "PUT /api/arm": Operation(_json(c.ArmMode), BODY_ERRORS, body=_json(c.ArmMode)),
        "GET /api/risk/rules": Operation(_json(c.RiskRules)),
        "POST /api/events/{id}/feedback": Operation(
            _json(c.FeedbackOut), (*BODY_ERRORS, 404), body=_json(c.FeedbackIn), ok_status=201
        ),
        "GET /api/events/{id}/feedback": Operation(_json(c.FeedbackList), (400,)),
        "GET /api/feedback/export": Operation(_json(c.ScenarioFile), (400,)),
        "GET /api/incidents": Operation(_json(c.IncidentList), (400,)),
    }


def operation_key(method: str, path: str) -> str:
    """``"METHOD /path"`` with every path parameter's name erased, so that a route matches its
    entry whatever it calls its parameters."""
    return f"{method.upper()} {PATH_PARAMETER.sub('{}', path)}"


DECLARED = {operation_key(*key.split(" ", 1)): op for key, op in OPERATIONS.items()}


class _Components:
    """The models an operation table refers to, rendered as ``#/components/schemas``."""

    def __init__(self) -> None:
        self._wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        self._refs: dict[tuple[type, JsonSchemaMode], JSON] = {}
        self.schemas: JSON = {}

    def want(self, schema: Schema, mode: JsonSchemaMode) -> None:
        model = schema.model if isinstance(schema, ArrayOf) else schema
        if isinstance(model, type):
            self._wanted[(model, mode)] = None

    def render(self) -> None:
        refs, defs = models_json_schema(
            list(self._wanted), ref_template=COMPONENT_PREFIX + "{model}"
        )
        self._refs = dict(refs)
        self.schemas = defs.get("$defs", {})

    def schema(self, schema: Schema, mode: JsonSchemaMode) -> JSON:
        if isinstance(schema, ArrayOf):
            return {"type": "array", "items": self._refs[(schema.model, mode)]}
        if isinstance(schema, type):
            return self._refs[(schema, mode)]
        return schema


def _content(
    media: dict[str, Schema], components: _Components, mode: JsonSchemaMode
) -> dict[str, JSON]:
    return {kind: {"schema": components.schema(schema, mode)} for kind, schema in media.items()}


def _responses(op: Operation, components: _Components) -> dict[str, JSON]:
    ok: JSON = {"description": HTTPStatus(op.ok_status).phrase}
    if op.ok:
        ok["content"] = _content(op.ok, components, "serialization")
    if op.ok_headers:
        ok["headers"] = op.ok_headers
    responses = {str(op.ok_status): ok}
    error = s.OpenAIErrorResponse if op.openai_errors else s.ErrorResponse
    for status in sorted(op.errors):
        response: JSON = {
            "description": f"{HTTPStatus(status).phrase}. {ERROR_MEANINGS[status]}",
            "content": _content({"application/json": error}, components, "serialization"),
        }
        if status == 503:
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def _plain_parameter(parameter: JSON) -> JSON:
    """``parameter`` without the ``null`` FastAPI lists for an optional one: leaving a query
    parameter out is how it is not given; there is no way to send a null."""
    schema = parameter.get("schema", {})
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return parameter
    kept = [b for b in branches if b.get("type") != "null"]
    if len(kept) != 1 or len(kept) == len(branches):
        return parameter
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**parameter, "schema": {**rest, **kept[0]}}


def document(app: FastAPI) -> JSON:
    """The OpenAPI document of ``app``: its routes' paths and parameters, the bodies, statuses
    and schemas of ``OPERATIONS``; an operation missing from the table keeps FastAPI's responses
    (less its 422: validation errors answer 400)."""
    base = get_openapi(title=app.title, version=app.version, routes=app.routes)
    declared_ops = dict(DECLARED)
    if "/api/cameras" in base["paths"]:
        declared_ops |= {operation_key(*k.split(" ", 1)): o for k, o in camera_operations().items()}
    components = _Components()
    for declared in declared_ops.values():
        for schema in declared.ok.values():
            components.want(schema, "serialization")
        for schema in (declared.body or {}).values():
            components.want(schema, "validation")
    components.want(s.OpenAIErrorResponse, "serialization")
    components.want(s.ErrorResponse, "serialization")
    components.render()
    for path, methods in base["paths"].items():
        for method, entry in methods.items():
            entry["parameters"] = [_plain_parameter(p) for p in entry.get("parameters", [])]
            op = declared_ops.get(operation_key(method, path))
            if op is None:
                entry["responses"] = {k: v for k, v in entry["responses"].items() if k != "422"}
                continue
            entry["parameters"] += list(op.parameters)
            entry.pop("requestBody", None)
            if op.body is not None:
                entry["requestBody"] = {
                    "required": op.body_required,
                    "content": _content(op.body, components, "validation"),
                }
            entry["responses"] = _responses(op, components)
            if not entry["parameters"]:
                del entry["parameters"]
    schemas = {**base.get("components", {}).get("schemas", {}), **components.schemas}
    base["components"] = {"schemas": _reachable(base["paths"], schemas)}
    return base


def _refs(node: Any) -> list[str]:
    """The component names that ``node`` refers to."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(COMPONENT_PREFIX):
                found.append(ref.removeprefix(COMPONENT_PREFIX))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _reachable(paths: JSON, schemas: JSON) -> JSON:
    """The ``schemas`` that the operations refer to, directly or through each other."""
    wanted, queue = set(), _refs(paths)
    while queue:
        name = queue.pop()
        if name not in wanted and name in schemas:
            wanted.add(name)
            queue.extend(_refs(schemas[name]))
    return {name: schemas[name] for name in sorted(wanted)}


def install(app: FastAPI) -> None:
    """Serve :func:`document` as ``app``'s OpenAPI document."""

    def openapi() -> JSON:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
