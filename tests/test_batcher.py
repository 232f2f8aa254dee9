from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from hearthwatch.runtime.serving.batcher import (
    BatcherStoppedError,
    BatchingConfig,
    BatchResult,
    BatchTooLargeError,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)
from hearthwatch.runtime.serving.isolation import isolate_failures


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


def test_requests_arriving_while_a_batch_runs_are_grouped_up_to_max_batch() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=200)

    async def main() -> list[int]:
        running = await occupy_worker(batcher, rec)
        rest = [asyncio.ensure_future(batcher.submit(i, 5)) for i in range(1, 17)]
        await asyncio.sleep(0.01)
        rec.gate.set()
        results = await asyncio.gather(running, *rest)
        return [r.value for r in results]

    assert run(main()) == [i * 10 for i in range(17)]
    batcher.stop()
    assert [len(b) for b in rec.batches] == [1, 8, 8]


def test_a_lone_request_on_an_idle_worker_starts_at_once() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, max_queue_delay_ms=10_000)

    async def main() -> BatchResult[int]:
        return await batcher.submit(1, 5)  # before: waited out the 10 s window, expired at 5 s

    result = run(main())
    batcher.stop()
    assert result.timing.batch_size == 1
    assert result.timing.queue_s < 1.0


def test_an_explicit_minimum_waits_for_company_until_the_batch_is_full() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=2, min_queue_delay_ms=10_000, max_queue_delay_ms=10_000)

    async def main() -> list[int]:
        first = asyncio.ensure_future(batcher.submit(1, 30))
        await asyncio.sleep(0.05)
        assert rec.batches == []  # waiting for company
        second = await batcher.submit(2, 30)
        return [(await first).timing.batch_size, second.timing.batch_size]

    assert run(main()) == [2, 2]
    batcher.stop()
    assert rec.batches == [[1, 2]]


def test_a_full_batch_leaves_without_waiting_for_the_window() -> None:
    rec = Recorder()  # a window of a minute: a batch that waited for it would time out here
    batcher = make(rec, max_batch_size=4, min_queue_delay_ms=60_000, max_queue_delay_ms=60_000)

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(batcher.submit(i, 120) for i in range(4))), 20)

    run(main())
    batcher.stop()
    assert rec.batches == [[0, 1, 2, 3]]


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

    async def main() -> None:
        running = await occupy_worker(batcher, rec)
        # answered at its deadline while the worker is held (its gate gives way only after
        # 10 s, and opens here only after the answer), not when the worker gets free
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(batcher.submit(1, 0.05), 5)
        rec.gate.set()
        await running
        await batcher.submit(2, 5)

    run(main())
    batcher.stop()
    assert rec.ran == [0, 2]


def test_a_stop_that_times_out_never_leaves_two_workers() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0)

    def workers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == f"{batcher.name}-worker")

    async def main() -> int:
        running = await occupy_worker(batcher, rec)
        batcher.stop(timeout_s=0.05)  # the worker is held: the join gives up
        with pytest.raises(RuntimeError, match="still finishing"):
            batcher.start()  # before: a second worker beside the first
        assert workers() == 1
        rec.gate.set()
        return (await running).value

    assert run(main()) == 0
    batcher.stop()
    assert workers() == 0
    batcher.start()  # once stopped for good, it starts again: one worker, serving
    assert workers() == 1
    assert run(batcher.submit(3, 5)).value == 30
    batcher.stop()


def test_a_deadline_inside_the_minimum_window_sends_the_batch_before_it() -> None:
    rec = Recorder()
    batcher = make(rec, max_batch_size=8, min_queue_delay_ms=100, max_queue_delay_ms=100)

    async def main() -> None:
        await batcher.submit(1, 0.05)

    run(main())
    batcher.stop()
    assert rec.ran == [1]  # before: held for the 100 ms window, expired at 50 ms, never run


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

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        flaky, BatchingConfig(max_batch_size=4, max_queue_delay_ms=0, max_queue_size=8)
    )
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
    [
        {"max_batch_size": 0},
        {"max_queue_delay_ms": -1},
        {"max_queue_size": 0},
        {"min_queue_delay_ms": -1},
        {"min_queue_delay_ms": 10, "max_queue_delay_ms": 5},
    ],
)
def test_invalid_batching_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)).replace("max", "m..")):
        BatchingConfig(**kwargs)  # type: ignore[arg-type]


