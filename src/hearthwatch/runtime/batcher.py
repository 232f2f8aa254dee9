"""Dynamic batcher: groups concurrent requests into batches for one device worker thread.

- The batch window opens when the oldest waiting request arrived and lasts
  ``max_queue_delay_ms``; a batch leaves as soon as it holds ``max_batch_size`` requests.
- At most ``max_queue_size`` requests wait; one more raises :class:`QueueFullError`.
- A request whose deadline passes before its batch starts raises
  :class:`DeadlineExceededError` and is never run; a cancelled caller's request is dropped.
- :meth:`DynamicBatcher.submit_many` queues several payloads all together or none: more than
  the queue can ever hold raises :class:`BatchTooLargeError`, more than it has room for now
  :class:`QueueFullError`.
- A batch that fails as a whole is bisected (:mod:`~hearthwatch.runtime.isolation`) on the
  worker thread, so only the payloads at fault get the error and the others their results.
- Oldest first. Model code runs on the worker thread, never on the event loop.
- ``run_batch`` returns per payload its output, or an exception that is that payload's error
  alone; it may also hand the rest of its work to another thread and return a
  :class:`concurrent.futures.Future`: the worker then gathers (and starts) the next batch
  while that one finishes, with at most ``max_in_flight`` batches started and unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hearthwatch.runtime.isolation import isolate_failures

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue_size`` requests; ``retry_after_s`` says when to come back."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BatchTooLargeError(ValueError):
    """More payloads in one submission than the queue can ever hold."""


class DeadlineExceededError(TimeoutError):
    """The request's deadline passed before its batch started; it was not run."""


class BatcherStoppedError(RuntimeError):
    """The batcher is stopped and takes no more requests."""


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    max_queue_size: int = 256

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")


class _State(enum.Enum):
    QUEUED = 1
    RUNNING = 2
    ABANDONED = 3


@dataclass(eq=False)
class _Pending(Generic[In]):
    payload: In
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    enqueued_at: float
    deadline: float
    state: _State = _State.QUEUED


@dataclass(frozen=True)
class _Failed(Generic[In]):
    """A batch whose run raised ``error``, waiting to be bisected."""

    batch: list[_Pending[In]]
    started: float
    error: BaseException


@dataclass(frozen=True)
class BatchTiming:
    """What one request spent where, in seconds; the batch it ran in had ``batch_size``."""

    queue_s: float
    compute_s: float
    batch_size: int


@dataclass(frozen=True)
class BatchResult(Generic[Out]):
    value: Out
    timing: BatchTiming


Outputs = Sequence["Out | BaseException"]  # per payload its output, or the error it met
RunBatch = Callable[[Sequence[In]], "Outputs[Out] | Future[Outputs[Out]]"]
BatchObserver = Callable[[int, float], None]


@dataclass
class _Throughput:
    """Recent batch durations, for the Retry-After estimate."""

    seconds_per_item: float = 0.0
    samples: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, batch_size: int, seconds: float) -> None:
        with self._lock:
            per_item = seconds / batch_size
            weight = 0.2 if self.samples else 1.0
            self.seconds_per_item += weight * (per_item - self.seconds_per_item)
            self.samples += 1


