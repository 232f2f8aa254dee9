"""The open-loop generator against a server with known, injected delays."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Response

from hearthwatch.tuning.loadgen import (
    RequestRecord,
    burst,
    closed_loop,
    image_payloads,
    open_loop,
    schedule,
)
from hearthwatch.tuning.loadtest import PROFILES, LoadTestPlan, _result, run_load_test
from hearthwatch.tuning.method import Method, point_from_records
from hearthwatch.tuning.report import write_load_report

DELAY_S = 0.05
BODY = image_payloads([b"x"], "application/octet-stream")


@pytest.fixture(scope="module")
def delay_server() -> Iterator[str]:
    """Answers each POST after exactly DELAY_S; /busy answers 503 for every other request;
    /serial answers one request at a time, each after DELAY_S: 20 requests/s at most."""
    app = FastAPI()
    counter = {"n": 0}
    one_at_a_time = asyncio.Lock()

    @app.post("/serial")
    async def serial() -> Response:
        async with one_at_a_time:
            await asyncio.sleep(DELAY_S)
        return Response(b"ok")

    @app.post("/sleep")
    async def sleep() -> Response:
        await asyncio.sleep(DELAY_S)
        return Response(b"ok")

    @app.post("/busy")
    async def busy() -> Response:
        counter["n"] += 1
        return Response(b"no", status_code=503 if counter["n"] % 2 else 200)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_schedules_hold_the_rate() -> None:
    constant = schedule(20, 2, "constant")
    assert len(constant) == 40 and np.allclose(np.diff(constant), 0.05)
    poisson = schedule(200, 10, "poisson", seed=1)
    assert len(poisson) == 2000
    assert np.mean(np.diff(poisson)) == pytest.approx(1 / 200, rel=0.1)
    with pytest.raises(ValueError, match="rate"):
        schedule(0, 1, "constant")
    with pytest.raises(ValueError, match="arrival"):
        schedule(1, 1, "bursty")  # type: ignore[arg-type]


def max_in_flight(records: list[RequestRecord]) -> int:
    """The most requests sent and not yet answered at one time."""
    events = sorted([(r.sent_s, 1) for r in records] + [(r.done_s, -1) for r in records])
    return max(np.cumsum([step for _, step in events]))


def test_known_delay_is_reproduced_at_the_offered_rate(delay_server: str) -> None:
    """Every latency includes the server's 50 ms, and requests leave on their schedule, not
    when earlier ones are answered: at 40/s (25 ms apart) two or more are out at once."""
    records = asyncio.run(open_loop(f"{delay_server}/sleep", BODY, rate=40, duration_s=2))
    summary = point_from_records(records, 40, 0.0, 2)
    assert summary.scheduled_in_window == summary.statuses["200"] == 80
    assert [r.scheduled_s for r in records] == pytest.approx(list(schedule(40, 2, "constant")))
    assert all(r.sent_s >= r.scheduled_s for r in records)  # never early
    assert all(r.done_s - r.sent_s >= DELAY_S for r in records)
    assert summary.latency_ms["p50"] >= DELAY_S * 1000  # type: ignore[operator]
    assert max_in_flight(records) >= 2


def test_a_summary_measures_the_window_from_the_scheduled_send() -> None:
    """The warm-up's slow answers stay out; latency runs from the scheduled send, so a client
    that sent late still shows the wait; only completions inside the window are throughput,
    and an answer long after it is not served from it."""
    warm_up = [RequestRecord(0.1 * i, 0.1 * i, 0.1 * i + 5.0, 200) for i in range(10)]
    window = [RequestRecord(1.0 + 0.1 * i, 1.0 + 0.1 * i + 0.2, 1.0 + 0.1 * i + 0.25, 200)
              for i in range(9)]  # fmt: skip
    straggler = RequestRecord(1.95, 1.95, 9.0, 200)  # done far past the window and its grace
    summary = point_from_records(warm_up + window + [straggler], 10, 1.0, 1.0)
    assert summary.scheduled_in_window == summary.statuses["200"] == 10
    assert summary.achieved_rps == pytest.approx(8.0)  # done inside [1, 2): not 2.05, not 9
    assert summary.served_from_window == 9  # 2.05 lies within the grace; 9.0 does not
    assert summary.latency_ms["p50"] == pytest.approx(250.0)  # not 50 ms from the late send
    assert summary.lateness_ms["p50"] == pytest.approx(200.0)
    assert summary.fell_behind
    assert not summary.passes(Method())


def test_a_closed_loop_window_holds_its_last_answer_whatever_the_rounding() -> None:
    """start + (last − start) can round below the last answer; the window still holds it."""
    start, last = 3.8188730948830703, 5.101667533322784  # such a pair
    records = [RequestRecord(start, start, 4.0, 200), RequestRecord(4.0, 4.0, last, 200)]
    result = _result("single", records, start, LoadTestPlan(p95_sla_ms=10_000))
    assert result.summary.achieved_rps * result.summary.window_s == pytest.approx(2)
    assert result.passed


def test_rejections_are_counted_not_hidden(delay_server: str) -> None:
    records = asyncio.run(open_loop(f"{delay_server}/busy", BODY, rate=50, duration_s=1))
    summary = point_from_records(records, 50, 0.0, 1)
    assert summary.statuses == {"200": 25, "503": 25}
    assert summary.errors == 25 and not summary.passes(Method())


def test_burst_sends_everything_at_once(delay_server: str) -> None:
    records = asyncio.run(burst(f"{delay_server}/sleep", BODY, 20))
    assert len(records) == 20 and all(r.status == 200 for r in records)
    assert max(r.sent_s for r in records) < min(r.done_s for r in records)  # all left together
    assert max_in_flight(records) == 20


def test_closed_loop_keeps_the_concurrency(delay_server: str) -> None:
    records = asyncio.run(closed_loop(f"{delay_server}/sleep", BODY, concurrency=4, count=20))
    assert len(records) == 20 and max_in_flight(records) == 4
    assert max(r.done_s for r in records) >= 5 * DELAY_S  # 20 requests, 4 at a time
    timed = asyncio.run(closed_loop(f"{delay_server}/sleep", BODY, concurrency=2, duration_s=0.5))
    assert max_in_flight(timed) == 2
    assert all(r.scheduled_s < 0.5 for r in timed)  # none started after the duration
    assert 2 < len(timed) <= 2 * (0.5 / DELAY_S + 1)  # each client looped; 50 ms per request
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(closed_loop(f"{delay_server}/sleep", BODY, concurrency=2))


def test_profiles_verdicts_and_report_against_known_delays(delay_server: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # an SLA a loaded machine meets too: a second for a 50 ms answer
    plan = LoadTestPlan(
        p95_sla_ms=DELAY_S * 1000 * 20, single_count=5, burst_size=8, rate=20, duration_s=1,
        sweep_start_rate=10, sweep_growth=2, sweep_max_steps=2, warmup_s=0.25,
        arrival="constant",
    )  # fmt: skip
    results = run_load_test(f"{delay_server}/sleep", BODY, PROFILES, plan)
    by_name = {r.name: r for r in results}
    assert all(r.passed for r in results), [(r.name, r.summary) for r in results]
    single = by_name["single"].summary.latency_ms
    assert single["p50"] >= DELAY_S * 1000  # type: ignore[operator]
    sweep = by_name["sweep"]
    assert [round(s.summary.offered_rps) for s in sweep.steps] == [10, 20]
    assert "no rate tried failed" in sweep.note
    strict = LoadTestPlan(p95_sla_ms=DELAY_S * 1000 / 2, rate=20, duration_s=1, warmup_s=0.25)
    failed = run_load_test(f"{delay_server}/sleep", BODY, ["sustained"], strict)[0]
    assert not failed.passed  # the injected 50 ms breaks a 25 ms SLA
    rejected = run_load_test(f"{delay_server}/busy", BODY, ["burst"], plan)[0]
    assert not rejected.passed and rejected.summary.statuses["503"] > 0
    files = write_load_report(results, tmp_path, plan.p95_sla_ms, {"target": delay_server})
    assert files["sweep"].stat().st_size > 10_000
    assert json.loads(files["json"].read_text())["profiles"][3]["steps"]
    with pytest.raises(ValueError, match="unknown profile"):
        run_load_test(f"{delay_server}/sleep", BODY, ["soak"], plan)


def test_the_sweep_finds_the_knee_of_a_server_with_a_capacity(delay_server: str) -> None:
    """/serial completes 20 requests/s at most: the sweep steps past it, then bisects, and its
    knee's throughput never reads above the capacity, however far past it a rate went."""
    plan = LoadTestPlan(
        p95_sla_ms=10_000, rate=10, duration_s=2, warmup_s=0.5, arrival="constant",
        sweep_start_rate=8, sweep_growth=2, sweep_max_steps=5,
    )  # fmt: skip
    sweep = run_load_test(f"{delay_server}/serial", BODY, ["sweep"], plan)[0]
    rates = [round(s.summary.offered_rps) for s in sweep.steps]
    assert rates[:3] == [8, 16, 32] and len(rates) == 5  # past 20/s, then bisection
    assert sweep.passed and "the knee" in sweep.note
    assert 8 <= sweep.summary.offered_rps <= 20 * 1.05
    assert all(s.summary.achieved_rps <= 20 * 1.05 for s in sweep.steps)
    assert not sweep.steps[2].passed  # 32/s offered: a queue grows
