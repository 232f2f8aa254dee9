"""Front-end capacity: how many ``/detect`` requests one hearthwatch process can accept.

Every request passes through the server process's event loop (HTTP parsing, the body, the
header checks, queueing, the JSON reply), so ``1 / (event-loop CPU seconds per request)``
bounds what one process accepts, however fast the device is (the loop's idle cost, measured
first, is taken off). This measures that cost for
hearthwatch's device-decoding path (the GPU path: the host only checks the JPEG header) and
for a bare ASGI app that only reads the same body (``bench/bare_server.py``: the floor for one
uvicorn process), side by side, with 1080p JPEG bodies sent closed-loop.

Compare ``hearthwatch.single_process_ceiling_rps`` with the in-process pipeline ceiling of
``serve_bench.py`` (b): under (b) / 0.9 the front-end needs more processes; close to the floor,
a leaner body path has nothing left to win. On a CPU pass ``--input-size 128`` so that the
model does not hide the front-end (the event-loop cost does not depend on it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serve_bench import ROOT, add_server_arguments, bench_env

from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames
from hearthwatch.tuning.loadgen import (
    Payload,
    RequestRecord,
    closed_loop,
    image_payloads,
    summarize,
)
from hearthwatch.tuning.server_process import ServerProcess

WARMUP_REQUESTS = 50
IDLE_SECONDS = 5.0  # the loop's own background cost, taken off the per-request figure


def loop_cpu_over(server: ServerProcess, work: Callable[[], object]) -> float:
    """The server's event-loop CPU seconds while ``work`` runs."""
    before = server.main_thread_cpu_s()
    work()
    after = server.main_thread_cpu_s()
    if before is None or after is None:
        raise SystemExit("the event loop's CPU time is read from /proc: Linux only")
    return after - before


def measure(
    server: ServerProcess, path: str, payloads: list[Payload], count: int, concurrency: int
) -> dict[str, Any]:
    url = server.url + path
    asyncio.run(closed_loop(url, payloads, concurrency, count=WARMUP_REQUESTS))
    idle_s = loop_cpu_over(server, lambda: time.sleep(IDLE_SECONDS)) / IDLE_SECONDS
    started = time.perf_counter()
    records: list[RequestRecord] = []
    busy_s = loop_cpu_over(
        server,
        lambda: records.extend(asyncio.run(closed_loop(url, payloads, concurrency, count=count))),
    )
    elapsed = time.perf_counter() - started
    summary = summarize(records, None, elapsed).as_dict()
    if summary["ok"] != count:
        raise SystemExit(f"{server.url}{path}: only {summary['ok']} of {count} answered 200")
    loop_ms = (busy_s - idle_s * elapsed) * 1000 / count
    return {
        "requests": count,
        "achieved_rps": summary["achieved_rps"],
        "latency_ms": summary["latency_ms"],
        "event_loop_idle_ms_per_s": idle_s * 1000,
        "event_loop_ms_per_request": loop_ms,
        "single_process_ceiling_rps": 1000 / loop_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_arguments(parser)
    parser.add_argument("--input-size", type=int, help="the model's input side (RT-DETR)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    env = bench_env(args, 32, DETECTOR__DEVICE_DECODE="on")
    if args.input_size:
        env["DETECTOR__INPUT_SIZE"] = str(args.input_size)
    payloads = image_payloads(synthetic_frames(16, args.width, args.height))
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_server.py")]
        with ServerProcess({}, Path(tmp) / "bare.log", bare_cmd, "/health") as bare:
            rows["bare_asgi"] = measure(bare, "/detect", payloads, args.requests, args.concurrency)
        with ServerProcess(env, Path(tmp) / "hearthwatch.log") as server:
            rows["hearthwatch"] = measure(
                server, "/detect", payloads, args.requests, args.concurrency
            )
    for name, row in rows.items():
        print(
            f"{name:12s} {row['achieved_rps']:8.1f} req/s  event loop "
            f"{row['event_loop_ms_per_request']:.3f} ms/request → one process accepts at most "
            f"{row['single_process_ceiling_rps']:.0f} req/s",
            flush=True,
        )
    ratio = (
        rows["hearthwatch"]["event_loop_ms_per_request"]
        / (rows["bare_asgi"]["event_loop_ms_per_request"])
    )
    record = {
        "benchmark": "frontend_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "model": args.model,
        "model_env": env,
        "input": {"width": args.width, "height": args.height, "format": "jpeg", "quality": 90},
        "mean_body_bytes": sum(len(p.body) for p in payloads) / len(payloads),
        "concurrency": args.concurrency,
        **rows,
        "ratios": {"hearthwatch_event_loop_cost_over_bare": ratio},
    }
    tag = "cpu" if record["device"].startswith("cpu") else "gpu"
    write_record(record, args.out, f"frontend_bench_{args.model}_{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
