"""The LLM gateway: request validation, admission, then a streamed upstream request to the
engine for every client request, streamed or not, so time to first token and tokens/s are
measured the same way for every engine. ``max_tokens`` is capped by the profile; every
response and chunk names the served model; an engine's 4xx comes back with its status and
message, any engine 5xx as a 502; a dead or restarting engine is a 503, a request past its
timeout a 504. The timeout is one deadline for the whole request, from its arrival to the
stream's end: an engine that trickles chunks cannot hold a request open past it. An admitted
request holds a :class:`Lease` that is released exactly once, whoever finishes first.

The streamed path costs the engine CPU on a small machine (both share its cores), so a chunk
that needs no change is forwarded as the engine's bytes: only the chunks before the first
token, a usage or error chunk, and a chunk that names another model are parsed (and, for the
model, re-serialised). The engine's reads are relayed as they come, several chunks in one
block when they arrived together (:mod:`hearthwatch.llm.upstream`); the deadline is one timer
per request, not one per read.
Event-loop-confined, except :meth:`LlmGateway.exchange` (pure)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from hearthwatch.llm.admission import Admission
from hearthwatch.llm.chunks import assemble, has_token
from hearthwatch.llm.errors import (
    AdmissionClosedError,
    AdmissionFullError,
    ClientDisconnectedError,
    GatewayError,
    SessionTimeoutError,
    UpstreamError,
)
from hearthwatch.llm.metrics import LlmMetrics
from hearthwatch.llm.profiles import HardwareProfile
from hearthwatch.llm.requests import ChatRequest, CompletionRequest, ValidationError, error_summary
from hearthwatch.llm.supervisor import EngineSupervisor
from hearthwatch.llm.upstream import Reply, post

log = logging.getLogger(__name__)

ROUTES = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
REQUEST_MODELS: dict[str, type[ChatRequest] | type[CompletionRequest]] = {
    "chat": ChatRequest,
    "completions": CompletionRequest,
}
DEFAULT_MODEL = "default"
CONNECT_TIMEOUT_S = 5.0
DATA = b"data:"
DONE = b"[DONE]"


@dataclass
class Exchange:
    """One request's upstream body and what was measured of it."""

    kind: str
    body: dict[str, Any]
    streamed: bool
    client_wants_usage: bool
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    usage: dict[str, int] | None = None


class Lease:
    """An admitted request's place on the engine, released once: by :meth:`release`, or on
    leaving a ``with`` block unless it was handed over to whatever outlives the block."""

    def __init__(self, gateway: LlmGateway, exchange: Exchange) -> None:
        self.exchange = exchange
        self.outcome = "cancelled"
        self._gateway = gateway
        self._released = False
        self._handed_over = False

    def hand_over(self) -> None:
        """From now on the new owner releases it (a response that outlives the handler)."""
        self._handed_over = True

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gateway.finish(self.exchange, self.outcome)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._handed_over:
            self.release()


