"""Every error leaves from here, in one of two shapes chosen by the request path: under
``/v1`` OpenAI's ``{"error": {"message": "...", "type": "...", "code": "..."}}``, everywhere
else ``{"error": "..."}``. Bad input is a 4xx naming the problem, overload a 503 with
``Retry-After``, an expired deadline a 504, anything unexpected a 500 carrying only an error
id."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearthwatch.runtime.batcher import (
    BatcherStoppedError,
    BatchTooLargeError,
    DeadlineExceededError,
    QueueFullError,
)
from hearthwatch.runtime.enrichment import EnrichRequestError
from hearthwatch.runtime.images import ImageError
from hearthwatch.runtime.zoo import ZooFullError

log = logging.getLogger(__name__)

IMAGE_ERROR_STATUS = {"too_large": 413}


OPENAI_PREFIX = "/v1"
OPENAI_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
    502: "engine_error",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An answer other than success; ``code`` is the OpenAI error code on ``/v1`` routes (one
    derived from the status when omitted)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.code = code


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``server_error`` for 5xx, ``invalid_request_error`` otherwise."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    default_code = OPENAI_CODES.get(status, "server_error" if status >= 500 else "invalid_request")
    return {"error": {"message": message, "type": kind, "code": code or default_code}}


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    path: str = "",
    code: str | None = None,
) -> JSONResponse:
    """The error as ``path`` answers it: OpenAI's shape under ``/v1``, else ``{"error": ...}``.
    Text a client sent that no UTF-8 can carry (an unpaired surrogate) is shown escaped."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = openai_error(status, message, code) if is_openai_path(path) else {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _answer(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    return error_response(status, message, headers, path=request.url.path, code=code)


def image_error(exc: ImageError, label: str | None = None) -> ApiError:
    message = f"{label}: {exc}" if label else str(exc)
    return ApiError(IMAGE_ERROR_STATUS.get(exc.reason, 400), message)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{location}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _answer(request, exc.status, exc.message, exc.headers, exc.code)

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
        err = image_error(exc)
        return _answer(request, err.status, err.message)

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return _answer(request, 503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(BatchTooLargeError)
    async def _too_many(request: Request, exc: BatchTooLargeError) -> JSONResponse:
        return _answer(request, 413, str(exc))

    @app.exception_handler(ZooFullError)
    async def _zoo_full(request: Request, exc: ZooFullError) -> JSONResponse:
        return _answer(request, 503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(EnrichRequestError)
    async def _enrich_request(request: Request, exc: EnrichRequestError) -> JSONResponse:
        return _answer(request, 400, str(exc))

    @app.exception_handler(BatcherStoppedError)
    async def _stopped(request: Request, exc: BatcherStoppedError) -> JSONResponse:
        return _answer(request, 503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(DeadlineExceededError)
    async def _deadline(request: Request, exc: DeadlineExceededError) -> JSONResponse:
        return _answer(request, 504, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _answer(request, 400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return _answer(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _answer(
            request, 500, internal_error_message(exc, f"{request.method} {request.url.path}")
        )


def internal_error_message(exc: BaseException, where: str) -> str:
    """Log ``exc`` in full under a fresh id and return what the client may see: the id only."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s", error_id, where, exc_info=exc)
    return f"internal error (id {error_id}); the server log has the details"
