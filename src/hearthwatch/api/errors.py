"""Every error leaves as ``{"error": "..."}``: bad input 4xx naming the problem, overload 503
with ``Retry-After``, an expired deadline 504."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearthwatch.runtime.batcher import BatcherStoppedError, DeadlineExceededError, QueueFullError
from hearthwatch.runtime.enrichment import EnrichRequestError
from hearthwatch.runtime.images import ImageError
from hearthwatch.runtime.zoo import ZooFullError

log = logging.getLogger(__name__)

IMAGE_ERROR_STATUS = {"too_large": 413}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
        err = image_error(exc)
        return error_response(err.status, err.message)

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ZooFullError)
    async def _zoo_full(request: Request, exc: ZooFullError) -> JSONResponse:
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(EnrichRequestError)
    async def _enrich_request(request: Request, exc: EnrichRequestError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(BatcherStoppedError)
    async def _stopped(request: Request, exc: BatcherStoppedError) -> JSONResponse:
        return error_response(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(DeadlineExceededError)
    async def _deadline(request: Request, exc: DeadlineExceededError) -> JSONResponse:
        return error_response(504, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