class Poisoned:
    """A run_batch that fails whenever a batch holds a negative payload; counts its runs."""

    def __init__(self, overlap: bool = False):
        self.runs: list[list[int]] = []
        self._pool = ThreadPoolExecutor(1) if overlap else None

    def _run(self, payloads: Sequence[int]) -> list[int]:
        self.runs.append(list(payloads))
        if any(p < 0 for p in payloads):
            raise ValueError(f"cannot take {min(payloads)}")
        return [p * 10 for p in payloads]

    def __call__(self, payloads: Sequence[int]) -> list[int] | Future[list[int]]:
        if self._pool is None:
            return self._run(payloads)
        return self._pool.submit(self._run, list(payloads))


@pytest.mark.parametrize("size", range(1, 17))
def test_bisection_blames_only_the_bad_item_within_log2_plus_one_runs(size: int) -> None:
    for bad in range(size):
        items = [i + 1 for i in range(size)]
        items[bad] = -1
        model = Poisoned()
        with pytest.raises(ValueError) as first:
            model._run(items)
        results = isolate_failures(model._run, items, first.value)
        assert len(model.runs) - 1 <= math.ceil(math.log2(size)) + 1, (size, bad, model.runs)
        for i, (item, result) in enumerate(zip(items, results, strict=True)):
            if i == bad:
                assert isinstance(result, ValueError) and "-1" in str(result)
            else:
                assert result == item * 10


def test_bisection_finds_every_bad_item() -> None:
    items = [1, -2, 3, 4, 5, -6, 7]
    model = Poisoned()
    results = isolate_failures(model._run, items, ValueError("batch"))
    assert [isinstance(r, ValueError) for r in results] == [i < 0 for i in items]
    assert [r for r in results if not isinstance(r, ValueError)] == [10, 30, 40, 50, 70]


def test_bisection_of_a_model_that_always_fails_is_bounded() -> None:
    runs = []

    def broken(payloads: Sequence[int]) -> list[int]:
        runs.append(list(payloads))
        raise RuntimeError("device lost")

    results = isolate_failures(broken, list(range(16)), RuntimeError("device lost"))
    assert len(runs) == 2 * (4 + 1)  # what finding two bad items may cost, and no more
    assert all(isinstance(r, RuntimeError) for r in results)


@pytest.mark.parametrize("overlap", [False, True], ids=["inline", "device-thread"])
def test_a_poisoned_batch_answers_the_others(overlap: bool) -> None:
    model = Poisoned(overlap)
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        model,
        BatchingConfig(
            max_batch_size=4, min_queue_delay_ms=2000, max_queue_delay_ms=2000, max_queue_size=16
        ),
        max_in_flight=2 if overlap else 1,
    )
    batcher.start()

    async def main() -> list[int | BaseException]:
        answers = await asyncio.gather(
            *(batcher.submit(i, 5) for i in (1, 2, -3, 4)), return_exceptions=True
        )
        return [a if isinstance(a, BaseException) else a.value for a in answers]

    answers = run(main())
    batcher.stop()
    assert model.runs[0] == [1, 2, -3, 4]  # one batch, then bisected
    assert answers[:2] == [10, 20] and answers[3] == 40
    assert isinstance(answers[2], ValueError)


def test_submit_many_queues_all_or_nothing() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=4)

    async def main() -> None:
        running = await occupy_worker(batcher, rec)
        queued = asyncio.ensure_future(batcher.submit_many([1, 2], 5))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit_many([3, 4, 5], 5)  # fits later, not now: none queued
        assert batcher.queued == 2
        with pytest.raises(BatchTooLargeError, match="at most 4"):
            await batcher.submit_many(list(range(5)), 5)  # can never fit
        rec.gate.set()
        await asyncio.gather(running, queued)

    run(main())
    batcher.stop()
    assert rec.ran == [0, 1, 2]


