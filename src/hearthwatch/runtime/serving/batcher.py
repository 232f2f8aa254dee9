"""Dynamic batcher: groups concurrent requests into batches for one device worker thread.

- Executions: at most ``max_in_flight`` batches are started and unanswered at once (one per
  execution slot; ``run_batch`` may hand its work to another thread or model instance and
  return a :class:`concurrent.futures.Future`). A request waits in the queue until a slot is
  free, so it stays expirable and the next batch fills while the slots are busy.
- Scheduling, when a slot is free: with nothing running, the queued requests start at once (a
  lone request on an idle worker adds no latency), unless ``min_queue_delay_ms`` asks to wait
  that long after the oldest arrival for company. While another batch runs, the window of
  ``max_queue_delay_ms`` from the oldest arrival gathers more. A batch leaves as soon as it
  holds ``max_batch_size`` requests.
- At most ``max_queue_size`` requests wait; one more raises :class:`QueueFullError`.
- A request whose deadline passes before its batch starts raises
  :class:`DeadlineExceededError` and is never run; a cancelled caller's request is dropped.
  A request that started in time but is still running as long again after its deadline
  raises :class:`DeadlineExceededError` too (its slot stays held until the run returns).
  A batch is formed only from requests whose deadline is still ahead, and its start time is
  taken then: no request starts after its deadline.
- :meth:`DynamicBatcher.submit_many` queues several payloads all together or none: more than
  the queue can ever hold raises :class:`BatchTooLargeError`, more than it has room for now
  :class:`QueueFullError`.
- A batch that fails as a whole is bisected (:mod:`~hearthwatch.runtime.serving.isolation`) on
  the worker thread, holding its slot, so only the payloads at fault get the error and the others
  their results.
- Oldest first. Model code runs on the worker thread, never on the event loop. If the worker
  itself fails (or a handed-off batch is cancelled), every request it owes is answered
  :class:`BatcherStoppedError` and the batcher takes no more.
- ``run_batch`` returns per payload its output, or an exception that is that payload's error
  alone.

Threading: the public coroutines are called on one event loop; all shared state (queue, slots,
failed batches) is guarded by one condition variable, notified on every change that can unblock
the worker (an arrival, a freed slot, a failed batch, stopping).
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

from hearthwatch.runtime.errors import InputTooLargeError, OverloadedError, ServingError
from hearthwatch.runtime.serving.isolation import isolate_failures

log = logging.getLogger(__name__)

DEADLINE_MARGIN_S = 0.01
"""A batch leaves this long before the earliest deadline among the waiting, at the latest:
room for the worker thread to wake and take the GIL (Python's switch interval is 5 ms) before
the deadline it is racing passes."""

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFullError(OverloadedError):
    """The queue holds ``max_queue_size`` requests; ``retry_after_s`` says when to come back."""


class BatchTooLargeError(InputTooLargeError):
    """More payloads in one submission than the queue can ever hold."""


class DeadlineExceededError(ServingError, TimeoutError):
    """The request's deadline passed before its batch started; it was not run."""


class BatcherStoppedError(OverloadedError):
    """The batcher is stopped and takes no more requests (a restart's time to come back)."""

    def __init__(self, message: str, retry_after_s: int = 5):
        super().__init__(message, retry_after_s)


@dataclass(frozen=True, kw_only=True)
class BatchingConfig:
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    max_queue_size: int = 256
    min_queue_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if not 0 <= self.min_queue_delay_ms <= self.max_queue_delay_ms:
            raise ValueError(
                "min_queue_delay_ms must be between 0 and max_queue_delay_ms "
                f"({self.max_queue_delay_ms}), got {self.min_queue_delay_ms}"
            )
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
        *,
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
        self._free_slots = max_in_flight
        self._slots = max_in_flight
        self._queue: deque[_Pending[In]] = deque()
        self._failed: deque[_Failed[In]] = deque()
        self._cond = threading.Condition()
        self._running_count = 0
        self._running: set[_Pending[In]] = set()
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
    def running(self) -> bool:
        """Whether the worker thread is alive (after :meth:`stop` timed out: still finishing)."""
        return self._thread is not None and self._thread.is_alive()

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
            if self._stopping or self._thread is None or not self._thread.is_alive():
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
        except asyncio.CancelledError:
            self._abandon(item)
            raise
        try:  # running: its result is on the way, for as long again as its deadline at most
            return await asyncio.wait_for(asyncio.shield(item.future), timeout_s)  # type: ignore[no-any-return]
        except TimeoutError:
            raise DeadlineExceededError(
                f"started in time, but still running {timeout_s * 1000:.0f} ms after its "
                "deadline; not waited for"
            ) from None

    def _abandon(self, item: _Pending[In]) -> bool:
        """Take a still-queued request out of the queue; False if it already started."""
        with self._cond:
            if item.state is not _State.QUEUED:
                return False
            item.state = _State.ABANDONED
            self._queue.remove(item)
            return True

    # -- worker ------------------------------------------------------------------------------
    def _next_batch(
        self,
    ) -> _Failed[In] | tuple[list[_Pending[In]], list[_Pending[In]], float] | None:
        """Wait for work: a failed batch to bisect, or a free slot and a batch to run in it
        (the batch, the expired requests left out, its start time). None when stopping with
        nothing queued, failed or in flight."""
        with self._cond:
            while True:
                if self._failed:
                    return self._failed.popleft()
                if self._queue and self._free_slots:
                    if len(self._queue) >= self.config.max_batch_size or self._stopping:
                        break
                    now = time.monotonic()
                    leave_at = self._leave_at()
                    if now >= leave_at:
                        break
                    self._cond.wait(leave_at - now)
                    continue
                if self._stopping and not self._queue and self._running_count == 0:
                    return None
                self._cond.wait()
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
            if batch:
                self._free_slots -= 1
                self._running_count += len(batch)
                self._running.update(batch)
            return batch, expired, now

    def _leave_at(self) -> float:
        """When the next batch leaves if it does not fill first: the oldest arrival plus the
        configured minimum on an idle worker, or the full window while another batch runs;
        never after the earliest deadline among the waiting (waiting longer would expire a
        request that a free slot could still run)."""
        idle = self._free_slots == self._slots
        delay_ms = self.config.min_queue_delay_ms if idle else self.config.max_queue_delay_ms
        window_end = self._queue[0].enqueued_at + delay_ms / 1000
        earliest = min(item.deadline for item in self._queue) - DEADLINE_MARGIN_S
        return min(window_end, earliest)

    def _worker(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # the worker must not vanish with requests still owed
            log.exception("%s: worker failed; answering every waiting request", self.name)
            self._fail_everything(exc)

    def _fail_everything(self, cause: BaseException) -> None:
        """Stop taking requests and answer every queued, failed and running one."""
        with self._cond:
            self._stopping = True
            owed = list(self._queue) + [i for f in self._failed for i in f.batch]
            owed += list(self._running)
            self._queue.clear()
            self._failed.clear()
            self._running.clear()
            self._running_count = 0
            self._free_slots = self._slots
            self._cond.notify_all()
        for item in owed:
            _resolve(item, error=BatcherStoppedError(f"{self.name} failed ({cause!r}); not run"))

    def _work(self) -> None:
        while True:
            picked = self._next_batch()
            if picked is None:
                return
            if isinstance(picked, _Failed):
                self._isolate(picked)
                continue
            batch, expired, started = picked
            for item in expired:
                _resolve(item, error=DeadlineExceededError("deadline passed while queued; not run"))
            if batch:
                self._execute(batch, started)

    def _execute(self, batch: list[_Pending[In]], started: float) -> None:
        try:
            result = self._run_batch([item.payload for item in batch])
        except Exception as exc:
            self._isolate(_Failed(batch, started, exc))
            return
        except BaseException as exc:  # not the payloads' fault: answer them, then go down
            stopped = BatcherStoppedError(f"{self.name} failed ({exc!r}); not answered")
            self._finish(batch, started, [stopped] * len(batch))
            raise
        if isinstance(result, Future):
            result.add_done_callback(lambda done: self._finish_future(batch, started, done))
        else:
            self._finish(batch, started, result)

    def _finish_future(
        self, batch: list[_Pending[In]], started: float, done: Future[Outputs[Out]]
    ) -> None:
        if done.cancelled():
            stopped = BatcherStoppedError(f"{self.name}: the batch was cancelled; not answered")
            self._finish(batch, started, [stopped] * len(batch))
            return
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
            self._release(batch)

    def _release(self, batch: list[_Pending[In]]) -> None:
        """Give a finished batch's slot back (unless :meth:`_fail_everything` already did)."""
        with self._cond:
            if self._running.isdisjoint(batch):
                return
            self._running.difference_update(batch)
            self._running_count -= len(batch)
            self._free_slots += 1
            self._cond.notify_all()

    def _deliver(self, batch: list[_Pending[In]], started: float, outputs: Outputs[Out]) -> None:
        if len(outputs) != len(batch):
            error = RuntimeError(f"run_batch returned {len(outputs)} results for {len(batch)}")
            log.error("%s: %s", self.name, error)
            outputs = [error] * len(batch)
        compute_s = time.monotonic() - started
        self._throughput.add(len(batch), compute_s)
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), compute_s)
            except Exception:  # an observer's failure is not the requests'
                log.exception("%s: batch observer failed", self.name)
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
