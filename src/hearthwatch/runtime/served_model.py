"""A detector served behind its dynamic batcher, with its statistics and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hearthwatch.runtime.batcher import (
    BatchingConfig,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)
from hearthwatch.runtime.detections import Detections
from hearthwatch.runtime.device_images import Image, UndecodableImagesError
from hearthwatch.runtime.graphs import bucket_sizes
from hearthwatch.runtime.images import ImageError
from hearthwatch.runtime.metrics import ServingMetrics
from hearthwatch.runtime.sources.base import Detector
from hearthwatch.runtime.stats import ModelStats, StageTimes

log = logging.getLogger(__name__)


Answer = tuple[Detections, StageTimes]
Reply = Answer | ImageError  # an image that could not be decoded fails alone


def _with_errors(answers: Sequence[Answer], errors: dict[int, ImageError]) -> list[Reply]:
    """``answers`` in order with each error back at its index."""
    replies: list[Reply] = []
    remaining = iter(answers)
    for i in range(len(answers) + len(errors)):
        replies.append(errors[i] if i in errors else next(remaining))
    return replies


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
    """``infer`` queues one image (decoded, or checked bytes for a detector that decodes on
    its device) and returns its detections.

    With ``overlap`` the batcher's thread prepares batch N+1 (decode, copy, resize) while a
    device thread runs the model on batch N and post-processes it.
    """

    def __init__(
        self,
        name: str,
        detector: Detector,
        batching: BatchingConfig,
        metrics: ServingMetrics | None = None,
        version: str = "1",
        overlap: bool = False,
    ):
        self.name = name
        self.version = version
        self.detector = detector
        self.batching = batching
        self.stats = ModelStats(name, version)
        self._metrics = metrics
        self._device_thread = (
            ThreadPoolExecutor(1, thread_name_prefix=f"{name}-device") if overlap else None
        )
        self.batcher: DynamicBatcher[Image, Reply] = DynamicBatcher(
            self._run_batch, batching, name=name, max_in_flight=2 if overlap else 1
        )
        self.ready = False

    def start(self, warmup: bool = True) -> None:
        if warmup:
            started = time.monotonic()
            self.detector.warmup(bucket_sizes(self.batching.max_batch_size))
            seconds = time.monotonic() - started
            log.info("%s warm-up took %.1f s", self.name, seconds)
            if self._metrics is not None:
                self._metrics.startup_seconds.labels(self.name, "warmup").set(seconds)
        self.batcher.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.batcher.stop()
        if self._device_thread is not None:
            self._device_thread.shutdown(wait=True)

    def _run_batch(self, images: Sequence[Image]) -> Sequence[Reply] | Future[Sequence[Reply]]:
        started = time.monotonic()
        bad: dict[int, ImageError] = {}
        try:
            prepared = self.detector.prepare(images)  # type: ignore[arg-type]  # see decodes_on_device
        except UndecodableImagesError as exc:  # the rest of the batch runs without them
            bad = exc.errors
            images = [im for i, im in enumerate(images) if i not in bad]
            prepared = self.detector.prepare(images) if images else None  # type: ignore[arg-type]
        input_s = time.monotonic() - started

        def complete() -> Sequence[Reply]:
            answers = self._complete(len(images), prepared, input_s) if images else []
            return _with_errors(answers, bad)

        if self._device_thread is None:
            return complete()
        return self._device_thread.submit(complete)

    def _complete(self, count: int, prepared: Any, input_s: float) -> Sequence[Answer]:
        started = time.monotonic()
        outputs = self.detector.forward(prepared)
        forwarded = time.monotonic()
        detections = self.detector.finish(outputs, prepared)
        stages = StageTimes(input_s, forwarded - started, time.monotonic() - forwarded)
        self.stats.record_batch(count, stages)
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(count)
        return [(d, stages) for d in detections]

    async def infer(self, image: Image, timeout_s: float) -> InferenceOutcome:
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
        if isinstance(result.value, ImageError):
            self.stats.record_failure("BAD_INPUT", time.monotonic() - started)
            raise result.value
        detections, stages = result.value
        self.stats.record_success(time.monotonic() - started, result.timing.queue_s, stages)
        return InferenceOutcome(detections, result.timing.queue_s, stages, result.timing.batch_size)

    async def infer_many(self, images: Sequence[Image], timeout_s: float) -> list[InferenceOutcome]:
        """Each image is its own request, so they batch with everyone else's."""
        outcomes = await asyncio.gather(
            *(self.infer(img, timeout_s) for img in images), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]
