"""Detections as plain arrays, the COCO class names and the filter by score and class."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

COCO_80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes`` (N, 4) x1 y1 x2 y2 in the image's own pixels,
    ``scores`` (N,) and ``class_ids`` (N,) indexing the model's class names."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, threshold: float, allowed_class_ids: Collection[int] | None) -> Detections:
        """Keep detections scoring at least ``threshold`` whose class is allowed (None: all)."""
        keep = self.scores >= threshold
        if allowed_class_ids is not None:
            keep &= np.isin(self.class_ids, np.fromiter(allowed_class_ids, np.int64))
        order = np.argsort(-self.scores[keep], kind="stable")
        return Detections(
            self.boxes[keep][order], self.scores[keep][order], self.class_ids[keep][order]
        )


def class_ids_named(class_names: Sequence[str], wanted: Collection[str]) -> frozenset[int]:
    """Indices of ``class_names`` whose name is in ``wanted``."""
    return frozenset(i for i, name in enumerate(class_names) if name in wanted)


def class_name(names: Sequence[str], class_id: int) -> str:
    """The model's name for ``class_id``; ``class_<id>`` for an id it has no name for."""
    return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id}"
