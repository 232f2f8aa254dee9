"""Batch-size tuning on the real server path, by the shared measuring method
(:mod:`hearthwatch.tuning.method`).

Each (batch size, queue delay) configuration runs on a fresh ``hearthwatch serve``. After the
same warm-up for every configuration (two bursts of twice the largest batch of the plan), its
knee is found by bisection on the offered rate of open-loop Poisson load (the same seed for
every configuration): the highest rate at which the server answers ≥ 95 % of what is offered
inside the steady-state window, with no errors and a P95 (timed from each request's scheduled
send, so queue wait is in it) under the SLA, to the method's resolution; the knee's figure is
the throughput achieved in that window. The first configuration's search starts from the
plan's rate, or from the warm-up's throughput; each later one starts from the knee before it.
A configuration whose fastest lone request already takes longer than the SLA has no knee, and
is not searched.
Peak memory comes from the server's own telemetry history over the search. The choice
(:mod:`hearthwatch.tuning.choice`) is written where the server reads it at start, with the
method it was measured by.

Runs on the caller's thread (each probe in its own event loop).
"""

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

from hearthwatch.percentiles import P95_MIN_SAMPLES
from hearthwatch.tuning.choice import Choice, SweepPoint
from hearthwatch.tuning.loadgen import Payload, burst, closed_loop
from hearthwatch.tuning.method import Knee, Method, Point, find_knee, measure_point
from hearthwatch.tuning.server_process import ServerProcess

TUNED_HEADER = (
    "# written by `hearthwatch tune`; the server applies max_batch_size and max_queue_delay_ms\n"
)


@dataclass(frozen=True)
class SweepPlan:
    batch_sizes: tuple[int, ...]
    queue_delays_ms: tuple[float, ...]
    method: Method
    start_rps: float | None = None  # the first search's first rate; None: from the warm-up

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if not self.queue_delays_ms or min(self.queue_delays_ms) < 0:
            raise ValueError(f"queue delays must be >= 0, got {self.queue_delays_ms}")
        if self.start_rps is not None and self.start_rps <= 0:
            raise ValueError(f"start_rps must be > 0, got {self.start_rps}")
        if self.method.sla_p95_ms is not None and self.method.min_requests < P95_MIN_SAMPLES:
            raise ValueError(
                f"a P95 is reported from {P95_MIN_SAMPLES} samples or more: with a P95 SLA "
                f"the windows need min_requests >= {P95_MIN_SAMPLES}, "
                f"got {self.method.min_requests}"
            )

    def configurations(self) -> list[tuple[int, float]]:
        return list(itertools.product(sorted(self.batch_sizes), sorted(self.queue_delays_ms)))

    @property
    def warmup_burst(self) -> int:
        """Requests in each of the two warm-up bursts, the same for every configuration."""
        return 2 * max(self.batch_sizes)


@dataclass(frozen=True)
class Measured:
    """One configuration's sweep point and the search that found its knee (no probes where
    the search was skipped: ``note`` says why)."""

    point: SweepPoint
    knee: Knee
    note: str = ""


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


def sweep_point(
    batch: int,
    delay: float,
    knee: Knee,
    peak_memory_bytes: int | None = None,
    memory_total_bytes: int | None = None,
    lone_request_ms: float | None = None,
) -> SweepPoint:
    """The sweep point of one configuration from the search for its knee."""
    at = knee.knee
    latency = at.latency_ms if at is not None else {}

    def ms(key: str) -> float | None:
        value = latency.get(key)
        return None if value is None else float(value)

    return SweepPoint(
        batch_size=batch,
        queue_delay_ms=delay,
        knee_rps=at.achieved_rps if at is not None else None,
        knee_offered_rps=at.offered_rps if at is not None else None,
        lowest_failing_rps=knee.lowest_failing_rps,
        p50_ms=ms("p50"),
        p95_ms=ms("p95"),
        p99_ms=ms("p99"),
        samples=int(latency.get("samples") or 0),
        probes=len(knee.probes),
        lone_request_ms=lone_request_ms,
        peak_memory_bytes=peak_memory_bytes,
        memory_total_bytes=memory_total_bytes,
    )


