"""torchvision detection architectures (Faster R-CNN, RetinaNet, FCOS, SSD …) from a local
weights file."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision

from hearthwatch.runtime.accel.graphs import FallbackHook
from hearthwatch.runtime.accel.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.detection.settings import TorchvisionConfig
from hearthwatch.runtime.detection.torch_weights import load_state_dict


def detection_architectures() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def _default_class_names(architecture: str, num_classes: int) -> tuple[str, ...]:
    weights_enum = torchvision.models.get_model_weights(architecture)
    names = list(weights_enum.DEFAULT.meta.get("categories", []))  # type: ignore[attr-defined]
    if len(names) != num_classes:
        names = [f"class_{i}" for i in range(num_classes)]
    return tuple(names)


def resize_aspect_limit(module: torch.nn.Module) -> float | None:
    """The most elongated image a torchvision detector's own resize keeps at least a pixel
    wide (with a margin for rounding): it scales the shorter side to ``min_size`` unless the
    longer would pass ``max_size``. Fixed-size transforms (SSD) take any shape."""
    transform = getattr(module, "transform", None)
    if transform is None or getattr(transform, "fixed_size", None) is not None:
        return None
    return float(transform.max_size) / 2


class TorchvisionDetector(Detector):
    platform = "pytorch_torchvision"

    def __init__(
        self,
        config: TorchvisionConfig,
        device: torch.device,
        optimization: OptimizationSettings,
        on_fallback: FallbackHook,
    ):
        kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None}
        kwargs["num_classes"] = config.num_classes
        if config.min_size is not None:
            kwargs["min_size"] = config.min_size
        if config.max_size is not None:
            kwargs["max_size"] = config.max_size
        module = torchvision.models.get_model(config.architecture, **kwargs)
        load_state_dict(module, config.weights, config.random_init)
        # channels_last gains nothing on a list-of-images model; keep the other passes
        settings = dataclasses.replace(optimization, channels_last=False)
        self.max_aspect_ratio = resize_aspect_limit(module)
        self.model = optimize_module(module, device, settings, on_fallback)
        self.device = device
        self.optimizations = tuple(self.model.applied)
        self.score_floor = config.score_floor
        self.class_names = tuple(
            config.class_names or _default_class_names(config.architecture, config.num_classes)
        )

    def prepare(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        dtype = self.model.dtype
        return [
            torch.from_numpy(img).to(self.device, non_blocking=True).permute(2, 0, 1).to(dtype)
            / 255
            for img in images
        ]

    @torch.inference_mode()
    def forward(self, prepared: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(prepared)  # type: ignore[no-any-return]

    def finish(self, outputs: list[dict[str, torch.Tensor]], prepared: Any) -> list[Detections]:
        results = []
        for out in outputs:
            keep = out["scores"] >= self.score_floor
            results.append(
                Detections(
                    out["boxes"][keep].float().cpu().numpy(),
                    out["scores"][keep].float().cpu().numpy(),
                    out["labels"][keep].cpu().numpy().astype(np.int64),
                )
            )
        return results
