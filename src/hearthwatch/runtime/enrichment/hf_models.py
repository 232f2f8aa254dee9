"""Enrichers on Hugging Face ``transformers`` architectures, loaded from a local directory
(``save_pretrained`` layout): pose keypoints (ViTPose), pet class (any image classifier) and
depth (Depth Anything). With ``random_init`` the architecture is built from its default config
updated by ``config_overrides``, which is how tests make small ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import warn_random
from hearthwatch.runtime.enrichment.base import (
    Enricher,
    EnricherConfig,
    EnrichItem,
    ResizingEnricher,
)
from hearthwatch.runtime.enrichment.labels import LabelEnricher
from hearthwatch.runtime.enrichment.posture import COCO_KEYPOINTS

HfClasses = tuple[type[Any], type[Any]]  # (config class, model class)


class HfConfig(EnricherConfig):
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="With random_init: changes to the default config."
    )

    def _classes(self) -> HfClasses:
        """(config class, model class)."""
        raise NotImplementedError

    def hf_config(self) -> Any:
        config_class, _ = self._classes()
        if self.path is not None:
            return config_class.from_pretrained(self.path, local_files_only=True)
        return config_class(**self.config_overrides)

    def build(self) -> torch.nn.Module:
        _, model_class = self._classes()
        if self.path is not None:
            module: torch.nn.Module = model_class.from_pretrained(self.path, local_files_only=True)
            return module
        if not self.random_init:
            raise ValueError("a local weights directory is required (or random_init: true)")
        warn_random(model_class.__name__)
        module = model_class(self.hf_config())
        return module


class PoseEnricher(ResizingEnricher):
    """Heatmaps → the 17 COCO keypoints in frame pixels, each with its peak as the score."""

    def forward(self, module: torch.nn.Module, prepared: Any) -> Any:
        heatmaps = module(pixel_values=prepared).heatmaps
        batch, joints, height, width = heatmaps.shape
        scores, flat = heatmaps.float().reshape(batch, joints, -1).max(dim=2)
        return scores.cpu(), (flat % width).cpu(), (flat // width).cpu(), (height, width)

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        scores, xs, ys, (height, width) = outputs
        results = []
        for item, s, x, y in zip(items, scores.tolist(), xs.tolist(), ys.tolist(), strict=True):
            crop_h, crop_w = item.image.shape[:2]
            ox, oy = item.origin
            keypoints = [
                {
                    "name": name,
                    "x": ox + (kx + 0.5) * crop_w / width,
                    "y": oy + (ky + 0.5) * crop_h / height,
                    "score": ks,
                }
                for name, kx, ky, ks in zip(COCO_KEYPOINTS, x, y, s, strict=False)
            ]
            results.append({"keypoints": keypoints})
        return results


class PoseConfig(HfConfig):
    type: Literal["pose"] = "pose"
    input_size: tuple[int, int] = Field((256, 192), description="(height, width) of a crop.")

    def _classes(self) -> HfClasses:
        from transformers import VitPoseConfig, VitPoseForPoseEstimation

        return VitPoseConfig, VitPoseForPoseEstimation

    def enricher(self) -> Enricher:
        return PoseEnricher(self.input_size)


class PetConfig(HfConfig):
    type: Literal["pet"] = "pet"
    config_overrides: dict[str, Any] = Field(
        default_factory=lambda: {"id2label": {0: "cat", 1: "dog"}, "label2id": {"cat": 0, "dog": 1}}
    )

    def _classes(self) -> HfClasses:
        from transformers import ViTConfig, ViTForImageClassification

        if self.path is None:
            return ViTConfig, ViTForImageClassification
        from transformers import AutoConfig, AutoModelForImageClassification

        return AutoConfig, AutoModelForImageClassification

    def enricher(self) -> Enricher:
        config = self.hf_config()
        labels = [config.id2label[i] for i in range(len(config.id2label))]
        size = int(config.image_size)
        return LabelEnricher(labels, (size, size), multi_label=False)


class DepthEnricher(ResizingEnricher):
    """Relative depth of the frame; per detection the median inside its box, scaled so the
    frame's nearest point is 1 and its farthest 0."""

    scope = "frame"

    def forward(self, module: torch.nn.Module, prepared: Any) -> Any:
        return module(pixel_values=prepared).predicted_depth.float().cpu().numpy()

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        results = []
        for depth, item in zip(outputs, items, strict=True):
            low, high = float(depth.min()), float(depth.max())
            span = high - low or 1.0
            frame_h, frame_w = item.image.shape[:2]
            sy, sx = depth.shape[0] / frame_h, depth.shape[1] / frame_w
            per_box = []
            for x1, y1, x2, y2 in item.boxes:
                top, left = int(y1 * sy), int(x1 * sx)
                region = depth[top : max(top + 1, int(y2 * sy)), left : max(left + 1, int(x2 * sx))]
                per_box.append({"relative_depth": (float(np.median(region)) - low) / span})
            results.append({"frame": None, "detections": per_box})
        return results


class DepthConfig(HfConfig):
    type: Literal["depth"] = "depth"
    input_size: tuple[int, int] = Field(
        (364, 644), description="(height, width) of the frame; multiples of the patch size."
    )

    def _classes(self) -> HfClasses:
        from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

        return DepthAnythingConfig, DepthAnythingForDepthEstimation

    def enricher(self) -> Enricher:
        return DepthEnricher(self.input_size)
