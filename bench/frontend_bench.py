"""Front-end capacity of one hearthwatch process on ``/detect``: an upper bound read from the
event loop's CPU time, and beside it the throughput the process actually reached.

Every request passes through the server process's event loop (HTTP parsing, the body, the
header checks, queueing, the JSON reply), so ``1 / (event-loop CPU seconds per request)`` is an
**upper bound** on what one process can accept, however fast the device is. It is computed
from the main thread's CPU time (Linux scheduler statistics, with the loop's idle cost, measured
first, taken off), not measured as throughput: a real process reaches less, because the model,
the decode pool and the client take the same cores and the worker threads share the GIL.

So each server's achieved throughput is measured too, by the shared method
(:mod:`hearthwatch.tuning.method`): the same warm-up for every server, open-loop Poisson
arrivals, a steady-state window after the same load, and the knee found by bisection (achieved
≥ 95 % of offered, no errors, P95 under ``--sla-ms`` where given). The event-loop cost per
request is read over the probe at the knee (its warm-up and window), so the bound and the
achieved figure come from the same load.

Two servers, side by side, with the same 1080p JPEG bodies: hearthwatch's device-decoding path
(the GPU path: the host only checks the JPEG header) and a bare ASGI app that only reads the
body (``bench/bare_server.py``: the floor for one uvicorn process). The comparison is repeated
``--repeats`` times with the servers in a different order each time; every figure is reported
with its spread.

Compare hearthwatch's bound with the in-process pipeline ceiling of ``serve_bench.py`` (b):
under (b) / 0.9 the front-end needs more processes; close to the floor, a leaner body path has
nothing left to win. On a CPU pass ``--input-size 128`` so that the model does not hide the
front-end (the event-loop cost does not depend on it), and read the achieved figures as what
this machine reached: where the client shares the server's cores, the bare app's knee is the
client's limit (the "load generator kept up" sanity check says so), not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serve_bench import ROOT, add_server_arguments, bench_env

from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames
from hearthwatch.tuning.loadgen import Payload, closed_loop, image_payloads, schedule
from hearthwatch.tuning.method import Method, Point, Sanity, find_knee, measure_point, spread
from hearthwatch.tuning.server_process import ServerProcess

WARMUP_REQUESTS = 50  # the same warm-up for every server, at WARMUP_CONCURRENCY
WARMUP_CONCURRENCY = 16
IDLE_SECONDS = 5.0  # the loop's own background cost, taken off the per-request figure
SERVERS = ("bare_asgi", "hearthwatch")


def loop_cpu_s(server: ServerProcess) -> float:
    seconds = server.main_thread_cpu_s()
    if seconds is None:
        raise SystemExit("the event loop's CPU time is read from /proc: Linux only")
    return seconds


def warm_up(url: str, payloads: list[Payload]) -> float:
    """The warm-up; returns its throughput, a first guess for the knee search."""
    started = time.perf_counter()
    records = asyncio.run(
        closed_loop(url, payloads, WARMUP_CONCURRENCY, count=WARMUP_REQUESTS, timeout_s=600)
    )
    failed = sum(1 for r in records if r.status != 200)
    if failed:
        raise SystemExit(f"{url}: {failed} of {WARMUP_REQUESTS} warm-up requests failed")
    return WARMUP_REQUESTS / (time.perf_counter() - started)


def measure(
    server: ServerProcess,
    payloads: list[Payload],
    method: Method,
    start_rps: float | None,
    seed: int,
) -> dict[str, Any]:
    """Warm up, measure the idle loop, then find the knee, reading the event loop's CPU time
    over every probe."""
    url = server.url + "/detect"
    guess = warm_up(url, payloads)
    before = loop_cpu_s(server)
    time.sleep(IDLE_SECONDS)
    idle_per_s = (loop_cpu_s(server) - before) / IDLE_SECONDS
    loop_costs: dict[float, dict[str, float]] = {}

    def probe(rate: float) -> Point:
        sent = len(schedule(rate, method.warmup_s + method.window_for(rate), method.arrivals, seed))
        cpu_before, started = loop_cpu_s(server), time.perf_counter()
        point = asyncio.run(measure_point(url, payloads, rate, method, seed))
        elapsed, busy = time.perf_counter() - started, loop_cpu_s(server) - cpu_before
        loop_ms = (busy - idle_per_s * elapsed) * 1000 / sent
        loop_costs[rate] = {
            "offered_rps": rate,
            "requests": sent,
            "event_loop_ms_per_request": loop_ms,
        }
        return point

    knee = find_knee(probe, start_rps or 0.8 * guess, method)
    row: dict[str, Any] = {
        "warmup_rps": guess,
        "event_loop_idle_ms_per_s": idle_per_s * 1000,
        "event_loop_per_probe": list(loop_costs.values()),
        "knee": knee.as_dict(),
        "achieved_rps_at_knee": None,
        "event_loop_ms_per_request_at_knee": None,
        "upper_bound_rps_from_event_loop_cpu": None,
    }
    if knee.knee is not None:
        loop_ms = loop_costs[knee.knee.offered_rps]["event_loop_ms_per_request"]
        row["achieved_rps_at_knee"] = knee.knee.achieved_rps
        row["event_loop_ms_per_request_at_knee"] = loop_ms
        row["upper_bound_rps_from_event_loop_cpu"] = 1000 / loop_ms if loop_ms > 0 else None
    return row


def start(name: str, env: dict[str, str], log_dir: Path, repeat: int) -> ServerProcess:
    log = log_dir / f"{name}_{repeat}.log"
    if name == "bare_asgi":
        command = [sys.executable, str(ROOT / "bench" / "bare_server.py")]
        return ServerProcess({}, log, command, "/health")
    return ServerProcess(env, log)


def figures(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r[key] is not None]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_arguments(parser)
    parser.add_argument("--input-size", type=int, help="the model's input side (RT-DETR)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-probes", type=int, default=10, help="rates tried per knee")
    parser.add_argument(
        "--min-requests", type=int, default=200, help="least requests in a window (P95: 200)"
    )
    parser.add_argument("--sla-ms", type=float, default=None, help="P95 bound of the knee rule")
    parser.add_argument(
        "--start-rps", type=float, default=None, help="first rate (default: from the warm-up)"
    )
    args = parser.parse_args()
    method = Method(
        window_s=args.window,
        warmup_s=args.warmup,
        repeats=args.repeats,
        min_requests=args.min_requests,
        sla_p95_ms=args.sla_ms,
        max_probes=args.max_probes,
    )
    sanity = Sanity()
    sanity.check(
        "windows as long as the method asks (30 s)",
        method.window_s >= 30,
        f"{method.window_s:g} s windows after {method.warmup_s:g} s of warm-up",
    )

    env = bench_env(args, 32, DETECTOR__DEVICE_DECODE="on")
    if args.input_size:
        env["DETECTOR__INPUT_SIZE"] = str(args.input_size)
    payloads = image_payloads(synthetic_frames(16, args.width, args.height))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = SERVERS[repeat % 2 :] + SERVERS[: repeat % 2]
            for name in order:
                print(f"repeat {repeat + 1}: {name}", flush=True)
                with start(name, env, Path(tmp), repeat) as server:
                    row = measure(server, payloads, method, args.start_rps, seed=repeat)
                runs[name].append(row)
                bound = row["upper_bound_rps_from_event_loop_cpu"]
                achieved = row["achieved_rps_at_knee"]
                print(
                    f"  {name}: reached {achieved} req/s at its knee; event loop "
                    f"{row['event_loop_ms_per_request_at_knee']} ms/request → at most "
                    f"{bound} req/s from its CPU time",
                    flush=True,
                )

    summary: dict[str, Any] = {}
    for name, rows in runs.items():
        achieved = figures(rows, "achieved_rps_at_knee")
        bounds = figures(rows, "upper_bound_rps_from_event_loop_cpu")
        loop_ms = figures(rows, "event_loop_ms_per_request_at_knee")
        summary[name] = {
            "achieved_rps_at_knee": spread(achieved) if achieved else None,
            "upper_bound_rps_from_event_loop_cpu": spread(bounds) if bounds else None,
            "event_loop_ms_per_request_at_knee": spread(loop_ms) if loop_ms else None,
        }
        sanity.check(f"{name}: a knee in every repeat", len(achieved) == len(rows), f"{achieved}")
        sanity.repeats(f"{name}: knee within 10 % between repeats", achieved)
        for i, row in enumerate(rows):
            knee = row["knee"]["knee"]
            if knee is not None:
                sanity.point(f"{name} knee, repeat {i + 1}", Point(**knee))
        if achieved and bounds:
            sanity.not_above(
                f"{name}: the throughput reached not above the event-loop bound", achieved, bounds
            )

    def ratio(a: list[float], b: list[float]) -> dict[str, float | int] | None:
        pairs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
        return spread(pairs) if pairs else None

    ratios: dict[str, Any] = {}
    hw, bare = runs["hearthwatch"], runs["bare_asgi"]
    if all(r["event_loop_ms_per_request_at_knee"] is not None for r in hw + bare):
        ratios["hearthwatch_event_loop_cost_over_bare"] = ratio(
            figures(hw, "event_loop_ms_per_request_at_knee"),
            figures(bare, "event_loop_ms_per_request_at_knee"),
        )
    for name, rows in runs.items():
        if all(r["upper_bound_rps_from_event_loop_cpu"] is not None for r in rows):
            ratios[f"{name}_achieved_over_its_bound"] = ratio(
                figures(rows, "achieved_rps_at_knee"),
                figures(rows, "upper_bound_rps_from_event_loop_cpu"),
            )
    record = {
        "benchmark": "frontend_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "method": {
            **method.describe(),
            "warmup_requests": WARMUP_REQUESTS,
            "warmup_concurrency": WARMUP_CONCURRENCY,
            "event_loop_cost": "the server's main-thread CPU time over the probe at the knee "
            f"(its warm-up and window), less its idle rate over {IDLE_SECONDS:g} s, ÷ the "
            "requests that probe sent",
        },  # fmt: skip
        "upper_bound": "1000 / event-loop ms per request: what one process could accept if "
        "nothing but its event loop limited it; computed from CPU time, not measured throughput",
        "model": args.model,
        "model_env": env,
        "input": {"width": args.width, "height": args.height, "format": "jpeg", "quality": 90},
        "mean_body_bytes": sum(len(p.body) for p in payloads) / len(payloads),
        "summary": summary,
        "runs": runs,
        "ratios": ratios,
        "sanity": sanity.as_dict(),
    }
    print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))
    tag = "cpu" if record["device"].startswith("cpu") else "gpu"
    write_record(record, args.out, f"frontend_bench_{args.model}_{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
