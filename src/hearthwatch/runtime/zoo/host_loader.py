"""Zoo loader for models that always run on the host, whatever the serving device: OpenCV DNN
nets and compiled extensions (BlazePose through ``cv2.dnn``, YuNet). Load builds the model from
disk and warms it up; eviction drops it, keeping no host copy (a rebuild reads a few megabytes
and takes milliseconds).

A footprint is the bytes its weights hold in host memory (the configuration says how many:
OpenCV reports no dependable figure for every graph) when the zoo budgets host memory, on the
CPU; on a GPU the zoo budgets device memory, which these models never touch, so they count 0.

Thread-safe: the functions run in the zoo's worker threads and share no state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hearthwatch.runtime.zoo.loader import LoadedModule
from hearthwatch.runtime.zoo.registry import ModelLoader


def host_loader(
    build: Callable[[], Any],
    warmup: Callable[[Any], object],
    host_bytes: int,
    device: torch.device,
) -> ModelLoader:
    footprint = 0 if device.type == "cuda" else host_bytes

    def load(host: LoadedModule | None) -> LoadedModule:
        model = build()
        warmup(model)
        return LoadedModule(model, footprint)

    return ModelLoader(
        load=load, measure=lambda loaded: loaded.footprint, release=lambda loaded: None
    )
