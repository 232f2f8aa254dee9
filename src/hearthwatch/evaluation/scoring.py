"""How well a detector's boxes match a labelled set: true and false positives and misses at
an IoU threshold (0.5 by default), overall and per class, with recall and precision.

Per scene, predictions are taken in descending score; each matches the unmatched instance of
its label it overlaps most, if that overlap reaches the threshold (a true positive). One that
matches none is a false positive, unless it reaches the threshold on a ``difficult`` instance
of its label: then it is ignored. Every instance left unmatched, ``difficult`` ones excepted,
is a false negative, listed in ``misses``. A second prediction on an instance already matched
is a false positive: duplicates count against precision. Only the classes asked for count,
both predictions and instances.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from hearthwatch.evaluation.labelled_set import Box, Instance, Scene


@dataclass(frozen=True)
class Prediction:
    """One detection: its class name, box (x1, y1, x2, y2 in the scene's pixels) and score."""

    label: str
    box: Box
    score: float


class Miss(NamedTuple):
    """An instance no prediction matched."""

    scene: str
    label: str
    box: Box


@dataclass(frozen=True)
class Tally:
    """True and false positives and false negatives, with the recall and precision they give
    (None where undefined: recall with no instances, precision with no predictions)."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def recall(self) -> float | None:
        found = self.true_positives + self.false_negatives
        return self.true_positives / found if found else None

    @property
    def precision(self) -> float | None:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else None

    def to_dict(self) -> dict[str, int | float | None]:
        return {
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "recall": self.recall,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class Quality:
    """The score of a detector on a set of scenes: ``overall`` and ``per_class`` (every class
    asked for, in name order), and the ``misses``, in scene order."""

    overall: Tally
    per_class: dict[str, Tally]
    misses: tuple[Miss, ...]
    iou_threshold: float
    min_score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "iou_threshold": self.iou_threshold,
            "min_score": self.min_score,
            "overall": self.overall.to_dict(),
            "per_class": {label: tally.to_dict() for label, tally in self.per_class.items()},
            "misses": [
                {"scene": miss.scene, "label": miss.label, "box": list(miss.box)}
                for miss in self.misses
            ],
        }


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2); 0 where neither has area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_detections(
    scenes: Sequence[Scene],
    predictions: Sequence[Sequence[Prediction]],
    classes: Collection[str],
    iou_threshold: float = 0.5,
    min_score: float = 0.0,
) -> Quality:
    """Score ``predictions`` (one sequence per scene, in the scenes' order) against the
    scenes' instances, counting only labels in ``classes`` and predictions scoring at least
    ``min_score`` (see the module's docstring for the matching)."""
    if len(predictions) != len(scenes):
        raise ValueError(f"{len(predictions)} prediction lists for {len(scenes)} scenes")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    true_positives: Counter[str] = Counter()
    false_positives: Counter[str] = Counter()
    misses: list[Miss] = []
    for scene, found in zip(scenes, predictions, strict=True):
        required = [i for i in scene.instances if i.label in classes and not i.difficult]
        difficult = [i for i in scene.instances if i.label in classes and i.difficult]
        kept = [p for p in found if p.label in classes and p.score >= min_score]
        for prediction in sorted(kept, key=lambda p: -p.score):
            match = _best_match(prediction, required, iou_threshold)
            if match is not None:
                required.remove(match)
                true_positives[prediction.label] += 1
            elif _best_match(prediction, difficult, iou_threshold) is None:
                false_positives[prediction.label] += 1
        misses += (Miss(scene.name, i.label, i.box) for i in required)
    false_negatives = Counter(miss.label for miss in misses)
    per_class = {
        label: Tally(true_positives[label], false_positives[label], false_negatives[label])
        for label in sorted(classes)
    }
    overall = Tally(true_positives.total(), false_positives.total(), false_negatives.total())
    return Quality(overall, per_class, tuple(misses), iou_threshold, min_score)


def _best_match(
    prediction: Prediction, candidates: Sequence[Instance], iou_threshold: float
) -> Instance | None:
    """The instance of the prediction's label among ``candidates`` it overlaps most, if by
    enough."""
    overlaps = [(iou(i.box, prediction.box), i) for i in candidates if i.label == prediction.label]
    best = max(overlaps, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= iou_threshold else None
