"""Admission control: at most ``max_running`` requests on the engine, at most ``max_waiting``
waiting in arrival order; one more is refused at once with :class:`AdmissionFullError`."""

from __future__ import annotations

import asyncio
from collections import deque

from hearthwatch.llm.errors import AdmissionClosedError, AdmissionFullError, SessionTimeoutError


class Admission:
    def __init__(self, max_running: int, max_waiting: int):
        if max_running < 1 or max_waiting < 0:
            raise ValueError(
                f"need max_running >= 1 and max_waiting >= 0, got {max_running}, {max_waiting}"
            )
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self.closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free place at once if there is one and nobody waits (no task, no timer: the
        common case of a request that need not queue); False otherwise, closed included."""
        if self.closed or self.running >= self.max_running or self._waiters:
            return False
        self.running += 1
        return True

    async def acquire(self, timeout_s: float) -> None:
        if self.closed:
            raise AdmissionClosedError("the server is shutting down")
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            return
        if len(self._waiters) >= self.max_waiting:
            busy = f"{self.running} session{'' if self.running == 1 else 's'} busy"
            raise AdmissionFullError(
                f"Queue full: {busy}, {len(self._waiters)} queued",
                retry_after_s=max(1, len(self._waiters)),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            if not self._leave(waiter):
                return  # the slot arrived as the timeout fired: keep it
            raise SessionTimeoutError(f"no session free within {timeout_s:g} s") from None
        except asyncio.CancelledError:
            if not self._leave(waiter):
                self.release()  # handed a slot while being cancelled: give it back
            raise

    def close(self) -> None:
        """Admit no more; every waiter gets :class:`AdmissionClosedError` now. Requests
        already running keep their sessions until they release them."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(AdmissionClosedError("the server is shutting down"))

    def _leave(self, waiter: asyncio.Future[None]) -> bool:
        """Drop a waiter that never got a slot; False if it already holds one."""
        if waiter.done():
            return False
        self._waiters.remove(waiter)
        waiter.cancel()
        return True

    def release(self) -> None:
        """Hand the slot to the oldest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1