class DynamicBatcher(Generic[In, Out]):
    """Collects payloads into batches and runs ``run_batch`` on its own worker thread."""

    def __init__(
        self,
        run_batch: RunBatch[In, Out],
        config: BatchingConfig,
        name: str = "batcher",
        on_batch: BatchObserver | None = None,
        max_in_flight: int = 1,
    ):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._run_batch = run_batch
        self.config = config
        self.name = name
        self._on_batch = on_batch
        self._in_flight = threading.Semaphore(max_in_flight)
        self._queue: deque[_Pending[In]] = deque()
        self._failed: deque[_Failed[In]] = deque()
        self._cond = threading.Condition()
        self._running_count = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._throughput = _Throughput()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            if not self._stopping:
                return
            raise RuntimeError(f"{self.name} is still finishing its work; not started twice")
        self._stopping = False
        self._thread = threading.Thread(
            target=self._worker, name=f"{self.name}-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued and in flight, then stop the worker (waiting up to
        ``timeout_s``; a worker still busy then is left to finish, and not started twice)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._thread = None

    def drain(self) -> None:
        """Take no more requests and answer every queued one :class:`BatcherStoppedError`
        (never run); batches already running finish. :meth:`stop` then ends the worker."""
        with self._cond:
            self._stopping = True
            queued, self._queue = list(self._queue), deque()
            for item in queued:
                item.state = _State.ABANDONED
            self._cond.notify_all()
        for item in queued:
            _resolve(item, error=BatcherStoppedError(f"{self.name} is shutting down; not run"))

    # -- introspection -----------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered: queued plus running."""
        return len(self._queue) + self._running_count

    def retry_after_s(self) -> int:
        """Seconds until the current queue is likely drained, at least 1."""
        per_item = self._throughput.seconds_per_item or 0.1
        return max(1, min(60, math.ceil(len(self._queue) * per_item)))

    # -- submission --------------------------------------------------------------------------
    async def submit(self, payload: In, timeout_s: float) -> BatchResult[Out]:
        """Queue ``payload``; return its result, or raise if full, expired or failed."""
        (answer,) = await self.submit_many([payload], timeout_s)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def submit_many(
        self, payloads: Sequence[In], timeout_s: float
    ) -> list[BatchResult[Out] | BaseException]:
        """Queue every payload at once, or none (raising :class:`BatchTooLargeError`,
        :class:`QueueFullError` or :class:`BatcherStoppedError`); return each one's result,
        or the error it met, in order."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [_Pending(p, loop.create_future(), loop, now, now + timeout_s) for p in payloads]
        with self._cond:
            if self._stopping or self._thread is None:
                raise BatcherStoppedError(f"{self.name} is not running")
            limit = self.config.max_queue_size
            if len(items) > limit:
                raise BatchTooLargeError(
                    f"{len(items)} inputs in one request are over the queue's {limit}: "
                    f"send at most {limit} at a time"
                )
            if len(self._queue) + len(items) > limit:
                raise QueueFullError(
                    f"queue of {self.name} is full ({len(self._queue)} of {limit} waiting)",
                    self.retry_after_s(),
                )
            self._queue.extend(items)
            self._cond.notify()
        return list(
            await asyncio.gather(
                *(self._wait(item, timeout_s) for item in items), return_exceptions=True
            )
        )

    async def _wait(self, item: _Pending[In], timeout_s: float) -> BatchResult[Out]:
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout_s)  # type: ignore[no-any-return]
        except TimeoutError:
            if self._abandon(item):
                raise DeadlineExceededError(
                    f"deadline of {timeout_s * 1000:.0f} ms passed while queued; not run"
                ) from None
            return await item.future  # type: ignore[no-any-return]  # running: result on the way
        except asyncio.CancelledError:
            self._abandon(item)
            raise

    def _abandon(self, item: _Pending[In]) -> bool:
        """Take a still-queued request out of the queue; False if it already started."""
        with self._cond:
            if item.state is not _State.QUEUED:
                return False
            item.state = _State.ABANDONED
            self._queue.remove(item)
            return True

    # -- worker ------------------------------------------------------------------------------
    def _next_batch(self) -> _Failed[In] | tuple[list[_Pending[In]], list[_Pending[In]]] | None:
        """Wait for work: a failed batch to bisect, or a batch (to run, expired). None when
        stopping with nothing queued, failed or in flight."""
        max_delay = self.config.max_queue_delay_ms / 1000
        with self._cond:
            while not self._queue and not self._failed:
                if self._stopping and self._running_count == 0:
                    return None
                self._cond.wait()
            if self._failed:
                return self._failed.popleft()
            while len(self._queue) < self.config.max_batch_size and not self._stopping:
                remaining = self._queue[0].enqueued_at + max_delay - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                if not self._queue:  # everything waiting was abandoned
                    return [], []
            now = time.monotonic()
            batch: list[_Pending[In]] = []
            expired: list[_Pending[In]] = []
            while self._queue and len(batch) < self.config.max_batch_size:
                item = self._queue.popleft()
                if item.deadline <= now:
                    item.state = _State.ABANDONED
                    expired.append(item)
                else:
                    item.state = _State.RUNNING
                    batch.append(item)
            self._running_count += len(batch)
            return batch, expired

    def _worker(self) -> None:
        while True:
            picked = self._next_batch()
            if picked is None:
                return
            if isinstance(picked, _Failed):
                self._isolate(picked)
                continue
            batch, expired = picked
            for item in expired:
                _resolve(item, error=DeadlineExceededError("deadline passed while queued; not run"))
            if batch:
                self._in_flight.acquire()
                self._execute(batch)

    def _execute(self, batch: list[_Pending[In]]) -> None:
        started = time.monotonic()
        try:
            result = self._run_batch([item.payload for item in batch])
        except Exception as exc:
            self._isolate(_Failed(batch, started, exc))
            return
        if isinstance(result, Future):
            result.add_done_callback(lambda done: self._finish_future(batch, started, done))
        else:
            self._finish(batch, started, result)

    def _finish_future(
        self, batch: list[_Pending[In]], started: float, done: Future[Outputs[Out]]
    ) -> None:
        error = done.exception()
        if error is None:
            self._finish(batch, started, done.result())
            return
        with self._cond:  # bisected on the worker thread, which may wait on this one
            self._failed.append(_Failed(batch, started, error))
            self._cond.notify_all()

    def _run_now(self, payloads: Sequence[In]) -> Outputs[Out]:
        result = self._run_batch(payloads)
        return result.result() if isinstance(result, Future) else result

    def _isolate(self, failed: _Failed[In]) -> None:
        """Bisect a batch that failed as a whole; its in-flight slot is held until then."""
        batch = failed.batch
        if len(batch) > 1:
            log.warning(
                "%s: batch of %d failed (%r); isolating", self.name, len(batch), failed.error
            )
        outputs = isolate_failures(self._run_now, [item.payload for item in batch], failed.error)
        self._finish(batch, failed.started, outputs)

    def _finish(
        self,
        batch: list[_Pending[In]],
        started: float,
        outputs: Outputs[Out],
    ) -> None:
        try:
            self._deliver(batch, started, outputs)
        finally:
            with self._cond:
                self._running_count -= len(batch)
                self._cond.notify_all()
            self._in_flight.release()

    def _deliver(self, batch: list[_Pending[In]], started: float, outputs: Outputs[Out]) -> None:
        if len(outputs) != len(batch):
            error = RuntimeError(f"run_batch returned {len(outputs)} results for {len(batch)}")
            log.error("%s: %s", self.name, error)
            outputs = [error] * len(batch)
        compute_s = time.monotonic() - started
        self._throughput.add(len(batch), compute_s)
        if self._on_batch is not None:
            self._on_batch(len(batch), compute_s)
        for item, output in zip(batch, outputs, strict=True):
            if isinstance(output, BaseException):
                _resolve(item, error=output)
            else:
                timing = BatchTiming(started - item.enqueued_at, compute_s, len(batch))
                _resolve(item, value=BatchResult(output, timing))


def _resolve(item: _Pending[Any], value: Any = None, error: BaseException | None = None) -> None:
    def deliver() -> None:
        if item.future.done():
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(value)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        item.loop.call_soon_threadsafe(deliver)
