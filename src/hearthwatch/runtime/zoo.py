"""A memory-budgeted model zoo: models load on demand under a byte budget and are evicted
lowest priority first, least recently used within a priority.

- Footprints are measured at load by the loader's ``measure`` (allocator delta on a GPU), not
  declared; the last measurement is what the next load of that model makes room for.
- A load never evicts a model of higher priority than its own, nor a pinned model, nor one
  under lease: it waits for leases to end, up to its deadline, then fails with
  :class:`ZooFullError` (a 503 for the caller).
- Concurrent requests for a model that is loading share one load.
- Out of memory during a load: evict what may be evicted, retry once, then :class:`ZooFullError`;
  out of memory during inference: the caller asks :meth:`ModelZoo.relieve` and retries once.
- Eviction keeps the model on the host (``offload``) when the loader can, so a reload is a
  copy; :meth:`ModelZoo.unload` drops it entirely.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict


class Priority(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


class ZooFullError(RuntimeError):
    """No room could be made within the deadline; ``retry_after_s`` for the 503."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelOutOfMemoryError(RuntimeError):
    """What a loader raises when the device ran out of memory (``torch.cuda.OutOfMemoryError``
    is translated to it by GPU loaders)."""


@dataclass(frozen=True)
class ModelLoader:
    """How to bring one model into device memory and take it out again.

    ``load(host_copy)`` returns the loaded model, from ``host_copy`` when there is one;
    ``measure(model)`` returns the bytes it holds; ``offload(model)`` returns a host copy to
    keep (or None); ``release(model)`` frees its device memory.
    """

    load: Callable[[Any], Any]
    measure: Callable[[Any], int]
    release: Callable[[Any], None]
    offload: Callable[[Any], Any] | None = None


