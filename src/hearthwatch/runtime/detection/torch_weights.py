"""Loading local weights into a PyTorch module; random initialisation only when asked."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def warn_random(what: str) -> None:
    log.warning("%s is randomly initialised: its outputs mean nothing", what)


def _renamed(
    module: torch.nn.Module, state: dict[str, torch.Tensor], weights: Path
) -> dict[str, torch.Tensor]:
    """``state``'s tensors under ``module``'s names, position by position, shapes checked."""
    target = module.state_dict()
    if len(state) != len(target):
        raise ValueError(f"{weights} holds {len(state)} tensors; the model has {len(target)}")
    for (name, wanted), (stored, tensor) in zip(target.items(), state.items(), strict=True):
        if wanted.shape != tensor.shape:
            shapes = f"{tuple(tensor.shape)}, the model's {name} {tuple(wanted.shape)}"
            raise ValueError(f"{weights}: {stored} is {shapes}")
    return dict(zip(target, state.values(), strict=True))


def load_state_dict(
    module: torch.nn.Module, weights: Path | None, random_init: bool, in_order: bool = False
) -> None:
    """``weights`` (a saved state dict) into ``module``; with ``in_order``, tensor by tensor in
    the file's order, every shape checked, for a file saved under another layout's names."""
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
    module.load_state_dict(_renamed(module, state, weights) if in_order else state)
    log.info("loaded weights from %s", weights)
