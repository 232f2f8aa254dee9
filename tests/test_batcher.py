from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from hearthwatch.runtime.batcher import (
    BatchingConfig,
    BatchResult,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)


class Recorder:
    """A run_batch that records what it ran and can be held at a gate."""

    def __init__(self, hold: bool = False, seconds: float = 0.0):
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seconds = seconds
        if not hold:
            self.gate.set()

    def __call__(self, payloads: Sequence[int]) -> list[int]:
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.seconds)
        self.batches.append(list(payloads))
        return [p * 10 for p in payloads]

    @property
    def ran(self) -> list[int]:
        return [p for batch in self.batches for p in batch]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def make(recorder: Recorder, **config: float) -> DynamicBatcher[int, int]:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(recorder, BatchingConfig(**config))  # type: ignore[arg-type]
    batcher.start()
    return batcher


async def occupy_worker(
    batcher: DynamicBatcher[int, int], rec: Recorder
) -> asyncio.Future[BatchResult[int]]:
    """Submit request 0 and return once the held worker is running it."""
    running = asyncio.ensure_future(batcher.submit(0, 5))
    await asyncio.to_thread(rec.entered.wait, 5)
    return running


def test_concurrent_requests_are_grouped_up_to_max_batch() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=200)

    async def main() -> list[int]:
        results = await asyncio.gather(*(batcher.submit(i, 5) for i in range(16)))
        return [r.value for r in results]

    assert run(main()) == [i * 10 for i in range(16)]
    batcher.stop()
    assert [len(b) for b in rec.batches] == [8, 8]


def test_a_lone_request_waits_the_window_and_not_much_more() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=50)

    async def main() -> float:
        started = time.monotonic()
        result = await batcher.submit(1, 5)
        assert result.timing.batch_size == 1
        return time.monotonic() - started

    elapsed = run(main())
    batcher.stop()
    assert 0.045 <= elapsed < 0.050 + 0.040


def test_the_window_starts_at_the_first_arrival() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=80)

    async def main() -> tuple[float, float]:
        started = time.monotonic()
        first = asyncio.ensure_future(batcher.submit(1, 5))
        await asyncio.sleep(0.04)
        second = await batcher.submit(2, 5)
        await first
        return time.monotonic() - started, second.timing.queue_s

    elapsed, second_queue = run(main())
    batcher.stop()
    assert rec.batches == [[1, 2]]
    assert elapsed < 0.08 + 0.04  # not 40 ms + a fresh 80 ms window
    assert second_queue < 0.07


def test_a_full_batch_leaves_without_waiting_for_the_window() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=4, max_queue_delay_ms=2000)

    async def main() -> float:
        started = time.monotonic()
        await asyncio.gather(*(batcher.submit(i, 5) for i in range(4)))
        return time.monotonic() - started

    assert run(main()) < 0.5
    batcher.stop()


def test_a_full_queue_rejects_with_retry_after_and_accepted_work_completes() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=2)

    async def main() -> tuple[list[int], list[QueueFullError]]:
        running = await occupy_worker(batcher, rec)  # the worker holds request 0
        queued = [asyncio.ensure_future(batcher.submit(i, 5)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        rejected = []
        for i in (3, 4):
            with pytest.raises(QueueFullError) as err:
                await batcher.submit(i, 5)
            rejected.append(err.value)
        rec.gate.set()
        done = await asyncio.gather(running, *queued)
        return [r.value for r in done], rejected

    values, rejected = run(main())
    batcher.stop()
    assert values == [0, 10, 20]
    assert all(err.retry_after_s >= 1 for err in rejected)
    assert rec.ran == [0, 1, 2]


def test_an_expired_deadline_is_answered_and_never_run() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0)

    async def main() -> float:
        running = await occupy_worker(batcher, rec)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(1, 0.05)
        waited = time.monotonic() - started
        rec.gate.set()
        await running
        await batcher.submit(2, 5)
        return waited

    waited = run(main())
    batcher.stop()
    assert waited < 0.05 + 0.1  # answered at its deadline, not when the worker got free
    assert rec.ran == [0, 2]


def test_a_deadline_that_passes_inside_the_window_is_not_run() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=100)

    async def main() -> None:
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(1, 0.01)

    run(main())
    batcher.stop()
    assert rec.ran == []


def test_a_cancelled_caller_is_dropped_from_the_queue() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0)

    async def main() -> None:
        running = await occupy_worker(batcher, rec)
        waiting = asyncio.ensure_future(batcher.submit(1, 5))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.sleep(0.01)
        assert batcher.queued == 0
        rec.gate.set()
        await running

    run(main())
    batcher.stop()
    assert rec.ran == [0]


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on() -> None:
    calls = []

    def flaky(payloads: Sequence[int]) -> list[int]:
        calls.append(list(payloads))
        if len(calls) == 1:
            raise ValueError("model exploded")
        return list(payloads)

    batcher: DynamicBatcher[int, int] = DynamicBatcher(flaky, BatchingConfig(4, 0, 8))
    batcher.start()

    async def main() -> int:
        with pytest.raises(ValueError, match="model exploded"):
            await batcher.submit(1, 5)
        return (await batcher.submit(2, 5)).value

    assert run(main()) == 2
    batcher.stop()


def test_oldest_requests_are_served_first() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=2, max_queue_delay_ms=0)

    async def main() -> None:
        first = await occupy_worker(batcher, rec)
        rest = []
        for i in range(1, 6):
            rest.append(asyncio.ensure_future(batcher.submit(i, 5)))
            await asyncio.sleep(0.002)
        rec.gate.set()
        await asyncio.gather(first, *rest)

    run(main())
    batcher.stop()
    assert rec.ran == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_queue_delay_ms": -1}, {"max_queue_size": 0}],
)
def test_invalid_batching_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BatchingConfig(**kwargs)  # type: ignore[arg-type]
