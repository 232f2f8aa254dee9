"""The LLM gateway: admission, then a streamed upstream request to the engine for every client
request, streamed or not, so time to first token and tokens/s are measured the same way for
every engine. ``max_tokens`` is capped by the profile; engine errors come back with their
status; a dead or restarting engine is a 503, a request past its timeout a 504."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from hearthwatch.llm.admission import Admission, QueueFullError, SessionTimeoutError
from hearthwatch.llm.chunks import assemble, has_token
from hearthwatch.llm.metrics import LlmMetrics
from hearthwatch.llm.profiles import HardwareProfile
from hearthwatch.llm.supervisor import EngineSupervisor

log = logging.getLogger(__name__)

ROUTES = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class GatewayError(Exception):
    """An answer other than a completion: ``status`` and a message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def outcome(self) -> str:
        """The ``status`` label of ``hearthwatch_llm_requests_total`` for this error."""
        if self.status == 504:
            return "timeout"
        return "engine_error" if self.status >= 500 else "bad_request"


@dataclass
class Exchange:
    """One request's upstream body and what was measured of it."""

    kind: str
    body: dict[str, Any]
    client_wants_usage: bool
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    usage: dict[str, int] | None = None


def _validate(kind: str, body: Any) -> None:
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "'messages' must be a non-empty list")
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise GatewayError(400, "each message needs a 'role'")
    elif not isinstance(body.get("prompt"), str | list):
        raise GatewayError(400, "'prompt' must be a string or a list")
    if body.get("n", 1) != 1:
        raise GatewayError(400, "only n=1 is supported")


class LlmGateway:
    def __init__(
        self,
        supervisor: EngineSupervisor,
        profile: HardwareProfile,
        registry: CollectorRegistry,
        timeout_s: float = 120.0,
    ):
        self.supervisor = supervisor
        self.profile = profile
        self.timeout_s = timeout_s
        self.admission = Admission(profile.max_concurrent_sessions, profile.max_queue_depth)
        self.metrics = LlmMetrics(
            registry, lambda: self.admission.running, lambda: self.admission.waiting
        )
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
            timeout = httpx.Timeout(self.timeout_s, connect=5.0)
            self._client = httpx.AsyncClient(timeout=timeout, limits=limits)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def exchange(self, kind: str, body: Any) -> Exchange:
        """Validate a client request and build the upstream one."""
        _validate(kind, body)
        upstream = dict(body)
        cap = self.profile.max_tokens_cap
        for key in ("max_tokens", "max_completion_tokens"):
            value = upstream.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GatewayError(400, f"'{key}' must be a positive integer")
        asked = upstream.pop("max_completion_tokens", None) or upstream.get("max_tokens") or cap
        upstream["max_tokens"] = min(asked, cap)
        options = upstream.get("stream_options") or {}
        upstream["stream"] = True
        upstream["stream_options"] = {**options, "include_usage": True}
        wants_usage = bool(body.get("stream") and options.get("include_usage"))
        return Exchange(kind, upstream, wants_usage)

    async def admit(self) -> None:
        if not self.supervisor.ready:
            self.metrics.requests.labels("engine_unavailable").inc()
            raise GatewayError(503, f"LLM engine is {self.supervisor.state.value}", 5)
        try:
            await self.admission.acquire(self.timeout_s)
        except QueueFullError as exc:
            self.metrics.requests.labels("queue_full").inc()
            raise GatewayError(503, "Queue full", exc.retry_after_s) from None
        except SessionTimeoutError as exc:
            self.metrics.requests.labels("timeout").inc()
            raise GatewayError(504, str(exc)) from None

    def release(self, exchange: Exchange, status: str) -> None:
        self.admission.release()
        self.metrics.requests.labels(status).inc()
        if status != "ok":
            return
        ttft = tps = None
        if exchange.first_token_at is not None:
            ttft = exchange.first_token_at - exchange.started
            tokens = (exchange.usage or {}).get("completion_tokens", 0)
            elapsed = time.monotonic() - exchange.first_token_at
            if tokens > 1 and elapsed > 0:
                tps = (tokens - 1) / elapsed
        self.metrics.observe(ttft, tps)
        if exchange.usage:
            self.metrics.prompt_tokens.inc(exchange.usage.get("prompt_tokens", 0))
            self.metrics.completion_tokens.inc(exchange.usage.get("completion_tokens", 0))

    async def chunks(self, exchange: Exchange) -> AsyncIterator[tuple[dict[str, Any], str]]:
        """The engine's stream as (parsed chunk, its JSON text); usage and first-token time
        are recorded on the way."""
        url = self.supervisor.base_url + ROUTES[exchange.kind]
        try:
            async with self._http().stream("POST", url, json=exchange.body) as reply:
                if reply.status_code >= 400:
                    raise GatewayError(reply.status_code, _engine_message(await reply.aread()))
                async for line in reply.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        message = _engine_message(data.encode())
                        log.warning("engine error mid-stream: %s", message)
                        raise GatewayError(502, f"LLM engine error: {message}")
                    if exchange.first_token_at is None and has_token(chunk):
                        exchange.first_token_at = time.monotonic()
                    if chunk.get("usage"):
                        exchange.usage = chunk["usage"]
                    yield chunk, data
        except httpx.TimeoutException:
            raise GatewayError(504, f"LLM request timed out after {self.timeout_s:g} s") from None
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            raise GatewayError(
                503, f"LLM engine connection lost ({type(exc).__name__}); retry shortly", 5
            ) from None

    async def complete(self, exchange: Exchange) -> dict[str, Any]:
        """A whole (non-streamed) OpenAI response assembled from the stream."""
        return assemble(exchange.kind, [chunk async for chunk, _ in self.chunks(exchange)])


def _engine_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode(errors="replace")[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)


async def wait_for_disconnect(receive: Any) -> None:
    """Return when the client of an ASGI request goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0)
