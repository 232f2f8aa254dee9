"""Open-loop load generation: requests leave on a schedule (constant or Poisson arrivals)
whether or not earlier ones have been answered, so a slow server cannot slow the offered load.

The generator reports its own lateness (actual minus scheduled send time) and flags when it
fell behind, so a saturated client is never mistaken for a slow server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp
import numpy as np

from hearthwatch.llm.chunks import has_token

Arrival = Literal["constant", "poisson"]
LATE_WARNING_MS = 10.0


@dataclass(frozen=True)
class RequestRecord:
    scheduled_s: float
    sent_s: float
    done_s: float
    status: int  # 0: no HTTP answer (connection error or client timeout)
    first_token_s: float | None = None  # streamed LLM requests only
    output_tokens: int | None = None


def schedule(rate: float, duration_s: float, arrival: Arrival, seed: int = 0) -> np.ndarray:
    """Send offsets in seconds for ``rate`` requests/s over ``duration_s``."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be > 0, got {rate} and {duration_s}")
    count = max(1, round(rate * duration_s))
    if arrival == "constant":
        return np.arange(count) / rate
    if arrival == "poisson":
        gaps = np.random.default_rng(seed).exponential(1 / rate, count)
        return np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    raise ValueError(f"unknown arrival process {arrival!r}; use constant or poisson")


@dataclass(frozen=True)
class Payload:
    """One request body and the headers that go with it; ``streamed`` bodies are OpenAI
    streaming requests whose first token and token count are recorded."""

    body: bytes
    headers: Mapping[str, str]
    streamed: bool = False


def image_payloads(images: Sequence[bytes], content_type: str = "image/jpeg") -> list[Payload]:
    return [Payload(image, {"Content-Type": content_type}) for image in images]


class _Sender:
    """POSTs payloads over one session and records each request."""

    def __init__(self, session: aiohttp.ClientSession, url: str, start: float):
        self.session, self.url, self.start = session, url, start
        self.records: list[RequestRecord] = []

    async def send(self, payload: Payload, scheduled_s: float) -> None:
        sent = time.perf_counter() - self.start
        status, first, tokens = 0, None, None
        try:
            async with self.session.post(
                self.url, data=payload.body, headers=payload.headers
            ) as reply:
                status = reply.status
                if payload.streamed and status == 200:
                    first, tokens = await self._read_stream(reply)
                else:
                    await reply.read()
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        done = time.perf_counter() - self.start
        self.records.append(RequestRecord(scheduled_s, sent, done, status, first, tokens))

    async def _read_stream(self, reply: aiohttp.ClientResponse) -> tuple[float | None, int | None]:
        """First-token time and completion tokens of an OpenAI SSE stream."""
        first, tokens = None, None
        async for raw in reply.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if first is None and has_token(chunk):
                first = time.perf_counter() - self.start
            if chunk.get("usage"):
                tokens = chunk["usage"].get("completion_tokens")
        return first, tokens


def _session(timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s), connector=aiohttp.TCPConnector(limit=0)
    )


async def run_schedule(
    url: str, payloads: Sequence[Payload], offsets: np.ndarray, timeout_s: float = 60.0
) -> list[RequestRecord]:
    """Send payload ``i % len(payloads)`` at ``offsets[i]`` seconds, answered or not."""
    async with _session(timeout_s) as session:
        sender = _Sender(session, url, time.perf_counter())
        tasks = []
        for index, offset in enumerate(offsets):
            delay = sender.start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            payload = payloads[index % len(payloads)]
            tasks.append(asyncio.create_task(sender.send(payload, float(offset))))
        await asyncio.gather(*tasks)
    return sorted(sender.records, key=lambda r: r.scheduled_s)


async def open_loop(
    url: str,
    payloads: Sequence[Payload],
    rate: float,
    duration_s: float,
    arrival: Arrival = "constant",
    timeout_s: float = 60.0,
    seed: int = 0,
) -> list[RequestRecord]:
    """Requests at ``rate`` per second for ``duration_s``, whether or not answered."""
    return await run_schedule(url, payloads, schedule(rate, duration_s, arrival, seed), timeout_s)


async def burst(
    url: str, payloads: Sequence[Payload], count: int, timeout_s: float = 60.0
) -> list[RequestRecord]:
    """``count`` requests all at once."""
    if count < 1:
        raise ValueError(f"a burst needs at least one request, got {count}")
    return await run_schedule(url, payloads, np.zeros(count), timeout_s)


async def closed_loop(
    url: str,
    payloads: Sequence[Payload],
    concurrency: int,
    duration_s: float | None = None,
    count: int | None = None,
    timeout_s: float = 60.0,
) -> list[RequestRecord]:
    """``concurrency`` clients, each sending its next request when the last is answered,
    for ``duration_s`` seconds or ``count`` requests in all."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if (duration_s is None) == (count is None):
        raise ValueError("give exactly one of duration_s and count")
    async with _session(timeout_s) as session:
        sender = _Sender(session, url, time.perf_counter())
        issued = 0

        async def client() -> None:
            nonlocal issued
            while True:
                now = time.perf_counter() - sender.start
                if (count is not None and issued >= count) or (
                    duration_s is not None and now >= duration_s
                ):
                    return
                payload = payloads[issued % len(payloads)]
                issued += 1
                await sender.send(payload, now)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return sorted(sender.records, key=lambda r: r.scheduled_s)
