"""The engine supervisor: starts the engine as a child process under a guard
(:mod:`hearthwatch.llm.guard`, so the engine dies with the server however the server ends),
waits for its health with a start-up timeout, and restarts it with exponential back-off when
it dies. Requests in flight when it dies lose their connection and are answered 503 by the
gateway; requests arriving while it restarts get 503 with ``Retry-After``. ``process`` is the
guard, which exits when the engine does."""

from __future__ import annotations

import enum
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from hearthwatch.llm.engines.base import EngineConfig
from hearthwatch.llm.errors import EngineStartError
from hearthwatch.llm.guard import GRACE_S, guarded
from hearthwatch.llm.profiles import EngineFlags
from hearthwatch.processes import free_port, terminate

log = logging.getLogger(__name__)

GUARD_GRACE_S = GRACE_S + 5  # the guard's own grace for the engine, and time to exit


class EngineState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class EngineSupervisor:
    def __init__(
        self,
        config: EngineConfig,
        flags: EngineFlags,
        startup_timeout_s: float = 120.0,
        log_path: Path | None = None,
        on_restart: Callable[[], None] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        host: str = "127.0.0.1",
    ):
        self.config = config
        self.flags = flags
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.on_restart = on_restart
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.host = host
        self.port = free_port()
        self.base_url = config.base_url(host, self.port)
        self.state = EngineState.STOPPED
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._health_client: httpx.Client | None = None  # one client: TLS setup is costly

    @property
    def ready(self) -> bool:
        return self.state is EngineState.READY

    def start(self) -> None:
        """Start the engine and wait until it is healthy; raise if it does not get there."""
        self._stop.clear()
        self.state = EngineState.STARTING
        self._launch()
        self._wait_healthy()
        self.state = EngineState.READY
        self._monitor = threading.Thread(target=self._watch, name="llm-supervisor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        self.state = EngineState.STOPPED
        self._terminate()
        if self._monitor is not None:
            self._monitor.join(10)
            self._monitor = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._health_client is not None:
            self._health_client.close()
            self._health_client = None

    def _launch(self) -> None:
        command = self.config.command(self.flags, self.host, self.port)
        if command is None:
            return  # an external engine: only watched
        if self._log is None:
            self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._close_guard_pipe()
        self.process = subprocess.Popen(
            guarded(command),
            stdin=subprocess.PIPE,  # held open for the guard's life: its EOF stops the engine
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        log.info("started engine (pid %d) on %s", self.process.pid, self.base_url)

    def _healthy(self) -> bool:
        """One health probe; an external engine is probed every 0.2 s, through one client
        (a new one per probe cost more CPU than the gateway's own work)."""
        if self._health_client is None:
            self._health_client = httpx.Client(timeout=2)
        try:
            reply = self._health_client.get(self.base_url + self.config.health_path())
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._exited():
                code = self.process.returncode  # type: ignore[union-attr]
                raise EngineStartError(f"engine exited with code {code} while starting")
            if self._healthy():
                return
            time.sleep(0.1)
        self._terminate()
        raise EngineStartError(f"engine not healthy within {self.startup_timeout_s:.0f} s")

    def _terminate(self) -> None:
        if self.process is not None:
            terminate(self.process, grace_s=GUARD_GRACE_S)
            self._close_guard_pipe()

    def _close_guard_pipe(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()

    def _down(self) -> bool:
        if self.process is not None:
            return self._exited()
        return not self._healthy()

    def _watch(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stop.wait(0.2):
            if not self._down():
                continue
            self.state = EngineState.RESTARTING
            log.warning("engine is down; restarting in %.1f s", backoff)
            if self._stop.wait(backoff):
                return
            try:
                self._launch()
                self._wait_healthy()
            except EngineStartError as exc:
                log.error("engine restart failed: %s", exc)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self.restarts += 1
            self.state = EngineState.READY
            backoff = self.backoff_initial_s
            if self.on_restart is not None:
                self.on_restart()
