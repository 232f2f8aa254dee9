"""The budgeted model zoo: eviction order, priorities, leases, shared loads, the out-of-memory
path, host copies and pins, and the budget under a random workload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hearthwatch.runtime.zoo.registry import (
    ModelLoader,
    ModelOutOfMemoryError,
    ModelZoo,
    Priority,
    State,
    ZooFullError,
)

KIB = 1024


class TensorLoader:
    """Loads a real tensor of ``size`` bytes and records what happened to it."""

    def __init__(self, size: int, delay_s: float = 0.0, ooms: int = 0, host_copy: bool = True):
        self.size, self.delay_s, self.ooms_left = size, delay_s, ooms
        self.loads = 0
        self.released_at: list[float] = []
        self.host_copy = host_copy

    def load(self, host: Any) -> torch.Tensor:
        time.sleep(self.delay_s)
        if self.ooms_left:
            self.ooms_left -= 1
            raise ModelOutOfMemoryError("no memory left on the device")
        self.loads += 1
        return host.clone() if host is not None else torch.empty(self.size, dtype=torch.uint8)

    def loader(self) -> ModelLoader:
        return ModelLoader(
            load=self.load,
            measure=lambda t: t.numel() * t.element_size(),
            release=lambda t: self.released_at.append(time.monotonic()),
            offload=(lambda t: t.clone()) if self.host_copy else None,
        )


def zoo_with(budget: int, **models: tuple[Priority, TensorLoader]) -> ModelZoo:
    zoo = ModelZoo(budget)
    for name, (priority, loader) in models.items():
        zoo.register(name, priority, loader.loader())
    return zoo


async def use(zoo: ModelZoo, name: str, timeout_s: float = 2.0) -> None:
    async with zoo.lease(name, timeout_s):
        pass


def states(zoo: ModelZoo) -> dict[str, str]:
    return {s.name: s.state for s in zoo.stats()}


def test_lowest_priority_then_least_recently_used_is_evicted() -> None:
    loaders = {n: TensorLoader(100 * KIB) for n in "abcd"}
    zoo = zoo_with(
        300 * KIB,
        a=(Priority.LOW, loaders["a"]), b=(Priority.LOW, loaders["b"]),
        c=(Priority.MEDIUM, loaders["c"]), d=(Priority.LOW, loaders["d"]),
    )  # fmt: skip

    async def main() -> None:
        for name in "abca":  # a used again: b is now the least recently used LOW model
            await use(zoo, name)
        await use(zoo, "d")

    asyncio.run(main())
    assert states(zoo) == {"a": "loaded", "b": "on_host", "c": "loaded", "d": "loaded"}
    assert zoo.resident_bytes == 300 * KIB


def test_a_low_load_cannot_evict_a_critical_model_but_the_reverse_works() -> None:
    zoo = zoo_with(
        100 * KIB,
        threat=(Priority.CRITICAL, TensorLoader(100 * KIB)),
        depth=(Priority.LOW, TensorLoader(100 * KIB)),
    )

    async def main() -> None:
        await use(zoo, "threat")
        with pytest.raises(ZooFullError, match="higher priority"):
            await use(zoo, "depth", timeout_s=0.2)
        assert states(zoo)["threat"] == "loaded"
        await zoo.unload("threat")
        await use(zoo, "depth")
        await use(zoo, "threat")  # CRITICAL may evict LOW

    asyncio.run(main())
    assert states(zoo) == {"threat": "loaded", "depth": "on_host"}


def test_a_model_under_lease_is_not_evicted_until_the_lease_ends() -> None:
    first, second = TensorLoader(100 * KIB), TensorLoader(100 * KIB)
    zoo = zoo_with(100 * KIB, a=(Priority.LOW, first), b=(Priority.LOW, second))
    lease_ended: list[float] = []

    async def hold_a() -> None:
        async with zoo.lease("a", 2):
            await asyncio.sleep(0.3)
            lease_ended.append(time.monotonic())

    async def main() -> None:
        holder = asyncio.ensure_future(hold_a())
        await asyncio.sleep(0.05)
        await use(zoo, "b", timeout_s=5)  # waits for a's lease, then evicts it
        await holder

    asyncio.run(main())
    assert first.released_at and first.released_at[0] >= lease_ended[0]
    assert states(zoo) == {"a": "on_host", "b": "loaded"}


def test_concurrent_requests_share_one_load() -> None:
    slow = TensorLoader(10 * KIB, delay_s=0.2)
    zoo = zoo_with(100 * KIB, pose=(Priority.HIGH, slow))

    async def main() -> None:
        await asyncio.gather(*(use(zoo, "pose") for _ in range(8)))

    asyncio.run(main())
    assert slow.loads == 1
    assert zoo.stats()[0].loads_from_disk == 1


def test_out_of_memory_evicts_and_retries_once_then_fails_cleanly() -> None:
    other, flaky = TensorLoader(50 * KIB), TensorLoader(50 * KIB, ooms=1)
    hopeless = TensorLoader(50 * KIB, ooms=10)
    zoo = zoo_with(
        1000 * KIB,
        other=(Priority.LOW, other), flaky=(Priority.MEDIUM, flaky),
        hopeless=(Priority.MEDIUM, hopeless),
    )  # fmt: skip

    async def main() -> None:
        await use(zoo, "other")
        await use(zoo, "flaky")  # first try runs out of memory: evict, retry, succeed
        assert states(zoo)["other"] == "on_host" and states(zoo)["flaky"] == "loaded"
        with pytest.raises(ZooFullError, match="out of memory"):
            await use(zoo, "hopeless")
        assert states(zoo)["hopeless"] == "unloaded"
        assert states(zoo)["flaky"] == "on_host"  # evicted to make room for the retry
        await use(zoo, "other")  # the zoo still works

    asyncio.run(main())
    assert states(zoo) == {"other": "loaded", "flaky": "on_host", "hopeless": "unloaded"}
    assert zoo.resident_bytes == 50 * KIB


def test_reload_from_host_and_full_unload() -> None:
    cached, plain = TensorLoader(60 * KIB), TensorLoader(60 * KIB, host_copy=False)
    zoo = zoo_with(100 * KIB, cached=(Priority.LOW, cached), plain=(Priority.LOW, plain))

    async def main() -> None:
        await use(zoo, "cached")
        await use(zoo, "plain")  # evicts cached, which keeps a host copy
        await use(zoo, "cached")  # evicts plain, which keeps none
        assert states(zoo) == {"cached": "loaded", "plain": "unloaded"}
        await zoo.unload("cached")

    asyncio.run(main())
    stats = {s.name: s for s in zoo.stats()}
    assert (stats["cached"].loads_from_disk, stats["cached"].loads_from_host) == (1, 1)
    assert stats["cached"].state == "unloaded" and zoo.resident_bytes == 0


def test_a_pinned_model_is_never_evicted() -> None:
    zoo = zoo_with(
        100 * KIB,
        a=(Priority.LOW, TensorLoader(100 * KIB)),
        b=(Priority.HIGH, TensorLoader(100 * KIB)),
    )

    async def main() -> None:
        await use(zoo, "a")
        zoo.pin("a")
        with pytest.raises(ZooFullError):
            await use(zoo, "b", timeout_s=0.2)
        zoo.pin("a", False)
        await use(zoo, "b")

    asyncio.run(main())
    assert states(zoo) == {"a": "on_host", "b": "loaded"}


def test_a_pin_whose_load_fails_leaves_the_model_unpinned() -> None:
    zoo = zoo_with(
        100 * KIB,
        a=(Priority.LOW, TensorLoader(100 * KIB)),
        b=(Priority.HIGH, TensorLoader(100 * KIB)),
    )

    async def main() -> None:
        await zoo.pin_loaded("a", 5)
        with pytest.raises(ZooFullError):  # a is pinned: no room for b
            await zoo.pin_loaded("b", 0.2)
        zoo.pin("a", False)  # before: b stayed pinned, though its pin was refused
        await use(zoo, "a")

    asyncio.run(main())
    pinned = {row.name: row.pinned for row in zoo.stats()}
    assert pinned == {"a": False, "b": False}


def test_bad_registrations_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        ModelZoo(0)
    zoo = zoo_with(10, a=(Priority.LOW, TensorLoader(1)))
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("a", Priority.LOW, TensorLoader(1).loader())
    with pytest.raises(KeyError, match="registered: a"):
        zoo.pin("b")


workload = st.lists(st.tuples(st.integers(0, 5), st.floats(0.0, 0.02)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=6, max_size=6),
    priorities=st.lists(st.sampled_from(list(Priority)), min_size=6, max_size=6),
    steps=workload,
)
def test_the_budget_holds_under_a_random_workload(
    sizes: list[int], priorities: list[Priority], steps: list[tuple[int, float]]
) -> None:
    budget = 100 * KIB
    loaders = [TensorLoader(s * KIB) for s in sizes]
    zoo = ModelZoo(budget)
    for index, (priority, loader) in enumerate(zip(priorities, loaders, strict=True)):
        zoo.register(f"m{index}", priority, loader.loader())
    peak = [0]

    async def request(index: int, hold_s: float) -> None:
        try:
            async with zoo.lease(f"m{index}", 0.5):
                peak[0] = max(peak[0], zoo.resident_bytes)
                await asyncio.sleep(hold_s)
        except ZooFullError:
            pass  # refused is allowed; over budget is not

    async def main() -> None:
        await asyncio.gather(*(request(i, hold) for i, hold in steps))

    asyncio.run(main())
    assert peak[0] <= budget
    assert zoo.resident_bytes <= budget
    assert all(s.leases == 0 for s in zoo.stats())
    assert all(
        s.state in (State.LOADED.value, State.ON_HOST.value, State.UNLOADED.value)
        for s in zoo.stats()
    )


def test_the_budget_is_a_size_or_a_fraction_of_free_memory_minus_a_reserve() -> None:
    from hearthwatch.runtime.zoo.memory import GIB, available_host_bytes, budget_bytes

    cpu = torch.device("cpu")
    assert budget_bytes(cpu, 6.8, 0.5, 1.0) == int(6.8 * GIB)
    free = available_host_bytes()
    assert 0 < budget_bytes(cpu, None, 0.5, 0.0) <= free * 0.5 * 1.01
    with pytest.raises(ValueError, match="VRAM_BUDGET_FRACTION"):
        budget_bytes(cpu, None, 1.5, 0.0)
    with pytest.raises(ValueError, match="set VRAM_BUDGET_GB"):
        budget_bytes(cpu, None, 0.5, free / GIB)


def test_module_loader_measures_on_the_host_and_reloads_a_copy_without_a_rebuild() -> None:
    from hearthwatch.runtime.zoo.loader import module_bytes, module_loader

    builds: list[int] = []

    def build() -> torch.nn.Module:
        builds.append(1)
        return torch.nn.Linear(64, 32)

    warmed: list[torch.nn.Module] = []
    loader = module_loader(build, torch.device("cpu"), torch.float32, warmed.append, 0)
    loaded = loader.load(None)
    assert loader.measure(loaded) == module_bytes(loaded.module) == (64 * 32 + 32) * 4
    assert warmed == [loaded.module]
    assert loader.offload is not None
    kept = loader.offload(loaded)
    assert kept is not None and kept.module is not loaded.module  # a separate host copy
    assert kept.module.weight.data_ptr() != loaded.module.weight.data_ptr()
    loader.release(loaded)
    assert loaded.module.weight.device.type == "meta"  # the serving copy is dropped
    again = loader.load(kept)
    assert again.module is not kept.module and again.module is not loaded.module
    assert torch.equal(again.module.weight, kept.module.weight)
    assert loader.measure(again) == module_bytes(again.module)
    assert len(builds) == 1 and len(warmed) == 1  # copied back, neither rebuilt nor warmed
    stingy = module_loader(build, torch.device("cpu"), torch.float32, warmed.append, 1 << 60)
    assert stingy.offload is not None
    assert stingy.offload(stingy.load(None)) is None  # no host room for a copy


def test_a_host_model_counts_its_weights_on_the_cpu_and_nothing_on_a_gpu() -> None:
    """OpenCV nets and extensions stay on the host: evicting one keeps no copy, a reload
    builds and warms it again, and only a CPU zoo's budget (host memory) counts it."""
    from hearthwatch.runtime.zoo.host_loader import host_loader

    built: list[object] = []
    warmed: list[object] = []

    def build() -> object:
        built.append(object())
        return built[-1]

    loader = host_loader(build, warmed.append, 6_000_000, torch.device("cpu"))
    first = loader.load(None)
    assert loader.measure(first) == 6_000_000 and warmed == [first.module]
    buffers: list[bytearray] = []
    growing = host_loader(lambda: buffers.append(bytearray(80 << 20)) or buffers[-1],
                          lambda m: None, 1, torch.device("cpu"))  # fmt: skip
    assert growing.measure(growing.load(None)) >= 70 << 20  # what it grew by, not its weights
    assert loader.offload is None  # no host copy: eviction drops it
    loader.release(first)
    again = loader.load(None)
    assert again.module is not first.module and len(built) == len(warmed) == 2
    on_gpu = host_loader(build, warmed.append, 6_000_000, torch.device("cuda"))
    assert on_gpu.measure(on_gpu.load(None)) == 0


