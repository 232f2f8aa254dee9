"""Memory the zoo may use: the device budget (a fixed size, or a fraction of what is free minus a
reserve), the host memory available for keeping evicted models, and a load's own activation peak
on a GPU, measured in isolation.

The activation peak is measured without device-wide counters: the calling thread's allocations
are routed into a private pool of PyTorch's caching allocator while the warm-up runs, and the
pool's size afterwards is the warm-up's peak (the allocator keeps the segments it grew until
they are emptied). Other threads' allocations (the detector, other models' batches) do not
count, and no device-wide statistic is reset, so nobody else's measurement is disturbed. GPU
loads take :func:`device_load_slot`, a process-wide lock, so that they run one at a time and
their transient peaks never stack.

Thread-safe: everything here may be called from any thread.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

log = logging.getLogger(__name__)

GIB = 1024**3

DEVICE_LOAD_LOCK = threading.Lock()
"""Held by every load onto a GPU, its footprint measurement included (process-wide)."""

DEVICE_LOAD_TIMEOUT_S = 600.0
"""How long a load waits for the loads before it to finish."""


def available_host_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo where there is one, else free physical pages."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int | None:
    """This process's resident memory (``/proc/self/statm``), or None where there is none."""
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        return None
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def free_device_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return available_host_bytes()


def budget_bytes(
    device: torch.device, budget_gb: float | None, fraction: float, reserve_gb: float
) -> int:
    """``budget_gb`` when given, else ``fraction`` of the device's free memory minus
    ``reserve_gb`` (host memory on a CPU)."""
    if budget_gb is not None:
        if budget_gb <= 0:
            raise ValueError(f"VRAM_BUDGET_GB must be > 0, got {budget_gb}")
        return int(budget_gb * GIB)
    if not 0 < fraction <= 1:
        raise ValueError(f"VRAM_BUDGET_FRACTION must be in (0, 1], got {fraction}")
    free = free_device_bytes(device)
    budget = int(free * fraction - reserve_gb * GIB)
    if budget <= 0:
        raise ValueError(
            f"no memory left for the model zoo: {free / GIB:.1f} GiB free on {device}, "
            f"{fraction:.0%} of it minus a reserve of {reserve_gb} GiB; set VRAM_BUDGET_GB"
        )
    return budget


@contextmanager
def device_load_slot(timeout_s: float = DEVICE_LOAD_TIMEOUT_S) -> Iterator[None]:
    """Hold :data:`DEVICE_LOAD_LOCK`: one load onto the device (and one footprint measurement)
    at a time. Raises :class:`TimeoutError` after ``timeout_s`` waiting for it."""
    if not DEVICE_LOAD_LOCK.acquire(timeout=timeout_s):
        raise TimeoutError(f"other loads held the device for over {timeout_s:.0f} s")
    try:
        yield
    finally:
        DEVICE_LOAD_LOCK.release()


def thread_routed_pools() -> bool:
    """Whether ``torch.cuda.use_mem_pool`` routes only the calling thread's allocations (torch
    2.8 and later; before, every allocation on the stream went to the pool)."""
    version = torch.torch_version.TorchVersion(torch.__version__)
    return hasattr(torch.cuda, "MemPool") and version >= "2.8"


@functools.cache
def _warn_unmeasured() -> None:
    log.warning(
        "torch %s cannot route one thread's allocations to a pool: model footprints count "
        "their weights only, not their activations (torch 2.8 or later measures both)",
        torch.__version__,
    )


def activation_peak_bytes(run: Callable[[], object], device: torch.device) -> int:
    """Run ``run`` (a warm-up) on the CUDA ``device`` and return the device bytes its own
    allocations took at their peak: what the caching allocator reserved for them, so rounded up
    to its segments, including anything the warm-up left allocated. Call it holding
    :func:`device_load_slot`. Without per-thread pools it only runs ``run`` and returns 0."""
    if not thread_routed_pools():
        _warn_unmeasured()
        run()
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.current_blas_handle()  # this thread's cuBLAS workspace is nobody's activation
    pool = torch.cuda.MemPool()
    try:
        with torch.cuda.use_mem_pool(pool, index):
            run()
            torch.cuda.synchronize(device)
        return sum(int(segment["total_size"]) for segment in pool.snapshot())
    finally:
        del pool
        torch.cuda.empty_cache()  # the pool's segments go back to the device
