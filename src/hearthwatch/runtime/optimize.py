"""Optimisation passes for a PyTorch module, each with an automatic fall back to the plain path.

Passes: precision (fp16/bf16), channels_last, ``cudnn.benchmark``, ``torch.compile``. A pass
that raises is undone, logged and reported through ``on_fallback(pass_name, reason)``; a
compiled module that fails on its first call falls back to the eager one the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
FallbackHook = Callable[[str, str], None]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class OptimizationSettings:
    precision: Precision = "auto"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    torch_compile: bool = False


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[precision]


def _log_fallback(pass_name: str, reason: str) -> None:
    log.warning("optimisation %s failed, using the plain path: %s", pass_name, reason)


@dataclass
class OptimizedModule:
    """A module after the passes, with the eager module kept for fall back."""

    eager: torch.nn.Module
    dtype: torch.dtype
    channels_last: bool
    on_fallback: FallbackHook
    compiled: Any = None
    applied: list[str] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # compile errors surface on the first call
                self.compiled = None
                self.applied.remove("torch_compile")
                self.on_fallback("torch_compile", f"{type(exc).__name__}: {exc}")
        return self.eager(*args, **kwargs)


def optimize_module(
    module: torch.nn.Module,
    device: torch.device,
    settings: OptimizationSettings,
    on_fallback: FallbackHook | None = None,
) -> OptimizedModule:
    """Move ``module`` to ``device`` in eval mode and apply the enabled passes."""

    def fallback(pass_name: str, reason: str) -> None:
        _log_fallback(pass_name, reason)
        if on_fallback is not None:
            on_fallback(pass_name, reason)

    module = module.eval().to(device)
    applied: list[str] = []
    dtype = resolve_dtype(settings.precision, device)
    if dtype != torch.float32:
        try:
            module = module.to(dtype)
            applied.append(str(dtype).removeprefix("torch."))
        except Exception as exc:
            module = module.float()
            dtype = torch.float32
            fallback("precision", f"{type(exc).__name__}: {exc}")
    channels_last = False
    if settings.channels_last:
        try:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            channels_last = True
            applied.append("channels_last")
        except Exception as exc:
            fallback("channels_last", f"{type(exc).__name__}: {exc}")
    if settings.cudnn_benchmark and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        applied.append("cudnn_benchmark")
    optimized = OptimizedModule(module, dtype, channels_last, fallback, applied=applied)
    if settings.torch_compile:
        try:
            optimized.compiled = torch.compile(module)
            applied.append("torch_compile")
        except Exception as exc:
            fallback("torch_compile", f"{type(exc).__name__}: {exc}")
    return optimized
