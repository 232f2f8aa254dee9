"""The one measuring method every benchmark and the tuner use.

- Open loop: arrivals on a schedule (Poisson by default) whether or not earlier requests were
  answered; latency runs from each request's *scheduled* send time, so a client that falls
  behind shows as latency, and its lateness is reported.
- Warm-up excluded: each point sends ``warmup_s`` of the same load first; only the steady-state
  window after it is measured. Throughput is the successful completions inside the window
  divided by the window's length (no fencepost bias; never above what the server can
  complete, however far the offered rate passes it), and a window holds at least
  ``min_requests`` requests (it is lengthened at low rates).
- Percentiles (:func:`hearthwatch.percentiles.percentiles`) are reported with their sample
  count, a P95 only from ≥ 200 samples and a P99 only from ≥ 1 000.
- The knee is found by bisection on the offered rate against a stated rule (achieved ≥ 95 % of
  offered, ≥ 95 % of the window's arrivals served by its end plus a grace, no errors, P95
  under the SLA where one is set) to a stated resolution. "Offered" in the rule is the
  arrivals scheduled in the window per second, which a Poisson schedule puts above or below
  the nominal rate by chance.
- Repeats give every figure a spread (median, min, max); :class:`Sanity` collects the checks
  that flag impossible results instead of committing them silently.

Everything here is client-side and runs on the caller's thread or event loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from hearthwatch.percentiles import P95_MIN_SAMPLES, Percentiles, percentiles
from hearthwatch.tuning.loadgen import (
    LATE_WARNING_MS,
    Arrival,
    Payload,
    RequestRecord,
    closed_loop,
    run_schedule,
    schedule,
)

GRACE_FRACTION = 0.1
"""A request scheduled in a window counts as served from it when done by the window's end plus
this fraction of its length (the queue-growth check; throughput itself counts completions
inside the window only)."""


@dataclass(frozen=True, kw_only=True)
class Method:
    """How a point is measured and how the knee is searched; recorded with every result."""

    window_s: float = 30.0
    warmup_s: float = 5.0
    min_requests: int = P95_MIN_SAMPLES
    arrivals: Arrival = "poisson"
    repeats: int = 2
    served_fraction: float = 0.95
    sla_p95_ms: float | None = None
    resolution: float = 0.05
    timeout_s: float = 30.0
    max_probes: int = 12

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.warmup_s < 0 or self.min_requests < 1:
            raise ValueError("window_s > 0, warmup_s >= 0 and min_requests >= 1 are needed")
        if not 0 < self.served_fraction <= 1 or not 0 < self.resolution < 1:
            raise ValueError("served_fraction in (0, 1] and resolution in (0, 1) are needed")
        if self.repeats < 1 or self.max_probes < 2:
            raise ValueError("repeats >= 1 and max_probes >= 2 are needed")

    def window_for(self, rate: float) -> float:
        """The window at ``rate``: ``window_s``, longer where it would hold too few requests:
        long enough that Poisson arrivals fall short of ``min_requests`` only beyond three
        standard deviations."""
        needed = self.min_requests + 3 * math.sqrt(self.min_requests)
        return max(self.window_s, needed / rate)

    @property
    def knee_rule(self) -> str:
        rule = (
            f"achieved (completions inside the window per second) >= {self.served_fraction:.0%} "
            "of offered (the arrivals scheduled in the window per second), "
            f">= {self.served_fraction:.0%} of those arrivals served by the window's end plus "
            f"{GRACE_FRACTION:.0%} of its length, no errors"
        )
        if self.sla_p95_ms is not None:
            rule += (
                f", P95 <= {self.sla_p95_ms:g} ms (with fewer than {P95_MIN_SAMPLES} samples, "
                "the slowest request)"
            )
        return rule

    def describe(self) -> dict[str, Any]:
        return {
            "arrivals": self.arrivals,
            "window_s": self.window_s,
            "warmup_s": self.warmup_s,
            "min_requests": self.min_requests,
            "repeats": self.repeats,
            "knee_rule": self.knee_rule,
            "resolution": self.resolution,
            "latency_from": "scheduled send time",
            "throughput": (
                "successes completed inside the window / window length (the successes among "
                f"the requests scheduled in it, done by its end plus {GRACE_FRACTION:.0%} of its "
                "length, are recorded beside it: the queue-growth and steadiness check)"
            ),
        }


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median with min and max over repeats."""
    if not values:
        raise ValueError("no values to spread")
    return {
        "value": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
    }


