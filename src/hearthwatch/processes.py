"""Child processes: a free loopback port for them to listen on, a tie to their parent's life,
and a clean stop."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A pre-exec hook: on Linux the kernel sends ``sig`` to the child when the thread that
    forked it ends (its process killed, ``kill -9`` included); if the parent is already gone
    when the child starts, the child does not start. Elsewhere it does nothing."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def hook() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)

    return hook
