"""Preparing a batch on a side CUDA stream so it overlaps the model running on the default
stream: the batch is made under :func:`copy_stream`, :func:`handoff` records when it is ready,
and :meth:`Prepared.wait` makes the stream that runs the model wait for it. On a CPU every
step is a no-op."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@contextlib.contextmanager
def copy_stream(stream: torch.cuda.Stream | None) -> Iterator[None]:
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):
        yield


def handoff(stream: torch.cuda.Stream | None, batch: torch.Tensor) -> torch.cuda.Event | None:
    """An event marking ``batch`` ready on ``stream``; its memory is kept for the default
    stream, which will read it."""
    if stream is None:
        return None
    ready = torch.cuda.Event()
    ready.record(stream)
    batch.record_stream(torch.cuda.default_stream(batch.device))
    return ready


@dataclass(frozen=True)
class Prepared:
    """A model-input batch, each image's (width, height), and when the batch is ready."""

    batch: torch.Tensor
    sizes: np.ndarray
    ready: torch.cuda.Event | None = None

    def wait(self) -> None:
        if self.ready is not None:
            torch.cuda.current_stream(self.batch.device).wait_event(self.ready)
