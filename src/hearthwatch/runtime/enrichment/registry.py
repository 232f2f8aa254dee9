"""The enrichment plugins by ``type``, as one discriminated pydantic union."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hearthwatch.runtime.enrichment.blazepose import BlazePoseConfig
from hearthwatch.runtime.enrichment.face import FaceConfig
from hearthwatch.runtime.enrichment.hf_models import DepthConfig, PetConfig, PoseConfig
from hearthwatch.runtime.enrichment.imagenet_classifier import ImagenetClassifierConfig
from hearthwatch.runtime.enrichment.labels import ClothingConfig, ReidConfig, VehicleConfig
from hearthwatch.runtime.enrichment.reid_mobilenet import ReidMobilenetConfig
from hearthwatch.runtime.enrichment.threat import ThreatConfig

EnricherSourceConfig = Annotated[
    ThreatConfig
    | BlazePoseConfig
    | PoseConfig
    | ReidMobilenetConfig
    | ReidConfig
    | ClothingConfig
    | ImagenetClassifierConfig
    | VehicleConfig
    | PetConfig
    | FaceConfig
    | DepthConfig,
    Field(discriminator="type"),
]
