"""CUDA graphs at bucketed batch sizes: each bucket (1, 2, 4, … up to the largest batch) is
captured once, a batch is padded up to the next bucket and replayed, and only the real rows'
outputs are returned. A bucket whose capture (or replay) fails runs eagerly from then on,
logged and counted; the other buckets keep their graphs.

The capture step is a parameter, so the bucketing, padding and fallback run (and are tested)
on a CPU with any capture function; :func:`cuda_graph_capture` is the real one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

Outputs = tuple[torch.Tensor, ...]
Forward = Callable[[torch.Tensor], Any]
Capture = Callable[[Forward, torch.Tensor], Forward]
FallbackHook = Callable[[str, str], None]  # (pass name, reason), as the optimisation passes


def as_outputs(out: torch.Tensor | Sequence[torch.Tensor]) -> Outputs:
    """A module's outputs as a tuple: a single tensor as a 1-tuple."""
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, then ``max_batch_size`` itself."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


def cuda_graph_capture(forward: Forward, example: torch.Tensor) -> Forward:
    """Capture ``forward`` on ``example``'s shape; the replay copies its input into the static
    buffer and returns copies of the static outputs (the next replay overwrites them)."""
    static_input = example.clone()
    side = torch.cuda.Stream(device=example.device)
    side.wait_stream(torch.cuda.current_stream(example.device))
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):  # warm-up outside the graph: lazy initialisation, cuDNN choices
            forward(static_input)
    torch.cuda.current_stream(example.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_outputs = forward(static_input)

    def replay(batch: torch.Tensor) -> Outputs:
        static_input.copy_(batch)
        graph.replay()
        return tuple(t.clone() for t in static_outputs)

    return replay


@dataclass
class BucketedGraphs:
    """``forward`` run through one graph per bucket, captured on the bucket's first batch
    (the warm-up), each batch padded up to its bucket."""

    forward: Forward
    max_batch_size: int
    capture: Capture = cuda_graph_capture
    on_fallback: FallbackHook | None = None
    _runners: dict[int, Forward] = field(default_factory=dict)
    eager_buckets: set[int] = field(default_factory=set)

    def _tupled(self, batch: torch.Tensor) -> Outputs:
        return as_outputs(self.forward(batch))

    @property
    def buckets(self) -> list[int]:
        return bucket_sizes(self.max_batch_size)

    def bucket_for(self, size: int) -> int:
        for bucket in self.buckets:
            if bucket >= size:
                return bucket
        raise ValueError(f"batch of {size} is over max_batch_size {self.max_batch_size}")

    def _runner(self, bucket: int, example: torch.Tensor) -> Forward:
        runner = self._runners.get(bucket)
        if runner is None:
            try:
                runner = self.capture(self._tupled, example)
            except Exception as exc:
                self._fall_back(bucket, "capture", exc)
                runner = self._tupled
            self._runners[bucket] = runner
        return runner

    def _fall_back(self, bucket: int, step: str, exc: Exception) -> None:
        self.eager_buckets.add(bucket)
        reason = f"bucket {bucket}: {step} failed: {type(exc).__name__}: {exc}"
        log.warning("CUDA graphs: %s; that bucket runs eagerly", reason)
        if self.on_fallback is not None:
            self.on_fallback("cuda_graphs", reason)

    def __call__(self, batch: torch.Tensor) -> Outputs:
        size = batch.shape[0]
        bucket = self.bucket_for(size)
        padded = pad_batch(batch, bucket)
        runner = self._runner(bucket, padded)
        try:
            outputs = runner(padded)
        except Exception as exc:
            if bucket in self.eager_buckets:
                raise
            self._fall_back(bucket, "replay", exc)
            self._runners[bucket] = self._tupled
            outputs = self._tupled(padded)
        return tuple(t[:size] for t in outputs)


def pad_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """``batch`` with zero rows appended up to ``size`` rows."""
    missing = size - batch.shape[0]
    if missing <= 0:
        return batch
    padding = batch.new_zeros((missing, *batch.shape[1:]))
    return torch.cat([batch, padding])
