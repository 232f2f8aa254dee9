"""A detector served behind its dynamic batcher, with its statistics and metrics.

:class:`ServedModel`'s coroutines run on one event loop; the model runs on the batcher's worker
thread (and, with ``overlap``, a device thread), and its statistics are thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hearthwatch.runtime.accel.graphs import bucket_sizes
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.imaging.decode import ImageError
from hearthwatch.runtime.imaging.decode_pool import DecodePool
from hearthwatch.runtime.imaging.device_decode import Image, UndecodableImagesError
from hearthwatch.runtime.observability.metrics import ServingMetrics
from hearthwatch.runtime.serving.batcher import (
    BatcherStoppedError,
    BatchingConfig,
    BatchTooLargeError,
    DeadlineExceededError,
    DynamicBatcher,
    Outputs,
    QueueFullError,
)
from hearthwatch.runtime.serving.stats import ModelStats, StageTimes

log = logging.getLogger(__name__)


Answer = tuple[Detections, StageTimes]
Reply = Answer | ImageError  # an image that could not be decoded fails alone, as its error


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
        *,
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
        self.batcher: DynamicBatcher[Image, Answer] = DynamicBatcher(
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
        """Finish what is queued and running, then end the worker and the device thread; a
        worker still busy after the batcher's own bound leaves the device thread to end with
        its last batch rather than holding shutdown with it."""
        self.ready = False
        self.batcher.stop()
        if self._device_thread is not None:
            self._device_thread.shutdown(wait=not self.batcher.running)

    def _run_batch(self, images: Sequence[Image]) -> Outputs[Answer] | Future[Outputs[Answer]]:
        started = time.monotonic()
        bad: dict[int, ImageError] = {}
        try:
            prepared = self.detector.prepare(images)  # type: ignore[arg-type]  # see decodes_on_device
        except UndecodableImagesError as exc:  # the rest of the batch runs without them
            bad = exc.errors
            images = [im for i, im in enumerate(images) if i not in bad]
            prepared = self.detector.prepare(images) if images else None  # type: ignore[arg-type]
        input_s = time.monotonic() - started

        def complete() -> Outputs[Answer]:
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

    async def intake(self, data: bytes, decoder: DecodePool, label: str | None = None) -> Image:
        """Encoded ``data`` as this model takes it: decoded on ``decoder``'s pool, or only
        checked (its header only) when the detector decodes on its device. Bad input raises
        :class:`ImageError` (with ``label`` in front) and counts as a BAD_INPUT failure."""
        try:
            if self.detector.decodes_on_device:
                return await decoder.check(data, label)
            return await decoder.decode(data, label)
        except ImageError:
            self.stats.record_failure("BAD_INPUT", 0.0)
            raise

    def check_input(self, image: Image, label: str | None = None) -> None:
        """Refuse, before it can join a batch, an image the detector cannot take."""
        height, width = image.shape[:2]
        problem = self.detector.input_problem(int(height), int(width))
        if problem is not None:
            self.stats.record_failure("BAD_INPUT", 0.0)
            raise ImageError("unusable_shape", f"{label}: {problem}" if label else problem)

    async def infer(self, image: Image, timeout_s: float) -> InferenceOutcome:
        return (await self.infer_many([image], timeout_s))[0]

    async def infer_many(self, images: Sequence[Image], timeout_s: float) -> list[InferenceOutcome]:
        """Queue every image at once, each its own request so they batch with everyone
        else's; all are checked first, and none is queued if the queue cannot take them all.
        Raises the first error any image met, after each has been answered."""
        for i, image in enumerate(images):
            self.check_input(image, f"image {i}" if len(images) > 1 else None)
        started = time.monotonic()
        try:
            answers = await self.batcher.submit_many(images, timeout_s)
        except (QueueFullError, BatchTooLargeError, BatcherStoppedError):
            for _ in images:
                self.stats.record_failure("REJECTED", time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            for _ in images:
                self.stats.record_failure("CANCELED", time.monotonic() - started)
            raise
        outcomes: list[InferenceOutcome] = []
        first_error: BaseException | None = None
        for answer in answers:
            elapsed = time.monotonic() - started
            if isinstance(answer, BaseException):
                self.stats.record_failure(_failure_reason(answer), elapsed)
                first_error = first_error or answer
                continue
            detections, stages = answer.value
            self.stats.record_success(elapsed, answer.timing.queue_s, stages)
            outcomes.append(
                InferenceOutcome(
                    detections, answer.timing.queue_s, stages, answer.timing.batch_size
                )
            )
        if first_error is not None:
            raise first_error
        return outcomes


def _failure_reason(error: BaseException) -> str:
    """The ``nv_inference_request_failure`` reason of an image's error."""
    if isinstance(error, DeadlineExceededError):
        return "TIMEOUT"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELED"
    return "BAD_INPUT" if isinstance(error, ImageError) else "BACKEND"
