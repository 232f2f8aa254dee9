"""The packaged models work with no network: ``test_packaged_models.py`` runs again in a fresh
network namespace (``unshare -rn``: no interface but a downed loopback), after a probe there
shows that a connection out fails. Skipped, saying so, where the machine allows no namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys

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


def test_the_packaged_models_run_with_networking_off() -> None:
    command = [*_unshare(), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_packaged_models.py"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.split("\n")[-2]
