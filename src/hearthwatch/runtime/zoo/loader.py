"""Zoo loaders for PyTorch modules: build from disk and measure the footprint, keep a separate
host copy of an evicted module when the host has room, copy its weights back on reload, and
turn CUDA out-of-memory errors into
:class:`~hearthwatch.runtime.zoo.registry.ModelOutOfMemoryError`.

Eviction is a real copy on either device, so a reload always copies the weights back:

- on a GPU the module's tensors move to pinned host memory and the reload moves them to the
  device again (the device copy is freed on eviction);
- on a CPU the host copy is a deep copy of the module (every parameter and buffer in fresh
  tensors, tied weights still tied), the serving copy is dropped (its tensors go to ``meta``,
  freeing them whoever still refers to it), and the reload deep-copies the host copy into a
  fresh module, which the zoo then serves while the host copy is let go. Neither reload runs
  the warm-up again: a rebuild from disk does.

A footprint is the module's parameter and buffer bytes, counted exactly, plus on a GPU the
activation peak of its warm-up measured in isolation (see
:func:`~hearthwatch.runtime.zoo.memory.activation_peak_bytes`); no device-wide counter is read
or reset. Every GPU load, from disk or from the host, holds the process-wide
:func:`~hearthwatch.runtime.zoo.memory.device_load_slot`.

Thread-safe: a loader's functions run in the zoo's worker threads."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hearthwatch.runtime.zoo.memory import (
    activation_peak_bytes,
    available_host_bytes,
    device_load_slot,
)
from hearthwatch.runtime.zoo.registry import ModelLoader, ModelOutOfMemoryError

log = logging.getLogger(__name__)

Warmup = Callable[[torch.nn.Module], object]


@dataclass
class LoadedModule:
    """A loaded model (a ``torch.nn.Module`` from :func:`module_loader`; an OpenCV net or an
    extension's entry point from :func:`~hearthwatch.runtime.zoo.host_loader.host_loader`)."""

    module: Any
    footprint: int


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _on_device(module: torch.nn.Module, device: torch.device) -> bool:
    return any(t.device.type == device.type for t in module.parameters())


def _pinned_copy(tensor: torch.Tensor) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
    return host.copy_(tensor)


def module_loader(
    build: Callable[[], torch.nn.Module],
    device: torch.device,
    dtype: torch.dtype,
    warmup: Warmup,
    host_reserve_bytes: int,
) -> ModelLoader:
    """A :class:`ModelLoader` for the module ``build`` makes (on the host, weights loaded)."""
    cuda = device.type == "cuda"

    def from_disk() -> LoadedModule:
        if not cuda:
            module = build().to(dtype=dtype).eval()
            warmup(module)
            return LoadedModule(module, module_bytes(module))
        built = build()  # reading the weights needs no device
        with device_load_slot():
            module = built.to(device=device, dtype=dtype).eval()
            activations = activation_peak_bytes(lambda: warmup(module), device)
        return LoadedModule(module, module_bytes(module) + activations)

    def from_host(host: LoadedModule) -> LoadedModule:
        if not cuda:  # the weights copied into a fresh module; the host copy is let go
            return LoadedModule(copy.deepcopy(host.module), host.footprint)
        with device_load_slot():
            try:
                host.module.to(device, non_blocking=True)
                torch.cuda.synchronize(device)
            except torch.cuda.OutOfMemoryError:
                host.module._apply(_pinned_copy)  # all of it back on the host, as it was
                raise
        return LoadedModule(host.module, host.footprint)

    def load(host: LoadedModule | None) -> LoadedModule:
        try:
            return from_host(host) if host is not None else from_disk()
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise ModelOutOfMemoryError(str(exc).splitlines()[0]) from exc

    def offload(loaded: LoadedModule) -> LoadedModule | None:
        if available_host_bytes() - loaded.footprint < host_reserve_bytes:
            log.info("host memory is short: not keeping an evicted copy")
            return None
        if not cuda:  # a separate copy: release drops the serving one
            return LoadedModule(copy.deepcopy(loaded.module), loaded.footprint)
        loaded.module._apply(_pinned_copy)
        return loaded

    def release(loaded: LoadedModule) -> None:
        if _on_device(loaded.module, device):
            loaded.module.to("meta")  # frees its memory whoever still refers to it
        if cuda:
            torch.cuda.empty_cache()

    return ModelLoader(
        load=load, measure=lambda loaded: loaded.footprint, release=release, offload=offload
    )