def test_stop_waits_for_a_batch_finishing_on_another_thread() -> None:
    pool = ThreadPoolExecutor(1)
    gate = threading.Event()

    def slow(payloads: Sequence[int]) -> Future[list[int]]:
        return pool.submit(lambda: (gate.wait(5), list(payloads))[1])

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        slow, BatchingConfig(max_batch_size=1, max_queue_delay_ms=0, max_queue_size=4)
    )
    batcher.start()

    async def main() -> None:
        pending = asyncio.ensure_future(batcher.submit(7, 5))
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(asyncio.to_thread(batcher.stop))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # the batch in flight is still owed an answer
        gate.set()
        await stopping
        assert (await pending).value == 7

    run(main())
    with pytest.raises(BatcherStoppedError):
        run(batcher.submit(1, 1))


def test_drain_answers_the_queued_and_lets_the_running_batch_finish() -> None:
    rec = Recorder(hold=True)
    batcher = make(rec, max_batch_size=1, max_queue_delay_ms=0)

    async def main() -> None:
        running = await occupy_worker(batcher, rec)
        queued = asyncio.ensure_future(batcher.submit(1, 5))
        await asyncio.sleep(0.01)
        batcher.drain()
        with pytest.raises(BatcherStoppedError, match="shutting down"):
            await queued
        with pytest.raises(BatcherStoppedError):
            await batcher.submit(2, 5)
        rec.gate.set()
        assert (await running).value == 0

    run(main())
    batcher.stop()
    assert rec.ran == [0]


def test_no_request_starts_after_its_deadline_under_overlap() -> None:
    """Two execution slots, 100 ms batches, one arrival every 2 ms, a 250 ms deadline: a
    request waits for a slot in the queue, so it is either started in time or expired."""
    pool = ThreadPoolExecutor(2)

    def slow(payloads: Sequence[int]) -> Future[list[int]]:
        return pool.submit(lambda: (time.sleep(0.1), list(payloads))[1])

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        slow,
        BatchingConfig(max_batch_size=8, max_queue_delay_ms=5, max_queue_size=512),
        max_in_flight=2,
    )
    batcher.start()

    async def main() -> list[BatchResult[int] | BaseException]:
        tasks = []
        for i in range(142):
            tasks.append(asyncio.ensure_future(batcher.submit(i, 0.25)))
            await asyncio.sleep(0.002)
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    answers = run(main())
    batcher.stop()
    pool.shutdown()
    served = [a for a in answers if isinstance(a, BatchResult)]
    assert served  # none handed over late: the model-clock test below checks that
    assert all(isinstance(a, DeadlineExceededError) for a in answers if a not in served)
    assert max(a.timing.batch_size for a in served) > 1  # batches filled while slots were busy


def test_every_execution_slot_is_used_at_once() -> None:
    pool = ThreadPoolExecutor(2)
    gate = threading.Event()
    started: list[list[int]] = []

    def held(payloads: Sequence[int]) -> Future[list[int]]:
        started.append(list(payloads))
        return pool.submit(lambda: (gate.wait(5), list(payloads))[1])

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        held, BatchingConfig(max_batch_size=1, max_queue_delay_ms=0), max_in_flight=2
    )
    batcher.start()

    async def main() -> None:
        answers = [asyncio.ensure_future(batcher.submit(i, 5)) for i in range(3)]
        while len(started) < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert started == [[0], [1]]  # two run together; the third waits for a slot
        assert batcher.queued == 1
        gate.set()
        assert [(await a).value for a in answers] == [0, 1, 2]

    run(main())
    batcher.stop()
    pool.shutdown()


