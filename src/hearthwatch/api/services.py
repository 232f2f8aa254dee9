"""The running services an app serves: built from settings, started and stopped with it."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from hearthwatch.api.errors import ApiError, image_error
from hearthwatch.config import Settings
from hearthwatch.llm.gateway import LlmGateway
from hearthwatch.llm.profiles import HardwareProfile, load_profiles, select_profile
from hearthwatch.llm.supervisor import EngineSupervisor
from hearthwatch.runtime.batcher import BatchingConfig
from hearthwatch.runtime.detections import class_ids_named
from hearthwatch.runtime.device import select_device
from hearthwatch.runtime.device_images import Image
from hearthwatch.runtime.enrichers.catalog import DEFAULT_MODELS_FILE, load_catalog
from hearthwatch.runtime.enrichment import EnrichmentService
from hearthwatch.runtime.images import ImageError, check_encoded, decode_image
from hearthwatch.runtime.metrics import ServingMetrics
from hearthwatch.runtime.optimize import resolve_dtype
from hearthwatch.runtime.served_model import ServedModel
from hearthwatch.runtime.stats import ModelStats
from hearthwatch.runtime.telemetry import TelemetrySampler
from hearthwatch.runtime.zoo import ModelZoo
from hearthwatch.runtime.zoo_memory import GIB, budget_bytes
from hearthwatch.runtime.zoo_metrics import ZooCollector

log = logging.getLogger(__name__)

SECURITY_CLASSES = frozenset(
    {"person", "car", "truck", "dog", "cat", "bird", "bicycle", "motorcycle", "bus"}
)


@dataclass
class Services:
    settings: Settings
    device: torch.device
    telemetry: TelemetrySampler
    metrics: ServingMetrics
    decode_pool: ThreadPoolExecutor
    models: dict[str, ServedModel] = field(default_factory=dict)
    llm: LlmGateway | None = None
    enrichment: EnrichmentService | None = None
    security_ids: dict[str, frozenset[int]] = field(default_factory=dict)

    def model(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"unknown model '{name}'; served models: {known}") from None

    def security_class_ids(self, model: ServedModel) -> frozenset[int]:
        """Indices of the model's classes that the security application reports by default."""
        return self.security_ids[model.name]

    async def decode_bytes(self, data: bytes, label: str | None = None) -> np.ndarray:
        """Decode on the decode pool; bad input raises a 4xx :class:`ApiError`."""
        loop = asyncio.get_running_loop()
        limit = self.settings.max_image_pixels
        try:
            return await loop.run_in_executor(self.decode_pool, decode_image, data, limit)
        except ImageError as exc:
            raise image_error(exc, label) from None

    async def decode(self, model: ServedModel, data: bytes, label: str | None = None) -> Image:
        """:meth:`decode_bytes`, or only its checks when ``model`` decodes on its device (they
        read headers only, so they run here rather than pay a hop to the pool); bad input
        counts as a BAD_INPUT failure of ``model``."""
        try:
            if model.detector.decodes_on_device:
                return self._check(data, label)
            return await self.decode_bytes(data, label)
        except ApiError:
            model.stats.record_failure("BAD_INPUT", 0.0)
            raise

    def _check(self, data: bytes, label: str | None) -> Image:
        try:
            return check_encoded(data, self.settings.max_image_pixels)
        except ImageError as exc:
            raise image_error(exc, label) from None

    def start(self) -> None:
        self.telemetry.start()
        for model in self.models.values():
            model.start(warmup=self.settings.warmup)
        if self.enrichment is not None:
            self.enrichment.start()
        if self.llm is not None:
            self.llm.supervisor.start()

    def drain(self) -> None:
        """Shutting down: what waits in a queue is answered 503 now, what runs finishes."""
        for model in self.models.values():
            model.batcher.drain()
        if self.enrichment is not None:
            self.enrichment.drain()
        if self.llm is not None:
            self.llm.admission.close()

    def stop(self) -> None:
        if self.llm is not None:
            self.llm.supervisor.stop()
        if self.enrichment is not None:
            self.enrichment.stop()
        for model in self.models.values():
            model.stop()
        self.telemetry.stop()
        self.decode_pool.shutdown(wait=False)