@dataclass(frozen=True)
class Point:
    """One offered rate, measured over its steady-state window."""

    offered_rps: float
    window_s: float
    scheduled_in_window: int
    served_from_window: int  # successes among those, done by the window's end plus the grace
    errors: int
    statuses: dict[str, int]
    achieved_rps: float  # successes completed inside the window ÷ its length
    latency_ms: Percentiles
    lateness_ms: Percentiles
    client_cpu_share: float | None = None
    machine_busy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def arrived_rps(self) -> float:
        """The rate really offered in the window: the arrivals scheduled in it ÷ its length.
        Poisson arrivals at ``offered_rps`` put more or fewer than ``offered_rps × window_s``
        requests in a window (one standard deviation is 7 % at 200), so the served fraction
        is judged against these, not against the nominal rate."""
        return self.scheduled_in_window / self.window_s

    @property
    def served_from_window_rps(self) -> float:
        return self.served_from_window / self.window_s

    @property
    def fell_behind(self) -> bool:
        """The load generator sent late enough to matter: its lateness (P95, or the latest where
        P95 is withheld) reached 10 ms and 1 % of the median latency, so a late client cannot
        pass for a slow server (25 ms late against seconds of latency is no such risk)."""
        late = self.lateness_ms.get("p95") or self.lateness_ms.get("max")
        if late is None:
            return False
        median = self.latency_ms.get("p50") or 0.0
        return float(late) >= max(LATE_WARNING_MS, 0.01 * float(median))

    def passes(self, method: Method) -> bool:
        share = method.served_fraction
        if self.errors or self.achieved_rps < share * self.arrived_rps:
            return False
        if self.served_from_window < share * self.scheduled_in_window:
            return False  # a queue growing inside the window
        if method.sla_p95_ms is None:
            return True
        bound = self.latency_ms.get("p95")
        if bound is None and self.latency_ms.get("samples"):
            bound = self.latency_ms.get("max")  # too few samples for a P95: every one counts
        return bound is not None and bound <= method.sla_p95_ms

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _busy_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat where there is one."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@dataclass(frozen=True)
class WindowFigures:
    """What a run's records say about its window [start, start + length)."""

    scheduled: int  # requests scheduled in it
    served: int  # successes among those, done by its end plus the grace
    completed: int  # successes of any request done inside it
    errors: int  # failures anywhere in the run, warm-up included
    statuses: Counter[int]  # of the requests scheduled in it
    latency_ms: np.ndarray  # from the scheduled time, successes scheduled in it
    lateness_ms: np.ndarray  # sent minus scheduled, requests scheduled in it


def window_figures(
    records: Sequence[RequestRecord], warmup_s: float, window_s: float
) -> WindowFigures:
    """The window [warmup_s, warmup_s + window_s) of a run. Throughput counts the successes
    completed inside it, which no offered rate can push past what the server completes; the
    successes among the requests scheduled in it and done by its end plus the grace show a
    queue growing inside it (fewer served than scheduled) or a warm-up backlog draining into
    it (more completed than served)."""
    end = warmup_s + window_s
    grace_end = end + GRACE_FRACTION * window_s
    inside = [r for r in records if warmup_s <= r.scheduled_s < end]
    ok = [r for r in inside if r.status == 200]
    return WindowFigures(
        scheduled=len(inside),
        served=sum(1 for r in ok if r.done_s < grace_end),
        completed=sum(1 for r in records if r.status == 200 and warmup_s <= r.done_s < end),
        errors=sum(1 for r in records if r.status != 200),
        statuses=Counter(r.status for r in inside),
        latency_ms=np.array([(r.done_s - r.scheduled_s) * 1000 for r in ok]),
        lateness_ms=np.array([(r.sent_s - r.scheduled_s) * 1000 for r in inside]),
    )