def warm_up(url: str, payloads: Sequence[Payload], count: int) -> float:
    """Two bursts of ``count`` requests; returns the second's requests per second, a first
    guess at the configuration's capacity."""
    asyncio.run(burst(url, payloads, count, timeout_s=600))
    started = time.perf_counter()
    asyncio.run(burst(url, payloads, count, timeout_s=600))
    return count / max(time.perf_counter() - started, 1e-6)


def lone_request_ms(url: str, payloads: Sequence[Payload], count: int = 3) -> float | None:
    """The fastest of ``count`` requests sent one at a time to the otherwise idle server: no
    request under load is faster, so no P95 at any rate is below it. None: none answered."""
    records = asyncio.run(closed_loop(url, payloads, 1, count=count, timeout_s=600))
    answered = [(r.done_s - r.sent_s) * 1000 for r in records if r.status == 200]
    return min(answered) if answered else None


def measure_configuration(
    server_url: str,
    payloads: Sequence[Payload],
    batch: int,
    delay: float,
    plan: SweepPlan,
    start_rps: float | None,
    seed: int = 0,
) -> Measured:
    """Warm up the server running this configuration, then find its knee on ``/detect``."""
    url = f"{server_url}/detect"
    method = plan.method
    started = time.monotonic()
    guess = warm_up(url, payloads, plan.warmup_burst)
    lone = lone_request_ms(url, payloads)
    sla = method.sla_p95_ms
    note = ""
    if lone is None or (sla is not None and lone > sla):
        # no rate can meet the rule: skip the search (its windows grow as the rate falls)
        note = (
            "no request was answered"
            if lone is None
            else f"a lone request takes {lone:.1f} ms, above the P95 SLA of {sla:g} ms"
        )
        knee = Knee(method.knee_rule, method.resolution, None, None, [])
    else:

        def probe(rate: float) -> Point:
            return asyncio.run(measure_point(url, payloads, rate, method, seed))

        knee = find_knee(probe, start_rps or 0.8 * guess, method)
    minutes = max(1.0, math.ceil((time.monotonic() - started) / 60 + 0.1))
    peak, total = _peak_memory(server_url, minutes)
    point = sweep_point(batch, delay, knee, peak, total, lone_request_ms=lone)
    return Measured(point, knee, note)


def run_sweep(
    base_env: Mapping[str, str],
    payloads: Sequence[Payload],
    plan: SweepPlan,
    log_dir: Path,
    progress: bool = True,
) -> list[Measured]:
    """One fresh server per configuration, measured in turn under the same arrival schedules
    (one seed); each search after the first starts from the knee before it."""
    results: list[Measured] = []
    configurations = plan.configurations()
    bar = tqdm(configurations, desc="tuning", unit="config", disable=not progress)
    start = plan.start_rps
    for batch, delay in bar:
        bar.set_postfix(batch=batch, delay_ms=delay)
        env = {**base_env, "MAX_BATCH_SIZE": str(batch), "MAX_QUEUE_DELAY_MS": str(delay)}
        log = log_dir / f"server_b{batch}_d{delay:g}.log"
        with ServerProcess(env, log) as server:
            result = measure_configuration(server.url, payloads, batch, delay, plan, start)
        results.append(result)
        point = result.point
        start = point.knee_offered_rps or start
        knee = "none" if point.knee_rps is None else f"{point.knee_rps:8.2f}/s"
        p95 = "-" if point.p95_ms is None else f"{point.p95_ms:8.1f} ms"
        bar.write(
            f"batch {batch:4d} delay {delay:6.1f} ms: knee {knee} p95 at the knee {p95} "
            f"({point.samples} samples, {point.probes} rates tried) {result.note}"
        )
    return results


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

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    models[model_name] = {
        "max_batch_size": chosen.batch_size,
        "max_queue_delay_ms": chosen.queue_delay_ms,
        "reason": choice.reason,
        "measured": {
            "knee_rps": rounded(chosen.knee_rps),
            "knee_offered_rps": rounded(chosen.knee_offered_rps),
            "lowest_failing_rps": rounded(chosen.lowest_failing_rps),
            "p50_ms": rounded(chosen.p50_ms),
            "p95_ms": rounded(chosen.p95_ms),
            "p99_ms": rounded(chosen.p99_ms),
            "samples": chosen.samples,
            "peak_memory_bytes": chosen.peak_memory_bytes,
        },
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **dict(meta),
        "sweep": [asdict(p) for p in points],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TUNED_HEADER + yaml.safe_dump(data, sort_keys=False))
