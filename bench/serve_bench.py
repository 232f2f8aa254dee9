"""Serving benchmark, every figure measured side by side in one run, by the shared method
(:mod:`hearthwatch.tuning.method`: open-loop Poisson arrivals, warm-up excluded, steady-state
windows, the knee by bisection, repeats with their spread, sanity checks):

(a) model-only ceiling: the model's forward on prepared inputs, per batch size, no HTTP;
(b) in-process pipeline ceiling: JPEG bytes → decode → prepare → model → post-processing at
    the server's max batch and at batch 1, in a tight loop, no HTTP;
(c) hearthwatch end to end over HTTP with dynamic batching up to ``--max-batch``: the knee
    (highest offered rate served at ≥ 95 % with no errors, P95 under ``--sla-ms`` if given),
    P50/P95 at 80 % of the knee, and the batch sizes the server actually ran;
(d) the naive server (one forward per request, CPU decode, fp32) the same way;
(e) LitServe with its dynamic batching, serving the same detector (bench/litserve_server.py).

Every server gets the same multipart bytes and the same warm-up; the comparison is repeated
``--repeats`` times with the servers in a different order each time.

It also compares the optimised path's detections with the plain fp32 eager host path's (same
weights, same images). With ``--ablations`` it measures, in the same run, what each hot-path
optimisation adds: the in-process pipeline with decoding on the device off, with CUDA graphs
off, and the in-process served throughput (batcher, prepare and run) with overlap on and off.

Writes a JSON record to bench/results/ with the device, versions, command, method, ratios with
their spread, and the sanity checks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearthwatch.config import load_settings
from hearthwatch.percentiles import percentiles
from hearthwatch.runtime.accel.device import device_name, select_device
from hearthwatch.runtime.accel.graphs import bucket_sizes
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.imaging.decode import check_encoded, decode_image
from hearthwatch.runtime.serving.batcher import BatchingConfig
from hearthwatch.runtime.serving.served_model import ServedModel
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.frames import synthetic_frames
from hearthwatch.tuning.loadgen import Payload, burst
from hearthwatch.tuning.method import (
    Method,
    Point,
    Sanity,
    measure_knee,
    measure_point,
    spread,
)
from hearthwatch.tuning.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
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


def timed(fn: Any, min_seconds: float, min_runs: int = 3) -> tuple[float, int]:
    """Seconds per call over a steady run (total time ÷ calls, the figure a throughput
    ceiling needs) after two warm-up calls."""
    fn()
    fn()
    runs = 0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < min_seconds:
        fn()
        runs += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / runs, runs


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
    served = ServedModel(
        "m",
        detector,
        BatchingConfig(max_batch_size=batch, max_queue_delay_ms=2.0, max_queue_size=count),
        overlap=overlap,
    )
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


def batch_sizes_run(url: str) -> dict[str, int]:
    """How many batches of each size the server ran so far (its Triton statistics)."""
    import httpx

    stats = httpx.get(f"{url}/v2/models/stats", timeout=30).json()
    counts: dict[str, int] = {}
    for model in stats.get("model_stats", []):
        for row in model.get("batch_stats", []):
            size = str(row["batch_size"])
            counts[size] = counts.get(size, 0) + int(row["compute_infer"]["count"])
    return counts


def warm_up(url: str, payloads: list[Payload], max_batch: int) -> None:
    """The same warm-up for every server: 8 requests one at a time, then bursts of the max
    batch and twice it, so every batch size the server compiles or captures is seen."""
    for payload in payloads[:8]:
        asyncio.run(burst(url, [payload], 1, timeout_s=600))
    for count in (max_batch, 2 * max_batch):
        asyncio.run(burst(url, payloads, count, timeout_s=600))


def single_requests(url: str, payload: Payload, count: int) -> dict[str, Any]:
    """``count`` requests one after another on an otherwise idle server (after one unmeasured):
    the latency a lone request sees."""
    import httpx

    latencies = []
    with httpx.Client(timeout=120) as client:
        client.post(url, content=payload.body, headers=dict(payload.headers)).raise_for_status()
        for _ in range(count):
            t0 = time.perf_counter()
            reply = client.post(url, content=payload.body, headers=dict(payload.headers))
            latencies.append((time.perf_counter() - t0) * 1000)
            reply.raise_for_status()
    return {"latency_ms": percentiles(latencies, supported_only=True), "count": count}


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


SERVERS = ("hearthwatch", "naive", "litserve")


def serve_and_measure(
    server: str,
    env: dict[str, str],
    log_dir: Path,
    payloads: list[Payload],
    start_rps: float,
    method: Method,
    max_batch: int,
    repeat: int,
) -> dict[str, Any]:
    """Start one server, warm it up, find its knee and measure 80 % of it; stop it."""
    log = log_dir / f"{server}_{repeat}.log"
    if server == "hearthwatch":
        process = ServerProcess(env, log)
    else:
        command = [sys.executable, str(BENCH / f"{server}_server.py")]
        process = ServerProcess(env, log, command=command, ready_path="/health")
    with process:
        url = f"{process.url}/detect"
        warm_up(url, payloads, max_batch)
        single = single_requests(url, payloads[0], 20)
        before = batch_sizes_run(process.url) if server == "hearthwatch" else None
        found = measure_knee(url, payloads, start_rps, method, seed=repeat)
        at_80 = None
        if found.knee is not None:
            rate = 0.8 * found.knee.offered_rps
            at_80 = asyncio.run(measure_point(url, payloads, rate, method, seed=repeat))
        result: dict[str, Any] = {
            "single_request": single,
            "knee": found.as_dict(),
            "at_80pct_of_knee": at_80.as_dict() if at_80 else None,
        }
        if before is not None:
            after = batch_sizes_run(process.url)
            result["batches_run_during_the_search"] = {
                size: after[size] - before.get(size, 0) for size in after
            }
    return result


def knee_rps(result: dict[str, Any]) -> float:
    knee = result["knee"]["knee"]
    return float(knee["achieved_rps"]) if knee else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_arguments(parser)
    parser.add_argument("--max-batch", type=int, default=16, help="the servers' max batch")
    parser.add_argument("--queue-delay-ms", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-probes", type=int, default=12, help="rates tried per knee")
    parser.add_argument(
        "--min-requests", type=int, default=200, help="least requests in a window (P95: 200)"
    )
    parser.add_argument("--sla-ms", type=float, default=None, help="P95 bound of the knee rule")
    parser.add_argument("--servers", default=",".join(SERVERS), help="which of (c), (d), (e)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per in-process point")
    parser.add_argument("--compile", action="store_true", help="TORCH_COMPILE=true")
    parser.add_argument("--ablations", action="store_true", help="each optimisation on and off")
    args = parser.parse_args()
    servers = [name for name in args.servers.split(",") if name]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    if "litserve" in servers and importlib.util.find_spec("litserve") is None:
        parser.error(
            "the LitServe peer needs litserve: pip install -e '.[bench]' "
            "(or leave it out with --servers hearthwatch,naive)"
        )
    method = Method(
        window_s=args.window,
        warmup_s=args.warmup,
        repeats=args.repeats,
        sla_p95_ms=args.sla_ms,
        min_requests=args.min_requests,
        max_probes=args.max_probes,
    )
    sanity = Sanity()
    sanity.check(
        "windows as long as the method asks (30 s)",
        method.window_s >= 30,
        f"{method.window_s:g} s windows after {method.warmup_s:g} s of warm-up",
    )

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
    payloads = multipart_payloads(jpegs)
    image = decode_image(jpegs[0], 100_000_000)
    workers = os.cpu_count() or 2
    print(
        f"{args.model} on {device_name(device)}; optimizations {detector.optimizations}", flush=True
    )

    print("(a) model-only ceiling, twice", flush=True)
    sizes = bucket_sizes(args.max_batch)
    model_runs = [model_only(detector, image, sizes, args.seconds) for _ in range(2)]
    model_rows: list[dict[str, Any]] = [
        {**row, "img_per_s": spread([run[i]["img_per_s"] for run in model_runs])}
        for i, row in enumerate(model_runs[0])
    ]
    best = max(model_rows, key=lambda r: r["img_per_s"]["value"])
    at_max = next(r for r in model_rows if r["batch_size"] == sizes[-1])
    print("(b) in-process pipeline ceiling at the max batch, twice, and at batch 1", flush=True)
    pipes = [pipeline(detector, jpegs, args.max_batch, args.seconds, workers) for _ in range(2)]
    pipe_rate = spread([p["img_per_s"] for p in pipes])
    pipe_1 = pipeline(detector, jpegs, 1, args.seconds, workers)
    print(f"  pipeline batch {args.max_batch}: {pipe_rate}; batch 1: {pipe_1}", flush=True)
    sanity.not_above(
        "pipeline (decode included) not above the model alone at the same batch",
        [p["img_per_s"] for p in pipes],
        [run[len(sizes) - 1]["img_per_s"] for run in model_runs],
    )
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
        for overlap in (True, False):
            row = served_throughput(detector, jpegs, args.max_batch, overlap, 8 * args.max_batch)
            ablations[f"served_overlap_{'on' if overlap else 'off'}"] = row
            print(f"  served, overlap {overlap}: {row['img_per_s']:.1f} img/s", flush=True)
        del detector
        variants = {"pipeline_cuda_graphs_off": {"CUDA_GRAPHS": "false"}}
        if PRESETS[args.model].get("DETECTOR__TYPE") == "hf_rtdetr":  # the one that decodes there
            variants["pipeline_device_decode_off"] = {"DETECTOR__DEVICE_DECODE": "off"}
        for name, changes in variants.items():
            variant = build(**changes)
            variant.warmup(bucket_sizes(args.max_batch))
            ablations[name] = pipeline(variant, jpegs, args.max_batch, args.seconds, workers)
            print(f"  {name}: {ablations[name]['img_per_s']:.1f} img/s", flush=True)
            del variant
        ablations["pipeline_all_on"] = pipes[0]
    else:
        del detector  # the servers below load their own copies

    server_env = {**env, "MAX_QUEUE_DELAY_MS": str(args.queue_delay_ms)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = servers[repeat % len(servers) :] + servers[: repeat % len(servers)]
            for name in order:
                print(f"repeat {repeat + 1}: {name} over HTTP, max batch {args.max_batch}")
                runs[name].append(
                    serve_and_measure(
                        name,
                        server_env,
                        Path(tmp),
                        payloads,
                        0.8 * pipe_rate["value"],
                        method,
                        args.max_batch,
                        repeat,
                    )  # fmt: skip
                )
    knees = {name: [knee_rps(r) for r in results] for name, results in runs.items()}
    for name, values in knees.items():
        sanity.check(f"{name}: a knee in every repeat", min(values) > 0, f"knees {values}")
        sanity.repeats(f"{name} knee within 10 % between repeats", values)
        for i, result in enumerate(runs[name]):
            knee = result["knee"]["knee"]
            if knee is not None:
                sanity.point(f"{name} knee, repeat {i + 1}", Point(**knee))
            if result["at_80pct_of_knee"] is not None:
                at_80 = Point(**result["at_80pct_of_knee"])
                sanity.point(f"{name} at 80 % of the knee, repeat {i + 1}", at_80)
                sanity.check(  # bisection trusts the capacity to hold still: check it did
                    f"{name} at 80 % of the knee passes the knee rule, repeat {i + 1}",
                    at_80.passes(method),
                    f"achieved {at_80.achieved_rps:.3g}/s of {at_80.arrived_rps:.3g}/s arrived, "
                    f"errors {at_80.errors}, P95 {at_80.latency_ms.get('p95')} ms",
                )
            lone = result["single_request"]["latency_ms"]["p50"]
            batch1 = model_rows[0]["batch_ms"]
            sanity.check(
                f"{name}: a lone request not faster than the model's batch-1 forward",
                lone is not None and lone >= batch1 * 0.98,
                f"lone request P50 {lone} ms, model batch 1 {batch1:.1f} ms",
            )
    if "hearthwatch" in knees:
        sanity.not_above(
            "hearthwatch's knee not above the in-process pipeline",
            knees["hearthwatch"],
            [p["img_per_s"] for p in pipes],
        )

    def ratio(a: list[float], b: list[float]) -> dict[str, float | int] | None:
        pairs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
        return spread(pairs) if pairs else None

    ratios: dict[str, Any] = {
        "pipeline_over_model_only_same_batch": ratio(
            [p["img_per_s"] for p in pipes],
            [run[len(sizes) - 1]["img_per_s"] for run in model_runs],
        ),
        "model_only_max_batch_over_batch1": ratio(
            [run[len(sizes) - 1]["img_per_s"] for run in model_runs],
            [run[0]["img_per_s"] for run in model_runs],
        ),
    }
    if "hearthwatch" in knees:
        hw = knees["hearthwatch"]
        ratios["hearthwatch_knee_over_pipeline"] = ratio(hw, [pipe_rate["value"]] * len(hw))
        for peer in ("naive", "litserve"):
            if peer in knees:
                ratios[f"hearthwatch_knee_over_{peer}_knee"] = ratio(hw, knees[peer])
    record = {
        "benchmark": "serve_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "method": method.describe(),
        "model": args.model,
        "model_env": PRESETS[args.model],
        "optimizations": applied,
        "against_plain_fp32_eager": agreement,
        "input": {
            "width": args.width,
            "height": args.height,
            "format": "jpeg",
            "quality": 90,
            "body": "multipart/form-data, field 'image', the same bytes for every server",
        },  # fmt: skip
        "max_batch_size": args.max_batch,
        "max_queue_delay_ms": args.queue_delay_ms,
        "model_only": model_rows,
        "model_only_best_batch": best["batch_size"],
        "model_only_at_max_batch": at_max,
        "pipeline_in_process": {"max_batch": pipes, "batch_1": pipe_1, "img_per_s": pipe_rate},
        "servers": runs,
        "knee_rps": {name: spread(values) for name, values in knees.items()},
        "ablations": ablations,
        "ratios": ratios,
        "sanity": sanity.as_dict(),
    }
    print(json.dumps({"ratios": ratios, "sanity_passed": record["sanity"]["passed"]}, indent=2))
    tag = "gpu" if device.type == "cuda" else "cpu"
    write_record(record, args.out, f"serve_bench_{args.model}_{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
