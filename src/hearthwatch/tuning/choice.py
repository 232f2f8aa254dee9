"""The rule that picks a batching configuration from a sweep.

Default rule: among configurations with no errors that leave ``memory_reserve_percent`` of
device memory free, find the peak throughput; choose the smallest batch (then the shortest
queue delay) whose throughput is within ``within_fraction`` of that peak and whose P95 meets
the SLA. When none does, choose the highest-throughput configuration that meets the SLA, and
say so. When nothing meets the SLA, choose nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SweepPoint:
    batch_size: int
    queue_delay_ms: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int = 0
    peak_memory_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class Choice:
    point: SweepPoint | None
    reason: str


def _memory_ok(point: SweepPoint, reserve_percent: float) -> bool:
    if point.peak_memory_bytes is None or not point.memory_total_bytes:
        return True
    return point.peak_memory_bytes <= point.memory_total_bytes * (1 - reserve_percent / 100)


def choose(
    points: Sequence[SweepPoint],
    p95_sla_ms: float,
    memory_reserve_percent: float = 10.0,
    within_fraction: float = 0.10,
) -> Choice:
    if p95_sla_ms <= 0:
        raise ValueError(f"p95_sla_ms must be > 0, got {p95_sla_ms}")
    if not 0 <= memory_reserve_percent < 100:
        raise ValueError(
            f"memory_reserve_percent must be in [0, 100), got {memory_reserve_percent}"
        )
    if not 0 <= within_fraction < 1:
        raise ValueError(f"within_fraction must be in [0, 1), got {within_fraction}")
    usable = [p for p in points if p.errors == 0 and _memory_ok(p, memory_reserve_percent)]
    if not usable:
        return Choice(None, "no configuration ran without errors inside the memory reserve")
    peak = max(p.throughput_rps for p in usable)
    meets_sla = [p for p in usable if p.p95_ms <= p95_sla_ms]
    near_peak = [p for p in meets_sla if p.throughput_rps >= (1 - within_fraction) * peak]
    if near_peak:
        best = min(near_peak, key=lambda p: (p.batch_size, p.queue_delay_ms))
        return Choice(
            best,
            f"smallest batch within {within_fraction:.0%} of the peak {peak:.1f}/s "
            f"whose P95 meets {p95_sla_ms:g} ms",
        )
    if meets_sla:
        best = max(meets_sla, key=lambda p: p.throughput_rps)
        return Choice(
            best,
            f"no configuration within {within_fraction:.0%} of the peak {peak:.1f}/s meets "
            f"P95 {p95_sla_ms:g} ms; the fastest that does",
        )
    return Choice(None, f"no configuration meets P95 {p95_sla_ms:g} ms")
