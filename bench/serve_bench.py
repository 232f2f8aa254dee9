"""Serving benchmark, every figure measured side by side in one run:

(a) model-only ceiling: the model's forward on prepared inputs, per batch size, no HTTP;
(b) in-process pipeline ceiling: JPEG bytes → decode → prepare → model → post-processing at
    the best batch size, in a tight loop, no HTTP;
(c) hearthwatch end to end over HTTP: open-loop JPEG requests at rising rates; the knee is the
    highest rate served at ≥ 95 % of the offered rate with no errors, and P50/P95/P99 are
    reported at each rate and at 80 % of the knee;
(d) the naive server (one forward per request, CPU decode, fp32) at the same rates;
(e) LitServe with its dynamic batching, serving the same detector (bench/litserve_server.py,
    multipart uploads decoded on the CPU), at the same rates (needs ``pip install litserve``).

It also compares the optimised path's detections with the plain fp32 eager host path's (same
weights, same images). With ``--ablations`` it measures, in the same run, what each hot-path
optimisation adds: the in-process pipeline with decoding on the device off, with CUDA graphs
off, and the in-process served throughput (batcher, prepare and run) with overlap on and off.

Writes a JSON record to bench/results/ with the device, versions, command and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearthwatch.config import load_settings
from hearthwatch.runtime.batcher import BatchingConfig
from hearthwatch.runtime.device import device_name, select_device
from hearthwatch.runtime.graphs import bucket_sizes
from hearthwatch.runtime.images import check_encoded, decode_image
from hearthwatch.runtime.served_model import ServedModel
from hearthwatch.runtime.sources.base import Detector
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames
from hearthwatch.tuning.loadgen import Payload, image_payloads, open_loop, summarize
from hearthwatch.tuning.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
PRESETS: dict[str, dict[str, str]] = {
    "rtdetr_v2_r50": {
        "DETECTOR__TYPE": "hf_rtdetr",
        "DETECTOR__RANDOM_INIT": "true",
        "DETECTOR__ARCHITECTURE": "rt_detr_v2",
        "DETECTOR__INPUT_SIZE": "640",
    },
    "fasterrcnn_mobilenet_320": {
        "DETECTOR__TYPE": "torchvision",
        "DETECTOR__RANDOM_INIT": "true",
        "DETECTOR__ARCHITECTURE": "fasterrcnn_mobilenet_v3_large_320_fpn",
    },
    "hog": {"DETECTOR__TYPE": "hog"},
}
KNEE_SERVED_FRACTION = 0.95


def timed(fn: Any, min_seconds: float, min_runs: int = 3) -> tuple[float, int]:
    """Seconds per call (median of runs) after one warm-up call."""
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def model_only(
    detector: Detector, image: np.ndarray, sizes: list[int], seconds: float
) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        prepared = detector.prepare([image] * size)
        per_batch, runs = timed(lambda p=prepared: detector.forward(p), seconds)
        rows.append(
            {
                "batch_size": size,
                "batch_ms": per_batch * 1000,
                "img_per_s": size / per_batch,
                "runs": runs,
            }
        )
        rate, ms = size / per_batch, per_batch * 1000
        print(f"  model-only batch {size:3d}: {rate:8.1f} img/s ({ms:.1f} ms/batch)", flush=True)
    return rows


def pipeline(
    detector: Detector, jpegs: list[bytes], batch: int, seconds: float, workers: int
) -> dict[str, float]:
    """JPEG bytes → the detector's own decode path (on the device where it decodes there, else
    a host thread pool) → prepare → model → post-processing, batch after batch."""
    pool = ThreadPoolExecutor(workers)
    cursor = [0]

    def step() -> None:
        chunk = [jpegs[(cursor[0] + i) % len(jpegs)] for i in range(batch)]
        cursor[0] += batch
        if detector.decodes_on_device:
            detector.detect([check_encoded(b, 100_000_000) for b in chunk])  # type: ignore[misc]
        else:
            detector.detect(list(pool.map(lambda b: decode_image(b, 100_000_000), chunk)))

    per_batch, runs = timed(step, seconds)
    pool.shutdown()
    return {
        "batch_size": batch,
        "img_per_s": batch / per_batch,
        "batch_ms": per_batch * 1000,
        "runs": runs,
    }


def served_throughput(
    detector: Detector, jpegs: list[bytes], batch: int, overlap: bool, count: int
) -> dict[str, float]:
    """``count`` requests at once through a :class:`ServedModel` (batcher, prepare, model),
    no HTTP: what overlapping the next batch's preparation with this one's run adds."""
    served = ServedModel("m", detector, BatchingConfig(batch, 2.0, count), overlap=overlap)
    served.start(warmup=False)
    decode = check_encoded if detector.decodes_on_device else decode_image
    images = [decode(jpegs[i % len(jpegs)], 100_000_000) for i in range(count)]

    async def all_at_once() -> None:
        await asyncio.gather(*(served.infer(im, 600) for im in images))

    asyncio.run(all_at_once())  # warm
    started = time.perf_counter()
    asyncio.run(all_at_once())
    elapsed = time.perf_counter() - started
    served.stop()
    return {"overlap": overlap, "img_per_s": count / elapsed, "requests": count}


def equivalence(fast: Detector, plain: Detector, jpegs: list[bytes]) -> dict[str, float]:
    """The optimised path's detections against the plain fp32 eager path's, same weights and
    images: the largest difference among each image's 20 best scores (sorted), and the mean
    box-corner difference in pixels over each image's 10 best detections."""
    if fast.decodes_on_device:
        ours = fast.detect([check_encoded(b, 100_000_000) for b in jpegs])  # type: ignore[misc]
    else:
        ours = fast.detect([decode_image(b, 100_000_000) for b in jpegs])
    theirs = plain.detect([decode_image(b, 100_000_000) for b in jpegs])
    score_diff, box_diffs = 0.0, []
    for a, b in zip(ours, theirs, strict=True):
        k = min(len(a), len(b), 20)
        if k:
            best_a = np.argsort(-a.scores, kind="stable")[:k]
            best_b = np.argsort(-b.scores, kind="stable")[:k]
            diff = np.abs(a.scores[best_a] - b.scores[best_b]).max()
            score_diff = max(score_diff, float(diff))
            n = min(k, 10)
            box_diffs.append(float(np.abs(a.boxes[best_a[:n]] - b.boxes[best_b[:n]]).mean()))
    return {
        "max_score_diff_top20": score_diff,
        "mean_box_diff_px_top10": float(np.mean(box_diffs)) if box_diffs else 0.0,
    }