class State(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    ON_HOST = "on_host"


class ZooCounts(BaseModel):
    """What happened to one model: loads and their seconds by source, evictions, and leases
    that found it loaded (hits) or not (misses)."""

    loads_from_disk: int = 0
    loads_from_host: int = 0
    load_s_from_disk: float = 0.0
    load_s_from_host: float = 0.0
    evictions: int = 0
    hits: int = 0
    misses: int = 0


@dataclass
class _Entry:
    name: str
    priority: Priority
    loader: ModelLoader
    state: State = State.UNLOADED
    model: Any = None
    host_copy: Any = None
    footprint: int = 0
    reserved: int = 0  # while loading: the room made for it (nothing while it waits for room)
    leases: int = 0
    pinned: bool = False
    last_used: int = 0
    loading: asyncio.Future[None] | None = None
    counts: ZooCounts = field(default_factory=ZooCounts)


class ZooStats(ZooCounts):
    """One model's row in the zoo's table; ``footprint_bytes`` is its last measurement."""

    model_config = ConfigDict(frozen=True)

    name: str
    priority: str
    state: str
    resident_bytes: int = 0
    footprint_bytes: int = 0
    leases: int = 0
    pinned: bool = False


@dataclass
class ModelZoo:
    budget_bytes: int
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _clock: itertools.count[int] = field(default_factory=itertools.count)
    _changed: asyncio.Condition | None = None

    def __post_init__(self) -> None:
        if self.budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be > 0, got {self.budget_bytes}")

    # -- registry --------------------------------------------------------------------------
    def register(self, name: str, priority: Priority, loader: ModelLoader) -> None:
        if name in self._entries:
            raise ValueError(f"model {name!r} is already registered")
        self._entries[name] = _Entry(name, Priority(priority), loader)

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown model {name!r}; registered: {known}") from None

    @property
    def resident_bytes(self) -> int:
        return sum(e.footprint for e in self._entries.values() if e.state is State.LOADED)

    def _held_by_others(self, requester: _Entry) -> int:
        """Bytes other models hold: loaded ones their footprint, loading ones their room."""
        return sum(
            e.footprint if e.state is State.LOADED else e.reserved
            for e in self._entries.values()
            if e is not requester
        )

    def stats(self) -> list[ZooStats]:
        return [
            ZooStats(
                name=e.name,
                priority=e.priority.name,
                state=e.state.value,
                resident_bytes=e.footprint if e.state is State.LOADED else 0,
                footprint_bytes=e.footprint,
                leases=e.leases,
                pinned=e.pinned,
                **e.counts.model_dump(),
            )
            for e in self._entries.values()
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def state(self, name: str) -> State:
        return self._entry(name).state

    def pin(self, name: str, pinned: bool = True) -> None:
        self._entry(name).pinned = pinned

    # -- leases ----------------------------------------------------------------------------
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @asynccontextmanager
    async def lease(self, name: str, timeout_s: float) -> AsyncIterator[Any]:
        """The loaded model, held against eviction until the block ends."""
        entry = self._entry(name)
        if entry.state is State.LOADED:
            entry.counts.hits += 1
        else:
            entry.counts.misses += 1
        await self._ensure_loaded(entry, time.monotonic() + timeout_s)
        entry.leases += 1
        entry.last_used = next(self._clock)
        try:
            yield entry.model
        finally:
            entry.leases -= 1
            async with self._condition():
                self._condition().notify_all()

    async def load(self, name: str, timeout_s: float) -> None:
        """Bring the model onto the device now (it stays evictable like any other)."""
        entry = self._entry(name)
        await self._ensure_loaded(entry, time.monotonic() + timeout_s)
        entry.last_used = next(self._clock)

    async def relieve(self, name: str) -> int:
        """After out of memory during inference with ``name``: evict every model it may evict.
        Returns how many left the device."""
        requester = self._entry(name)
        async with self._condition():
            victims = self._evictable(requester)
            for victim in victims:
                self._evict(victim)
            self._condition().notify_all()
        return len(victims)

    async def _ensure_loaded(self, entry: _Entry, deadline: float) -> None:
        while entry.state is not State.LOADED:
            if entry.loading is not None:  # someone is loading it: share that load
                try:
                    await asyncio.wait_for(asyncio.shield(entry.loading), _left(deadline, entry))
                except TimeoutError:
                    raise ZooFullError(
                        f"deadline passed waiting for {entry.name!r} to load"
                    ) from None
                continue
            entry.loading = asyncio.get_running_loop().create_future()
            try:
                await self._load(entry, deadline)
                entry.loading.set_result(None)
            except BaseException as exc:
                entry.loading.set_exception(exc)
                entry.loading.exception()  # retrieved: sharers re-raise it themselves
                raise
            finally:
                entry.loading = None

    # -- loading and eviction --------------------------------------------------------------
    async def _load(self, entry: _Entry, deadline: float) -> None:
        from_host = entry.state is State.ON_HOST
        entry.state = State.LOADING
        try:
            while True:
                await self._make_room(entry, entry.footprint, deadline)
                entry.reserved = entry.footprint
                started = time.monotonic()
                model = await self._load_once(entry)
                entry.footprint = entry.reserved = entry.loader.measure(model)
                try:  # room for what it really takes, now, without waiting while it holds it
                    await self._make_room(entry, entry.footprint, time.monotonic())
                    break
                except ZooFullError:
                    self._park(entry, model)  # off the device while room is made, then again
                    await self._set_reserved(entry, 0)
                    _left(deadline, entry)
            entry.model, entry.state = model, State.LOADED
        except BaseException:
            if entry.state is State.LOADING:
                entry.state = State.ON_HOST if entry.host_copy is not None else State.UNLOADED
            raise
        finally:
            await self._set_reserved(entry, 0)  # its room, held or not, wakes who waits for it
        seconds = time.monotonic() - started
        if from_host:
            entry.counts.loads_from_host += 1
            entry.counts.load_s_from_host += seconds
        else:
            entry.counts.loads_from_disk += 1
            entry.counts.load_s_from_disk += seconds

    async def _set_reserved(self, entry: _Entry, reserved: int) -> None:
        async with self._condition():
            entry.reserved = reserved
            self._condition().notify_all()

    async def _load_once(self, entry: _Entry) -> Any:
        """Load; out of memory once: evict what the requester may evict and try again."""
        try:
            return await asyncio.to_thread(entry.loader.load, entry.host_copy)
        except ModelOutOfMemoryError:
            async with self._condition():
                for victim in self._evictable(entry):
                    self._evict(victim)
                self._condition().notify_all()
        try:
            return await asyncio.to_thread(entry.loader.load, entry.host_copy)
        except ModelOutOfMemoryError:
            message = f"out of memory loading {entry.name!r}, even after evicting"
            raise ZooFullError(message) from None

    def _park(self, entry: _Entry, model: Any) -> None:
        offload = entry.loader.offload
        if offload is not None:
            entry.host_copy = offload(model)
        entry.loader.release(model)

    def _evictable(self, requester: _Entry) -> list[_Entry]:
        """Loaded models the requester may evict now, in eviction order."""
        candidates = [
            e for e in self._entries.values()
            if e is not requester and e.state is State.LOADED and not e.pinned
            and e.leases == 0 and e.priority <= requester.priority
        ]  # fmt: skip
        return sorted(candidates, key=lambda e: (e.priority, e.last_used))

    async def _make_room(self, requester: _Entry, needed: int, deadline: float) -> None:
        condition = self._condition()
        async with condition:
            while True:
                used = self._held_by_others(requester)
                if used + needed <= self.budget_bytes:
                    return
                victims, freed = [], 0
                for candidate in self._evictable(requester):
                    if used - freed + needed <= self.budget_bytes:
                        break
                    victims.append(candidate)
                    freed += candidate.footprint
                if used - freed + needed <= self.budget_bytes:
                    for victim in victims:
                        self._evict(victim)
                    condition.notify_all()
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ZooFullError(
                        f"no room for {requester.name!r} ({needed} bytes) in the budget of "
                        f"{self.budget_bytes}: the rest is pinned, leased or of higher priority"
                    )
                try:  # wait for a lease to end or a model to leave
                    await asyncio.wait_for(condition.wait(), remaining)
                except TimeoutError:
                    continue

    def _evict(self, entry: _Entry) -> None:
        entry.host_copy = None
        self._park(entry, entry.model)
        entry.model = None
        entry.state = State.ON_HOST if entry.host_copy is not None else State.UNLOADED
        entry.counts.evictions += 1

    def _drop(self, entry: _Entry) -> None:
        if entry.model is not None:
            entry.loader.release(entry.model)
        entry.model, entry.host_copy, entry.state = None, None, State.UNLOADED

    async def evict(self, name: str, timeout_s: float = 30.0) -> None:
        """Take the model off the device (kept on the host when it can be), once its leases
        end; a model that is not loaded is left as it is."""
        await self._when_unleased(name, timeout_s, self._evict, only_loaded=True)

    async def unload(self, name: str, timeout_s: float = 30.0) -> None:
        """Free the model from the device and the host, once its leases end."""
        await self._when_unleased(name, timeout_s, self._drop, only_loaded=False)

    async def _when_unleased(
        self, name: str, timeout_s: float, action: Callable[[_Entry], None], only_loaded: bool
    ) -> None:
        entry = self._entry(name)
        condition = self._condition()
        async with condition:
            await asyncio.wait_for(condition.wait_for(lambda: entry.leases == 0), timeout_s)
            if entry.state is State.LOADED or not only_loaded:
                action(entry)
            condition.notify_all()


def _left(deadline: float, entry: _Entry) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ZooFullError(f"deadline passed waiting for {entry.name!r} to load")
    return remaining
