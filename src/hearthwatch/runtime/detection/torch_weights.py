"""Loading local weights into a PyTorch module; random initialisation only when asked."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def warn_random(what: str) -> None:
    log.warning("%s is randomly initialised: its outputs mean nothing", what)


def load_state_dict(module: torch.nn.Module, weights: Path | None, random_init: bool) -> None:
    if weights is None:
        if not random_init:
            raise ValueError("a local weights file is required (or random_init: true)")
        warn_random(type(module).__name__)
        return
    if not weights.is_file():
        raise FileNotFoundError(f"weights file {weights} does not exist")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    module.load_state_dict(state)
    log.info("loaded weights from %s", weights)