def test_no_payload_reaches_the_model_after_its_deadline_under_overlap() -> None:
    """The model's own clock: when ``run_batch`` is called, no payload in it is past its
    250 ms deadline (the batcher's recorded start time alone could hide a late hand-over)."""
    pool = ThreadPoolExecutor(2)
    submitted: dict[int, float] = {}
    handed_late: list[float] = []

    def slow(payloads: Sequence[int]) -> Future[list[int]]:
        now = time.monotonic()
        handed_late.extend(now - submitted[p] for p in payloads if now - submitted[p] > 0.28)
        return pool.submit(lambda: (time.sleep(0.1), list(payloads))[1])

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        slow,
        BatchingConfig(max_batch_size=8, max_queue_delay_ms=5, max_queue_size=512),
        max_in_flight=2,
    )
    batcher.start()

    async def main() -> None:
        tasks = []
        for i in range(142):
            submitted[i] = time.monotonic()
            tasks.append(asyncio.ensure_future(batcher.submit(i, 0.25)))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks, return_exceptions=True)

    run(main())
    batcher.stop()
    pool.shutdown()
    assert not handed_late, f"{len(handed_late)} payloads handed over late: {handed_late[:5]}"


def test_a_free_slot_does_not_let_the_window_expire_a_request() -> None:
    pool = ThreadPoolExecutor(2)

    def run_batch(payloads: Sequence[int]) -> Future[list[int]]:
        seconds = 0.4 if 0 in payloads else 0.01
        return pool.submit(lambda: (time.sleep(seconds), list(payloads))[1])

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        run_batch, BatchingConfig(max_batch_size=8, max_queue_delay_ms=300), max_in_flight=2
    )
    batcher.start()

    async def main() -> int:
        first = asyncio.ensure_future(batcher.submit(0, 5))
        await asyncio.sleep(0.05)  # batch [0] runs; a slot is free; the window is 300 ms
        urgent = await batcher.submit(1, 0.15)  # before: expired waiting for the window
        await first
        return urgent.value

    assert run(main()) == 1
    batcher.stop()
    pool.shutdown()


def test_a_cancelled_hand_off_answers_its_requests_and_frees_its_slot() -> None:
    calls: list[list[int]] = []

    def run_batch(payloads: Sequence[int]) -> Future[list[int]]:
        calls.append(list(payloads))
        future: Future[list[int]] = Future()
        if len(calls) == 1:
            future.cancel()
        else:
            future.set_result([p * 10 for p in payloads])
        return future

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        run_batch, BatchingConfig(max_batch_size=1, max_queue_delay_ms=0)
    )
    batcher.start()

    async def main() -> int:
        with pytest.raises(BatcherStoppedError, match="cancelled"):
            await asyncio.wait_for(batcher.submit(1, 2), 10)
        return (await asyncio.wait_for(batcher.submit(2, 2), 10)).value

    assert run(main()) == 20  # before: the first hung and the slot was never given back
    batcher.stop()


def test_a_failing_batch_observer_does_not_fail_the_requests() -> None:
    def observer(size: int, seconds: float) -> None:
        raise ZeroDivisionError("observer")

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        lambda payloads: list(payloads),
        BatchingConfig(max_batch_size=1, max_queue_delay_ms=0),
        on_batch=observer,
    )
    batcher.start()

    async def main() -> list[int]:
        return [(await asyncio.wait_for(batcher.submit(i, 2), 10)).value for i in (1, 2)]

    assert run(main()) == [1, 2]
    batcher.stop()


def test_a_worker_that_dies_answers_what_it_owes_and_takes_no_more() -> None:
    def run_batch(payloads: Sequence[int]) -> list[int]:
        raise SystemExit("worker killed")

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        run_batch, BatchingConfig(max_batch_size=1, max_queue_delay_ms=0)
    )
    batcher.start()

    async def main() -> None:
        with pytest.raises(BatcherStoppedError, match="worker killed"):
            await asyncio.wait_for(batcher.submit(1, 2), 10)
        with pytest.raises(BatcherStoppedError):
            await asyncio.wait_for(
                batcher.submit(2, 2), 10
            )  # before: accepted, then expired at its deadline

    run(main())


def test_a_request_whose_run_hangs_is_answered_504_after_twice_its_deadline() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        lambda payloads: Future(), BatchingConfig(max_batch_size=1, max_queue_delay_ms=0)
    )
    batcher.start()

    async def main() -> None:
        with pytest.raises(DeadlineExceededError, match="still running"):
            await asyncio.wait_for(batcher.submit(1, 0.2), 10)  # before: waited for ever

    run(main())
