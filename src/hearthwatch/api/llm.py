"""OpenAI-compatible LLM routes (``/v1/chat/completions``, ``/v1/completions`` with SSE
streaming, ``/v1/models``) and the profile's ``/v1/performance/targets`` and
``/v1/engine/config``. A client that goes away cancels its upstream request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearthwatch.api.body import read_body
from hearthwatch.api.detect import services_of
from hearthwatch.api.errors import ApiError
from hearthwatch.llm.gateway import Exchange, GatewayError, LlmGateway, wait_for_disconnect

router = APIRouter(tags=["llm"])


def gateway_of(request: Request) -> LlmGateway:
    gateway = services_of(request).llm
    if gateway is None:
        raise ApiError(404, "the LLM service is disabled (LLM_ENABLED=false)")
    return gateway


def _error(exc: GatewayError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    return JSONResponse({"error": exc.message}, exc.status, headers=headers)


async def _parsed(request: Request) -> Any:
    raw = await read_body(request, services_of(request).settings.max_body_bytes)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


async def _handle(request: Request, kind: str) -> Response:
    gateway = gateway_of(request)
    body = await _parsed(request)
    try:
        exchange = gateway.exchange(kind, body)
        await gateway.admit()
    except GatewayError as exc:
        return _error(exc)
    if isinstance(body, dict) and body.get("stream"):
        return await _stream(gateway, exchange)
    work = asyncio.ensure_future(gateway.complete(exchange))
    gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
    status = "cancelled"
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()  # the client left: stop generating for it
            return Response(status_code=499)
        result = work.result()
        status = "ok"
        return JSONResponse(result)
    except GatewayError as exc:
        status = exc.outcome
        return _error(exc)
    finally:
        gone.cancel()
        gateway.release(exchange, status)


def _sse(exchange: Exchange, chunk: dict[str, Any], text: str) -> bytes:
    """The engine's own bytes as an SSE event; the usage chunk only if the client asked."""
    if chunk.get("choices") or exchange.client_wants_usage:
        return b"data: " + text.encode() + b"\n\n"
    return b""


async def _prepend(
    first: tuple[dict[str, Any], str], rest: AsyncIterator[tuple[dict[str, Any], str]]
) -> AsyncIterator[tuple[dict[str, Any], str]]:
    yield first
    async for item in rest:
        yield item


async def _stream(gateway: LlmGateway, exchange: Exchange) -> Response:
    chunks = gateway.chunks(exchange)
    try:
        first = await anext(chunks, None)  # errors before the first chunk get a status code
    except GatewayError as exc:
        gateway.release(exchange, exc.outcome)
        return _error(exc)

    async def events() -> AsyncIterator[bytes]:
        status = "cancelled"
        try:
            if first is not None:
                async for chunk, text in _prepend(first, chunks):
                    if event := _sse(exchange, chunk, text):
                        yield event
            yield b"data: [DONE]\n\n"
            status = "ok"
        except GatewayError as exc:
            status = exc.outcome
            yield b"data: " + json.dumps({"error": {"message": exc.message}}).encode() + b"\n\n"
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            gateway.release(exchange, status)

    return StreamingResponse(events(), media_type="text/event-stream")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _handle(request, "chat")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _handle(request, "completions")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    name = gateway.supervisor.config.model_name()
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "hearthwatch"}]}


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
