"""A server in a child process, started from a command and an environment, ready-checked over
HTTP and stopped cleanly; used by the benchmarks, the tuner and the tests. The server gets
SIGTERM (a clean stop, its engine included) when the process that started it ends, however it
ends: a benchmark stopped by a signal leaves no server behind (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from hearthwatch.processes import die_with_parent, free_port, terminate

HEARTHWATCH_SERVE = (sys.executable, "-m", "hearthwatch.cli", "serve")


class ServerProcess:
    """``command`` runs with ``env`` on top of this process's environment, plus HOST and PORT."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        command: Sequence[str] = HEARTHWATCH_SERVE,
        ready_path: str = "/v2/health/ready",
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.ready_path = ready_path
        full_env = dict(os.environ)
        full_env.update({"HOST": "127.0.0.1", "PORT": str(self.port)})
        full_env.update(env)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(command),
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )

    def wait_ready(self, timeout_s: float = 300.0) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        log_tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"server not ready in {timeout_s:.0f}s: {log_tail}")

    def main_thread_cpu_s(self) -> float | None:
        """CPU seconds the server's main thread (its event loop) has used; None where the OS
        does not say. Linux's scheduler statistics count nanoseconds; /proc's stat, the
        fallback, counts clock ticks (10 ms)."""
        task = Path(f"/proc/{self.process.pid}/task/{self.process.pid}")
        try:
            return int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
        return _stat_cpu_s(task / "stat")

    def process_cpu_s(self) -> float | None:
        """CPU seconds the whole server process (every thread) has used, to 10 ms."""
        return process_cpu_s(self.process.pid)

    def stop(self) -> None:
        terminate(self.process, grace_s=30)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.wait_ready()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds process ``pid`` (every thread) has used, to a clock tick (10 ms); None
    where the OS does not say."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def _stat_cpu_s(stat_path: Path) -> float | None:
    try:
        stat = stat_path.read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
