"""OpenAI-compatible LLM routes (``/v1/chat/completions``, ``/v1/completions`` with SSE
streaming, ``/v1/models``, ``/v1/models/{id}``) and the profile's ``/v1/performance/targets``
and ``/v1/engine/config``. Bodies are validated by ``hearthwatch.llm.requests`` before
admission. An admitted request's lease is released however it ends: by the handler, or, once
a stream is handed out, by the response object itself (even if its body never starts). A
client that goes away leaves the queue or cancels its upstream request. Event-loop-confined."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from hearthwatch.api.body import read_body
from hearthwatch.api.detect import services_of
from hearthwatch.api.errors import ApiError, openai_error
from hearthwatch.api.json_body import parse_json
from hearthwatch.llm.errors import ClientDisconnectedError, GatewayError
from hearthwatch.llm.gateway import Exchange, Lease, LlmGateway, wait_for_disconnect

router = APIRouter(tags=["llm"])

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for a request whose client left; nobody receives it
PARSE_INLINE_BYTES = 64 * 1024  # larger bodies are parsed and validated off the event loop
MAX_LLM_BODY_BYTES = 1024 * 1024  # far over any slot's context; bounds parsing and the engine


def gateway_of(request: Request) -> LlmGateway:
    gateway = services_of(request).llm
    if gateway is None:
        raise ApiError(
            404,
            "the LLM service is disabled (LLM_ENABLED=false, or its model is missing: the "
            "server's start-up log says how to enable it)",
            code="llm_disabled",
        )
    return gateway


def _api_error(exc: GatewayError) -> ApiError:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    return ApiError(exc.status, exc.message, headers, exc.code)


async def _exchange(request: Request, gateway: LlmGateway, kind: str) -> Exchange:
    max_bytes = min(MAX_LLM_BODY_BYTES, services_of(request).settings.max_body_bytes)
    raw = await read_body(request, max_bytes)

    def build() -> Exchange:
        return gateway.exchange(kind, parse_json(raw))

    try:
        if len(raw) <= PARSE_INLINE_BYTES:
            return build()
        return await asyncio.to_thread(build)
    except GatewayError as exc:
        raise _api_error(exc) from None


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientDisconnectedError` (``work`` cancelled) as soon
    as the client goes away."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let it unwind before anyone touches what it used
    if task.cancelled():
        raise ClientDisconnectedError
    return task.result()


async def _handle(request: Request, kind: str) -> Response:
    gateway = gateway_of(request)
    exchange = await _exchange(request, gateway, kind)
    try:
        lease = await gateway.admit(exchange, lambda: wait_for_disconnect(request.receive))
    except GatewayError as exc:
        raise _api_error(exc) from None
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    with lease:
        try:
            if exchange.streamed:
                return await _stream(request, gateway, lease)
            result = await _unless_client_leaves(request, gateway.complete(exchange))
            lease.outcome = "ok"
            return JSONResponse(result)
        except GatewayError as exc:
            lease.outcome = exc.outcome
            raise _api_error(exc) from None
        except ClientDisconnectedError:
            return Response(status_code=CLIENT_CLOSED)


class LeasedStream(StreamingResponse):
    """A stream that runs ``close`` when the response ends, however it ends: finished, failed,
    or its client gone before the body iterator ever started."""

    def __init__(self, content: AsyncIterator[bytes], close: Callable[[], Awaitable[None]]):
        super().__init__(content, media_type="text/event-stream")
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._close()


def _sse(batch: list[bytes]) -> bytes:
    """Chunks (their JSON texts) as SSE events, in one block."""
    return b"data: " + b"\n\ndata: ".join(batch) + b"\n\n"


async def _stream(request: Request, gateway: LlmGateway, lease: Lease) -> Response:
    chunks = gateway.chunks(lease.exchange)
    try:  # errors before the first chunk get a status code
        first = await _unless_client_leaves(request, anext(chunks, None))
    except BaseException:
        await chunks.aclose()
        raise

    async def events() -> AsyncGenerator[bytes, None]:
        try:
            if first is not None:
                yield _sse(first)
                async for batch in chunks:
                    yield _sse(batch)
            yield b"data: [DONE]\n\n"
            lease.outcome = "ok"
        except GatewayError as exc:
            lease.outcome = exc.outcome
            error = openai_error(exc.status, exc.message, exc.code)
            yield b"data: " + json.dumps(error).encode() + b"\n\n"

    async def close() -> None:
        try:
            await body.aclose()
            await chunks.aclose()
        finally:
            lease.release()

    body = events()
    response = LeasedStream(body, close)
    lease.hand_over()
    return response


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _handle(request, "chat")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _handle(request, "completions")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [gateway_of(request).model_card()]}


@router.get("/v1/models/{model_id:path}")
async def model(request: Request, model_id: str) -> dict[str, Any]:
    gateway = gateway_of(request)
    try:
        gateway.check_model(model_id)
    except GatewayError as exc:
        raise _api_error(exc) from None
    return gateway.model_card()


@router.get("/v1/performance/targets")
async def performance_targets(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    return {
        "profile": gateway.profile.name,
        "targets": gateway.profile.targets.model_dump(),
        "measured": gateway.metrics.measured(),
        "max_concurrent_sessions": gateway.profile.max_concurrent_sessions,
        "max_queue_depth": gateway.profile.max_queue_depth,
    }


@router.get("/v1/engine/config")
async def engine_config(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    supervisor = gateway.supervisor
    return {
        "profile": gateway.profile.name,
        "model": gateway.model_id,
        "engine": supervisor.config.effective_flags(supervisor.flags),
        "state": supervisor.state.value,
        "restarts": supervisor.restarts,
        "pid": supervisor.process.pid if supervisor.process is not None else None,
        "url": supervisor.base_url,
        "scheduler_policy": gateway.profile.scheduler_policy,
        "max_tokens_cap": gateway.profile.max_tokens_cap,
        "max_concurrent_sessions": gateway.profile.max_concurrent_sessions,
        "max_queue_depth": gateway.profile.max_queue_depth,
    }
