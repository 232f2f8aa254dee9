"""The enrichment models file (``models.yml``): each model's name, plugin source, priority,
batch settings and the detection classes that trigger it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hearthwatch.runtime.enrichment.registry import EnricherSourceConfig
from hearthwatch.runtime.errors import ServingError
from hearthwatch.runtime.serving.batcher import BatchingConfig

DEFAULT_MODELS_FILE = Path(__file__).with_name("models.yml")
ALWAYS = "always"  # runs on every request, with or without detections
ANY = "*"  # runs when there is any detection


class CatalogError(ServingError, ValueError):
    """The models file is missing or invalid; the message names the file and the field."""


class BatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=1024)
    max_queue_delay_ms: float = Field(5.0, ge=0.0, le=10_000.0)
    max_queue_size: int = Field(1024, ge=1)

    def batching(self) -> BatchingConfig:
        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=self.max_queue_delay_ms,
            max_queue_size=self.max_queue_size,
        )


class ZooModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    priority: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]
    triggers: list[str] = Field(
        min_length=1, description=f"Class names, {ANY!r} (any detection) or {ALWAYS!r}."
    )
    batching: BatchSettings = Field(default_factory=BatchSettings)
    source: EnricherSourceConfig

    @field_validator("triggers")
    @classmethod
    def _always_alone(cls, triggers: list[str]) -> list[str]:
        if ALWAYS in triggers and len(triggers) > 1:
            raise ValueError(f"{ALWAYS!r} already covers every request; list it alone")
        return triggers

    def triggered_by(self, label: str) -> bool:
        return ALWAYS in self.triggers or ANY in self.triggers or label in self.triggers


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ZooModelConfig]

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ZooModelConfig]) -> list[ZooModelConfig]:
        names = [m.name for m in models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must be unique; repeated: {', '.join(repeated)}")
        return models


def load_catalog(path: Path, models_dir: Path) -> list[ZooModelConfig]:
    """The models in ``path``, their weight paths resolved against ``models_dir``."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"cannot read models file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"models file {path} is not valid YAML: {exc}") from None
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise CatalogError(f"models file {path}: {problems}") from None
    return [m.model_copy(update={"source": m.source.under(models_dir)}) for m in catalog.models]
