"""A memory-budgeted model zoo: models load on demand under a byte budget and are evicted
lowest priority first, least recently used within a priority.

- Footprints are measured at load by the loader's ``measure`` (for PyTorch modules, see
  :mod:`hearthwatch.runtime.zoo.loader`), not declared; the last measurement is what the next
  load of that model makes room for.
- A load never evicts a model of higher priority than its own, nor a pinned model, nor one
  under lease: it waits for leases to end, up to its deadline, then fails with
  :class:`ZooFullError` (a 503 for the caller).
- A load runs as a task the zoo owns, shared by every request for the model while it runs;
  each caller waits for it up to its own deadline, and a caller that is cancelled or whose
  deadline passes stops only its own wait. The load waits for room up to the latest deadline of
  those who wait for it; one nobody waits for any more is dropped while it waits for room (it
  holds nothing then), but once its worker thread runs it goes on: the model stays ``LOADING``
  with its bytes reserved until the thread returns, then is ``LOADED`` for the next lease, or
  the load fails and frees its room. So a model never loads twice at once.
- Every change that can let a waiting load go on (a lease ending, a model leaving the device or
  unpinned, a load ending) wakes it; a load whose deadline has passed gives up before it starts
  any eviction.
- Out of memory during a load: evict what may be evicted, retry once, then :class:`ZooFullError`;
  out of memory during inference: the caller asks :meth:`ModelZoo.relieve` and retries once.
- Eviction keeps the model on the host (``offload``) when the loader can, so a reload is a
  copy; :meth:`ModelZoo.unload` drops it entirely.
- The loader's device work (load, offload, release) runs in worker threads, never on the event
  loop. A model leaving the device is ``EVICTING``: it is not handed out, its bytes count
  against the budget until its release returns, and then whoever waits for room is woken. An
  eviction that fails (offload or release raising) is logged and the model is dropped all the
  same: it reloads from disk.

:class:`ModelZoo` is event-loop-confined: call it from the one loop that runs it (its load and
eviction tasks run there too). A loader's functions are called from worker threads, never twice
at once for the same model; ``measure`` is called on the loop and must be cheap (it returns what
``load`` measured).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from hearthwatch.runtime.errors import OverloadedError, ServingError

log = logging.getLogger(__name__)


class Priority(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


class ZooFullError(OverloadedError):
    """No room could be made within the deadline; ``retry_after_s`` says when to come back."""


class ModelOutOfMemoryError(ServingError):
    """What a loader raises when the device ran out of memory (``torch.cuda.OutOfMemoryError``
    is translated to it by GPU loaders)."""


@dataclass(frozen=True)
class ModelLoader:
    """How to bring one model into device memory and take it out again.

    ``load(host_copy)`` returns the loaded model, from ``host_copy`` when there is one;
    ``measure(model)`` returns the bytes it holds; ``offload(model)`` returns a host copy to
    keep (or None); ``release(model)`` frees its device memory. ``load``, ``offload`` and
    ``release`` run in worker threads.
    """

    load: Callable[[Any], Any]
    measure: Callable[[Any], int]
    release: Callable[[Any], None]
    offload: Callable[[Any], Any] | None = None


class State(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    EVICTING = "evicting"
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


class _Changes:
    """Wakes everyone waiting for the zoo to change. Event-loop-confined; :meth:`notify` is
    synchronous, so a plain method (an unpin) can wake the waiters too."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        """Until the next :meth:`notify` or ``timeout_s``, whichever comes first."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait([waiter], timeout=max(0.0, timeout_s))
        finally:
            self._waiters.discard(waiter)

    async def wait_until(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Until ``ready()``, checked at every change; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            await self.wait(remaining)


@dataclass
class _Load:
    """One load of one model, run by :attr:`task` (the zoo's, not a caller's). It waits for room
    up to :attr:`deadline`, the latest deadline of those who wait for it; ``waiting`` counts
    them; ``abandonable`` is true while it holds nothing (before it starts, and while it waits
    for room), when it may be dropped once nobody waits; ``overdue`` is what a caller whose
    deadline passes meanwhile is told."""

    deadline: float
    waiting: int = 0
    abandonable: bool = True
    overdue: str | None = None
    task: asyncio.Task[None] = field(init=False)


@dataclass
class _Entry:
    name: str
    priority: Priority
    loader: ModelLoader
    state: State = State.UNLOADED
    model: Any = None
    host_copy: Any = None
    footprint: int = 0
    # bytes held while not LOADED: the room made for a load (nothing while it waits for room),
    # or the bytes of a model leaving the device, until its release returns
    reserved: int = 0
    leases: int = 0
    # callers waiting for its load: once it is loaded, not evicted before they take it
    awaiting: int = 0
    pinned: bool = False
    last_used: int = 0
    loading: _Load | None = None  # the load under way
    leaving: asyncio.Task[None] | None = None  # its offload and release, while they run
    counts: ZooCounts = field(default_factory=ZooCounts)

    @property
    def held_bytes(self) -> int:
        """What it holds against the budget."""
        return self.footprint if self.state is State.LOADED else self.reserved


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
    _changes: _Changes = field(default_factory=_Changes)

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
        """Bytes of the models on the device: loaded ones and those still leaving it."""
        return sum(_resident(e) for e in self._entries.values())

    def _held_by_others(self, requester: _Entry) -> int:
        """Bytes other models hold: loaded ones their footprint, loading and leaving ones
        their reservation."""
        return sum(e.held_bytes for e in self._entries.values() if e is not requester)

    def _leaving_by_others(self, requester: _Entry) -> int:
        """Bytes of other models that are leaving the device: room on its way."""
        return sum(
            e.reserved
            for e in self._entries.values()
            if e is not requester and e.leaving is not None
        )

    def stats(self) -> list[ZooStats]:
        return [
            ZooStats(
                name=e.name,
                priority=e.priority.name,
                state=e.state.value,
                resident_bytes=_resident(e),
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
        """Pin (never evicted) or unpin the model; an unpin wakes the loads waiting for room."""
        self._entry(name).pinned = pinned
        self._changes.notify()

    async def pin_loaded(self, name: str, timeout_s: float) -> None:
        """Pin the model and load it (pinned first: nothing evicts it between the two). A load
        that fails (no room in time, out of memory) leaves the pin as it was, and raises."""
        entry = self._entry(name)
        was_pinned = entry.pinned
        self.pin(name, True)
        try:
            await self.load(name, timeout_s)
        except BaseException:
            self.pin(name, was_pinned)
            raise

    # -- leases ----------------------------------------------------------------------------
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
            self._changes.notify()

    async def load(self, name: str, timeout_s: float) -> None:
        """Bring the model onto the device now (it stays evictable like any other)."""
        entry = self._entry(name)
        await self._ensure_loaded(entry, time.monotonic() + timeout_s)
        entry.last_used = next(self._clock)

    async def relieve(self, name: str, timeout_s: float = 30.0) -> int:
        """After out of memory during inference with ``name``: evict every model it may evict,
        and wait up to ``timeout_s`` for them to leave. Returns how many left the device."""
        requester = self._entry(name)
        leaving = [self._begin_eviction(victim) for victim in self._evictable(requester)]
        return await _finished(leaving, time.monotonic() + timeout_s)

    async def _ensure_loaded(self, entry: _Entry, deadline: float) -> None:
        while entry.state is not State.LOADED:
            job = entry.loading
            if job is not None and not job.task.done():  # someone is loading it: share that load
                await self._await_load(entry, job, deadline)
                continue
            if entry.leaving is not None:  # on its way out: load it again once it is out
                await asyncio.wait([entry.leaving], timeout=_left(deadline, entry))
                continue
            await self._await_load(entry, self._start_load(entry, deadline), deadline)

    def _start_load(self, entry: _Entry, deadline: float) -> _Load:
        job = entry.loading = _Load(deadline)
        job.task = asyncio.get_running_loop().create_task(
            self._load(entry, job), name=f"zoo-load-{entry.name}"
        )
        job.task.add_done_callback(lambda task: self._load_ended(entry, job, task))
        return job

    def _load_ended(self, entry: _Entry, job: _Load, task: asyncio.Task[None]) -> None:
        """A load's task is over (even one cancelled before it started): it is no longer under
        way, its error is retrieved (its callers re-raise it), and whoever waits is woken."""
        if entry.loading is job:
            entry.loading = None
        error = None if task.cancelled() else task.exception()
        if error is not None and job.waiting == 0 and not isinstance(error, ZooFullError):
            log.warning("loading %s failed with no one waiting", entry.name, exc_info=error)
        self._changes.notify()

    async def _await_load(self, entry: _Entry, job: _Load, deadline: float) -> None:
        """Wait for ``job`` up to the caller's deadline (which the load waits for room until,
        if it is the latest). The caller's cancellation or deadline ends only its own wait; a
        load nobody waits for any more is dropped if it holds nothing yet."""
        remaining = _left(deadline, entry)
        job.deadline = max(job.deadline, deadline)
        job.waiting += 1
        entry.awaiting += 1
        try:
            await asyncio.wait([job.task], timeout=remaining)
        finally:
            job.waiting -= 1
            entry.awaiting -= 1
            if job.waiting == 0 and job.abandonable and not job.task.done():
                job.task.cancel()
            if entry.awaiting == 0:
                self._changes.notify()  # evictable again (a lease, if taken, is taken at once)
        if not job.task.done():
            raise ZooFullError(job.overdue or f"deadline passed waiting for {entry.name!r} to load")
        if not job.task.cancelled() and (error := job.task.exception()) is not None:
            raise error
        # loaded (or dropped by callers that left before this one came): the caller checks again

    # -- loading ---------------------------------------------------------------------------
    async def _load(self, entry: _Entry, job: _Load) -> None:
        """The load's task: room, the loader's ``load`` in a worker thread, the measurement and
        room for it. Cancelled only while it holds nothing (abandoned) or as the loop ends."""
        job.abandonable = False
        from_host = entry.state is State.ON_HOST
        entry.state = State.LOADING
        started = time.monotonic()
        try:
            while True:
                await self._make_room(entry, entry.footprint, job)
                entry.reserved = entry.footprint
                started = time.monotonic()
                model = await self._load_once(entry, job)
                try:  # room for what it really takes, without waiting for leases as it holds it
                    entry.footprint = entry.reserved = entry.loader.measure(model)
                    await self._make_room(entry, entry.footprint, job, wait_for_leases=False)
                except ZooFullError:
                    await self._park(entry, model)  # off the device while room is made, then again
                    _left(job.deadline, entry)
                    continue
                except BaseException:
                    self._begin_eviction(entry, model, counted=False)  # not left on the device
                    raise
                break
            entry.model, entry.host_copy, entry.state = model, None, State.LOADED
        except BaseException:
            if entry.state is State.LOADING:
                entry.state = State.ON_HOST if entry.host_copy is not None else State.UNLOADED
            raise
        finally:
            if entry.loading is job:
                entry.loading = None
            if entry.leaving is None:  # else the eviction under way frees its bytes when done
                entry.reserved = 0
            self._changes.notify()  # its room, held or not, and its end wake who waits for them
        seconds = time.monotonic() - started
        if from_host:
            entry.counts.loads_from_host += 1
            entry.counts.load_s_from_host += seconds
        else:
            entry.counts.loads_from_disk += 1
            entry.counts.load_s_from_disk += seconds

    async def _load_once(self, entry: _Entry, job: _Load) -> Any:
        """Load; out of memory once: evict what the requester may evict and try again."""
        try:
            return await asyncio.to_thread(entry.loader.load, entry.host_copy)
        except ModelOutOfMemoryError:
            leaving = [self._begin_eviction(victim) for victim in self._evictable(entry)]
            if await _finished(leaving, job.deadline) < len(leaving):
                raise ZooFullError(
                    f"deadline passed evicting to load {entry.name!r} after out of memory"
                ) from None
        try:
            return await asyncio.to_thread(entry.loader.load, entry.host_copy)
        except ModelOutOfMemoryError:
            message = f"out of memory loading {entry.name!r}, even after evicting"
            raise ZooFullError(message) from None

    async def _park(self, entry: _Entry, model: Any) -> None:
        """A loaded model that does not fit: off the device (kept on the host when it can be)
        until room is made for it. It stays LOADING, holding its bytes until it is off."""
        await asyncio.wait([self._begin_eviction(entry, model, counted=False, parking=True)])

    def _evictable(self, requester: _Entry) -> list[_Entry]:
        """Loaded models the requester may evict now, in eviction order: none that is pinned,
        leased or about to be (its load's callers not yet woken), nor of higher priority."""
        candidates = [
            e for e in self._entries.values()
            if e is not requester and e.state is State.LOADED and not e.pinned
            and e.leases == 0 and e.awaiting == 0 and e.priority <= requester.priority
        ]  # fmt: skip
        return sorted(candidates, key=lambda e: (e.priority, e.last_used))

    def _victims(self, requester: _Entry, excess: int) -> list[_Entry] | None:
        """The models to evict so that ``excess`` bytes leave, or None if they cannot."""
        victims, freed = [], 0
        for candidate in self._evictable(requester):
            if freed >= excess:
                break
            victims.append(candidate)
            freed += candidate.footprint
        return victims if freed >= excess else None

    async def _make_room(
        self, requester: _Entry, needed: int, job: _Load, *, wait_for_leases: bool = True
    ) -> None:
        """Return once ``needed`` bytes fit beside what the others hold, evicting what the
        requester may evict and waiting for those evictions to end, up to the load's deadline
        (checked before any eviction starts). Without ``wait_for_leases`` (the requester holds
        device memory already), fail at once when no eviction can make the room. While it waits
        holding nothing, the load may be abandoned."""
        while True:
            excess = self._held_by_others(requester) + needed - self.budget_bytes
            if excess <= 0:
                job.overdue = None
                return
            victims = self._victims(requester, excess - self._leaving_by_others(requester))
            if victims is None and not wait_for_leases:
                raise ZooFullError(_no_room(self, requester, needed))
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                raise ZooFullError(
                    _no_room(self, requester, needed)
                    if victims is None
                    else f"deadline passed making room for {requester.name!r}"
                )
            for victim in victims or ():
                self._begin_eviction(victim)
            job.overdue = (
                _no_room(self, requester, needed)
                if victims is None
                else f"deadline passed while models left the device for {requester.name!r}"
            )
            job.abandonable = wait_for_leases
            try:  # wait for a lease to end, a model to leave or be unpinned, a load to end
                await self._changes.wait(remaining)
            finally:
                job.abandonable = False

    # -- eviction --------------------------------------------------------------------------
    def _begin_eviction(
        self,
        entry: _Entry,
        model: Any = None,
        *,
        keep_host: bool = True,
        counted: bool = True,
        parking: bool = False,
    ) -> asyncio.Task[None]:
        """Take ``model`` (the entry's loaded model by default) off the device in a worker
        thread: the entry holds the model's bytes until the task ends, EVICTING meanwhile (a
        model parked by its own load stays LOADING)."""
        model = entry.model if model is None else model
        entry.reserved = entry.footprint
        entry.model, entry.host_copy = None, None
        if not parking:
            entry.state = State.EVICTING
        if counted:
            entry.counts.evictions += 1
        entry.leaving = asyncio.get_running_loop().create_task(
            self._evict_in_thread(entry, model, keep_host), name=f"zoo-evict-{entry.name}"
        )
        return entry.leaving

    async def _evict_in_thread(self, entry: _Entry, model: Any, keep_host: bool) -> None:
        host_copy = None
        try:
            host_copy = await asyncio.to_thread(
                _offload_and_release, entry.loader, model, keep_host
            )
        except Exception:
            log.exception("evicting %s failed: it is dropped, to reload from disk", entry.name)
        finally:  # (cancelled only as the loop shuts down: the thread finishes on its own)
            entry.host_copy = host_copy
            if entry.state is not State.LOADING:  # a parked model's load goes on
                entry.state = State.ON_HOST if host_copy is not None else State.UNLOADED
            entry.reserved, entry.leaving = 0, None
            self._changes.notify()

    async def evict(self, name: str, timeout_s: float = 30.0) -> None:
        """Take the model off the device (kept on the host when it can be), once its leases
        end; a model that is not loaded is left as it is. Returns once it is off."""
        entry = self._entry(name)
        deadline = time.monotonic() + timeout_s
        await self._when(entry, lambda: entry.leases == 0, timeout_s)
        if entry.state is State.LOADED:
            self._begin_eviction(entry)
        if entry.leaving is not None and not await _finished([entry.leaving], deadline):
            raise TimeoutError(f"{name!r} did not leave the device within {timeout_s} s")

    async def unload(self, name: str, timeout_s: float = 30.0) -> None:
        """Free the model from the device and the host, once any load or eviction under way is
        over and the leases end (those its load's callers take included)."""
        entry = self._entry(name)
        deadline = time.monotonic() + timeout_s

        def idle() -> bool:
            return (
                entry.leases == 0
                and entry.awaiting == 0
                and entry.loading is None
                and entry.leaving is None
            )

        await self._when(entry, idle, timeout_s)
        if entry.state is not State.LOADED:
            entry.host_copy, entry.state = None, State.UNLOADED
            return
        leaving = self._begin_eviction(entry, keep_host=False, counted=False)
        if not await _finished([leaving], deadline):
            raise TimeoutError(f"{name!r} did not leave the device within {timeout_s} s")

    async def _when(self, entry: _Entry, ready: Callable[[], bool], timeout_s: float) -> None:
        await self._changes.wait_until(ready, timeout_s)


def _offload_and_release(loader: ModelLoader, model: Any, keep_host: bool) -> Any:
    """In a worker thread: a host copy of ``model`` when it is to be kept and the loader can
    make one, then its device memory freed, even when the copy failed."""
    try:
        return loader.offload(model) if keep_host and loader.offload is not None else None
    finally:
        loader.release(model)


async def _finished(tasks: Collection[asyncio.Task[None]], deadline: float) -> int:
    """How many of ``tasks`` ended by the deadline (they go on after it, uncancelled)."""
    if not tasks:
        return 0
    done, _ = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    return len(done)


def _resident(entry: _Entry) -> int:
    on_device = entry.state is State.LOADED or entry.state is State.EVICTING
    return entry.held_bytes if on_device else 0


def _no_room(zoo: ModelZoo, requester: _Entry, needed: int) -> str:
    return (
        f"no room for {requester.name!r} ({needed} bytes) in the budget of {zoo.budget_bytes}: "
        "the rest is pinned, leased or of higher priority"
    )


def _left(deadline: float, entry: _Entry) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ZooFullError(f"deadline passed waiting for {entry.name!r} to load")
    return remaining
