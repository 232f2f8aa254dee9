"""Zoo loader for models that always run on the host, whatever the serving device: OpenCV DNN
nets and compiled extensions (BlazePose through ``cv2.dnn``, YuNet). Load builds the model from
disk and warms it up; eviction drops it, keeping no host copy (a rebuild reads a few megabytes
and takes milliseconds).

A footprint is what the model holds in host memory when the zoo budgets host memory, on the
CPU: the process's resident growth while it was built and warmed up (at its largest batch, so
the activations of the biggest run count), or its weights' bytes if that is more. OpenCV
reports no dependable figure for every graph, and a DNN net keeps its activation buffers:
BlazePose holds about 36 MB per framed crop of its batch beside 6 MB of weights. The growth is
approximate: host loads run one at a time, but another thread allocating meanwhile (a detector
batch) counts too, and a reload that reuses freed memory grows less, so each model keeps the
largest growth any of its loads measured. On a GPU the zoo budgets device memory, which these
models never touch, so they count 0.

Thread-safe: the functions run in the zoo's worker threads; host loads hold one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from hearthwatch.runtime.zoo.loader import LoadedModule
from hearthwatch.runtime.zoo.memory import resident_bytes
from hearthwatch.runtime.zoo.registry import ModelLoader

_HOST_LOAD = threading.Lock()
"""Host models load one at a time, so one load's growth is not counted against another."""


def host_loader(
    build: Callable[[], Any],
    warmup: Callable[[Any], object],
    host_bytes: int,
    device: torch.device,
) -> ModelLoader:
    largest = host_bytes  # the most any load measured: a reload reusing freed memory grows less

    def load(host: LoadedModule | None) -> LoadedModule:
        nonlocal largest
        with _HOST_LOAD:
            before = resident_bytes()
            model = build()
            warmup(model)
            after = resident_bytes()
        if device.type == "cuda":
            return LoadedModule(model, 0)
        if after is not None and before is not None:
            largest = max(largest, after - before)
        return LoadedModule(model, largest)

    return ModelLoader(
        load=load, measure=lambda loaded: loaded.footprint, release=lambda loaded: None
    )
