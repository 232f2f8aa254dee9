"""Threat detection on whole frames (guns, knives): a torchvision detector whose classes are
the threats; every request runs it, with or without detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torchvision
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import load_state_dict
from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig, EnrichItem
from hearthwatch.runtime.imaging.preprocess import shrunk

ThreatArch = Literal["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]


class ThreatEnricher(Enricher):
    scope = "frame"
    half_precision = False  # torchvision's detection heads post-process in fp32

    def __init__(self, labels: Sequence[str], max_side: int, score_threshold: float):
        self.labels = tuple(labels)
        self.max_side = max_side
        self.score_threshold = score_threshold
        # shrunk to max_side, then resized by the detector's own transform (max 640)
        self.max_aspect_ratio = max_side / 2

    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        frames, scales = [], []
        for item in items:
            image, scale = shrunk(item.image, self.max_side)
            tensor = torch.from_numpy(image).to(device, non_blocking=True).permute(2, 0, 1)
            frames.append(tensor.to(dtype).div_(255))
            scales.append(scale)
        return frames, scales

    def forward(self, module: torch.nn.Module, prepared: Any) -> Any:
        frames, scales = prepared
        outputs = module(frames)
        return [
            ({k: v.cpu() for k, v in out.items()}, scale)
            for out, scale in zip(outputs, scales, strict=True)
        ]

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        results = []
        for found, scale in outputs:
            keep = found["scores"] >= self.score_threshold
            boxes = (found["boxes"][keep] / scale).tolist()
            threats = [
                {"label": self.labels[int(c) - 1], "score": float(s), "box": b}
                for c, s, b in zip(found["labels"][keep], found["scores"][keep], boxes, strict=True)
            ]
            results.append({"frame": {"threats": threats}, "detections": None})
        return results


class ThreatConfig(EnricherConfig):
    type: Literal["threat"] = "threat"
    arch: ThreatArch = "ssdlite320_mobilenet_v3_large"
    labels: list[str] = Field(default_factory=lambda: ["gun", "knife"], min_length=1)
    max_side: int = Field(640, ge=64, description="Frames are shrunk to this longest side first.")
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)

    def build(self) -> torch.nn.Module:
        module = torchvision.models.get_model(
            self.arch, weights=None, weights_backbone=None, num_classes=len(self.labels) + 1
        )
        load_state_dict(module, self.path, self.random_init)
        return module

    def enricher(self) -> Enricher:
        return ThreatEnricher(self.labels, self.max_side, self.score_threshold)
