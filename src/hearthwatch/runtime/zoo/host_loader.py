"""Zoo loader for models that always run on the host, whatever the serving device: OpenCV DNN
nets and compiled extensions (BlazePose through ``cv2.dnn``, YuNet). Load builds the model from
disk and warms it up; eviction drops it, keeping no host copy (a rebuild reads a few megabytes
and takes milliseconds).

A footprint is what the model holds in host memory when the zoo budgets host memory, on the
CPU: the process's resident growth while it was built and warmed up (at its largest batch, so
the activations of the biggest run count), or its weights' bytes if that is more. OpenCV
reports no dependable figure for every graph, and a DNN net keeps its activation buffers:
BlazePose holds about 36 MB per framed crop of its batch beside 6 MB of weights. The growth is
approximate: another thread allocating meanwhile counts too. On a GPU the zoo budgets device
memory, which these models never touch, so they count 0.

Thread-safe: the functions run in the zoo's worker threads and share no state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hearthwatch.runtime.zoo.loader import LoadedModule
from hearthwatch.runtime.zoo.memory import resident_bytes
from hearthwatch.runtime.zoo.registry import ModelLoader


def host_loader(
    build: Callable[[], Any],
    warmup: Callable[[Any], object],
    host_bytes: int,
    device: torch.device,
) -> ModelLoader:
    def load(host: LoadedModule | None) -> LoadedModule:
        before = resident_bytes()
        model = build()
        warmup(model)
        after = resident_bytes()
        if device.type == "cuda":
            return LoadedModule(model, 0)
        grown = after - before if after is not None and before is not None else 0
        return LoadedModule(model, max(host_bytes, grown))

    return ModelLoader(
        load=load, measure=lambda loaded: loaded.footprint, release=lambda loaded: None
    )
