"""Zoo loaders for PyTorch modules: build from disk and measure the footprint (allocator delta
and peak during warm-up on a GPU), keep evicted modules in pinned host memory when the host has
room, copy them back on reload, and turn CUDA out-of-memory errors into
:class:`~hearthwatch.runtime.zoo.ModelOutOfMemoryError`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hearthwatch.runtime.zoo import ModelLoader, ModelOutOfMemoryError
from hearthwatch.runtime.zoo_memory import available_host_bytes

log = logging.getLogger(__name__)

Warmup = Callable[[torch.nn.Module], object]


@dataclass
class LoadedModule:
    module: torch.nn.Module
    footprint: int


def module_bytes(module: torch.nn.Module) -> int:
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
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        module = build().to(device=device, dtype=dtype).eval()
        warmup(module)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        held = torch.cuda.memory_allocated(device) - before
        return LoadedModule(module, max(peak, held, module_bytes(module)))

    def from_host(host: LoadedModule) -> LoadedModule:
        if cuda:
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
        if cuda:
            loaded.module._apply(_pinned_copy)
        return loaded

    def release(loaded: LoadedModule) -> None:
        if cuda:
            if _on_device(loaded.module, device):
                loaded.module.to("meta")  # frees its device memory whoever still refers to it
            torch.cuda.empty_cache()

    return ModelLoader(
        load=load, measure=lambda loaded: loaded.footprint, release=release, offload=offload
    )