def multipart_payloads(jpegs: list[bytes]) -> list[Payload]:
    boundary = "hearthwatchbench"
    payloads = []
    for jpeg in jpegs:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="frame.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        body = head + jpeg + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        payloads.append(Payload(body, headers))
    return payloads


def sweep(
    url: str,
    payloads: list[Payload],
    rates: list[float],
    duration: float,
    timeout_s: float,
    loop_cpu_s: Callable[[], float | None] | None = None,
) -> list[dict[str, Any]]:
    """Each rate open-loop; with ``loop_cpu_s`` (the server's event-loop CPU seconds so far),
    each row also says how many milliseconds of that loop one request took."""
    rows = []
    for rate in rates:
        before = loop_cpu_s() if loop_cpu_s else None
        records = asyncio.run(open_loop(url, payloads, rate, duration, timeout_s=timeout_s))
        summary = summarize(records, rate, duration).as_dict()
        after = loop_cpu_s() if loop_cpu_s else None
        if before is not None and after is not None and records:
            summary["event_loop_ms_per_request"] = (after - before) * 1000 / len(records)
        rows.append(summary)
        lat = summary["latency_ms"]
        p95 = f"{lat['p95']:.0f}" if lat["p95"] is not None else "-"
        print(
            f"    offered {rate:8.2f}/s  achieved {summary['achieved_rps']:8.2f}/s  p95 {p95:>7} ms"
            f"  statuses {summary['statuses']}"
            f"  late p99 {summary['lateness_ms'].get('p99', 0):.1f} ms",
            flush=True,
        )
    return rows


