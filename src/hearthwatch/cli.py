"""``hearthwatch <command>``: serve, config, detect, gpu."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hearthwatch.config import ConfigError, LoadedSettings, load_settings


def _load(args: argparse.Namespace) -> LoadedSettings:
    overrides = {}
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(args.config, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hearthwatch.api.app import create_app

    settings = _load(args).settings
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=False,
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"hearthwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
