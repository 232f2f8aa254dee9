"""The enrichment service: for one image and its detections, runs every model the detections
trigger, each through the model zoo (loaded on demand under the memory budget, leased while in
use) and its own dynamic batcher, so crops batch across detections and across requests.

Out of memory while a model runs: the zoo evicts what that model may evict and the work is
tried once more, then :class:`~hearthwatch.runtime.zoo.registry.ZooFullError` (overloaded: a
503 for an HTTP caller).

:class:`EnrichmentService` is event-loop-confined (its zoo is); each model's batcher runs the
model on its own worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hearthwatch.runtime.enrichment.base import Box, Enricher, EnrichItem, sample_items
from hearthwatch.runtime.enrichment.catalog import ALWAYS, ZooModelConfig
from hearthwatch.runtime.errors import InvalidInputError
from hearthwatch.runtime.serving.batcher import DynamicBatcher
from hearthwatch.runtime.zoo.loader import LoadedModule
from hearthwatch.runtime.zoo.registry import ModelOutOfMemoryError, ModelZoo, Priority, ZooFullError

log = logging.getLogger(__name__)

Job = tuple[LoadedModule, EnrichItem]


class EnrichRequestError(InvalidInputError):
    """A request the service cannot run as asked: an unusable box or an unknown model."""


@dataclass(frozen=True)
class InputDetection:
    label: str
    box: Box


@dataclass
class EnrichmentResult:
    """Per detection, each model's result by name; frame-wide results by model name."""

    detections: list[dict[str, Any]]
    frame: dict[str, Any] = field(default_factory=dict)
    models_run: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchCounts:
    batches: int = 0
    items: int = 0

    def add(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.items += size


@dataclass
class _Model:
    enricher: Enricher
    batcher: DynamicBatcher[Job, dict[str, Any]]
    counts: BatchCounts


class EnrichmentService:
    def __init__(
        self,
        catalog: Sequence[ZooModelConfig],
        zoo: ModelZoo,
        device: torch.device,
        dtype: torch.dtype,
        host_reserve_bytes: int,
    ):
        self.zoo = zoo
        self.device = device
        self.catalog = list(catalog)
        self.unavailable: dict[str, str] = {}
        self.models: dict[str, _Model] = {}
        for config in catalog:
            reason = config.source.unavailable_reason()
            if reason is not None:
                log.warning("enrichment model %s is unavailable: %s", config.name, reason)
                self.unavailable[config.name] = reason
                continue
            enricher = config.source.enricher()
            model_dtype = dtype if enricher.half_precision else torch.float32
            # host-run models keep their activation buffers: warm them at their largest batch
            # so the footprint measured at load covers it
            biggest = device.type == "cuda" or config.source.runs_on_host
            warmup_size = config.batching.max_batch_size if biggest else 1
            items = sample_items(enricher.scope, warmup_size)

            warmup = functools.partial(enricher.run, items=items, device=device, dtype=model_dtype)
            loader = config.source.loader(device, model_dtype, warmup, host_reserve_bytes)
            zoo.register(config.name, Priority[config.priority], loader)
            counts = BatchCounts()
            batcher: DynamicBatcher[Job, dict[str, Any]] = DynamicBatcher(
                self._batch_runner(enricher, model_dtype),
                config.batching.batching(),
                name=f"enrich-{config.name}",
                on_batch=counts.add,
            )
            self.models[config.name] = _Model(enricher, batcher, counts)

    def _batch_runner(
        self, enricher: Enricher, dtype: torch.dtype
    ) -> Callable[[Sequence[Job]], list[dict[str, Any]]]:
        def run(jobs: Sequence[Job]) -> list[dict[str, Any]]:
            module = jobs[0][0].module  # every job holds a lease on the same loaded module
            try:
                return enricher.run(module, [item for _, item in jobs], self.device, dtype)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise ModelOutOfMemoryError(str(exc).splitlines()[0]) from exc

        return run

    def start(self) -> None:
        for model in self.models.values():
            model.batcher.start()

    def drain(self) -> None:
        for model in self.models.values():
            model.batcher.drain()

    def stop(self) -> None:
        for model in self.models.values():
            model.batcher.stop()

    # -- requests ----------------------------------------------------------------------------
    def plan(
        self, detections: Sequence[InputDetection], only: Sequence[str] | None = None
    ) -> tuple[dict[str, list[int]], dict[str, str]]:
        """(model → indices of the detections that trigger it, triggered but unavailable
        model → why) for this request; ``always`` models run with every detection's box."""
        configs = self.catalog
        if only is not None:
            known = [c.name for c in configs]
            unknown = sorted(set(only) - set(known))
            if unknown:
                raise EnrichRequestError(
                    f"unknown enrichment model(s) {', '.join(unknown)}; known: {', '.join(known)}"
                )
            bad = [n for n in only if n in self.unavailable]
            if bad:
                raise EnrichRequestError(
                    "; ".join(f"model {n!r} is unavailable: {self.unavailable[n]}" for n in bad)
                )
            configs = [c for c in configs if c.name in only]
        runs: dict[str, list[int]] = {}
        skipped: dict[str, str] = {}
        for config in configs:
            indices = [i for i, d in enumerate(detections) if config.triggered_by(d.label)]
            if not indices and ALWAYS not in config.triggers:
                continue
            if config.name in self.unavailable:
                skipped[config.name] = self.unavailable[config.name]
            else:
                runs[config.name] = indices
        return runs, skipped

    async def enrich(
        self,
        image: np.ndarray,
        detections: Sequence[InputDetection],
        timeout_s: float,
        only: Sequence[str] | None = None,
    ) -> EnrichmentResult:
        boxes = [_clipped(d.box, image, i) for i, d in enumerate(detections)]
        runs, skipped = self.plan(detections, only)
        self._check_frame(image, runs)
        result = EnrichmentResult([{} for _ in detections], unavailable=skipped)
        deadline = time.monotonic() + timeout_s
        names = list(runs)
        tasks = [
            asyncio.create_task(self._run_model(n, image, boxes, runs[n], deadline)) for n in names
        ]
        try:
            outputs = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for name, output in zip(names, outputs, strict=True):
            indices = runs[name]
            if self.models[name].enricher.scope == "frame":
                if output[0]["frame"] is not None:
                    result.frame[name] = output[0]["frame"]
                per_box = output[0]["detections"] or []
            else:
                per_box = output
            for index, value in zip(indices, per_box, strict=False):
                result.detections[index][name] = value
        result.models_run = names
        return result

    def _check_frame(self, image: np.ndarray, runs: dict[str, list[int]]) -> None:
        """Refuse a frame that a frame model of this request cannot take, before any runs."""
        for name in runs:
            if self.models[name].enricher.scope == "frame":
                self._check_input(name, image, "image")

    def _check_input(self, name: str, image: np.ndarray, label: str) -> None:
        """Refuse an image model ``name`` cannot take (:meth:`Enricher.input_problem`)."""
        problem = self.models[name].enricher.input_problem(image.shape[0], image.shape[1])
        if problem is not None:
            raise EnrichRequestError(f"{label}: {problem} (model {name!r})")

    def _items(
        self,
        name: str,
        image: np.ndarray,
        boxes: list[tuple[int, int, int, int]],
        indices: list[int],
    ) -> list[EnrichItem]:
        if self.models[name].enricher.scope == "frame":
            frame_boxes = tuple((float(x1), float(y1), float(x2), float(y2))
                                for x1, y1, x2, y2 in (boxes[i] for i in indices))  # fmt: skip
            return [EnrichItem(image, boxes=frame_boxes)]
        items = []
        for i in indices:
            x1, y1, x2, y2 = boxes[i]
            items.append(EnrichItem(np.ascontiguousarray(image[y1:y2, x1:x2]), origin=(x1, y1)))
        return items

    async def _run_model(
        self,
        name: str,
        image: np.ndarray,
        boxes: list[tuple[int, int, int, int]],
        indices: list[int],
        deadline: float,
    ) -> list[dict[str, Any]]:
        return await self._shielded_run(name, self._items(name, image, boxes, indices), deadline)

    async def _shielded_run(
        self, name: str, items: list[EnrichItem], deadline: float
    ) -> list[dict[str, Any]]:
        # shielded: a request that goes away still lets its queued work end before the lease does
        return await asyncio.shield(self._leased_run(name, items, deadline))

    async def _leased_run(
        self, name: str, items: list[EnrichItem], deadline: float
    ) -> list[dict[str, Any]]:
        try:
            return await self._run_once(name, items, deadline)
        except ModelOutOfMemoryError:
            evicted = await self.zoo.relieve(name, _left(deadline))
            log.warning("out of memory running %s: evicted %d model(s), once more", name, evicted)
        try:
            return await self._run_once(name, items, deadline)
        except ModelOutOfMemoryError:
            raise ZooFullError(f"out of memory running {name!r}, even after evicting") from None

    async def _run_once(
        self, name: str, items: list[EnrichItem], deadline: float
    ) -> list[dict[str, Any]]:
        """Every item through the model's batcher under one lease, held until all are done."""
        batcher = self.models[name].batcher
        async with self.zoo.lease(name, _left(deadline)) as loaded:
            answers = await asyncio.gather(
                *(batcher.submit((loaded, item), _left(deadline)) for item in items),
                return_exceptions=True,
            )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return [a.value for a in answers if not isinstance(a, BaseException)]

    async def run_on_images(
        self, name: str, images: Sequence[np.ndarray], timeout_s: float
    ) -> list[dict[str, Any]]:
        """Model ``name`` on whole RGB images (each the crop of a crop model, or the frame of a
        frame model with one box covering it), under one lease and through its batcher: its
        result for each image."""
        if name not in self.models:
            if name in self.unavailable:
                raise EnrichRequestError(f"model {name!r} is unavailable: {self.unavailable[name]}")
            known = ", ".join(c.name for c in self.catalog)
            raise EnrichRequestError(f"unknown enrichment model {name!r}; known: {known}")
        for index, image in enumerate(images):
            self._check_input(name, image, f"image {index}")
        frame = self.models[name].enricher.scope == "frame"
        items = [
            EnrichItem(
                np.ascontiguousarray(image),
                boxes=((0.0, 0.0, float(image.shape[1]), float(image.shape[0])),) if frame else (),
            )
            for image in images
        ]
        return await self._shielded_run(name, items, time.monotonic() + timeout_s)


def _left(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())


def _clipped(box: Box, image: np.ndarray, index: int) -> tuple[int, int, int, int]:
    """The box in whole pixels inside the image; a box with no area inside it is refused."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise EnrichRequestError(f"detections[{index}].bbox: x2 > x1 and y2 > y1 are required")
    left, top = max(0, int(x1)), max(0, int(y1))
    right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    if right <= left or bottom <= top:
        raise EnrichRequestError(
            f"detections[{index}].bbox lies outside the {width}x{height} image"
        )
    return left, top, right, bottom
