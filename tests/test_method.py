"""The shared measuring method: windows, the knee search, spreads and sanity checks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hearthwatch.tuning.loadgen import RequestRecord
from hearthwatch.tuning.method import (
    Method,
    Point,
    Sanity,
    find_knee,
    measure_schedule,
    spread,
    window_figures,
)


def point(offered: float, achieved: float, errors: int = 0, p95: float | None = 10.0) -> Point:
    return Point(
        offered_rps=offered,
        window_s=30.0,
        scheduled_in_window=int(offered * 30),
        served_from_window=int(achieved * 30),
        errors=errors,
        statuses={"200": int(achieved * 30)},
        achieved_rps=achieved,
        latency_ms={"samples": 300, "p50": 5.0, "p95": p95, "p99": None},
        lateness_ms={"samples": 300, "p50": 0.5},
        client_cpu_share=0.1,
        machine_busy=0.5,
    )


def server_with_capacity(capacity: float, probed: list[float]):  # type: ignore[no-untyped-def]
    """A fake server: serves what is offered up to ``capacity``, then only ``capacity``."""

    def measure(rate: float) -> Point:
        probed.append(rate)
        return point(rate, min(rate, capacity))

    return measure


@pytest.mark.parametrize("start", [10.0, 100.0, 1000.0])
def test_the_knee_is_found_by_bisection_to_the_stated_resolution(start: float) -> None:
    method = Method(resolution=0.05, max_probes=30)
    probed: list[float] = []
    knee = find_knee(server_with_capacity(97.0, probed), start, method)
    assert knee.knee is not None and knee.lowest_failing_rps is not None
    rate, failing = knee.knee.offered_rps, knee.lowest_failing_rps
    assert rate <= 97.0 / method.served_fraction  # passing means served ≥ 95 % of offered
    assert (failing - rate) <= method.resolution * failing  # bracketed to 5 %
    assert knee.knee.passes(method)
    assert len(probed) == len(knee.probes) < 30


def test_the_knee_search_stops_at_its_probe_budget() -> None:
    probed: list[float] = []
    knee = find_knee(server_with_capacity(1e9, probed), 1.0, Method(max_probes=5))
    assert len(probed) == 5 and knee.lowest_failing_rps is None


def fifo_server(capacity: float):  # type: ignore[no-untyped-def]
    """A send function for :func:`measure_schedule`: one request at a time, 1/capacity s each,
    in arrival order; the records it would give."""

    async def send(offsets: np.ndarray) -> list[RequestRecord]:
        free_at, records = 0.0, []
        for scheduled in offsets:
            start = max(float(scheduled), free_at)
            free_at = start + 1 / capacity
            records.append(RequestRecord(float(scheduled), float(scheduled), free_at, 200))
        return records

    return send


@pytest.mark.parametrize("overload", [1.08, 1.1, 1.5, 3.0])
def test_throughput_never_reads_above_what_the_server_completes(overload: float) -> None:
    """A server that completes 10 requests/s, offered more: the window's completions say 10/s
    at most (no grace, no backlog counts), and the point fails the rule."""
    method = Method(window_s=30, warmup_s=5, arrivals="constant")
    point, _ = asyncio.run(measure_schedule(fifo_server(10.0), 10.0 * overload, method))
    assert point.achieved_rps <= 10.0 * 1.001
    assert not point.passes(method)


def test_a_server_under_its_capacity_passes_at_the_rate_offered() -> None:
    method = Method(window_s=30, warmup_s=5, arrivals="constant")
    point, _ = asyncio.run(measure_schedule(fifo_server(10.0), 9.0, method))
    assert point.passes(method) and point.achieved_rps == pytest.approx(9.0, rel=0.01)


def test_a_point_with_errors_or_over_the_sla_does_not_pass() -> None:
    method = Method(sla_p95_ms=50.0)
    assert point(10, 10).passes(method)
    assert not point(10, 10, errors=1).passes(method)
    assert not point(10, 10, p95=51.0).passes(method)
    assert not point(10, 10, p95=None).passes(method)  # too few samples to know
    assert not point(10, 9.4).passes(method)


def test_a_window_holds_enough_requests_at_low_rates() -> None:
    method = Method(window_s=30.0, min_requests=200)
    assert method.window_for(100.0) == 30.0
    assert method.window_for(2.0) == pytest.approx((200 + 3 * 200**0.5) / 2.0)


def test_only_the_window_counts_and_latency_runs_from_the_scheduled_time() -> None:
    records = [
        RequestRecord(scheduled_s=0.5, sent_s=0.5, done_s=1.2, status=200),  # warm-up, done in
        RequestRecord(scheduled_s=1.5, sent_s=1.6, done_s=1.9, status=200),
        RequestRecord(scheduled_s=2.0, sent_s=2.0, done_s=3.5, status=200),  # done after
        RequestRecord(scheduled_s=2.5, sent_s=2.5, done_s=2.6, status=503),
    ]
    figures = window_figures(records, 1.0, 2.0)
    assert figures.scheduled == 3
    assert figures.served == 1  # scheduled in [1, 3) and done by 3.2: not the one done at 3.5
    assert figures.completed == 2  # done inside [1, 3): the warm-up one and the second
    assert figures.errors == 1
    assert figures.statuses == {200: 2, 503: 1}
    assert sorted(figures.latency_ms.round(1)) == [400.0, 1500.0]
    assert sorted(figures.lateness_ms.round(1)) == [0.0, 0.0, 100.0]


def test_a_late_generator_is_flagged_where_its_lateness_matters() -> None:
    late = {"samples": 50, "p50": 20.0, "p95": None, "max": 25.0}
    fast = Point(**{**point(1.0, 1.0).as_dict(), "lateness_ms": late})  # 25 ms late, 5 ms P50
    slow = Point(**{**fast.as_dict(), "latency_ms": {"samples": 50, "p50": 5000.0}})
    assert fast.fell_behind and not slow.fell_behind


def test_spread_is_median_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"value": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    with pytest.raises(ValueError):
        spread([])


def test_sanity_flags_impossible_results() -> None:
    sanity = Sanity()
    sanity.not_above("pipeline above model", [120.0, 125.0], [100.0, 101.0])
    sanity.not_above("pipeline below model", [90.0, 95.0], [100.0, 101.0])
    sanity.point("over offered", point(10.0, 14.0))
    sanity.point("fine", point(10.0, 10.0))
    sanity.repeats("moved", [100.0, 80.0])
    sanity.repeats("single", [100.0])
    sanity.repeats("nothing", [0.0, 0.0])
    backlog = Point(**{**point(10.0, 10.0).as_dict(), "achieved_rps": 14.0})
    sanity.point("backlog", backlog)
    passed = {c["name"]: c["passed"] for c in sanity.checks}
    assert passed["pipeline above model"] is False
    assert passed["pipeline below model"] is True
    assert passed["over offered: achieved not above offered"] is False
    assert passed["fine: achieved not above offered"] is True
    assert passed["moved"] is False and passed["single"] is False
    assert passed["nothing"] is False
    assert (
        passed["backlog: steady (what completed in the window matches what was served from it)"]
        is False
    )
    assert sanity.as_dict()["passed"] is False
