"""Pose keypoints and posture from BlazePose GHUM (``pose_landmark_full.tflite``, shipped in the
mediapipe wheel) through OpenCV's TFLite importer, on person crops.

The landmark model expects the whole body inside a square region; MediaPipe finds that region
with a second detector, which OpenCV cannot load (it needs the DENSIFY op). Here every crop is
framed twice instead: centred in a square 1.25 times its longer side (a full body, as a person
detector's box gives it), and at the top of a square twice its longer side (an upper body cut
off by the frame's edge, as a doorbell sees it); the framing whose pose score is higher wins.

Per crop: the 17 COCO keypoints in frame pixels, each scored by the model's visibility (0 for
a point outside the crop, which the model guessed rather than saw), the pose score, and the
postures :func:`~hearthwatch.runtime.enrichment.posture.postures` derives from them. Below
``min_pose_score`` no keypoints are reported. The pose score is the model's confidence in its
landmarks, not evidence that a person is there: the model assumes one and scores a cat's face
or a motorcycle up to 0.96. It runs on the detector's person boxes, which are that evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig, EnrichItem
from hearthwatch.runtime.enrichment.posture import COCO_KEYPOINTS, postures

INPUT_SIDE = 256
LANDMARKS = 39  # 33 body landmarks and 6 auxiliary ones, 5 values each
BLAZEPOSE_LANDMARKS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
"""BlazePose's 33 landmarks in the model's output order (MediaPipe's pose landmark model card)."""
COCO_FROM_BLAZEPOSE = tuple(BLAZEPOSE_LANDMARKS.index(name) for name in COCO_KEYPOINTS)
OUTSIDE_TOLERANCE = 0.02  # of the crop's side: a point this far outside still counts as seen

Framing = Literal["centred", "upper_body"]
FRAMINGS: dict[Framing, tuple[float, bool]] = {
    "centred": (1.25, False),  # square side / crop's longer side, anchored at the top
    "upper_body": (2.0, True),
}


@dataclass(frozen=True)
class Placement:
    """Where a crop sits in the model's input: input pixels = crop pixels × scale + offset."""

    scale: float
    left: float
    top: float


def _place(crop: np.ndarray, framing: Framing) -> tuple[np.ndarray, Placement]:
    height, width = crop.shape[:2]
    factor, at_top = FRAMINGS[framing]
    scale = INPUT_SIDE / (factor * max(height, width))
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    left = (INPUT_SIDE - new_w) // 2
    top = 0 if at_top else (INPUT_SIDE - new_h) // 2
    canvas = np.zeros((INPUT_SIDE, INPUT_SIDE, 3), np.uint8)
    resized = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Placement(scale, left, top)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class BlazePoseEnricher(Enricher):
    half_precision = False

    def __init__(self, framings: Sequence[Framing], min_pose_score: float, min_score: float):
        self.framings = tuple(framings)
        self.min_pose_score = min_pose_score
        self.min_score = min_score

    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        placed = [_place(item.image, f) for item in items for f in self.framings]
        batch = np.stack([canvas for canvas, _ in placed]).astype(np.float32) / 255.0
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)), [p for _, p in placed]

    def forward(self, module: Any, prepared: Any) -> Any:
        blob, placements = prepared
        module.setInput(blob)
        landmarks, pose_scores = module.forward(["Identity", "Identity_1"])
        return landmarks.reshape(len(blob), LANDMARKS, 5), pose_scores.ravel(), placements

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        landmarks, pose_scores, placements = outputs
        per_item = len(self.framings)
        results = []
        for index, item in enumerate(items):
            first = index * per_item
            best = first + int(np.argmax(pose_scores[first : first + per_item]))
            pose_score = float(pose_scores[best])
            if pose_score < self.min_pose_score:
                results.append({"pose_score": pose_score, "keypoints": [], "postures": []})
                continue
            points = self._keypoints(landmarks[best], placements[best], item)
            triples = [(p["x"], p["y"], p["score"]) for p in points]
            results.append({
                "pose_score": pose_score,
                "keypoints": points,
                "postures": postures(triples, self.min_score),
            })  # fmt: skip
        return results

    @staticmethod
    def _keypoints(rows: np.ndarray, at: Placement, item: EnrichItem) -> list[dict[str, Any]]:
        height, width = item.image.shape[:2]
        chosen = rows[list(COCO_FROM_BLAZEPOSE)]
        xs = (chosen[:, 0] - at.left) / at.scale
        ys = (chosen[:, 1] - at.top) / at.scale
        margin = OUTSIDE_TOLERANCE * max(height, width)
        inside = (
            (xs >= -margin) & (xs <= width + margin) & (ys >= -margin) & (ys <= height + margin)
        )
        scores = np.where(inside, _sigmoid(chosen[:, 3]), 0.0)
        ox, oy = item.origin
        return [
            {"name": name, "x": ox + float(x), "y": oy + float(y), "score": float(s)}
            for name, x, y, s in zip(COCO_KEYPOINTS, xs, ys, scores, strict=True)
        ]


class BlazePoseConfig(EnricherConfig):
    type: Literal["pose_blazepose"] = "pose_blazepose"
    runs_on_host: ClassVar[bool] = True
    framings: list[Framing] = Field(
        default_factory=lambda: list(FRAMINGS),
        min_length=1,
        description="How each crop is framed for the model; the best-scoring framing wins.",
    )
    min_pose_score: float = Field(0.5, ge=0.0, le=1.0, description="Below: no pose reported.")
    min_keypoint_score: float = Field(
        0.5, ge=0.0, le=1.0, description="Keypoints the postures may use."
    )

    def unavailable_reason(self) -> str | None:
        if self.path is None:
            return "no weights configured (path to pose_landmark_full.tflite)"
        return super().unavailable_reason()

    def build(self) -> Any:
        net = cv2.dnn.readNetFromTFLite(str(self.path))
        return net

    def enricher(self) -> Enricher:
        return BlazePoseEnricher(self.framings, self.min_pose_score, self.min_keypoint_score)
