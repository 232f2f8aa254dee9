"""Choice of the compute device: CUDA when present and allowed, the CPU otherwise."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def select_device(use_gpu: bool) -> torch.device:
    if use_gpu and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        log.info("using %s (%s)", device, torch.cuda.get_device_name(device))
        return device
    if use_gpu:
        log.info("no CUDA device found; using the CPU")
    else:
        log.info("USE_GPU=false; using the CPU")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
