"""Model-zoo benchmark: a reload from the host copy against a rebuild from disk (and, on a GPU,
against the host→device copy limit), and a thrash workload with more models than the budget
holds, measured by the shared method (:mod:`hearthwatch.tuning.method`).

    python bench/zoo_bench.py            # GPU when present, else the CPU

Part 1, per model (full-size architectures, random weights saved to disk first), ``--repeats``
times: seconds to load from disk (build, read the weights, warm-up; the page cache is warm after
the first), seconds to evict (make the host copy, drop the serving one) and seconds to reload
from the host copy (no warm-up). An eviction is a real copy on either device: on a GPU the
weights move to pinned host memory and back; on a CPU the host copy is a deep copy of the
module (fresh tensors) and the reload deep-copies it into a fresh module, so a CPU reload costs
a copy of the weights, not nothing. On a GPU, the pinned host→device bandwidth measured on a
buffer of the same size is recorded beside it (``reload_vs_bandwidth``, target ≥ 0.7).

Part 2: the same /enrich-like mix (person, car, dog crops) in process, with a budget that holds
every model ("roomy") and with one that holds the CRITICAL and HIGH models plus the largest
other one ("tight"), so the MEDIUM and LOW models take turns in one slot. Each is measured on a
fresh service by the method: the same priming (one request of each mix, one after another),
then open-loop Poisson arrivals at ``--rate``, ``--warmup`` seconds of them excluded, and one
steady-state window (longer at low rates so that it holds ``--min-requests``); throughput is
counted as the method counts it (successes completed inside the window ÷ its length, those
served from it recorded beside), latency runs from each request's scheduled
time, percentiles come with their sample counts, and every failure is counted with the status
the server would answer: 503 (no room in the zoo within the deadline), 504 (the deadline passed
in a queue), 500 (anything else, by type). Evictions and loads are counted inside the window.
The two budgets are measured ``--repeats`` times in alternating order; ratios come with their
spread.

The client runs in the service's own process and event loop (no HTTP), so the CPU share
recorded is the whole process's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearthwatch.runtime.enrichment.catalog import ZooModelConfig, load_catalog
from hearthwatch.runtime.enrichment.hf_models import HfConfig
from hearthwatch.runtime.enrichment.service import EnrichmentService, InputDetection
from hearthwatch.runtime.errors import OverloadedError
from hearthwatch.runtime.imaging.decode import decode_image
from hearthwatch.runtime.zoo.memory import GIB
from hearthwatch.runtime.zoo.registry import ModelZoo
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames
from hearthwatch.tuning.loadgen import RequestRecord
from hearthwatch.tuning.method import (
    Method,
    Point,
    Sanity,
    measure_schedule,
    spread,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH_MODELS = ROOT / "bench" / "zoo_models.yml"
MIX = [
    [InputDetection("person", (100, 80, 260, 460)), InputDetection("person", (400, 90, 540, 470))],
    [InputDetection("car", (200, 200, 700, 500))],
    [InputDetection("dog", (300, 300, 420, 420))],
]
ZOO_COUNTERS = ("evictions", "loads_from_host", "loads_from_disk")


def save_weights(config: ZooModelConfig, directory: Path) -> ZooModelConfig:
    """The model with random weights written to ``directory``, configured to load them."""
    module = config.source.build()
    if isinstance(config.source, HfConfig):
        target = directory / config.name
        module.save_pretrained(target)  # type: ignore[operator]
    else:
        target = directory / f"{config.name}.pt"
        torch.save(module.state_dict(), target)
    source = config.source.model_copy(update={"path": target, "random_init": False})
    return config.model_copy(update={"source": source})


def copy_bandwidth(nbytes: int, device: torch.device) -> float:
    """Pinned host → device bytes/s for one buffer of ``nbytes`` (best of 3)."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    best = float("inf")
    for _ in range(3):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        host.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return nbytes / best