async def measure_schedule(
    send: Callable[[np.ndarray], Awaitable[Sequence[RequestRecord]]],
    rate: float,
    method: Method,
    seed: int = 0,
) -> tuple[Point, Sequence[RequestRecord]]:
    """Warm-up then one steady-state window at ``rate`` requests/s: ``send`` sends the requests
    at the schedule's offsets (over HTTP, or in process) and returns their records."""
    window = method.window_for(rate)
    offsets = schedule(rate, method.warmup_s + window, method.arrivals, seed)
    cpu_before, busy_before = _cpu_seconds(), _busy_ticks()
    wall_before = time.perf_counter()
    records = await send(offsets)
    wall = time.perf_counter() - wall_before
    cpu_after, busy_after = _cpu_seconds(), _busy_ticks()
    point = replace(
        point_from_records(records, rate, method.warmup_s, window),
        client_cpu_share=(cpu_after - cpu_before) / wall / (os.cpu_count() or 1),
        machine_busy=_busy_between(busy_before, busy_after),
    )
    return point, records


def point_from_records(
    records: Sequence[RequestRecord], offered_rps: float, start_s: float, window_s: float
) -> Point:
    """What ``records`` say about the window [start_s, start_s + window_s) (percentiles only
    where their samples support them); streamed LLM requests add their figures
    (:func:`llm_figures`) as ``extra["llm"]``."""
    figures = window_figures(records, start_s, window_s)
    streamed = any(r.first_token_s is not None for r in records)
    return Point(
        offered_rps=offered_rps,
        window_s=window_s,
        scheduled_in_window=figures.scheduled,
        served_from_window=figures.served,
        errors=figures.errors,
        statuses={str(k): v for k, v in sorted(figures.statuses.items())},
        achieved_rps=figures.completed / window_s,
        latency_ms=percentiles(figures.latency_ms, supported_only=True),
        lateness_ms=percentiles(figures.lateness_ms, supported_only=True),
        extra={"llm": llm_figures(records, start_s, start_s + window_s)} if streamed else {},
    )


async def measure_point(
    url: str, payloads: Sequence[Payload], rate: float, method: Method, seed: int = 0
) -> Point:
    """Warm-up then one steady-state window at ``rate`` requests/s against ``url``."""
    point, _ = await measure_schedule(
        lambda offsets: run_schedule(url, payloads, offsets, method.timeout_s), rate, method, seed
    )
    return point


