"""What the routers read from the app's state: :class:`Services`, the protocol naming the parts
of the running services they use (the composition root, :mod:`hearthwatch.app`, builds the
object that satisfies it and puts it on ``app.state.services``), and the lookups on it.

The routers never import the composition root: it is above them (it wires them). Everything
here runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import torch
from fastapi import Request

from hearthwatch.api.errors import ApiError
from hearthwatch.config import Settings
from hearthwatch.llm.gateway import LlmGateway
from hearthwatch.runtime.enrichment.service import EnrichmentService
from hearthwatch.runtime.imaging.decode_pool import DecodePool
from hearthwatch.runtime.observability.metrics import ServingMetrics
from hearthwatch.runtime.observability.telemetry import TelemetrySampler
from hearthwatch.runtime.serving.served_model import ServedModel

if TYPE_CHECKING:  # the pipeline's dependencies are imported only when it is enabled
    from hearthwatch.security.pipeline import Pipeline


class Services(Protocol):
    """The running services as the routers see them: read-only."""

    @property
    def settings(self) -> Settings: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def telemetry(self) -> TelemetrySampler: ...

    @property
    def metrics(self) -> ServingMetrics: ...

    @property
    def decoder(self) -> DecodePool: ...

    @property
    def models(self) -> Mapping[str, ServedModel]: ...

    @property
    def llm(self) -> LlmGateway | None: ...

    @property
    def enrichment(self) -> EnrichmentService | None: ...

    @property
    def pipeline(self) -> Pipeline | None:
        """The camera pipeline, None when PIPELINE_ENABLED is off."""
        ...

    @property
    def security_ids(self) -> Mapping[str, frozenset[int]]:
        """Per served model, the indices of its classes the replies report by default."""
        ...


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def served_model(services: Services, name: str) -> ServedModel:
    """The served detector ``name``; 404 naming the served ones when there is none."""
    try:
        return services.models[name]
    except KeyError:
        known = ", ".join(sorted(services.models)) or "none"
        raise ApiError(404, f"unknown model '{name}'; served models: {known}") from None
