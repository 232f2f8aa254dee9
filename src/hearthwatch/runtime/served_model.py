"""A detector served behind its dynamic batcher, with its statistics and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hearthwatch.runtime.batcher import (
    BatchingConfig,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)
from hearthwatch.runtime.detections import Detections
from hearthwatch.runtime.metrics import ServingMetrics
from hearthwatch.runtime.sources.base import Detector, warmup_batch_sizes
from hearthwatch.runtime.stats import ModelStats, StageTimes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceOutcome:
    detections: Detections
    queue_s: float
    stages: StageTimes
    batch_size: int

    @property
    def compute_s(self) -> float:
        return self.stages.input_s + self.stages.infer_s + self.stages.output_s


class ServedModel:
    """``infer`` queues one decoded image and returns its detections."""

    def __init__(
        self,
        name: str,
        detector: Detector,
        batching: BatchingConfig,
        metrics: ServingMetrics | None = None,
        version: str = "1",
    ):
        self.name = name
        self.version = version
        self.detector = detector
        self.batching = batching
        self.stats = ModelStats(name, version)
        self._metrics = metrics
        self.batcher: DynamicBatcher[np.ndarray, tuple[Detections, StageTimes]] = DynamicBatcher(
            self._run_batch, batching, name=name
        )
        self.ready = False

    def start(self, warmup: bool = True) -> None:
        if warmup:
            started = time.monotonic()
            self.detector.warmup(warmup_batch_sizes(self.batching.max_batch_size))
            log.info("%s warm-up took %.1f s", self.name, time.monotonic() - started)
        self.batcher.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.batcher.stop()

    def _run_batch(self, images: Sequence[np.ndarray]) -> list[tuple[Detections, StageTimes]]:
        t0 = time.monotonic()
        prepared = self.detector.prepare(images)
        t1 = time.monotonic()
        outputs = self.detector.forward(prepared)
        t2 = time.monotonic()
        detections = self.detector.finish(outputs, prepared)
        stages = StageTimes(t1 - t0, t2 - t1, time.monotonic() - t2)
        self.stats.record_batch(len(images), stages)
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(len(images))
        return [(d, stages) for d in detections]

    async def infer(self, image: np.ndarray, timeout_s: float) -> InferenceOutcome:
        started = time.monotonic()
        try:
            result = await self.batcher.submit(image, timeout_s)
        except QueueFullError:
            self.stats.record_failure("REJECTED", time.monotonic() - started)
            raise
        except DeadlineExceededError:
            self.stats.record_failure("TIMEOUT", time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            self.stats.record_failure("CANCELED", time.monotonic() - started)
            raise
        except Exception:
            self.stats.record_failure("BACKEND", time.monotonic() - started)
            raise
        detections, stages = result.value
        self.stats.record_success(time.monotonic() - started, result.timing.queue_s, stages)
        return InferenceOutcome(detections, result.timing.queue_s, stages, result.timing.batch_size)

    async def infer_many(
        self, images: Sequence[np.ndarray], timeout_s: float
    ) -> list[InferenceOutcome]:
        """Each image is its own request, so they batch with everyone else's."""
        outcomes = await asyncio.gather(
            *(self.infer(img, timeout_s) for img in images), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]
