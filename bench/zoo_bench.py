"""Model-zoo benchmark: reload from (pinned) host memory vs from disk vs the host→device copy
limit, and a thrash workload with more models than the budget holds.

    python bench/zoo_bench.py            # GPU when present, else the CPU

Part 1, per model (full-size architectures, random weights saved to disk first): seconds to
load from disk (build + read weights + warm-up), seconds to reload from host memory after an
eviction, and on a GPU the pinned host→device bandwidth measured on a buffer of the same size;
``reload_vs_bandwidth`` is the reload's bytes/s over that bandwidth (target ≥ 0.7).
Part 2: the same open-loop /enrich-like mix (person, car, dog crops) with a budget that holds
every model, and with one that holds the CRITICAL and HIGH models plus the largest other one,
so the MEDIUM and LOW models take turns in one slot: throughput, P50/P95, evictions, reloads
and requests answered 503 (a model that cannot get room within the deadline).
On a CPU there is no host→device copy: that column is absent, and eviction keeps the module
where it is, so part 1 only shows what a reload saves over a rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearthwatch.runtime.enrichers.catalog import ZooModelConfig, load_catalog
from hearthwatch.runtime.enrichers.hf_models import HfConfig
from hearthwatch.runtime.enrichment import EnrichmentService, InputDetection
from hearthwatch.runtime.images import decode_image
from hearthwatch.runtime.zoo import ModelZoo, ZooFullError
from hearthwatch.runtime.zoo_memory import GIB
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames

ROOT = Path(__file__).resolve().parents[1]
BENCH_MODELS = ROOT / "bench" / "zoo_models.yml"
MIX = [
    [InputDetection("person", (100, 80, 260, 460)), InputDetection("person", (400, 90, 540, 470))],
    [InputDetection("car", (200, 200, 700, 500))],
    [InputDetection("dog", (300, 300, 420, 420))],
]


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


async def reloads(service: EnrichmentService, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for name in service.models:
        await service.zoo.load(name, 600)
        row = next(r for r in service.zoo.stats() if r.name == name)
        disk_s = row.load_s_from_disk
        await service.zoo.evict(name)
        await service.zoo.load(name, 600)
        row = next(r for r in service.zoo.stats() if r.name == name)
        record: dict[str, Any] = {
            "model": name,
            "footprint_bytes": row.footprint_bytes,
            "from_disk_s": round(disk_s, 4),
            "from_host_s": round(row.load_s_from_host, 4),
            "disk_over_host": round(disk_s / max(row.load_s_from_host, 1e-9), 1),
        }
        if device.type == "cuda":
            weights = sum(
                p.numel() * p.element_size() for p in (await _module(service, name)).parameters()
            )
            bandwidth = copy_bandwidth(weights, device)
            record["weight_bytes"] = weights
            record["h2d_bandwidth_gb_s"] = round(bandwidth / 1e9, 2)
            record["reload_gb_s"] = round(weights / row.load_s_from_host / 1e9, 2)
            record["reload_vs_bandwidth"] = round(weights / row.load_s_from_host / bandwidth, 3)
        rows.append(record)
        await service.zoo.unload(name)
    return rows


async def _module(service: EnrichmentService, name: str) -> torch.nn.Module:
    async with service.zoo.lease(name, 600) as loaded:
        return loaded.module  # type: ignore[no-any-return]


async def thrash(
    service: EnrichmentService, rate: float, requests: int, deadline_s: float
) -> dict[str, Any]:
    frames = [decode_image(f, 10**8) for f in synthetic_frames(8, 1280, 720)]
    rng = random.Random(0)
    latencies: list[float] = []

    rejected = 0

    async def one(i: int) -> None:
        nonlocal rejected
        started = time.monotonic()
        try:
            await service.enrich(frames[i % len(frames)], rng.choice(MIX), deadline_s)
        except ZooFullError:
            rejected += 1
            return
        latencies.append(time.monotonic() - started)

    tasks = []
    started = time.monotonic()
    for i in range(requests):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    return {
        "budget_bytes": service.zoo.budget_bytes,
        "offered_rps": rate,
        "requests": requests,
        "rejected_503": rejected,
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "evictions": sum(r.evictions for r in service.zoo.stats()),
        "loads_from_host": sum(r.loads_from_host for r in service.zoo.stats()),
        "loads_from_disk": sum(r.loads_from_disk for r in service.zoo.stats()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=None, help="offered requests/s (thrash)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = args.rate or (40.0 if device.type == "cuda" else 2.0)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = [save_weights(m, Path(tmp)) for m in load_catalog(BENCH_MODELS, Path(tmp))]
        roomy = service_for(catalog, 64 * GIB, device)
        reload_rows = asyncio.run(reloads(roomy, device))
        roomy.stop()
        footprints = {r["model"]: r["footprint_bytes"] for r in reload_rows}
        priorities = {m.name: m.priority for m in catalog}
        kept = sum(b for n, b in footprints.items() if priorities[n] in ("CRITICAL", "HIGH"))
        turns = max(b for n, b in footprints.items() if priorities[n] in ("MEDIUM", "LOW"))
        thrash_rows = []
        for budget in (2 * sum(footprints.values()), kept + turns):
            service = service_for(catalog, budget, device)
            thrash_rows.append(asyncio.run(thrash(service, rate, args.requests, args.deadline)))
            service.stop()
    record = {
        **record_header(),
        "benchmark": "zoo",
        "reload": reload_rows,
        "thrash": thrash_rows,
        "thrash_tight_vs_roomy": {
            "throughput": round(
                thrash_rows[1]["throughput_rps"] / thrash_rows[0]["throughput_rps"], 3
            ),
            "p95": round(thrash_rows[1]["p95_ms"] / thrash_rows[0]["p95_ms"], 2),
        },
    }
    print(json.dumps(record, indent=2))
    write_record(record, args.out, f"zoo_bench_{device.type}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
