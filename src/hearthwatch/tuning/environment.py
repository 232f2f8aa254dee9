"""What a measurement ran on: the device, the host and the versions, for every record."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hearthwatch import __version__


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def versions() -> dict[str, str]:
    import cv2
    import fastapi
    import torch
    import uvicorn

    return {
        "hearthwatch": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
    }


def record_header() -> dict[str, Any]:
    """The fields every benchmark or tuning record starts with."""
    return {
        "device": device_description(),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "versions": versions(),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }


def write_record(record: dict[str, Any], directory: Path, name: str) -> Path:
    """``record`` as ``<directory>/<name>_<UTC time>.json``; prints and returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}_{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