def service_for(
    catalog: list[ZooModelConfig], budget: int, device: torch.device
) -> EnrichmentService:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    service = EnrichmentService(catalog, ModelZoo(budget), device, dtype, host_reserve_bytes=GIB)
    service.start()
    return service


def _counts(service: EnrichmentService, name: str) -> dict[str, float]:
    row = next(r for r in service.zoo.stats() if r.name == name)
    return {
        "disk_s": row.load_s_from_disk,
        "host_s": row.load_s_from_host,
        "from_host": row.loads_from_host,
    }


async def reloads(
    service: EnrichmentService, device: torch.device, repeats: int
) -> list[dict[str, Any]]:
    """Per model, ``repeats`` times: a load from disk, an eviction, a reload from the host."""
    rows = []
    for name in service.models:
        disk, evict, host = [], [], []
        for _ in range(repeats):
            before = _counts(service, name)
            await service.zoo.load(name, 600)
            middle = _counts(service, name)
            started = time.perf_counter()
            await service.zoo.evict(name, 600)
            evict.append(time.perf_counter() - started)
            await service.zoo.load(name, 600)
            after = _counts(service, name)
            if after["from_host"] != middle["from_host"] + 1:
                raise SystemExit(f"{name}: the reload did not come from the host copy")
            disk.append(middle["disk_s"] - before["disk_s"])
            host.append(after["host_s"] - middle["host_s"])
            await service.zoo.unload(name, 600)
        row = next(r for r in service.zoo.stats() if r.name == name)
        record: dict[str, Any] = {
            "model": name,
            "footprint_bytes": row.footprint_bytes,
            "from_disk_s": spread(disk),
            "evict_s": spread(evict),
            "from_host_s": spread(host),
            "disk_over_host": spread([d / max(h, 1e-9) for d, h in zip(disk, host, strict=True)]),
        }
        if device.type == "cuda":
            await service.zoo.load(name, 600)
            weights = sum(
                p.numel() * p.element_size() for p in (await _module(service, name)).parameters()
            )
            await service.zoo.unload(name, 600)
            bandwidth = copy_bandwidth(weights, device)
            reload_s = min(host)
            record["weight_bytes"] = weights
            record["h2d_bandwidth_gb_s"] = round(bandwidth / 1e9, 2)
            record["reload_gb_s"] = round(weights / reload_s / 1e9, 2)
            record["reload_vs_bandwidth"] = round(weights / reload_s / bandwidth, 3)
        print(
            f"  {name}: disk {record['from_disk_s']['value']:.3f} s, evict "
            f"{record['evict_s']['value']:.3f} s, host {record['from_host_s']['value']:.4f} s",
            flush=True,
        )
        rows.append(record)
    return rows


async def _module(service: EnrichmentService, name: str) -> torch.nn.Module:
    async with service.zoo.lease(name, 600) as loaded:
        return loaded.module  # type: ignore[no-any-return]


def _zoo_totals(service: EnrichmentService) -> dict[str, int]:
    stats = service.zoo.stats()
    return {key: sum(getattr(r, key) for r in stats) for key in ZOO_COUNTERS}


async def open_loop_in_process(
    call: Callable[[int], Awaitable[object]],
    offsets: np.ndarray,
    at: dict[float, Callable[[], None]],
    failures: Counter[str],
) -> list[RequestRecord]:
    """``call(i)`` at ``offsets[i]`` seconds, whether or not earlier calls returned, recorded
    like the HTTP load generator's requests with the status the server would answer (503 for
    no room in the zoo or a full queue, 504 for a missed deadline, 500 for anything else, its
    type counted in ``failures``); ``at`` maps offsets to callbacks run then."""
    start = time.perf_counter()
    records: list[RequestRecord] = []

    async def one(index: int, scheduled: float) -> None:
        sent = time.perf_counter() - start
        status = 200
        try:
            await call(index)
        except OverloadedError:
            status = 503
        except TimeoutError:
            status = 504
        except Exception as exc:  # counted, never hidden
            status = 500
            failures[type(exc).__name__] += 1
        records.append(RequestRecord(scheduled, sent, time.perf_counter() - start, status))

    async def snapshots() -> None:
        for offset, callback in sorted(at.items()):
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            callback()

    watcher = asyncio.create_task(snapshots())
    tasks = []
    for index, offset in enumerate(offsets):
        delay = start + float(offset) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, float(offset))))
    await asyncio.gather(*tasks)
    await watcher
    return sorted(records, key=lambda r: r.scheduled_s)


