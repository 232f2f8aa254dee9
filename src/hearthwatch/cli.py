"""``hearthwatch <command>``: serve, config, detect, gpu, tune, loadtest."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hearthwatch.config import ConfigError, LoadedSettings, load_settings


def _load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> LoadedSettings:
    overrides = {}
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(args.config, environ=environ, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hearthwatch.api.app import (
        CANCEL_WAIT_S,
        DrainingServer,
        RequestDrain,
        create_app,
        drain_services,
    )

    settings = _load(args).settings
    if settings.llm_enabled:
        from hearthwatch.api.services import llm_profile

        llm_profile(settings)  # an unknown profile or a missing model stops here, not later
        settings.llm_engine.check()
    if settings.enrich_enabled:
        from hearthwatch.runtime.enrichers.catalog import DEFAULT_MODELS_FILE, load_catalog

        load_catalog(settings.enrich_models_file or DEFAULT_MODELS_FILE, settings.models_dir)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per engine request
    served = create_app(settings)
    app = RequestDrain(served, on_drain=lambda: drain_services(served))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=False,
        # after the drain, what is left (WebSockets) gets this long before it is cancelled
        timeout_graceful_shutdown=CANCEL_WAIT_S,
    )
    DrainingServer(config, app, settings.shutdown_grace_s).run()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    loaded = _load(args)
    rows = loaded.describe()
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2, default=str))
        return 0
    width = max(len(r.name) for r in rows)
    env_width = max(len(r.env_var) for r in rows)
    for row in rows:
        value = json.dumps(row.value, default=str)
        print(f"{row.name:<{width}}  {value:<24}  {row.env_var:<{env_width}}  {row.source}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    import httpx

    url = args.url.rstrip("/")
    params = {"all_classes": str(args.all_classes).lower()}
    if args.confidence is not None:
        params["confidence"] = str(args.confidence)
    status = 0
    with httpx.Client(timeout=args.timeout) as client:
        for image in args.images:
            data = Path(image).read_bytes()
            reply = client.post(
                f"{url}/detect",
                content=data,
                params=params,
                headers={"Content-Type": "application/octet-stream"},
            )
            print(
                json.dumps({"image": image, "status": reply.status_code, **reply.json()}, indent=2)
            )
            status = status or int(reply.status_code >= 400)
    return status


def cmd_gpu(args: argparse.Namespace) -> int:
    from hearthwatch.runtime.telemetry import TelemetrySampler

    print(json.dumps(TelemetrySampler().sample().as_dict(), indent=2))
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    values = _floats(text)
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return [int(v) for v in values]


def _images(args: argparse.Namespace) -> list[bytes]:
    from hearthwatch.tuning.frames import synthetic_frames

    if args.images:
        return [Path(p).read_bytes() for p in args.images]
    return synthetic_frames(8, args.width, args.height)


def cmd_tune(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.show and args.output:  # show what a server reading that file would apply
        environ["TUNED_CONFIG_FILE"] = args.output
    loaded = _load(args, environ)
    settings = loaded.settings
    path = Path(args.output) if args.output else settings.tuned_config_file
    if args.show:
        return _show_tuned(loaded, path)

    import tempfile
    from datetime import UTC, datetime

    from hearthwatch.tuning.choice import choose
    from hearthwatch.tuning.environment import record_header
    from hearthwatch.tuning.loadgen import image_payloads
    from hearthwatch.tuning.report import plot_tuning
    from hearthwatch.tuning.tuner import SweepPlan, run_sweep, write_tuned

    plan = SweepPlan(
        tuple(args.batch_sizes), tuple(args.queue_delays_ms), args.duration, args.warmup
    )
    # the sweep's batching goes in by environment, above the file; the vision path alone
    env = {"LOG_LEVEL": "warning", "LLM_ENABLED": "false"}
    if args.config:
        env["HEARTHWATCH_CONFIG"] = str(Path(args.config).resolve())
    payloads = image_payloads(_images(args))
    with tempfile.TemporaryDirectory() as logs:
        points = run_sweep(env, payloads, plan, Path(logs))
    choice = choose(points, args.p95_sla_ms, args.memory_reserve_percent)
    print(f"choice: {choice.point}\nrule: {choice.reason}")
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "p95_sla_ms": args.p95_sla_ms,
        "memory_reserve_percent": args.memory_reserve_percent,
        "detector": settings.detector.type,
        "images": len(payloads),
    }
    report = {
        **record_header(),
        **meta,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": settings.model_name,
        "choice": None if choice.point is None else choice.point.__dict__,
        "reason": choice.reason,
        "sweep": [p.__dict__ for p in points],
    }
    (report_dir / "tune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_tuning(points, choice, args.p95_sla_ms, report_dir / "tune.png")
    print(f"report in {report_dir}")
    if choice.point is None:
        print("hearthwatch: nothing written: no configuration met the rule", file=sys.stderr)
        return 1
    write_tuned(path, settings.model_name, choice, points, meta)
    print(f"wrote {path}; `hearthwatch serve` applies it at start")
    return 0


def _show_tuned(loaded: LoadedSettings, path: Path) -> int:
    from hearthwatch.config import TUNED_KEYS, read_tuned

    entry = read_tuned(path).get("models", {}).get(loaded.settings.model_name)
    if entry is None:
        print(f"no tuned configuration for {loaded.settings.model_name} in {path}")
    else:
        measured = entry.get("measured", {})
        print(f"{path} ({entry.get('tuned_at', '?')}): {entry.get('reason', '')}")
        print(f"  measured: {json.dumps(measured)}")
    for row in loaded.describe():
        if row.name in TUNED_KEYS:
            print(f"{row.name} = {row.value}  ({row.source})")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from hearthwatch.tuning.environment import record_header
    from hearthwatch.tuning.loadtest import LoadTestPlan, route_target, run_load_test
    from hearthwatch.tuning.report import write_load_report

    plan = LoadTestPlan(
        p95_sla_ms=args.p95_sla_ms,
        single_count=args.single_count,
        burst_size=args.burst,
        rate=args.rate,
        duration_s=args.duration,
        arrival=args.arrival,
        sweep_start_rate=args.sweep_start,
        sweep_growth=args.sweep_growth,
        sweep_max_steps=args.sweep_steps,
    )
    images = _images(args) if args.route != "chat" else []
    url, payloads = route_target(
        args.url, args.route, images, args.model, args.prompt_words, args.max_tokens
    )
    results = run_load_test(url, payloads, args.profiles, plan)
    meta = {
        **record_header(),
        "target": url,
        "route": args.route,
        "arrival": args.arrival,
        "images": len(payloads),
    }
    files = write_load_report(results, Path(args.out), args.p95_sla_ms, meta)
    for result in results:
        lat = result.summary.latency_ms
        p95 = "-" if lat["p95"] is None else f"{lat['p95']:.1f}"
        verdict = "PASS" if result.passed else "FAIL"
        rate, statuses = result.summary.achieved_rps, result.summary.statuses
        note = f"  {result.note}" if result.note else ""
        print(
            f"{result.name:10s} {verdict}  {rate:8.2f}/s  p95 {p95} ms  statuses {statuses}{note}"
        )
        if result.summary.fell_behind or any(s.summary.fell_behind for s in result.steps):
            print(f"warning: the load generator fell behind its schedule in {result.name}")
    print(f"report: {files['markdown']}")
    return 0 if all(r.passed for r in results) else 1


def _add_image_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", nargs="*", help="image files to send (default: synthetic)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearthwatch", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (default: $HEARTHWATCH_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="print each effective setting and its source")
    config.add_argument("--json", action="store_true")
    config.set_defaults(func=cmd_config)

    detect = sub.add_parser("detect", help="send images to a running server")
    detect.add_argument("images", nargs="+")
    detect.add_argument("--url", default="http://127.0.0.1:8090")
    detect.add_argument("--confidence", type=float)
    detect.add_argument("--all-classes", action="store_true")
    detect.add_argument("--timeout", type=float, default=60.0)
    detect.set_defaults(func=cmd_detect)

    gpu = sub.add_parser("gpu", help="print one GPU telemetry sample")
    gpu.set_defaults(func=cmd_gpu)

    tune = sub.add_parser("tune", help="sweep batching on the real server and keep the best")
    tune.add_argument("--show", action="store_true", help="print the active tuned configuration")
    tune.add_argument("--batch-sizes", type=_ints, default=[1, 2, 4, 8, 16, 32])
    tune.add_argument("--queue-delays-ms", type=_floats, default=[5.0])
    tune.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per configuration"
    )
    tune.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    tune.add_argument("--p95-sla-ms", type=float, default=100.0)
    tune.add_argument("--memory-reserve-percent", type=float, default=10.0)
    tune.add_argument("--output", help="tuned file to write (default: settings.tuned_config_file)")
    tune.add_argument("--report", default="tune-report", help="folder for the JSON and plot")
    _add_image_args(tune)
    tune.set_defaults(func=cmd_tune)

    load = sub.add_parser("loadtest", help="load-test a running server and report against an SLA")
    load.add_argument("--url", default="http://127.0.0.1:8090")
    load.add_argument("--route", choices=["detect", "v2", "chat"], default="detect")
    load.add_argument("--prompt-words", type=int, default=128, help="chat: prompt length")
    load.add_argument("--max-tokens", type=int, default=64, help="chat: output length")
    load.add_argument("--model", default="detector")
    load.add_argument(
        "--profiles", type=lambda t: t.split(","), default=["single", "burst", "sustained", "sweep"]
    )
    load.add_argument("--p95-sla-ms", type=float, default=100.0)
    load.add_argument("--single-count", type=int, default=20)
    load.add_argument("--burst", type=int, default=16)
    load.add_argument("--rate", type=float, default=10.0, help="sustained requests/s")
    load.add_argument(
        "--duration", type=float, default=10.0, help="seconds per sustained or sweep step"
    )
    load.add_argument("--arrival", choices=["constant", "poisson"], default="poisson")
    load.add_argument("--sweep-start", type=float, default=2.0)
    load.add_argument("--sweep-growth", type=float, default=1.5)
    load.add_argument("--sweep-steps", type=int, default=8)
    load.add_argument("--out", default="loadtest-report")
    _add_image_args(load)
    load.set_defaults(func=cmd_loadtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"hearthwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
