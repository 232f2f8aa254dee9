"""The chat engines an LLM analyser asks: :class:`GatewayEngine`, the server's own LLM gateway
in process (the same admission, limits and metrics as ``/v1``, so analyses and API clients
share the engine fairly), and :class:`OpenAiEngine`, any OpenAI-compatible server (a bigger
model elsewhere, a hosted API).

Both take an OpenAI chat body (``messages``, ``response_format`` …) and answer the assistant's
text, or raise :class:`EngineError` saying why there is none. ``GatewayEngine`` is
event-loop-confined like the gateway; ``OpenAiEngine`` holds one HTTP client, used on one loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from hearthwatch.security.analysis.base import AnalysisError

if TYPE_CHECKING:
    from hearthwatch.llm.gateway import LlmGateway


class EngineError(AnalysisError):
    """The engine gave no answer (refused, failed, busy, timed out); the message says which.
    ``retryable``: asking again may work (not so for a request the engine refused as such,
    one over its context, say)."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class ChatEngine(Protocol):
    model: str
    """The model's name, as events record it."""

    async def chat(self, body: dict[str, Any]) -> str:
        """The assistant's text for an OpenAI chat request body."""
        ...


class GatewayEngine:
    """The in-process LLM gateway: the request is validated, admitted and measured as a
    ``/v1/chat/completions`` request is."""

    def __init__(self, gateway: LlmGateway):
        self._gateway = gateway
        self.model = gateway.model_id

    async def chat(self, body: dict[str, Any]) -> str:
        from hearthwatch.llm.errors import ClientDisconnectedError, GatewayError

        try:
            exchange = self._gateway.exchange("chat", body)
            lease = await self._gateway.admit(exchange, _never)
            with lease:
                try:
                    response = await self._gateway.complete(exchange)
                except GatewayError as exc:
                    lease.outcome = exc.outcome
                    raise
                lease.outcome = "ok"
        except GatewayError as exc:
            raise EngineError(
                f"the LLM gateway gave no answer: {exc}", retryable=_retryable(exc.status)
            ) from None
        except ClientDisconnectedError as exc:
            raise EngineError(f"the LLM gateway gave no answer: {exc}") from None
        return _content(response)


class OpenAiEngine:
    """An OpenAI-compatible chat server at ``base_url`` (ending in ``/v1``)."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 120.0
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s
        )
        self.model = model

    async def chat(self, body: dict[str, Any]) -> str:
        try:
            reply = await self._client.post("/chat/completions", json={**body, "model": self.model})
        except httpx.HTTPError as exc:
            raise EngineError(f"the engine could not be reached: {type(exc).__name__}") from None
        if reply.status_code != 200:
            raise EngineError(
                f"the engine answered HTTP {reply.status_code}",
                retryable=_retryable(reply.status_code),
            )
        try:
            response = reply.json()
        except ValueError:
            raise EngineError("the engine's response is not JSON") from None
        return _content(response)

    async def close(self) -> None:
        await self._client.aclose()


def _retryable(status: int) -> bool:
    """Whether a request answered ``status`` may succeed when asked again."""
    return status >= 500 or status in (408, 409, 425, 429)


def _content(response: Any) -> str:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EngineError("the engine's response has no message") from None
    if not isinstance(content, str):
        raise EngineError("the engine's message has no text")
    return content


async def _never() -> None:
    """No client to lose: an in-process request waits for its place until its deadline."""
    await asyncio.Event().wait()