async def thrash(
    service: EnrichmentService, rate: float, method: Method, deadline_s: float, seed: int
) -> dict[str, Any]:
    """Priming, then one point of the method at ``rate`` against ``service``."""
    frames = [decode_image(f, 10**8) for f in synthetic_frames(8, 1280, 720)]
    for index, detections in enumerate(MIX):  # the same priming for every budget
        await service.enrich(frames[index], detections, 600)
    rng = random.Random(seed)
    mixes = [rng.choice(MIX) for _ in range(100_000)]

    async def call(index: int) -> object:
        return await service.enrich(
            frames[index % len(frames)], mixes[index % len(mixes)], deadline_s
        )

    window = method.window_for(rate)
    counters: dict[str, dict[str, int]] = {}
    at = {
        method.warmup_s: lambda: counters.__setitem__("start", _zoo_totals(service)),
        method.warmup_s + window: lambda: counters.__setitem__("end", _zoo_totals(service)),
    }
    failures: Counter[str] = Counter()
    point, _ = await measure_schedule(
        lambda offsets: open_loop_in_process(call, offsets, at, failures), rate, method, seed
    )
    point = replace(
        point,
        extra={
            "in_window": {k: counters["end"][k] - counters["start"][k] for k in ZOO_COUNTERS},
            "whole_run": _zoo_totals(service),
            "failures_500": dict(failures),
        },
    )
    return {"budget_bytes": service.zoo.budget_bytes, "point": point.as_dict()}