def build_services(settings: Settings) -> Services:
    """Load the configured detector; nothing runs until :meth:`Services.start`."""
    device = select_device(settings.use_gpu)
    models: dict[str, ServedModel] = {}

    def pending() -> list[tuple[ModelStats, int]]:
        return [(m.stats, m.batcher.pending) for m in models.values()]

    telemetry = TelemetrySampler(
        settings.gpu_sample_interval_s,
        settings.gpu_history_minutes,
        use_gpu=settings.use_gpu,
        inference_counter=lambda: sum(m.stats.inference_count for m in models.values()),
    )
    metrics = ServingMetrics(pending, telemetry.latest)
    name = settings.model_name

    def on_fallback(pass_name: str, reason: str) -> None:
        metrics.optimization_fallbacks.labels(name, pass_name).inc()

    started = time.monotonic()
    detector = settings.detector.build(device, settings.optimization(), on_fallback)
    metrics.startup_seconds.labels(name, "build").set(time.monotonic() - started)
    batching = BatchingConfig(
        settings.max_batch_size, settings.max_queue_delay_ms, settings.max_queue_size
    )
    overlap = settings.overlap and device.type == "cuda"
    models[name] = ServedModel(name, detector, batching, metrics, overlap=overlap)
    log.info(
        "serving %s (%s) on %s with %s", name, detector.platform, device, detector.optimizations
    )
    pool = ThreadPoolExecutor(settings.decode_workers)
    llm = build_llm(settings, telemetry, metrics) if settings.llm_enabled else None
    enrichment = build_enrichment(settings, device, metrics) if settings.enrich_enabled else None
    security_ids = {
        n: class_ids_named(m.detector.class_names, SECURITY_CLASSES) for n, m in models.items()
    }
    return Services(
        settings, device, telemetry, metrics, pool, models, llm, enrichment, security_ids
    )


def build_enrichment(
    settings: Settings, device: torch.device, metrics: ServingMetrics
) -> EnrichmentService:
    """The enrichment models of the models file, registered in a zoo under the budget."""
    catalog = load_catalog(settings.enrich_models_file or DEFAULT_MODELS_FILE, settings.models_dir)
    budget = budget_bytes(
        device, settings.vram_budget_gb, settings.vram_budget_fraction, settings.vram_reserve_gb
    )
    zoo = ModelZoo(budget)
    metrics.registry.register(ZooCollector(zoo))
    dtype = resolve_dtype(settings.precision, device)
    service = EnrichmentService(catalog, zoo, device, dtype, int(settings.host_reserve_gb * GIB))
    log.info(
        "model zoo: %.2f GiB budget on %s; enrichment models %s, unavailable %s",
        budget / GIB, device, sorted(service.models), sorted(service.unavailable),
    )  # fmt: skip
    return service


def llm_profile(settings: Settings, telemetry: TelemetrySampler | None = None) -> HardwareProfile:
    """The profile named by LLM_PROFILE, else the GPU's, else ``cpu``; unknown names raise."""
    readings = telemetry.nvml.read() if telemetry is not None else []
    gpu_name = readings[0].name if readings else None
    return select_profile(load_profiles(settings.llm_profiles_file), settings.llm_profile, gpu_name)


def build_llm(
    settings: Settings, telemetry: TelemetrySampler, metrics: ServingMetrics
) -> LlmGateway:
    profile = llm_profile(settings, telemetry)
    supervisor = EngineSupervisor(
        settings.llm_engine, profile.engine, settings.llm_startup_timeout_s
    )
    gateway = LlmGateway(supervisor, profile, metrics.registry, settings.llm_request_timeout_s)
    supervisor.on_restart = gateway.metrics.engine_restarts.inc
    log.info("LLM profile %s, engine %s", profile.name, settings.llm_engine.type)
    return gateway