def knee(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    served = [
        r
        for r in rows
        if r["ok"] == r["sent"] and r["achieved_rps"] >= KNEE_SERVED_FRACTION * r["offered_rps"]
    ]
    return max(served, key=lambda r: r["offered_rps"]) if served else None


def frontend_capacity(row: dict[str, Any] | None) -> dict[str, float] | None:
    """What one server process's event loop can accept: every request passes through it, so
    1 / (its CPU seconds per request) bounds the rate, whatever the device serves. Measured at
    the knee (else the last rate); below the pipeline ceiling / 0.9 the front-end needs more
    processes."""
    if row is None or not row.get("event_loop_ms_per_request"):
        return None
    per_request = float(row["event_loop_ms_per_request"])
    return {
        "measured_at_offered_rps": float(row["offered_rps"]),
        "event_loop_ms_per_request": per_request,
        "single_process_ceiling_rps": 1000.0 / per_request,
    }


def best_throughput(rows: list[dict[str, Any]]) -> float:
    return max((r["achieved_rps"] for r in rows), default=0.0)


def single_requests(url: str, jpeg: bytes, count: int) -> dict[str, float]:
    import httpx

    latencies = []
    with httpx.Client(timeout=120) as client:
        client.post(url, content=jpeg, headers={"Content-Type": "image/jpeg"})
        for _ in range(count):
            t0 = time.perf_counter()
            reply = client.post(url, content=jpeg, headers={"Content-Type": "image/jpeg"})
            latencies.append((time.perf_counter() - t0) * 1000)
            reply.raise_for_status()
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "count": count}


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, input frames, device and output directory every serving benchmark takes."""
    parser.add_argument("--model", choices=sorted(PRESETS), default="rtdetr_v2_r50")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--use-gpu", choices=["true", "false"], default="true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")


def bench_env(args: argparse.Namespace, max_batch: int, **extra: str) -> dict[str, str]:
    """The environment a benchmarked hearthwatch runs under: the model preset, no LLM, quiet
    logs, a deep queue and a long deadline, so that only the rate decides what is served."""
    return {
        **PRESETS[args.model],
        "USE_GPU": args.use_gpu,
        "LLM_ENABLED": "false",
        "WARMUP": "true",
        "LOG_LEVEL": "warning",
        "MAX_QUEUE_SIZE": "4096",
        "REQUEST_TIMEOUT_MS": "30000",
        "MAX_BATCH_SIZE": str(max_batch),
        **extra,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_arguments(parser)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--queue-delay-ms", type=float, default=5.0)
    parser.add_argument(
        "--rates",
        type=str,
        default="0.25,0.5,0.75,0.9,1.0,1.25",
        help="offered rates as fractions of the in-process pipeline ceiling",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per offered rate")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per in-process point")
    parser.add_argument("--compile", action="store_true", help="TORCH_COMPILE=true")
    parser.add_argument("--ablations", action="store_true", help="each optimisation on and off")
    parser.add_argument("--no-litserve", action="store_true", help="skip (e)")
    args = parser.parse_args()

    env = bench_env(args, args.max_batch, TORCH_COMPILE="true" if args.compile else "false")

    def build(**changes: str) -> Detector:
        settings = load_settings(environ={**env, **changes}).settings
        torch.manual_seed(0)  # random weights, the same for every build
        return settings.detector.build(
            select_device(settings.use_gpu),
            settings.optimization(),
            lambda name, reason: print(f"fallback {name}: {reason}"),
        )

    device = select_device(args.use_gpu == "true")
    detector = build()
    jpegs = synthetic_frames(16, args.width, args.height)
    payloads = image_payloads(jpegs)
    image = decode_image(jpegs[0], 100_000_000)
    workers = os.cpu_count() or 2
    print(
        f"{args.model} on {device_name(device)}; optimizations {detector.optimizations}", flush=True
    )

    print("(a) model-only ceiling", flush=True)
    sizes = bucket_sizes(args.max_batch)
    model_rows = model_only(detector, image, sizes, args.seconds)
    best = max(model_rows, key=lambda r: r["img_per_s"])
    print("(b) in-process pipeline ceiling", flush=True)
    pipe = pipeline(detector, jpegs, int(best["batch_size"]), args.seconds, workers)
    print(f"  pipeline batch {pipe['batch_size']}: {pipe['img_per_s']:.1f} img/s", flush=True)
    applied = list(detector.optimizations)
    plain_changes = {
        "PRECISION": "fp32", "CHANNELS_LAST": "false", "CUDA_GRAPHS": "false",
        "TORCH_COMPILE": "false",
    }  # fmt: skip
    if PRESETS[args.model].get("DETECTOR__TYPE") == "hf_rtdetr":
        plain_changes["DETECTOR__DEVICE_DECODE"] = "off"
    plain = build(**plain_changes)
    agreement = equivalence(detector, plain, jpegs[:4])
    del plain
    print(f"  against the plain fp32 eager path: {agreement}", flush=True)
    ablations: dict[str, Any] = {}
    if args.ablations:
        batch = int(best["batch_size"])
        for overlap in (True, False):
            row = served_throughput(detector, jpegs, batch, overlap, 8 * batch)
            ablations[f"served_overlap_{'on' if overlap else 'off'}"] = row
            print(f"  served, overlap {overlap}: {row['img_per_s']:.1f} img/s", flush=True)
        del detector
        variants = {"pipeline_cuda_graphs_off": {"CUDA_GRAPHS": "false"}}
        if PRESETS[args.model].get("DETECTOR__TYPE") == "hf_rtdetr":  # the one that decodes there
            variants["pipeline_device_decode_off"] = {"DETECTOR__DEVICE_DECODE": "off"}
        for name, changes in variants.items():
            variant = build(**changes)
            variant.warmup(bucket_sizes(args.max_batch))
            ablations[name] = pipeline(variant, jpegs, batch, args.seconds, workers)
            print(f"  {name}: {ablations[name]['img_per_s']:.1f} img/s", flush=True)
            del variant
        ablations["pipeline_all_on"] = pipe
    else:
        del detector  # the servers below load their own copies
    rates = [round(float(f) * pipe["img_per_s"], 3) for f in args.rates.split(",")]
    timeout_s = 60.0

    with tempfile.TemporaryDirectory() as tmp:
        server_env = {
            **env,
            "MAX_BATCH_SIZE": str(int(best["batch_size"])),
            "MAX_QUEUE_DELAY_MS": str(args.queue_delay_ms),
        }
        print(f"(c) hearthwatch over HTTP, max batch {best['batch_size']}", flush=True)
        with ServerProcess(server_env, Path(tmp) / "hearthwatch.log") as server:
            url = f"{server.url}/detect"
            single = single_requests(url, jpegs[0], 20)
            loop_cpu = server.main_thread_cpu_s
            hw_rows = sweep(url, payloads, rates, args.duration, timeout_s, loop_cpu)
            hw_knee = knee(hw_rows)
            at_80 = None
            if hw_knee is not None:
                rate_80 = round(0.8 * hw_knee["offered_rps"], 3)
                at_80 = sweep(url, payloads, [rate_80], args.duration, timeout_s, loop_cpu)[0]
        print("(d) naive server over HTTP", flush=True)
        naive_cmd = [sys.executable, str(ROOT / "bench" / "naive_server.py")]
        with ServerProcess(
            env, Path(tmp) / "naive.log", command=naive_cmd, ready_path="/health"
        ) as naive:
            naive_rows = sweep(f"{naive.url}/detect", payloads, rates, args.duration, timeout_s)
        lit_rows: list[dict[str, Any]] = []
        if not args.no_litserve:
            print("(e) LitServe with batching over HTTP", flush=True)
            lit_cmd = [sys.executable, str(ROOT / "bench" / "litserve_server.py")]
            with ServerProcess(
                server_env, Path(tmp) / "litserve.log", command=lit_cmd, ready_path="/health"
            ) as lit:
                lit_rows = sweep(
                    f"{lit.url}/detect", multipart_payloads(jpegs), rates, args.duration, timeout_s
                )
    naive_knee = knee(naive_rows)
    lit_knee = knee(lit_rows)

    def knee_rate(k: dict[str, Any] | None) -> float:
        return float(k["achieved_rps"]) if k else 0.0

    frontend = frontend_capacity(hw_knee or (hw_rows[-1] if hw_rows else None))
    ratios = {
        "frontend_ceiling_over_pipeline": frontend["single_process_ceiling_rps"] / pipe["img_per_s"]
        if frontend
        else None,
        "pipeline_over_model_only": pipe["img_per_s"] / best["img_per_s"],
        "hearthwatch_knee_over_pipeline": knee_rate(hw_knee) / pipe["img_per_s"],
        "hearthwatch_knee_over_naive_knee": (knee_rate(hw_knee) / knee_rate(naive_knee))
        if naive_knee
        else None,
        "hearthwatch_peak_over_naive_peak": best_throughput(hw_rows)
        / max(best_throughput(naive_rows), 1e-9),
        "hearthwatch_knee_over_litserve_knee": (knee_rate(hw_knee) / knee_rate(lit_knee))
        if lit_knee
        else None,
        "single_request_p50_minus_model_batch1_ms": single["p50_ms"] - model_rows[0]["batch_ms"],
    }
    record = {
        "benchmark": "serve_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "model": args.model,
        "model_env": PRESETS[args.model],
        "optimizations": applied,
        "against_plain_fp32_eager": agreement,
        "input": {"width": args.width, "height": args.height, "format": "jpeg", "quality": 90},
        "model_only": model_rows,
        "pipeline_in_process": pipe,
        "hearthwatch": {
            "single_request": single,
            "sweep": hw_rows,
            "knee": hw_knee,
            "at_80pct_of_knee": at_80,
            "max_batch_size": best["batch_size"],
            "max_queue_delay_ms": args.queue_delay_ms,
            "frontend": frontend,
        },
        "naive": {"sweep": naive_rows, "knee": naive_knee},
        "litserve": {"sweep": lit_rows, "knee": lit_knee},
        "ablations": ablations,
        "ratios": ratios,
    }
    print(json.dumps(ratios, indent=2))
    tag = "gpu" if device.type == "cuda" else "cpu"
    write_record(record, args.out, f"serve_bench_{args.model}_{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