def _busy_between(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The machine's busy fraction between two :func:`_busy_ticks` readings."""
    if before and after and after[1] > before[1]:
        return (after[0] - before[0]) / (after[1] - before[1])
    return None


def llm_figures(records: Sequence[RequestRecord], start_s: float, end_s: float) -> dict[str, Any]:
    """What streamed LLM requests did in the window [start_s, end_s): TTFT (from the scheduled
    send time), TPOT ((done − first token) ÷ (tokens − 1)) and tokens per request of the
    successes scheduled in it, and output tokens/s in total: the tokens of the successes
    completed in it ÷ its length."""
    inside = [
        r
        for r in records
        if start_s <= r.scheduled_s < end_s and r.status == 200 and r.first_token_s is not None
    ]
    ttft = [(r.first_token_s - r.scheduled_s) * 1000 for r in inside]  # type: ignore[operator]
    tpot = [
        (r.done_s - r.first_token_s) * 1000 / (r.output_tokens - 1)  # type: ignore[operator]
        for r in inside
        if (r.output_tokens or 0) > 1
    ]
    done = [r for r in records if r.status == 200 and start_s <= r.done_s < end_s]
    tokens = sum(r.output_tokens or 0 for r in done)
    return {
        "ttft_ms": percentiles(ttft, supported_only=True),
        "tpot_ms": percentiles(tpot, supported_only=True),
        "output_tokens_per_request": percentiles(
            [r.output_tokens or 0 for r in inside], supported_only=True
        ),
        "output_tokens_in_window": tokens,
        "output_tokens_per_s_total": tokens / (end_s - start_s) if end_s > start_s else 0.0,
    }


@dataclass(frozen=True)
class ClosedPoint:
    """``users`` clients, each sending its next request when its last is answered (a closed
    loop: the offered load follows the server, so only throughput at that concurrency and the
    latency of each request mean anything). The window runs from the first measured send to
    the last measured completion; each user's first ``warmup_per_user`` requests are the
    warm-up, excluded."""

    users: int
    warmup_requests: int
    requests: int
    ok: int
    errors: int
    statuses: dict[str, int]
    window_s: float
    achieved_rps: float
    latency_ms: Percentiles
    client_cpu_share: float
    machine_busy: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def measure_closed_point(
    url: str,
    payloads: Sequence[Payload],
    users: int,
    requests_per_user: int,
    warmup_per_user: int = 1,
    timeout_s: float = 120.0,
) -> ClosedPoint:
    """``users`` × (``warmup_per_user`` + ``requests_per_user``) requests in a closed loop;
    streamed LLM payloads get their figures (:func:`llm_figures`) in ``extra["llm"]``."""
    warmup = users * warmup_per_user
    total = warmup + users * requests_per_user
    cpu_before, busy_before = _cpu_seconds(), _busy_ticks()
    wall_before = time.perf_counter()
    records = await closed_loop(url, payloads, users, count=total, timeout_s=timeout_s)
    wall = time.perf_counter() - wall_before
    cpu_after, busy_after = _cpu_seconds(), _busy_ticks()
    measured = records[warmup:]  # sorted by send time: the warm-up went first
    start = min(r.scheduled_s for r in measured)
    end = max(r.done_s for r in measured)
    window = max(end - start, 1e-9)
    ok = [r for r in measured if r.status == 200]
    latency = [(r.done_s - r.scheduled_s) * 1000 for r in ok]
    streamed = any(payload.streamed for payload in payloads)
    return ClosedPoint(
        users=users,
        warmup_requests=warmup,
        requests=len(measured),
        ok=len(ok),
        errors=sum(1 for r in records if r.status != 200),
        statuses={str(k): v for k, v in sorted(Counter(r.status for r in measured).items())},
        window_s=window,
        achieved_rps=len(ok) / window,
        latency_ms=percentiles(latency, supported_only=True),
        client_cpu_share=(cpu_after - cpu_before) / wall / (os.cpu_count() or 1),
        machine_busy=_busy_between(busy_before, busy_after),
        extra={"llm": llm_figures(measured, start, math.nextafter(end, math.inf))}
        if streamed
        else {},
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Knee:
    """The highest offered rate that passed the rule, and every point probed to find it."""

    rule: str
    resolution: float
    knee: Point | None
    lowest_failing_rps: float | None
    probes: list[Point]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "resolution": self.resolution,
            "knee": self.knee.as_dict() if self.knee else None,
            "lowest_failing_rps": self.lowest_failing_rps,
            "probes": [p.as_dict() for p in self.probes],
        }


def find_knee(
    measure: Callable[[float], Point], start_rps: float, method: Method, step: float = 1.25
) -> Knee:
    """Bracket the knee by stepping the rate up (or down) by ``step`` from ``start_rps``, then
    bisect until the bracket is within ``method.resolution`` of its upper end."""
    if start_rps <= 0:
        raise ValueError(f"start_rps must be > 0, got {start_rps}")
    probes: list[Point] = []
    passing: Point | None = None
    failing: float | None = None

    def probe(rate: float) -> bool:
        nonlocal passing, failing
        point = measure(rate)
        probes.append(point)
        ok = point.passes(method)
        print(
            f"    offered {rate:9.2f}/s  achieved {point.achieved_rps:9.2f}/s  "
            f"p95 {point.latency_ms.get('p95')}  errors {point.errors}  {'ok' if ok else 'over'}",
            flush=True,
        )
        if ok and (passing is None or rate > passing.offered_rps):
            passing = point
        if not ok and (failing is None or rate < failing):
            failing = rate
        return ok

    rate = start_rps
    if probe(rate):
        while failing is None and len(probes) < method.max_probes:
            rate *= step
            probe(rate)
    else:
        while passing is None and len(probes) < method.max_probes:
            rate /= step
            probe(rate)
    while (
        passing is not None
        and failing is not None
        and (failing - passing.offered_rps) > method.resolution * failing
        and len(probes) < method.max_probes
    ):
        probe((passing.offered_rps + failing) / 2)
    return Knee(method.knee_rule, method.resolution, passing, failing, probes)


def measure_knee(
    url: str, payloads: Sequence[Payload], start_rps: float, method: Method, seed: int = 0
) -> Knee:
    """:func:`find_knee` against a server at ``url``."""
    return find_knee(
        lambda rate: asyncio.run(measure_point(url, payloads, rate, method, seed)),
        start_rps,
        method,
    )


class Sanity:
    """Checks that flag impossible or unsupported results in a record."""

    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail})
        if not passed:
            print(f"  SANITY FAILED {name}: {detail}", flush=True)
        return passed

    def not_above(self, name: str, faster: Sequence[float], slower: Sequence[float]) -> bool:
        """``faster``'s best must not beat ``slower``'s best beyond their spreads (e.g. a
        pipeline above the model alone)."""
        ok = min(faster) <= max(slower) * 1.02
        return self.check(
            name,
            ok,
            f"{min(faster):.3g}..{max(faster):.3g} against {min(slower):.3g}..{max(slower):.3g}",
        )

    def point(self, label: str, point: Point) -> None:
        """A point's own plausibility: achieved not above offered beyond Poisson noise, enough
        samples for what it reports, a generator that kept up."""
        n = max(point.scheduled_in_window, 1)
        limit = point.offered_rps * (1 + 4 / math.sqrt(n))
        self.check(
            f"{label}: achieved not above offered",
            point.achieved_rps <= limit,
            f"achieved {point.achieved_rps:.3g}/s, offered {point.offered_rps:.3g}/s, n={n}",
        )
        late = point.lateness_ms.get("p95") or point.lateness_ms.get("max")
        self.check(
            f"{label}: the load generator kept up",
            not point.fell_behind,
            f"lateness P95 (or max) {late} ms, latency P50 {point.latency_ms.get('p50')} ms",
        )
        served, completed = point.served_from_window_rps, point.achieved_rps
        self.check(
            f"{label}: steady (what completed in the window matches what was served from it)",
            abs(completed - served) <= 0.1 * max(served, completed, 1e-9),
            f"served from the window {served:.3g}/s, completed inside it {completed:.3g}/s",
        )

    def repeats(self, name: str, values: Sequence[float], tolerance: float = 0.10) -> None:
        if len(values) < 2:
            self.check(name, False, "one repeat only: no spread")
            return
        if min(values) <= 0:
            self.check(name, False, f"a repeat measured nothing: {values}")
            return
        moved = (max(values) - min(values)) / max(max(values), 1e-12)
        self.check(name, moved <= tolerance, f"moved {moved:.1%} between repeats: {values}")

    def as_dict(self) -> dict[str, Any]:
        return {"checks": self.checks, "passed": all(c["passed"] for c in self.checks)}
