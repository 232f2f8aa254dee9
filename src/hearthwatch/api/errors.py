"""Every error leaves from here, in one of two shapes chosen by the request path: under
``/v1`` OpenAI's ``{"error": {"message": "...", "type": "...", "code": "..."}}``, everywhere
else ``{"error": "..."}``. Bad input is a 4xx naming the problem, overload a 503 with
``Retry-After``, an expired deadline a 504, anything unexpected a 500 carrying only an error
id.

The api's own errors are :class:`ApiError` (a status and a message). The runtime's are mapped by
their kind (:mod:`hearthwatch.runtime.errors`), in :func:`runtime_error_status`: overloaded
503 with ``Retry-After``, deadline passed 504, input too large 413, invalid input 400, not
found 404, conflict 409."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearthwatch.runtime.errors import (
    ConflictError,
    InputTooLargeError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    ServingError,
)
from hearthwatch.runtime.serving.batcher import DeadlineExceededError

log = logging.getLogger(__name__)


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


def runtime_error_status(exc: ServingError) -> tuple[int, dict[str, str] | None]:
    """The status (and headers) that answer a runtime error, by its kind; 500 for an error of
    no kind a client can act on."""
    if isinstance(exc, OverloadedError):
        return 503, {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, DeadlineExceededError):
        return 504, None
    if isinstance(exc, InputTooLargeError):
        return 413, None
    if isinstance(exc, InvalidInputError):
        return 400, None
    if isinstance(exc, NotFoundError):
        return 404, None
    if isinstance(exc, ConflictError):
        return 409, None
    return 500, None


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

    @app.exception_handler(ServingError)
    async def _runtime_error(request: Request, exc: ServingError) -> JSONResponse:
        status, headers = runtime_error_status(exc)
        if status == 500:
            where = f"{request.method} {request.url.path}"
            return _answer(request, 500, internal_error_message(exc, where))
        return _answer(request, status, str(exc), headers)

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
