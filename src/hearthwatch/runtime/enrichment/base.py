"""The hooks every enrichment model implements, and the config fields all of them share.

An enricher runs on crops (one item per triggering detection) or on whole frames (one item per
request, with every detection's box), in three steps like a detector: ``prepare`` (host images
→ one input batch), ``forward`` (the module) and ``finish`` (outputs → one JSON-ready dict per
item). Frame enrichers answer ``{"frame": {...}, "detections": [{...} per box]}``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from hearthwatch.runtime.errors import OverloadedError
from hearthwatch.runtime.imaging.preprocess import normalized_batch, shape_problem
from hearthwatch.runtime.zoo.host_loader import host_loader
from hearthwatch.runtime.zoo.loader import module_loader
from hearthwatch.runtime.zoo.registry import ModelLoader
from hearthwatch.weights.packaged import (
    WeightsOrigin,
    origin_of,
    packaged_file_at,
    packaged_file_problem,
    size_on_disk,
)

Box = tuple[float, float, float, float]


class WeightsChangedError(OverloadedError):
    """A packaged weights file changed after start-up: the model does not load (nothing of the
    request ran) until `hearthwatch models install` restores it."""


Scope = Literal["crop", "frame"]


@dataclass(frozen=True)
class EnrichItem:
    """An RGB image (a crop, or a whole frame), where it sits in the frame (``origin``), and
    for frame enrichers the detections' boxes in its pixels."""

    image: np.ndarray
    origin: tuple[int, int] = (0, 0)
    boxes: tuple[Box, ...] = field(default=())


class Enricher(abc.ABC):
    scope: ClassVar[Scope] = "crop"
    half_precision: ClassVar[bool] = True  # False: kept in fp32 on a GPU too
    max_aspect_ratio: float | None = None  # longest over shortest side the model can resize

    def input_problem(self, height: int, width: int) -> str | None:
        """Why an image of ``width`` x ``height`` cannot run through this model, else None."""
        name = type(self).__name__.removesuffix("Enricher").lower()
        return shape_problem(height, width, self.max_aspect_ratio, f"the {name} model")

    @abc.abstractmethod
    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        """Host images → the module's input batch on ``device``."""

    @abc.abstractmethod
    def forward(self, module: Any, prepared: Any) -> Any:
        """``module``: what the config's ``build`` made (a ``torch.nn.Module``, an OpenCV net)."""

    @abc.abstractmethod
    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]: ...

    def run(
        self,
        module: Any,
        items: Sequence[EnrichItem],
        device: torch.device,
        dtype: torch.dtype,
    ) -> list[dict[str, Any]]:
        with torch.inference_mode():
            return self.finish(self.forward(module, self.prepare(items, device, dtype)), items)


class ResizingEnricher(Enricher):
    """An enricher whose input is every item's image resized to ``input_size`` (height,
    width) and normalised with ImageNet's mean and deviation."""

    def __init__(self, input_size: tuple[int, int]):
        self.input_size = input_size

    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        return normalized_batch([i.image for i in items], self.input_size, device, dtype)


class EnricherConfig(BaseModel):
    """Fields every enrichment plugin accepts."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    runs_on_host: ClassVar[bool] = False
    """True: an OpenCV net or a compiled extension, run on the host whatever the device."""

    path: Path | None = Field(
        None, description="Local weights (file or directory), relative to MODELS_DIR."
    )
    random_init: bool = Field(
        False, description="No weights: random initialisation (tests and benchmarks only)."
    )

    def under(self, models_dir: Path) -> EnricherConfig:
        """This config with ``path`` resolved against ``models_dir``."""
        if self.path is None or self.path.is_absolute():
            return self
        return self.model_copy(update={"path": models_dir / self.path})

    def unavailable_reason(self) -> str | None:
        """Why the model cannot load here, or None when it can."""
        if self.path is None:
            return None if self.random_init else "no weights configured (path)"
        if not self.path.exists():
            if packaged_file_at(self.path) is not None:
                return (
                    f"weights not found at {self.path}; `hearthwatch models install` fetches them"
                )
            return (
                f"weights not found at {self.path}; supply your own (scripts/download_models.py "
                "fetches the published ones some plugins take)"
            )
        return packaged_file_problem(self.path)

    def build(self) -> Any:
        """The model with its weights, on the host (a ``torch.nn.Module`` unless
        :meth:`loader` says otherwise)."""
        raise NotImplementedError

    def enricher(self) -> Enricher:
        raise NotImplementedError

    def loader(
        self,
        device: torch.device,
        dtype: torch.dtype,
        warmup: Callable[[Any], object],
        host_reserve_bytes: int,
    ) -> ModelLoader:
        """How the zoo loads and evicts it: a PyTorch module, moved to ``device``; or, when
        :attr:`runs_on_host`, a model kept on the host whose footprint is its weights."""
        if self.runs_on_host:
            return host_loader(self._checked_build, warmup, self.weights_bytes(), device)
        return module_loader(self._checked_build, device, dtype, warmup, host_reserve_bytes)

    def _checked_build(self) -> Any:
        """:meth:`build`, unless the weights at a packaged file's place changed since start-up
        (a reload after an eviction reads them again)."""
        problem = packaged_file_problem(self.path) if self.path is not None else None
        if problem is not None:
            raise WeightsChangedError(problem, retry_after_s=60)
        return self.build()

    def origin(self) -> WeightsOrigin:
        """Where its weights came from, their licence and size. Reads (and may hash) files:
        call it off the event loop."""
        return origin_of(self.path, self.weights_bytes())

    def weights_bytes(self) -> int:
        """Bytes of the weights on disk (a file, or every file under a directory)."""
        return size_on_disk(self.path)


def sample_items(scope: Scope, count: int) -> list[EnrichItem]:
    """Random items of the usual shape, for warm-up."""
    rng = np.random.default_rng(0)
    if scope == "frame":
        frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        return [EnrichItem(frame, boxes=((10.0, 10.0, 200.0, 300.0),))] * count
    crop = rng.integers(0, 255, (256, 128, 3), dtype=np.uint8)
    return [EnrichItem(crop)] * count
