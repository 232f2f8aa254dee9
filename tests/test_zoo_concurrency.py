"""The zoo under concurrency: evictions run off the event loop while its bookkeeping stays
consistent; a load is the zoo's, so a caller that goes away stops only its own wait (the load
runs once, holding its room until its thread returns); unpins and deadlines are heeded while a
load waits for room; and a model's footprint is measured in isolation from the rest of the
device.

The eviction and load tests are ordered, not timed: a loader step blocks in its worker thread
until the event loop opens its gate, which only a loop that is still running can do. The
footprint tests stand a fake caching allocator in for ``torch.cuda`` (a CPU machine has no
device)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from hearthwatch.runtime.zoo.loader import module_bytes, module_loader
from hearthwatch.runtime.zoo.registry import (
    ModelLoader,
    ModelOutOfMemoryError,
    ModelZoo,
    Priority,
    ZooFullError,
)

KIB = 1024
MIB = 1024 * KIB


# -- evictions off the event loop ----------------------------------------------------------------
class Gate:
    """A step of a loader that waits for the event loop: it enters, then blocks until the loop
    opens the gate (up to a few seconds). Run on the loop itself, it cannot be opened, so it
    records that it passed closed."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.passed_open: list[bool] = []

    def pass_through(self) -> None:
        self.entered.set()
        self.passed_open.append(self.opened.wait(3.0))

    async def wait_entered(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.entered.is_set():
            assert time.monotonic() < deadline, "the gated step never started"
            await asyncio.sleep(0.005)

    async def open_when_entered(self) -> None:
        await self.wait_entered()
        self.opened.set()


class GatedLoader:
    """Tensors of ``size`` bytes whose offload and release can pass a gate, fail, or be
    measured larger than expected (``measured``)."""

    def __init__(
        self,
        size: int,
        *,
        release_gate: Gate | None = None,
        offload_gate: Gate | None = None,
        measured: int | None = None,
        ooms: int = 0,
    ) -> None:
        self.size, self.measured, self.ooms_left = size, measured, ooms
        self.release_gate, self.offload_gate = release_gate, offload_gate
        self.load_gate: Gate | None = None
        self.load_error: Exception | None = None
        self.offload_error: Exception | None = None
        self.release_error: Exception | None = None
        self.loads_from: list[str] = []
        self.released = 0
        self.loading_now = self.most_loading_at_once = 0
        self._count_lock = threading.Lock()

    def load(self, host: Any) -> torch.Tensor:
        with self._count_lock:
            self.loading_now += 1
            self.most_loading_at_once = max(self.most_loading_at_once, self.loading_now)
        try:
            if self.load_gate is not None:
                self.load_gate.pass_through()
            if self.ooms_left:
                self.ooms_left -= 1
                raise ModelOutOfMemoryError("no memory left on the device")
            if self.load_error is not None:
                raise self.load_error
            self.loads_from.append("disk" if host is None else "host")
            return host.clone() if host is not None else torch.zeros(self.size, dtype=torch.uint8)
        finally:
            with self._count_lock:
                self.loading_now -= 1

    def measure(self, tensor: torch.Tensor) -> int:
        return self.measured if self.measured is not None else tensor.numel()

    def offload(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.offload_gate is not None:
            self.offload_gate.pass_through()
        if self.offload_error is not None:
            raise self.offload_error
        return tensor.clone()

    def release(self, tensor: torch.Tensor) -> None:
        if self.release_gate is not None:
            self.release_gate.pass_through()
        self.released += 1
        if self.release_error is not None:
            raise self.release_error

    def loader(self) -> ModelLoader:
        return ModelLoader(
            load=self.load, measure=self.measure, release=self.release, offload=self.offload
        )


def zoo_of(budget: int, **models: tuple[Priority, GatedLoader]) -> ModelZoo:
    zoo = ModelZoo(budget)
    for name, (priority, loader) in models.items():
        zoo.register(name, priority, loader.loader())
    return zoo


async def use(zoo: ModelZoo, name: str, timeout_s: float = 10.0) -> None:
    async with zoo.lease(name, timeout_s):
        pass


def states(zoo: ModelZoo) -> dict[str, str]:
    return {s.name: s.state for s in zoo.stats()}


async def prime(zoo: ModelZoo) -> None:
    """b, then a: b's footprint is known (so a load of b makes room first) and a is loaded."""
    await use(zoo, "b")
    await use(zoo, "a")  # evicts b


async def make_room(zoo: ModelZoo) -> None:
    await use(zoo, "b")  # evicts a before b loads


async def evict(zoo: ModelZoo) -> None:
    await zoo.evict("a")


async def unload(zoo: ModelZoo) -> None:
    await zoo.unload("a")


async def oom_retry(zoo: ModelZoo) -> None:
    await use(zoo, "c")  # c's first load runs out of memory: a is evicted, c loads again


async def relieve_only(zoo: ModelZoo) -> None:
    await zoo.relieve("c")  # c may evict a


EVICTION_PATHS: dict[str, Callable[[ModelZoo], Any]] = {
    "make room": make_room,
    "relieve": relieve_only,
    "evict": evict,
    "unload": unload,
    "out-of-memory retry": oom_retry,
}


@pytest.mark.parametrize(
    ("path", "step"),
    [
        (path, step)
        for path in sorted(EVICTION_PATHS)
        for step in ("release", "offload")
        if (path, step) != ("unload", "offload")  # an unload keeps no host copy
    ],
)
def test_an_eviction_leaves_the_event_loop_running(path: str, step: str) -> None:
    gate = Gate()
    a = GatedLoader(
        60 * KIB,
        release_gate=gate if step == "release" else None,
        offload_gate=gate if step == "offload" else None,
    )
    zoo = zoo_of(
        100 * KIB,
        a=(Priority.LOW, a),
        b=(Priority.LOW, GatedLoader(60 * KIB)),
        c=(Priority.HIGH, GatedLoader(10 * KIB, ooms=1)),
    )

    async def main() -> None:
        await prime(zoo)
        opener = asyncio.ensure_future(gate.open_when_entered())
        await EVICTION_PATHS[path](zoo)
        await opener

    asyncio.run(main())
    assert gate.passed_open == [True], "the loop was blocked while the model left the device"
    assert states(zoo)["a"] in ("on_host", "unloaded")


def test_a_model_that_does_not_fit_once_measured_leaves_the_device_off_the_loop() -> None:
    gate = Gate()
    held = GatedLoader(60 * KIB)
    big = GatedLoader(60 * KIB, release_gate=gate)  # first load: footprint unknown (0)
    zoo = zoo_of(100 * KIB, held=(Priority.LOW, held), big=(Priority.HIGH, big))

    async def main() -> None:
        async with zoo.lease("held", 10):
            loading = asyncio.ensure_future(use(zoo, "big"))  # measured, no room: parked
            await gate.open_when_entered()
            await asyncio.sleep(0.05)
        await loading  # held's lease ended: it is evicted and big loads from its host copy

    asyncio.run(main())
    assert gate.passed_open == [True]
    assert big.loads_from == ["disk", "host"]
    assert states(zoo) == {"held": "on_host", "big": "loaded"}


def test_an_evicting_model_holds_its_bytes_and_is_not_handed_out() -> None:
    gate = Gate()
    a, b = GatedLoader(100 * KIB, release_gate=gate), GatedLoader(100 * KIB)
    zoo = zoo_of(150 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> None:
        await prime(zoo)
        loading_b = asyncio.ensure_future(use(zoo, "b"))
        await gate.wait_entered()  # a is leaving the device
        assert states(zoo)["a"] == "evicting"
        assert zoo.resident_bytes == 100 * KIB  # a's bytes are still there
        assert b.loads_from == ["disk"]  # so b does not load again yet
        leasing_a = asyncio.ensure_future(use(zoo, "a"))
        await asyncio.sleep(0.1)
        assert not leasing_a.done()  # a model on its way out is not handed out
        gate.opened.set()
        await loading_b  # woken when a's release finished
        await leasing_a  # a reloads from its host copy once b is evicted in turn

    asyncio.run(main())
    assert gate.passed_open == [True]
    assert a.loads_from == ["disk", "host"] and b.loads_from == ["disk", "host"]
    assert states(zoo) == {"a": "loaded", "b": "on_host"}
    assert zoo.resident_bytes == 100 * KIB


@pytest.mark.parametrize("failing", ["offload", "release"])
def test_a_failed_eviction_still_frees_the_model_and_wakes_the_load_waiting(failing: str) -> None:
    a, b = GatedLoader(100 * KIB), GatedLoader(100 * KIB)
    if failing == "offload":
        a.offload_error = RuntimeError("pinned memory exhausted")
    else:
        a.release_error = RuntimeError("device lost")
    zoo = zoo_of(150 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> None:
        await use(zoo, "a")
        await use(zoo, "b")  # a's eviction fails, yet a is gone and b gets its room
        await use(zoo, "a")  # and a loads again, from disk

    asyncio.run(main())
    assert a.released == 1  # released even when its offload failed
    assert a.loads_from == ["disk", "disk"]
    assert states(zoo) == {"a": "loaded", "b": "on_host"}


def test_an_unload_while_evicting_waits_for_the_eviction() -> None:
    gate = Gate()
    a = GatedLoader(100 * KIB, release_gate=gate)
    zoo = zoo_of(150 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, GatedLoader(100 * KIB)))

    async def main() -> None:
        await prime(zoo)
        loading_b = asyncio.ensure_future(use(zoo, "b"))
        await gate.wait_entered()
        unloading = asyncio.ensure_future(zoo.unload("a"))
        await asyncio.sleep(0.05)
        assert not unloading.done()
        gate.opened.set()
        await asyncio.gather(loading_b, unloading)

    asyncio.run(main())
    assert a.released == 1
    assert states(zoo) == {"a": "unloaded", "b": "loaded"}


# -- a load is the zoo's: its callers come and go ----------------------------------------------
def test_cancelling_the_caller_that_started_a_load_leaves_its_sharers_the_model() -> None:
    gate = Gate()
    m = GatedLoader(10 * KIB)
    m.load_gate = gate
    zoo = zoo_of(100 * KIB, m=(Priority.LOW, m))

    async def main() -> None:
        starter = asyncio.ensure_future(use(zoo, "m"))
        await gate.wait_entered()  # the load runs in its worker thread
        sharer = asyncio.ensure_future(use(zoo, "m"))
        await asyncio.sleep(0.05)
        starter.cancel()  # say, a load request cut off by a shutdown
        with pytest.raises(asyncio.CancelledError):
            await starter
        gate.opened.set()
        await sharer  # the model, from the one load, not the starter's cancellation

    asyncio.run(main())
    assert m.loads_from == ["disk"] and m.most_loading_at_once == 1
    assert states(zoo) == {"m": "loaded"}


def test_cancelling_the_caller_that_started_a_load_waiting_for_room_leaves_its_sharers_it() -> None:
    m, held = GatedLoader(60 * KIB), GatedLoader(60 * KIB)
    zoo = zoo_of(100 * KIB, m=(Priority.LOW, m), held=(Priority.LOW, held))

    async def main() -> None:
        await use(zoo, "m")  # m's footprint is known
        async with zoo.lease("held", 10):  # evicts m and holds the room
            starter = asyncio.ensure_future(use(zoo, "m"))
            await asyncio.sleep(0.05)  # m's load waits for room
            sharer = asyncio.ensure_future(use(zoo, "m"))
            await asyncio.sleep(0.05)
            starter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starter
            await asyncio.sleep(0.05)
            assert not sharer.done()  # still waiting for the load, which the sharer still wants
            assert states(zoo)["m"] == "loading"
        await sharer  # held's lease ended: it is evicted and m loads

    asyncio.run(main())
    assert m.loads_from == ["disk", "host"]
    assert states(zoo) == {"m": "loaded", "held": "on_host"}


@pytest.mark.parametrize("outcome", ["loaded", "failed"])
def test_a_load_whose_caller_is_cancelled_runs_once_holding_its_room_until_its_thread_returns(
    outcome: str,
) -> None:
    gate = Gate()
    a, b = GatedLoader(60 * KIB), GatedLoader(60 * KIB)
    zoo = zoo_of(100 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> float:
        await prime(zoo)  # both footprints known; a loaded, b on the host
        await zoo.evict("a")
        a.load_gate = gate
        if outcome == "failed":
            a.load_error = RuntimeError("corrupt weights")
        caller = asyncio.ensure_future(use(zoo, "a"))
        await gate.wait_entered()  # a's reload runs in its worker thread
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        # the thread still runs: a is loading (not on the host, whose copy it is moving), its
        # bytes are held (b has no room), and the next lease of a shares the load under way
        assert states(zoo)["a"] == "loading"
        loading_b = asyncio.ensure_future(use(zoo, "b"))
        again = asyncio.ensure_future(use(zoo, "a"))
        await asyncio.sleep(0.1)
        assert not loading_b.done() and b.loads_from == ["disk"]
        assert not again.done()
        gate.opened.set()
        if outcome == "loaded":
            await again
        else:
            with pytest.raises(RuntimeError, match="corrupt weights"):
                await again
        started = time.monotonic()
        await loading_b  # a's room, freed by its failure or by its eviction after the lease
        return time.monotonic() - started

    assert asyncio.run(main()) < 5  # woken, not at its deadline
    assert a.most_loading_at_once == 1, "two loads of one model at once"
    assert a.loads_from == (["disk", "host"] if outcome == "loaded" else ["disk"])
    assert b.loads_from == ["disk", "host"]
    assert states(zoo) == {"a": "on_host", "b": "loaded"}
    assert zoo.resident_bytes == 60 * KIB


def test_a_load_waiting_for_room_that_nobody_waits_for_any_more_is_dropped() -> None:
    a, b = GatedLoader(60 * KIB), GatedLoader(60 * KIB)
    zoo = zoo_of(100 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> None:
        await prime(zoo)
        zoo.pin("a")
        caller = asyncio.ensure_future(use(zoo, "b"))
        await asyncio.sleep(0.05)  # b's load waits for room
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0.05)
        assert states(zoo)["b"] == "on_host"
        zoo.pin("a", False)  # room now, but no one wants b: a stays
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert states(zoo) == {"a": "loaded", "b": "on_host"}
    assert b.loads_from == ["disk"] and a.released == 0


# -- waiting for room: unpins and deadlines ------------------------------------------------------
def test_an_unpin_wakes_a_load_waiting_for_room() -> None:
    a, b = GatedLoader(60 * KIB), GatedLoader(60 * KIB)
    zoo = zoo_of(100 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> float:
        await prime(zoo)
        zoo.pin("a")
        waiting = asyncio.ensure_future(use(zoo, "b", timeout_s=3))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        zoo.pin("a", False)  # a may be evicted now
        await waiting
        return time.monotonic() - started

    assert asyncio.run(main()) < 1  # woken by the unpin, not at its deadline
    assert states(zoo) == {"a": "on_host", "b": "loaded"}


def test_a_load_past_its_deadline_evicts_nothing() -> None:
    a, b = GatedLoader(60 * KIB), GatedLoader(60 * KIB)
    zoo = zoo_of(100 * KIB, a=(Priority.LOW, a), b=(Priority.LOW, b))

    async def main() -> None:
        await prime(zoo)
        zoo.pin("a")
        waiting = asyncio.ensure_future(use(zoo, "b", timeout_s=0.2))
        await asyncio.sleep(0.05)  # b's load waits for room
        time.sleep(0.3)  # the loop is held past b's deadline...
        zoo.pin("a", False)  # ...as a becomes evictable
        with pytest.raises(ZooFullError):
            await waiting
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert states(zoo) == {"a": "loaded", "b": "on_host"}  # a was not evicted for nothing
    assert a.released == 0


# -- footprints measured in isolation ------------------------------------------------------------
class FakeBlock:
    def __init__(self, size: int, pool: FakePool | None) -> None:
        self.size, self.pool = size, pool


class FakePool:
    """A private pool: it keeps the segments it grew to (its peak) until it is dropped."""

    def __init__(self, device: FakeDevice) -> None:
        self.live = self.reserved = 0
        device.pools.append(self)

    def snapshot(self, include_traces: bool = True) -> list[dict[str, int]]:
        return [{"total_size": self.reserved, "allocated_size": self.live}]


class FakeDevice:
    """What a CUDA caching allocator reports: device-wide allocated bytes and their peak (which
    anyone may reset), and private pools that take only the allocations of the thread that
    routed them there (``torch.cuda.use_mem_pool`` as of torch 2.8)."""

    def __init__(self) -> None:
        self.allocated = self.peak = 0
        self.peak_resets = 0
        self.pools: list[FakePool] = []
        self._lock = threading.Lock()
        self._route = threading.local()

    def alloc(self, size: int) -> FakeBlock:
        pool: FakePool | None = getattr(self._route, "pool", None)
        with self._lock:
            self.allocated += size
            self.peak = max(self.peak, self.allocated)
            if pool is not None:
                pool.live += size
                pool.reserved = max(pool.reserved, pool.live)
        return FakeBlock(size, pool)

    def free(self, block: FakeBlock) -> None:
        with self._lock:
            self.allocated -= block.size
            if block.pool is not None:
                block.pool.live -= block.size

    @contextmanager
    def use_mem_pool(self, pool: FakePool, device: object = None) -> Iterator[None]:
        if isinstance(device, torch.device) and device.index is None:  # as torch refuses it
            raise ValueError(f"Expected a torch.device with a specified index, got: {device}")
        self._route.pool = pool
        try:
            yield
        finally:
            self._route.pool = None

    def reset_peak(self, device: object = None) -> None:
        self.peak_resets += 1
        self.peak = self.allocated

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "MemPool", lambda *a, **k: FakePool(self), raising=False)
        monkeypatch.setattr(cuda, "use_mem_pool", self.use_mem_pool, raising=False)
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(cuda, "current_blas_handle", lambda: 0)
        monkeypatch.setattr(cuda, "current_device", lambda: 0)
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", self.reset_peak)


ACTIVATIONS = 3 * MIB


def device_linear(device: FakeDevice) -> torch.nn.Module:
    class DeviceLinear(torch.nn.Linear):
        """Moved "to the device", its weights are allocated there; its tensors stay put."""

        def to(self, *args: Any, **kwargs: Any) -> DeviceLinear:
            device.alloc(module_bytes(self))
            return self

    return DeviceLinear(256, 128)


def warmup_allocating(device: FakeDevice, during: Callable[[], None] = lambda: None) -> Any:
    def warmup(module: torch.nn.Module) -> None:
        block = device.alloc(ACTIVATIONS)
        during()
        device.free(block)

    return warmup


def gpu_loader(device: FakeDevice, warmup: Callable[[torch.nn.Module], object]) -> ModelLoader:
    return module_loader(
        lambda: device_linear(device), torch.device("cuda"), torch.float32, warmup, 0
    )


def test_a_footprint_is_the_same_whatever_else_the_device_allocates_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = FakeDevice()
    device.install(monkeypatch)
    weights = module_bytes(torch.nn.Linear(256, 128))
    alone = gpu_loader(device, warmup_allocating(device))
    alone_footprint = alone.measure(alone.load(None))

    detector_done = threading.Event()

    def detector() -> None:  # another thread's batch, allocating while the warm-up runs
        device.alloc(64 * MIB)
        device.alloc(16 * MIB)
        detector_done.set()

    def during() -> None:
        threading.Thread(target=detector).start()
        assert detector_done.wait(5)

    busy = gpu_loader(device, warmup_allocating(device, during))
    busy_footprint = busy.measure(busy.load(None))

    assert alone_footprint == weights + ACTIVATIONS
    assert busy_footprint == alone_footprint
    assert device.peak_resets == 0, "the device-wide peak is everyone's: never reset it"


def test_concurrent_gpu_loads_are_measured_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    device = FakeDevice()
    device.install(monkeypatch)
    weights = module_bytes(torch.nn.Linear(256, 128))
    inside = [0]
    most_inside = [0]
    guard = threading.Lock()
    others_in = threading.Event()

    def warmup(module: torch.nn.Module) -> None:
        block = device.alloc(ACTIVATIONS)
        with guard:
            inside[0] += 1
            most_inside[0] = max(most_inside[0], inside[0])
            if inside[0] > 1:
                others_in.set()
        others_in.wait(0.5)  # gives a concurrent warm-up the time to overlap, if it can
        with guard:
            inside[0] -= 1
        device.free(block)

    loaders = [gpu_loader(device, warmup) for _ in range(2)]
    footprints: list[int] = []

    def load(loader: ModelLoader) -> None:
        footprints.append(loader.measure(loader.load(None)))

    threads = [threading.Thread(target=load, args=(loader,)) for loader in loaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert most_inside[0] == 1
    assert footprints == [weights + ACTIVATIONS] * 2
    assert device.peak_resets == 0
