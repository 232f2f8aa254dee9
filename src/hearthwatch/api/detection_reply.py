"""The one mapping from a served model's :class:`Detections` to what a reply reports, shared by
``/detect`` (JSON objects) and the v2 detector (tensors): the detections scoring at least the
threshold, of the security classes unless every class was asked for, best first, each with
its class name. Pure functions: safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from hearthwatch.api.state import Services
from hearthwatch.runtime.detection.detections import Detections, class_name
from hearthwatch.runtime.serving.served_model import ServedModel


@dataclass(frozen=True)
class Reported:
    """What a reply reports of one image: the kept ``detections`` and their class names."""

    detections: Detections
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.detections)


def reported(
    services: Services,
    model: ServedModel,
    detections: Detections,
    *,
    threshold: float,
    all_classes: bool,
) -> Reported:
    """What a reply reports of ``detections``, found by ``model`` in one image."""
    allowed = None if all_classes else services.security_ids[model.name]
    kept = detections.select(threshold, allowed)
    names = model.detector.class_names
    labels = tuple(class_name(names, c) for c in kept.class_ids.tolist())
    return Reported(kept, labels)
