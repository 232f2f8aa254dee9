"""Batch-size tuning on the real server path: each configuration runs on a fresh
``hearthwatch serve`` under closed-loop load (concurrency = 2 × batch size, Triton's rule of
thumb), timed at the client so queue wait is in every latency; peak memory comes from the
server's own telemetry history. The result is written where the server reads it at start."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from tqdm import tqdm

from hearthwatch.tuning.choice import Choice, SweepPoint
from hearthwatch.tuning.loadgen import Payload, closed_loop, summarize
from hearthwatch.tuning.server_process import ServerProcess

TUNED_HEADER = (
    "# written by `hearthwatch tune`; the server applies max_batch_size and max_queue_delay_ms\n"
)


@dataclass(frozen=True)
class SweepPlan:
    batch_sizes: tuple[int, ...]
    queue_delays_ms: tuple[float, ...]
    duration_s: float = 10.0
    warmup_s: float = 2.0
    concurrency_per_batch: int = 2

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if not self.queue_delays_ms or min(self.queue_delays_ms) < 0:
            raise ValueError(f"queue delays must be >= 0, got {self.queue_delays_ms}")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("duration must be > 0 and warm-up >= 0")

    def configurations(self) -> list[tuple[int, float]]:
        return list(itertools.product(sorted(self.batch_sizes), sorted(self.queue_delays_ms)))


def _peak_memory(url: str, minutes: float) -> tuple[int | None, int | None]:
    """(peak used, total) device memory during the last ``minutes``; the process's peak
    resident memory and no total on a CPU host."""
    samples = httpx.get(
        f"{url}/api/system/gpu/history", params={"minutes": minutes}, timeout=10
    ).json()["samples"]
    gpu_samples = [s for s in samples if s["gpus"]]
    if gpu_samples:
        used = max(sum(g["memory_used_bytes"] or 0 for g in s["gpus"]) for s in gpu_samples)
        total = sum(g["memory_total_bytes"] or 0 for g in gpu_samples[-1]["gpus"])
        return used, total or None
    return max((s["process_max_rss_bytes"] for s in samples), default=None), None


def measure(
    server_url: str, payloads: Sequence[Payload], batch: int, delay: float, plan: SweepPlan
) -> SweepPoint:
    """Closed-loop load on ``/detect`` of a server already running with this configuration."""
    url = f"{server_url}/detect"
    concurrency = plan.concurrency_per_batch * batch
    if plan.warmup_s:
        asyncio.run(closed_loop(url, payloads, concurrency, duration_s=plan.warmup_s))
    started = time.monotonic()
    records = asyncio.run(closed_loop(url, payloads, concurrency, duration_s=plan.duration_s))
    summary = summarize(records, None, plan.duration_s)
    minutes = max(1.0, math.ceil((time.monotonic() - started) / 60 + 0.1))
    peak, total = _peak_memory(server_url, minutes)
    latency = summary.latency_ms
    return SweepPoint(
        batch_size=batch,
        queue_delay_ms=delay,
        throughput_rps=summary.achieved_rps,
        p50_ms=latency["p50"] or math.inf,
        p95_ms=latency["p95"] or math.inf,
        p99_ms=latency["p99"] or math.inf,
        errors=summary.sent - summary.ok,
        peak_memory_bytes=peak,
        memory_total_bytes=total,
    )


def run_sweep(
    base_env: Mapping[str, str],
    payloads: Sequence[Payload],
    plan: SweepPlan,
    log_dir: Path,
    progress: bool = True,
) -> list[SweepPoint]:
    """One fresh server per configuration, measured in turn."""
    points = []
    configurations = plan.configurations()
    bar = tqdm(configurations, desc="tuning", unit="config", disable=not progress)
    for batch, delay in bar:
        bar.set_postfix(batch=batch, delay_ms=delay)
        env = {**base_env, "MAX_BATCH_SIZE": str(batch), "MAX_QUEUE_DELAY_MS": str(delay)}
        log = log_dir / f"server_b{batch}_d{delay:g}.log"
        with ServerProcess(env, log) as server:
            point = measure(server.url, payloads, batch, delay, plan)
        points.append(point)
        bar.write(
            f"batch {batch:4d} delay {delay:6.1f} ms: {point.throughput_rps:8.1f}/s "
            f"p95 {point.p95_ms:8.1f} ms errors {point.errors}"
        )
    return points


def write_tuned(
    path: Path,
    model_name: str,
    choice: Choice,
    points: Sequence[SweepPoint],
    meta: Mapping[str, Any],
) -> None:
    """Record the choice for ``model_name`` in ``path``, keeping other models' entries."""
    if choice.point is None:
        raise ValueError(f"nothing to write: {choice.reason}")
    data: dict[str, Any] = {}
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
    models = data.setdefault("models", {})
    chosen = choice.point
    models[model_name] = {
        "max_batch_size": chosen.batch_size,
        "max_queue_delay_ms": chosen.queue_delay_ms,
        "reason": choice.reason,
        "measured": {
            "throughput_rps": round(chosen.throughput_rps, 3),
            "p50_ms": round(chosen.p50_ms, 3),
            "p95_ms": round(chosen.p95_ms, 3),
            "p99_ms": round(chosen.p99_ms, 3),
            "peak_memory_bytes": chosen.peak_memory_bytes,
        },
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **dict(meta),
        "sweep": [asdict(p) for p in points],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TUNED_HEADER + yaml.safe_dump(data, sort_keys=False))