async def _host_models_take_turns() -> list[str]:
    """Two BlazePose nets in a budget with room for one: each evicts the other (dropped, no
    host copy) and is built again for its next lease. Each counts 200 MB (more than it grows
    by, so the budget's arithmetic does not hang on a noisy measurement)."""
    from hearthwatch.runtime.enrichment.blazepose import BlazePoseConfig
    from hearthwatch.runtime.zoo.host_loader import host_loader

    pose = BlazePoseConfig(path=Path("models/enrichment/pose_landmark_full.tflite"))
    cpu = torch.device("cpu")
    zoo = ModelZoo(300 << 20)
    for name in "ab":
        zoo.register(name, Priority.HIGH, host_loader(pose.build, lambda m: None, 200 << 20, cpu))
    seen = []
    for name in "aba":
        async with zoo.lease(name, 30) as loaded:
            seen.append(type(loaded.module).__name__)
        seen.append("".join(sorted(n for n, s in states(zoo).items() if s == "loaded")))
    seen.append(str(zoo.stats()[0].loads_from_disk))
    return seen


def test_host_models_take_turns_in_a_budget_that_holds_one() -> None:
    assert asyncio.run(_host_models_take_turns()) == ["Net", "a", "Net", "b", "Net", "a", "2"]


def test_a_cpu_reload_serves_a_copy_of_the_weights_with_the_same_outputs() -> None:
    """Evict and reload through the zoo on a CPU: the module served afterwards holds fresh
    tensors (none of the old objects, none of the old storage, which is kept alive here so its
    addresses cannot be reused), the old serving copy is gone, the outputs are identical and
    the accounting (footprint = module bytes, loads by source) holds."""
    from hearthwatch.runtime.zoo.loader import module_bytes, module_loader

    builds: list[int] = []

    def build() -> torch.nn.Module:
        builds.append(1)
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
        )  # fmt: skip

    frames = torch.randn(2, 3, 16, 16)

    def warmup(module: torch.nn.Module) -> None:
        with torch.no_grad():
            module(frames)

    zoo = ModelZoo(10 * 1024 * KIB)
    zoo.register(
        "m", Priority.LOW, module_loader(build, torch.device("cpu"), torch.float32, warmup, 0)
    )

    async def main() -> None:
        async with zoo.lease("m", 5) as first:
            served = first.module
            tensors = [*served.parameters(), *served.buffers()]
            originals = [t.detach() for t in tensors]  # the old storage, kept alive
            with torch.no_grad():
                expected = served(frames)
            footprint = first.footprint
        assert footprint == module_bytes(served) == zoo.resident_bytes
        await zoo.evict("m")
        assert zoo.state("m") is State.ON_HOST and zoo.resident_bytes == 0
        assert all(p.device.type == "meta" for p in served.parameters())  # serving copy dropped
        async with zoo.lease("m", 5) as second:
            again = second.module
            fresh = [*again.parameters(), *again.buffers()]
            assert again is not served
            assert not any(a is b for a in fresh for b in tensors)
            old_storage = {o.untyped_storage().data_ptr() for o in originals}
            assert old_storage.isdisjoint(t.untyped_storage().data_ptr() for t in fresh)
            assert all(torch.equal(a, b) for a, b in zip(fresh, originals, strict=True))
            with torch.no_grad():
                assert torch.equal(again(frames), expected)
            assert second.footprint == module_bytes(again) == footprint == zoo.resident_bytes

    asyncio.run(main())
    stats = next(s for s in zoo.stats() if s.name == "m")
    assert (stats.loads_from_disk, stats.loads_from_host, stats.evictions) == (1, 1, 1)
    assert stats.footprint_bytes == stats.resident_bytes and len(builds) == 1


def test_a_failed_load_wakes_a_load_waiting_for_its_room() -> None:
    loaders = {"a": TensorLoader(100 * KIB, delay_s=0.3), "b": TensorLoader(100 * KIB)}
    zoo = zoo_with(150 * KIB, a=(Priority.HIGH, loaders["a"]), b=(Priority.HIGH, loaders["b"]))

    async def main() -> float:
        await use(zoo, "a")
        await use(zoo, "b")  # evicts a: both footprints are known now
        await zoo.evict("b")
        loaders["a"].ooms_left = 2  # a's reload fails for good, holding its room meanwhile
        failing = asyncio.ensure_future(use(zoo, "a", timeout_s=10))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await use(zoo, "b", timeout_s=10)  # waits for a's room, which its failure frees
        waited = time.monotonic() - started
        with pytest.raises(ZooFullError):
            await failing
        return waited

    assert asyncio.run(main()) < 5  # woken when a's load failed, not at its own deadline
    assert states(zoo)["b"] == "loaded"
