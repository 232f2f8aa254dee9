"""Shared test helpers: images, free ports and a real ``hearthwatch serve`` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests build models locally; never download


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``hearthwatch serve`` in a child process, configured through the environment."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if k != "HEARTHWATCH_CONFIG"}
        full_env.update({"HOST": "127.0.0.1", "PORT": str(self.port), "USE_GPU": "false"})
        full_env.update(env)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hearthwatch.cli", "serve"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout_s}s: {self.log_path.read_text()[-3000:]}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        text = httpx.get(f"{self.url}/metrics").text
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, value = line.rsplit(" ", 1)
            sample = head.split("{", 1)[0]
            if sample != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
                found = True
        assert found, f"metric {name} {labels} not exposed"
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = Server(env, log)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def hog_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    """The default detector (HOG), with a batch window wide enough to group requests."""
    return start_server(MAX_QUEUE_DELAY_MS="30", MAX_BATCH_SIZE="8")
