"""The enrichment plugins by ``type``, as one discriminated pydantic union."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hearthwatch.runtime.enrichment.hf_models import DepthConfig, PetConfig, PoseConfig
from hearthwatch.runtime.enrichment.labels import ClothingConfig, ReidConfig, VehicleConfig
from hearthwatch.runtime.enrichment.threat import ThreatConfig

EnricherSourceConfig = Annotated[
    ThreatConfig
    | PoseConfig
    | ReidConfig
    | ClothingConfig
    | VehicleConfig
    | PetConfig
    | DepthConfig,
    Field(discriminator="type"),
]