def _body_error(exc: ValidationError) -> GatewayError:
    return GatewayError(400, error_summary(exc), "invalid_request")


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
        self.model_id = supervisor.config.model_name()
        self.created = int(time.time())
        self.admission = Admission(profile.max_concurrent_sessions, profile.max_queue_depth)
        self.metrics = LlmMetrics(
            registry, lambda: self.admission.running, lambda: self.admission.waiting
        )
        # a chunk naming the served model already carries this, once ("model" is a key: in
        # a JSON string its quotes would be escaped)
        self._model_field = b'"model":' + json.dumps(self.model_id).encode()
        self._tls: ssl.SSLContext | None = None  # for an https engine, made once

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._tls is None and self.supervisor.base_url.startswith("https:"):
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        """Nothing is held between requests (each has its own connection)."""

    def model_card(self) -> dict[str, Any]:
        """The served model as ``/v1/models`` lists it."""
        return {
            "id": self.model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "hearthwatch",
        }

    def check_model(self, name: str | None) -> None:
        """Accept the served id and ``default``; anything else is a 404 ``model_not_found``."""
        if name is not None and name not in (self.model_id, DEFAULT_MODEL):
            raise GatewayError(
                404,
                f"model {name[:200]!r} does not exist; this server serves "
                f"{self.model_id!r} (also reachable as {DEFAULT_MODEL!r})",
                "model_not_found",
            )

    def exchange(self, kind: str, body: Any) -> Exchange:
        """Validate a client request against its typed model and build the upstream one."""
        if not isinstance(body, dict):
            raise GatewayError(400, "request body must be a JSON object", "invalid_request")
        try:
            request = REQUEST_MODELS[kind].model_validate(body)
        except ValidationError as exc:
            raise _body_error(exc) from None
        self.check_model(request.model)
        upstream = request.model_dump(exclude_unset=True, by_alias=True)  # nulls left out
        cap = self.profile.max_tokens_cap
        asked = upstream.pop("max_completion_tokens", None) or upstream.get("max_tokens") or cap
        upstream["max_tokens"] = min(asked, cap)
        upstream["model"] = self.model_id
        upstream["stream"] = True
        options = upstream.get("stream_options") or {}
        upstream["stream_options"] = {**options, "include_usage": True}
        streamed = bool(request.stream)
        wants_usage = streamed and bool(options.get("include_usage"))
        return Exchange(kind, upstream, streamed, wants_usage)

    async def admit(self, exchange: Exchange, client_gone: Callable[[], Awaitable[None]]) -> Lease:
        """Wait for a place on the engine, racing ``client_gone``: a client that leaves while
        queued leaves the queue at once (:class:`ClientDisconnectedError`)."""
        if not self.supervisor.ready:
            self.metrics.requests.labels("engine_unavailable").inc()
            raise GatewayError(
                503, f"LLM engine is {self.supervisor.state.value}", "engine_unavailable", 5
            )
        if self.admission.try_acquire():
            return Lease(self, exchange)
        acquire = asyncio.ensure_future(self.admission.acquire(self.timeout_s))
        gone = asyncio.ensure_future(client_gone())
        claimed = False
        try:
            await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                raise ClientDisconnectedError
            acquire.result()
            claimed = True
            return Lease(self, exchange)
        except AdmissionFullError as exc:
            self.metrics.requests.labels("queue_full").inc()
            raise GatewayError(503, str(exc), "queue_full", exc.retry_after_s) from None
        except SessionTimeoutError as exc:
            self.metrics.requests.labels("timeout").inc()
            raise GatewayError(504, str(exc), "timeout") from None
        except AdmissionClosedError as exc:
            self.metrics.requests.labels("engine_unavailable").inc()
            raise GatewayError(503, f"{exc}; retry shortly", "shutting_down", 5) from None
        finally:
            gone.cancel()
            if not claimed:
                acquire.cancel()  # leaves the queue; a place granted meanwhile goes back
                acquire.add_done_callback(self._give_back_unclaimed)

    def _give_back_unclaimed(self, acquire: asyncio.Future[None]) -> None:
        if not acquire.cancelled() and acquire.exception() is None:
            self.admission.release()

    def finish(self, exchange: Exchange, status: str) -> None:
        """Free the request's place and record how it ended (through :class:`Lease` only)."""
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

    async def chunks(
        self, exchange: Exchange, usage_chunks: bool | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """The engine's stream, one list per read of the JSON texts of the chunks that read
        completed, each naming the served model; usage and first-token time are recorded on
        the way. A chunk without choices (the usage chunk) is left out unless
        ``usage_chunks`` (default: whether the client asked for usage); a read that leaves
        nothing to pass on gives no list. Every wait on the engine ends at the request's
        deadline (``timeout_s`` after it arrived), however the stream trickles."""
        keep_usage = exchange.client_wants_usage if usage_chunks is None else usage_chunks
        url = self.supervisor.base_url + ROUTES[exchange.kind]
        loop_time = asyncio.get_running_loop().time()
        deadline = loop_time + exchange.started + self.timeout_s - time.monotonic()
        body = json.dumps(exchange.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        reply: Reply | None = None
        try:
            reply = await post(
                url,
                body.encode(),
                deadline=deadline,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                tls=self._tls_context(),
            )
            if reply.status >= 400:
                raise _engine_refusal(reply.status, await reply.read_all())
            tail = b""
            while piece := await reply.read():  # each read as it came
                lines = (tail + piece if tail else piece).split(b"\n")
                tail = lines.pop()  # an unfinished line waits for the next read
                batch, finished = self._read(exchange, lines, keep_usage)
                if batch:
                    yield batch
                if finished:
                    return
            batch, _ = self._read(exchange, [tail], keep_usage)  # a last line without its end
            if batch:
                yield batch
        except TimeoutError:
            raise GatewayError(
                504, f"LLM request timed out after {self.timeout_s:g} s", "timeout"
            ) from None
        except (UpstreamError, ValueError) as exc:  # ValueError: a chunk not JSON
            log.info("engine exchange failed: %s", exc)
            raise GatewayError(
                503,
                f"LLM engine connection lost ({type(exc).__name__}); retry shortly",
                "engine_unavailable",
                5,
            ) from None
        finally:
            if reply is not None:
                reply.close()  # one connection per request; the engine sees a client that left

    def _read(
        self, exchange: Exchange, lines: list[bytes], keep_usage: bool
    ) -> tuple[list[bytes], bool]:
        """The chunks in one read's whole lines that go on, and whether ``[DONE]`` came."""
        batch: list[bytes] = []
        for line in lines:
            if not line.startswith(DATA):
                continue  # blank separators, comments, other SSE fields
            data = line[5:].strip()
            if data == DONE:
                return batch, True
            data, choices = self._checked(exchange, data)
            if choices or keep_usage:
                batch.append(data)
        return batch, False

    def _checked(self, exchange: Exchange, data: bytes) -> tuple[bytes, bool]:
        """One chunk's JSON text as it goes to the client, and whether it carries choices.
        Once the first token has passed, a chunk that carries choices, names the served model
        and has no usage (but a null one) and no error key is passed on untouched; any other is
        parsed, checked, recorded and, if it names another model, re-serialised."""
        if (
            exchange.first_token_at is not None
            and b'"choices":[{' in data
            and data.count(b'"usage":') == data.count(b'"usage":null')  # vLLM: null in each
            and b'"error":' not in data
            and self._model_field in data
            and data.count(b'"model":') == 1
        ):
            return data, True
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("a chunk that is not a JSON object")
        if "error" in chunk:
            log.warning("engine error mid-stream: %s", _engine_message(data))
            raise GatewayError(502, "the LLM engine failed while generating", "engine_error")
        if exchange.first_token_at is None and has_token(chunk):
            exchange.first_token_at = time.monotonic()
        if chunk.get("usage"):
            exchange.usage = chunk["usage"]
        if chunk.get("model") != self.model_id or data.count(b'"model":') != 1:
            chunk["model"] = self.model_id
            data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()
        return data, bool(chunk.get("choices"))

    async def complete(self, exchange: Exchange) -> dict[str, Any]:
        """A whole (non-streamed) OpenAI response assembled from the stream."""
        chunks = [
            json.loads(data)
            async for batch in self.chunks(exchange, usage_chunks=True)
            for data in batch
        ]
        response = assemble(exchange.kind, chunks)
        response["model"] = self.model_id
        return response


def _engine_refusal(status: int, raw: bytes) -> GatewayError:
    """The engine's own error: a 4xx names what was wrong and keeps its status; a 5xx is the
    engine failing, a 502 (its text goes to the log, not to the client)."""
    message = _engine_message(raw)
    if status == 503:
        return GatewayError(503, "the LLM engine is busy; retry shortly", "engine_unavailable")
    if status >= 500:
        log.warning("engine answered %d: %s", status, message)
        return GatewayError(
            502, f"the LLM engine failed on this request (engine status {status})", "engine_error"
        )
    return GatewayError(status, f"LLM engine refused the request: {message}", "invalid_request")


def _engine_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode(errors="replace")[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message", error))[:500]
    return str(error)[:500]


async def wait_for_disconnect(receive: Any) -> None:
    """Return when the client of an ASGI request goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0)
