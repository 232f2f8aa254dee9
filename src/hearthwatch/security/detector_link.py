"""The served detector as the camera pipeline uses it: in-process, so every camera's frames
join the same dynamic batches as ``/detect`` requests (no HTTP hop, no second copy of the
model); a box nested in a larger one of the same label is dropped (:func:`without_nested`).

:class:`ServedDetector` is used from the event loop the served model's coroutines run on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hearthwatch.runtime.detection.detections import class_name
from hearthwatch.runtime.serving.served_model import ServedModel
from hearthwatch.security.observations import Box, ObjectDetection


@dataclass(frozen=True)
class FrameDetections:
    detections: list[ObjectDetection]
    batch_size: int
    """How many frames the detector ran with this one."""


class ServedDetector:
    def __init__(
        self,
        served: ServedModel,
        *,
        threshold: float,
        timeout_s: float,
    ):
        self.served = served
        self.threshold = threshold
        self.timeout_s = timeout_s
        self._names = served.detector.class_names

    async def detect(self, image: np.ndarray) -> FrameDetections:
        """Objects scoring at least the threshold in an RGB ``image``, every class (each
        camera keeps the labels it tracks)."""
        self.served.check_input(image)
        outcome = await self.served.infer(image, self.timeout_s)
        kept = outcome.detections.select(self.threshold, None)
        found = [
            ObjectDetection(class_name(self._names, int(c)), float(s), _box(b))
            for b, s, c in zip(kept.boxes, kept.scores, kept.class_ids, strict=True)
        ]
        return FrameDetections(without_nested(found), outcome.batch_size)


def _box(row: np.ndarray) -> Box:
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


NESTED_SHARE = 0.8
"""A box this much inside a larger box of the same label is part of the same object."""


def without_nested(found: list[ObjectDetection]) -> list[ObjectDetection]:
    """``found`` without the boxes lying mostly (:data:`NESTED_SHARE` of their area) inside a
    larger box of the same label, whatever their scores: a detector run at several input
    sizes reports a person's torso from one size and the whole person from another, and a
    tracker would count two people (the larger box also holds the feet, which place the
    object in zones). A child standing wholly in front of an adult is lost the same way."""
    by_area = sorted(found, key=lambda d: -_area(d.box))
    kept: list[ObjectDetection] = []
    for candidate in by_area:
        area = _area(candidate.box)
        nested = area <= 0 or any(
            other.label == candidate.label
            and _overlap(candidate.box, other.box) >= NESTED_SHARE * area
            for other in kept
        )
        if not nested:
            kept.append(candidate)
    return sorted(kept, key=lambda d: -d.score)


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _overlap(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, width) * max(0.0, height)
