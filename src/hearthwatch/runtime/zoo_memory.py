"""Memory the zoo may use: the device budget (a fixed size, or a fraction of what is free minus a
reserve) and the host memory available for keeping evicted models."""

from __future__ import annotations

import os
from pathlib import Path

import torch

GIB = 1024**3


def available_host_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo where there is one, else free physical pages."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
