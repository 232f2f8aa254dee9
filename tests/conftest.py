"""Shared test helpers: images and a real ``hearthwatch serve`` process; and, with
``HEARTHWATCH_MUTATE_EMPTY_DETECTIONS=1`` (scripts/mutation_check.py), detectors that find
nothing, here and in every Python process the tests start."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml

from hearthwatch.tuning.server_process import ServerProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests build models locally; never download

MUTANT = "HEARTHWATCH_MUTATE_EMPTY_DETECTIONS"

YUFACE_HAS_A_WHEEL = (
    sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 12)
)
needs_face_model = pytest.mark.skipif(
    importlib.util.find_spec("yuface") is None and not YUFACE_HAS_A_WHEEL,
    reason="yuface (the face model) ships wheels for CPython <= 3.11 on x86-64 Linux only",
)
"""Where yuface has a wheel, a missing face model fails the test; elsewhere it is skipped."""


def _emptied(finish: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    from hearthwatch.runtime.detection.detections import Detections

    @functools.wraps(finish)
    def nothing_found(self: Any, outputs: Any, prepared: Any) -> list[Any]:
        return [Detections.empty() for _ in finish(self, outputs, prepared)]

    return nothing_found


def return_no_detections() -> None:
    """The mutant: every detector source's ``finish`` answers each image with no detections."""
    import importlib

    from hearthwatch.runtime.detection.base import Detector

    plugins = ("hog", "darknet_source", "torchvision_source", "hf_rtdetr", "onnx_source",
               "torchscript_source")  # fmt: skip
    for plugin in plugins:
        importlib.import_module(f"hearthwatch.runtime.detection.{plugin}")
    pending, patched = list(Detector.__subclasses__()), 0
    while pending:
        source = pending.pop()
        pending += source.__subclasses__()
        if "finish" in vars(source):
            source.finish = _emptied(source.finish)  # type: ignore[method-assign]
            patched += 1
    if patched < 5:
        raise RuntimeError(f"the mutant patched {patched} detector sources; expected every one")


def _mutate_child_processes() -> None:
    """Child Python processes (servers, the CLI) import this module from a ``sitecustomize``
    on their PYTHONPATH, so their detectors find nothing too."""
    site = Path(tempfile.mkdtemp(prefix="hearthwatch-mutant-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    here = str(Path(__file__).parent)
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {here!r})\nimport conftest\n"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )
    os.environ[MUTANT] = "child"  # patch there, but set up no further site


if os.environ.get(MUTANT):
    return_no_detections()
    if os.environ[MUTANT] == "1":
        _mutate_child_processes()


def scene(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A smooth random RGB frame (noise blurred, so it compresses and detects like a photo)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 4)


def encode(rgb: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    return encode(scene(width, height, seed))


class Server(ServerProcess):
    """``hearthwatch serve`` on the CPU, with a helper to read its metrics."""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        text = httpx.get(f"{self.url}/metrics").text
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, value = line.rsplit(" ", 1)
            if head.split("{", 1)[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
                found = True
        assert found, f"metric {name} {labels} not exposed"
        return total


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        defaults = {"USE_GPU": "false", "LLM_ENABLED": "false", "PIPELINE_ENABLED": "false"}
        server = Server({**defaults, **env}, log)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def hog_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    """OpenCV's HOG (the detector without weights), with a batch window wide enough to group
    requests."""
    return start_server(DETECTOR__TYPE="hog", MAX_QUEUE_DELAY_MS="30", MAX_BATCH_SIZE="8")


def llm_env(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    sessions: int,
    queue: int,
    max_tokens: int,
    n_ctx: int = 2048,
) -> dict[str, str]:
    """The environment of a server running the real llama.cpp engine under a small profile of
    its own (``sessions`` slots sharing ``n_ctx``, ``queue`` waiting, ``max_tokens`` cap)."""
    profile = {
        "engine": {"n_ctx": n_ctx, "n_parallel": sessions, "n_gpu_layers": 0, "n_batch": 256},
        "max_concurrent_sessions": sessions,
        "max_queue_depth": queue,
        "scheduler_policy": "fcfs",
        "max_tokens_cap": max_tokens,
        "targets": {"ttft_ms": 1000, "ttft_p99_ms": 4000, "output_tokens_per_s": 20},
    }
    path = tmp_path_factory.mktemp("llm") / "profiles.yml"
    path.write_text(yaml.safe_dump({"small": profile}))
    return {"LLM_ENABLED": "true", "LLM_PROFILE": "small", "LLM_PROFILES_FILE": str(path)}
