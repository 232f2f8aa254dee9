"""The open-loop generator against a server with known, injected delays."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Response

from hearthwatch.tuning.loadgen import open_loop, schedule, summarize

DELAY_S = 0.05


@pytest.fixture(scope="module")
def delay_server() -> Iterator[str]:
    """Answers each POST after exactly DELAY_S; /busy answers 503 for every other request."""
    app = FastAPI()
    counter = {"n": 0}

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


def test_known_delay_is_reproduced_at_the_offered_rate(delay_server: str) -> None:
    records = asyncio.run(open_loop(f"{delay_server}/sleep", [b"x"], rate=40, duration_s=2))
    summary = summarize(records, 40, 2)
    assert summary.sent == summary.ok == 80
    latency = summary.latency_ms
    assert DELAY_S * 1000 <= latency["p50"] < DELAY_S * 1000 + 25  # type: ignore[operator]
    assert latency["p99"] < DELAY_S * 1000 + 60  # type: ignore[operator]
    assert summary.achieved_rps == pytest.approx(40, rel=0.1)
    assert not summary.fell_behind


def test_rejections_are_counted_not_hidden(delay_server: str) -> None:
    records = asyncio.run(open_loop(f"{delay_server}/busy", [b"x"], rate=50, duration_s=1))
    summary = summarize(records, 50, 1)
    assert summary.statuses == {"200": 25, "503": 25}
    assert summary.ok == 25
