"""Optimisation passes for a PyTorch module, each with an automatic fall back to the plain path.

Passes: precision (fp16/bf16), channels_last, ``cudnn.benchmark``, ``torch.compile`` and, on
CUDA, graphs at bucketed batch sizes (:mod:`hearthwatch.runtime.accel.graphs`). A pass
that raises is undone, logged and reported through ``on_fallback(pass_name, reason)``; a
compiled module that fails on its first call falls back to the eager one the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from hearthwatch.runtime.accel.graphs import BucketedGraphs, FallbackHook, as_outputs

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True, kw_only=True)
class OptimizationSettings:
    """Which passes run; keyword-only, so that no setting lands in another's place."""

    precision: Precision = "auto"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    torch_compile: bool = False
    cuda_graphs: bool = True
    max_batch_size: int = 8  # the largest graph bucket
    compile_cache_dir: Path | None = None


def use_compile_cache(directory: Path) -> None:
    """Keep torch.compile's generated code and compiled graphs in ``directory`` (Inductor's
    FX-graph and AOT-autograd caches), so a restart reuses them instead of compiling again."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory.resolve())
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"


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
    graphs: BucketedGraphs | None = None

    def run_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One input batch through the graphs where there are, else :meth:`__call__`; the
        outputs as a tuple (a single tensor as a 1-tuple)."""
        if self.graphs is not None:
            return self.graphs(batch)
        return as_outputs(self(batch))

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
        if settings.compile_cache_dir is not None:
            use_compile_cache(settings.compile_cache_dir)
        try:
            optimized.compiled = torch.compile(module)
            applied.append("torch_compile")
        except Exception as exc:
            fallback("torch_compile", f"{type(exc).__name__}: {exc}")
    if settings.cuda_graphs and device.type == "cuda":
        optimized.graphs = BucketedGraphs(optimized, settings.max_batch_size, on_fallback=fallback)
        applied.append("cuda_graphs")
    return optimized
