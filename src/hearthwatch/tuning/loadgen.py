"""Open-loop load generation: requests leave on a schedule (constant or Poisson arrivals)
whether or not earlier ones have been answered, so a slow server cannot slow the offered load.

The generator reports its own lateness (actual minus scheduled send time) and flags when it
fell behind, so a saturated client is never mistaken for a slow server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
import numpy as np

Arrival = Literal["constant", "poisson"]
LATE_WARNING_MS = 10.0


@dataclass(frozen=True)
class RequestRecord:
    scheduled_s: float
    sent_s: float
    done_s: float
    status: int  # 0: no HTTP answer (connection error or client timeout)


@dataclass(frozen=True)
class LoadSummary:
    offered_rps: float
    duration_s: float
    sent: int
    ok: int
    statuses: dict[str, int]
    achieved_rps: float
    latency_ms: dict[str, float | None]
    lateness_ms: dict[str, float]
    fell_behind: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


async def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    duration_s: float,
    content_type: str = "image/jpeg",
    arrival: Arrival = "constant",
    timeout_s: float = 60.0,
    seed: int = 0,
) -> list[RequestRecord]:
    """POST ``bodies`` (cycled) to ``url`` on the schedule; one record per request."""
    offsets = schedule(rate, duration_s, arrival, seed)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    headers = {"Content-Type": content_type}
    records: list[RequestRecord] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.perf_counter()

        async def send(index: int, offset: float) -> None:
            sent = time.perf_counter() - start
            status = 0
            body = bodies[index % len(bodies)]
            try:
                async with session.post(url, data=body, headers=headers) as reply:
                    await reply.read()
                    status = reply.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            records.append(RequestRecord(offset, sent, time.perf_counter() - start, status))

        tasks = []
        for index, offset in enumerate(offsets):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index, float(offset))))
        await asyncio.gather(*tasks)
    return sorted(records, key=lambda r: r.scheduled_s)


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def summarize(records: Sequence[RequestRecord], rate: float, duration_s: float) -> LoadSummary:
    ok = [r for r in records if r.status == 200]
    latency = np.array([(r.done_s - r.sent_s) * 1000 for r in ok])
    lateness = np.array([(r.sent_s - r.scheduled_s) * 1000 for r in records])
    span = max((r.done_s for r in ok), default=0.0) - min((r.sent_s for r in records), default=0.0)
    late = _percentiles(lateness)
    return LoadSummary(
        offered_rps=rate,
        duration_s=duration_s,
        sent=len(records),
        ok=len(ok),
        statuses={str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
        achieved_rps=len(ok) / span if span > 0 else 0.0,
        latency_ms=_percentiles(latency),
        lateness_ms={k: v for k, v in late.items() if v is not None},
        fell_behind=bool(late["p99"] is not None and late["p99"] > LATE_WARNING_MS),
    )