def _p95_or_p50(point: dict[str, Any]) -> tuple[str, float | None]:
    latency = point["latency_ms"]
    return ("p95", latency["p95"]) if latency["p95"] is not None else ("p50", latency["p50"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="offered requests/s (thrash; GPU 40, CPU 0.25)"
    )
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before each window")
    parser.add_argument(
        "--min-requests", type=int, default=200, help="least requests in a window (P95: 200)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = args.rate or (40.0 if device.type == "cuda" else 0.25)
    method = Method(
        window_s=args.window,
        warmup_s=args.warmup,
        min_requests=args.min_requests,
        repeats=args.repeats,
        timeout_s=args.deadline,
    )
    sanity = Sanity()
    sanity.check(
        "windows as long as the method asks (30 s)",
        method.window_s >= 30,
        f"{method.window_s:g} s windows after {method.warmup_s:g} s of warm-up",
    )
    with tempfile.TemporaryDirectory() as tmp:
        catalog = [save_weights(m, Path(tmp)) for m in load_catalog(BENCH_MODELS, Path(tmp))]
        print("part 1: reloads", flush=True)
        roomy = service_for(catalog, 64 * GIB, device)
        reload_rows = asyncio.run(reloads(roomy, device, args.repeats))
        roomy.stop()
        for row in reload_rows:
            host_s, disk_s = row["from_host_s"], row["from_disk_s"]
            sanity.check(
                f"{row['model']}: a reload from the host copy not slower than a rebuild from disk",
                host_s["max"] <= disk_s["min"],
                f"host {host_s['min']:.4f}..{host_s['max']:.4f} s, "
                f"disk {disk_s['min']:.4f}..{disk_s['max']:.4f} s",
            )
        footprints = {r["model"]: r["footprint_bytes"] for r in reload_rows}
        priorities = {m.name: m.priority for m in catalog}
        kept = sum(b for n, b in footprints.items() if priorities[n] in ("CRITICAL", "HIGH"))
        turns = max(b for n, b in footprints.items() if priorities[n] in ("MEDIUM", "LOW"))
        budgets = {"roomy": 2 * sum(footprints.values()), "tight": kept + turns}
        thrash_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in budgets}
        names = list(budgets)
        for repeat in range(args.repeats):
            for name in names[repeat % 2 :] + names[: repeat % 2]:
                print(f"part 2, repeat {repeat + 1}: {name} budget at {rate:g}/s", flush=True)
                service = service_for(catalog, budgets[name], device)
                run = asyncio.run(thrash(service, rate, method, args.deadline, seed=repeat))
                service.stop()
                thrash_runs[name].append(run)
                point = run["point"]
                print(
                    f"  achieved {point['achieved_rps']:.3g}/s of {rate:g}, latency "
                    f"{point['latency_ms']}, statuses {point['statuses']}, zoo "
                    f"{point['extra']['in_window']}",
                    flush=True,
                )

    for name, runs in thrash_runs.items():
        for i, run in enumerate(runs):
            sanity.point(f"{name} budget, repeat {i + 1}", Point(**run["point"]))
        sanity.repeats(
            f"{name} budget: throughput within 10 % between repeats",
            [r["point"]["achieved_rps"] for r in runs],
        )
    sanity.check(
        "roomy budget: nothing evicted in the window",
        all(r["point"]["extra"]["in_window"]["evictions"] == 0 for r in thrash_runs["roomy"]),
        f"{[r['point']['extra']['in_window'] for r in thrash_runs['roomy']]}",
    )
    sanity.check(
        "tight budget: models took turns in the window (evictions and reloads)",
        all(r["point"]["extra"]["in_window"]["evictions"] > 0 for r in thrash_runs["tight"]),
        f"{[r['point']['extra']['in_window'] for r in thrash_runs['tight']]}",
    )

    def ratio(a: list[float | None], b: list[float | None]) -> dict[str, float | int] | None:
        pairs = [x / y for x, y in zip(a, b, strict=True) if x is not None and y]
        return spread(pairs) if pairs else None

    tight = [r["point"] for r in thrash_runs["tight"]]
    roomy_points = [r["point"] for r in thrash_runs["roomy"]]
    tail = "p95" if all(_p95_or_p50(p)[0] == "p95" for p in tight + roomy_points) else "p50"
    ratios = {
        "tight_over_roomy_throughput": ratio(
            [p["achieved_rps"] for p in tight], [p["achieved_rps"] for p in roomy_points]
        ),
        f"tight_over_roomy_{tail}": ratio(
            [p["latency_ms"][tail] for p in tight], [p["latency_ms"][tail] for p in roomy_points]
        ),
        "disk_over_host_reload": {r["model"]: r["disk_over_host"] for r in reload_rows},
    }
    record = {
        "benchmark": "zoo_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "method": {
            **method.describe(),
            "load": "in process (no HTTP): EnrichmentService.enrich, the client on the "
            "service's event loop; client_cpu_share is the whole process's",
            "priming": "one request of each mix, one after another, before the warm-up",
            "offered_rps": rate,
            "deadline_s": args.deadline,
            "reload_repeats": args.repeats,
        },  # fmt: skip
        "reload": {
            "what": {
                "from_disk_s": "build, read the weights from disk, dtype/device, warm-up",
                "evict_s": "the host copy (pinned on a GPU, a deep copy on a CPU) and the "
                "release of the serving copy",
                "from_host_s": "the host copy's weights copied back into the served module "
                "(host→device on a GPU, a deep copy into a fresh module on a CPU), no warm-up",
            },
            "models": reload_rows,
        },
        "thrash": {"budgets": budgets, "runs": thrash_runs},
        "ratios": ratios,
        "sanity": sanity.as_dict(),
    }
    print(json.dumps({"ratios": ratios, "sanity_passed": record["sanity"]["passed"]}, indent=2))
    write_record(record, args.out, f"zoo_bench_{device.type}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
