"""The hooks every detection model implements, and the config fields all sources share."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.imaging.preprocess import shape_problem

log = logging.getLogger(__name__)


class Detector(abc.ABC):
    """A loaded detection model in three stages, so each can be timed and overlapped:
    ``prepare`` (host images → model input), ``forward`` (the model), ``finish``
    (model output → per-image :class:`Detections` in each image's own pixels)."""

    platform: str = "unknown"
    class_names: tuple[str, ...] = ()
    device: torch.device = torch.device("cpu")
    optimizations: tuple[str, ...] = ()
    decodes_on_device: bool = False  # True: prepare takes EncodedImage too, decoded there
    max_aspect_ratio: float | None = None  # longest over shortest side the model can resize

    def input_problem(self, height: int, width: int) -> str | None:
        """Why an image of ``width`` x ``height`` cannot run through this model, else None."""
        return shape_problem(height, width, self.max_aspect_ratio, self.platform)

    @abc.abstractmethod
    def prepare(self, images: Sequence[np.ndarray]) -> Any: ...

    @abc.abstractmethod
    def forward(self, prepared: Any) -> Any: ...

    @abc.abstractmethod
    def finish(self, outputs: Any, prepared: Any) -> list[Detections]: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        prepared = self.prepare(images)
        return self.finish(self.forward(prepared), prepared)

    def warmup(self, batch_sizes: Iterable[int], height: int = 720, width: int = 1280) -> None:
        """Run every batch size once on random frames, so the first request pays no set-up."""
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        for size in sorted(set(batch_sizes)):
            self.detect([frame] * size)
        log.info("%s warmed up at batch sizes %s", self.platform, sorted(set(batch_sizes)))
