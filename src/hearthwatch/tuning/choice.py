"""The rule that picks a batching configuration from a sweep of knees.

Each configuration's figure is its knee (:mod:`hearthwatch.tuning.method`): the throughput it
achieved at the highest offered rate it served under the rule (achieved ≥ 95 % of offered, no
errors, P95 ≤ the SLA), found by bisection on open-loop Poisson load to a stated resolution.

The rule: among configurations that have a knee and leave ``memory_reserve_percent`` of device
memory free at their peak, take the highest knee. Knees within ``resolution`` of it tie with it
(the bisection cannot tell them apart); of those, choose the smallest batch, then the shortest
queue delay. When no configuration has a knee inside the memory reserve, choose nothing.

Pure functions on plain data: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SweepPoint:
    """One (batch size, queue delay) configuration as measured: its knee and the figures of
    the window at the knee (percentiles None where the samples cannot support them)."""

    batch_size: int
    queue_delay_ms: float
    knee_rps: float | None  # achieved (successes in the window ÷ its length) at the highest
    # offered rate that met the rule; None: no rate tried met it
    knee_offered_rps: float | None = None  # the nominal offered rate of that window
    lowest_failing_rps: float | None = None  # the lowest offered rate that broke the rule;
    # None: none did, so the knee is a lower bound
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    samples: int = 0  # latency samples behind the knee's percentiles
    probes: int = 0  # rates measured to find the knee
    lone_request_ms: float | None = None  # the fastest request sent alone to the idle server
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
    *,
    resolution: float = 0.05,
    memory_reserve_percent: float = 10.0,
) -> Choice:
    if not 0 < resolution < 1:
        raise ValueError(f"resolution must be in (0, 1), got {resolution}")
    if not 0 <= memory_reserve_percent < 100:
        raise ValueError(
            f"memory_reserve_percent must be in [0, 100), got {memory_reserve_percent}"
        )
    with_knee = [p for p in points if p.knee_rps is not None]
    if not with_knee:
        return Choice(None, "no configuration met the knee rule at any rate tried")
    usable = [p for p in with_knee if _memory_ok(p, memory_reserve_percent)]
    if not usable:
        return Choice(
            None,
            f"no configuration with a knee left {memory_reserve_percent:g} % of device memory free",
        )
    peak = max(p.knee_rps or 0.0 for p in usable)
    ties = [p for p in usable if (p.knee_rps or 0.0) >= (1 - resolution) * peak]
    best = min(ties, key=lambda p: (p.batch_size, p.queue_delay_ms))
    reason = (
        f"highest knee {peak:.3g}/s; the smallest batch, then the shortest delay, whose knee is "
        f"within the {resolution:.0%} resolution of it ({best.knee_rps:.3g}/s)"
    )
    if best.lowest_failing_rps is None:
        reason += "; no rate tried broke its rule, so its knee is a lower bound (more probes)"
    return Choice(best, reason)
