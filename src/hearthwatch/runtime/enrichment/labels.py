"""Crop classifiers on torchvision architectures: vehicle type (one label of 11), clothing
attributes (several labels at once) and re-identification embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torchvision
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import load_state_dict
from hearthwatch.runtime.enrichment.base import (
    Enricher,
    EnricherConfig,
    EnrichItem,
    ResizingEnricher,
)

TorchvisionArch = Literal[
    "resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
    "convnext_tiny",
]  # fmt: skip

VEHICLE_TYPES = (
    "articulated_truck", "background", "bicycle", "bus", "car", "motorcycle",
    "non-motorized_vehicle", "pedestrian", "pickup_truck", "single_unit_truck", "work_van",
)  # fmt: skip
CLOTHING_ATTRIBUTES = (
    "dark_clothing", "hoodie", "hood_up", "face_covering", "hat", "gloves", "backpack",
    "high_visibility_vest", "uniform", "carrying_object",
)  # fmt: skip


class LabelEnricher(ResizingEnricher):
    """Logits → the best label (``multi_label`` false) or every label's probability."""

    def __init__(self, labels: Sequence[str], input_size: tuple[int, int], multi_label: bool,
                 threshold: float = 0.5):  # fmt: skip
        self.labels = tuple(labels)
        super().__init__(input_size)
        self.multi_label = multi_label
        self.threshold = threshold

    def forward(self, module: torch.nn.Module, prepared: Any) -> Any:
        outputs = module(prepared)
        return getattr(outputs, "logits", outputs).float().cpu()

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        if self.multi_label:
            probabilities = torch.sigmoid(outputs).tolist()
            return [
                {
                    "scores": dict(zip(self.labels, p, strict=True)),
                    "present": [
                        n for n, s in zip(self.labels, p, strict=True) if s >= self.threshold
                    ],
                }
                for p in probabilities
            ]
        softmax = torch.softmax(outputs, dim=1)
        scores, best = softmax.max(dim=1)
        return [
            {"label": self.labels[b], "score": s}
            for b, s in zip(best.tolist(), scores.tolist(), strict=True)
        ]


class EmbeddingEnricher(ResizingEnricher):
    """Outputs → unit-length embeddings, for matching the same person across cameras."""

    def forward(self, module: torch.nn.Module, prepared: Any) -> Any:
        return torch.nn.functional.normalize(module(prepared).float(), dim=1).cpu()

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        return [{"embedding": row} for row in outputs.tolist()]


class TorchvisionHeadConfig(EnricherConfig):
    """A torchvision architecture whose last layer has this plugin's outputs; ``path`` is a
    state dict saved with ``torch.save``."""

    arch: TorchvisionArch = "efficientnet_b0"
    input_size: tuple[int, int] = Field((224, 224), description="(height, width) of a crop.")

    def outputs(self) -> int:
        raise NotImplementedError

    def build(self) -> torch.nn.Module:
        module = torchvision.models.get_model(self.arch, weights=None, num_classes=self.outputs())
        load_state_dict(module, self.path, self.random_init)
        return module


class VehicleConfig(TorchvisionHeadConfig):
    type: Literal["vehicle"] = "vehicle"
    labels: list[str] = Field(default_factory=lambda: list(VEHICLE_TYPES))

    def outputs(self) -> int:
        return len(self.labels)

    def enricher(self) -> Enricher:
        return LabelEnricher(self.labels, self.input_size, multi_label=False)


class ClothingConfig(TorchvisionHeadConfig):
    type: Literal["clothing"] = "clothing"
    input_size: tuple[int, int] = (256, 128)
    attributes: list[str] = Field(default_factory=lambda: list(CLOTHING_ATTRIBUTES))
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Probability for 'present'.")

    def outputs(self) -> int:
        return len(self.attributes)

    def enricher(self) -> Enricher:
        return LabelEnricher(self.attributes, self.input_size, True, self.threshold)


class ReidConfig(TorchvisionHeadConfig):
    type: Literal["reid"] = "reid"
    arch: TorchvisionArch = "resnet18"
    input_size: tuple[int, int] = (256, 128)
    embedding_dim: int = Field(512, ge=8, le=4096)

    def outputs(self) -> int:
        return self.embedding_dim

    def enricher(self) -> Enricher:
        return EmbeddingEnricher(self.input_size)
