"""The running services the app serves: built from the settings, started and stopped with it.

:func:`build_services` is the composition root of the serving side: the only place that knows
every part (device, detector, batching, metrics, telemetry, the model zoo and enrichment, the
LLM gateway) and wires them together. :meth:`Services.start` starts the parts in order
(telemetry, models, enrichment, the LLM engine) and, if one fails, stops it and every part
started before it, in reverse order, before re-raising, so a failed start-up leaves no thread
or engine process behind. Start and stop run on one thread at a time (the app's lifespan); the
parts they start are thread-safe. The routers read a :class:`Services` through
:class:`hearthwatch.api.state.Services`, the protocol that names what they use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from hearthwatch.config import Settings
from hearthwatch.llm.gateway import LlmGateway
from hearthwatch.llm.profiles import (
    HardwareProfile,
    cuda_device_name,
    load_profiles,
    reconcile_gpu_names,
    select_profile,
)
from hearthwatch.llm.supervisor import EngineSupervisor
from hearthwatch.runtime.accel.device import select_device
from hearthwatch.runtime.accel.optimize import resolve_dtype
from hearthwatch.runtime.detection.detections import class_ids_named
from hearthwatch.runtime.detection.settings import default_detector
from hearthwatch.runtime.enrichment.catalog import DEFAULT_MODELS_FILE, load_catalog
from hearthwatch.runtime.enrichment.service import EnrichmentService
from hearthwatch.runtime.imaging.decode_pool import DecodePool
from hearthwatch.runtime.observability.metrics import ServingMetrics, TritonStats
from hearthwatch.runtime.observability.telemetry import Nvml, TelemetrySampler
from hearthwatch.runtime.serving.batcher import BatchingConfig
from hearthwatch.runtime.serving.served_model import ServedModel
from hearthwatch.runtime.zoo.memory import GIB, budget_bytes
from hearthwatch.runtime.zoo.metrics import ZooCollector
from hearthwatch.runtime.zoo.registry import ModelZoo

if TYPE_CHECKING:  # imported only when the pipeline is enabled (SQLAlchemy, PyAV)
    from hearthwatch.security.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    device: torch.device
    telemetry: TelemetrySampler
    metrics: ServingMetrics
    decoder: DecodePool
    models: dict[str, ServedModel] = field(default_factory=dict)
    llm: LlmGateway | None = None
    enrichment: EnrichmentService | None = None
    security_ids: dict[str, frozenset[int]] = field(default_factory=dict)
    """Per served model, the indices of its classes the replies report by default."""
    pipeline: Pipeline | None = None
    """The camera pipeline, built and started on the event loop (:func:`build_pipeline`)."""

    def start(self) -> None:
        """Start every part; on a failure, stop what was started (the failing part too: it
        may have started threads or a process before failing), then re-raise."""
        started: list[Callable[[], None]] = [self.decoder.shutdown]
        try:
            started.append(self.telemetry.stop)
            self.telemetry.start()
            for model in self.models.values():
                started.append(model.stop)
                model.start(warmup=self.settings.warmup)
            if self.enrichment is not None:
                started.append(self.enrichment.stop)
                self.enrichment.start()
            if self.llm is not None:
                started.append(self.llm.supervisor.stop)
                self.llm.supervisor.start()
        except BaseException:
            log.error("start-up failed; stopping what had started")
            for stop in reversed(started):
                try:
                    stop()
                except Exception:
                    log.exception("stopping after a failed start-up failed")
            raise

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
        self.decoder.shutdown()


def hog_fallback_warning(settings: Settings) -> str | None:
    """What to tell an operator served HOG because YOLOv3-tiny is not installed, or None."""
    if settings.detector.type != "hog" or default_detector(settings.models_dir).type != "hog":
        return None
    return (
        f"the packaged YOLOv3-tiny is not under {settings.models_dir}: serving OpenCV's HOG, "
        "which finds people only and misses most; `hearthwatch models install` fetches it"
    )


def build_services(settings: Settings) -> Services:
    """Load the configured detector; nothing runs until :meth:`Services.start`."""
    device = select_device(settings.use_gpu)
    models: dict[str, ServedModel] = {}

    def pending() -> list[tuple[TritonStats, int]]:
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
        max_batch_size=settings.max_batch_size,
        max_queue_delay_ms=settings.max_queue_delay_ms,
        max_queue_size=settings.max_queue_size,
        min_queue_delay_ms=settings.min_queue_delay_ms,
    )
    overlap = settings.overlap and device.type == "cuda"
    models[name] = ServedModel(name, detector, batching, metrics=metrics, overlap=overlap)
    log.info(
        "serving %s (%s) on %s with %s", name, detector.platform, device, detector.optimizations
    )
    fallback = hog_fallback_warning(settings)
    if fallback is not None:
        log.warning("%s", fallback)
    decoder = DecodePool(workers=settings.decode_workers, max_pixels=settings.max_image_pixels)
    llm = build_llm(settings, telemetry, metrics) if settings.llm_enabled else None
    enrichment = build_enrichment(settings, device, metrics) if settings.enrich_enabled else None
    security = set(settings.security_classes)
    security_ids = {n: class_ids_named(m.detector.class_names, security) for n, m in models.items()}
    return Services(
        settings, device, telemetry, metrics, decoder, models, llm, enrichment, security_ids
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


def llm_profile(settings: Settings, nvml: Nvml | None = None) -> HardwareProfile:
    """The profile named by LLM_PROFILE, else the GPU's (NVML's name, or torch.cuda's when NVML
    sees none), else ``cpu``; unknown names raise. USE_GPU=false means ``cpu``."""
    profiles = load_profiles(settings.llm_profiles_file)
    if settings.llm_profile or not settings.use_gpu:
        return select_profile(profiles, settings.llm_profile, None)
    readings = (nvml or Nvml()).read()
    gpu_name = reconcile_gpu_names(readings[0].name if readings else None, cuda_device_name())
    return select_profile(profiles, None, gpu_name)


def build_llm(
    settings: Settings, telemetry: TelemetrySampler, metrics: ServingMetrics
) -> LlmGateway:
    profile = llm_profile(settings, telemetry.nvml)
    supervisor = EngineSupervisor(
        settings.llm_engine, profile.engine, settings.llm_startup_timeout_s
    )
    gateway = LlmGateway(supervisor, profile, metrics.registry, settings.llm_request_timeout_s)
    supervisor.on_restart = gateway.metrics.engine_restarts.inc
    log.info("LLM profile %s, engine %s", profile.name, settings.llm_engine.type)
    return gateway


def build_pipeline(services: Services) -> Pipeline:
    """The camera pipeline on the served detector and the enrichment service; it imports
    SQLAlchemy, Alembic and PyAV, so only when PIPELINE_ENABLED is on. Start it on the loop."""
    from hearthwatch.security.analysis.engines import GatewayEngine
    from hearthwatch.security.detector_link import ServedDetector
    from hearthwatch.security.pipeline import Pipeline
    from hearthwatch.security.tracker import continuation_score

    settings = services.settings
    detector = ServedDetector(
        services.models[settings.model_name],
        threshold=continuation_score(settings.detection_confidence_threshold),
        timeout_s=settings.request_timeout_ms / 1000,
    )
    engine = GatewayEngine(services.llm) if services.llm is not None else None
    return Pipeline(
        settings, detector, services.enrichment, services.metrics.registry, chat_engine=engine
    )
