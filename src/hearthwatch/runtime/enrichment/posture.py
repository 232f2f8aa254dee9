"""Posture labels from 17 COCO keypoints: geometric, scale-free rules, no model.

Contract
--------
Input: a sequence of exactly 17 keypoints in COCO order (:data:`COCO_KEYPOINTS`: nose,
left_eye, right_eye, left_ear, right_ear, left_shoulder, right_shoulder, left_elbow,
right_elbow, left_wrist, right_wrist, left_hip, right_hip, left_knee, right_knee, left_ankle,
right_ankle), each ``(x, y, score)`` in image pixels (x right, y **down**) with ``score`` the
visibility in 0..1. An empty sequence means "no keypoints" and yields no labels; any other
length is a :class:`ValueError`.

Output: :func:`measure_posture` returns a :class:`PostureReading`, the labels that hold (a
subset of :data:`POSTURE_LABELS`, in that order) with the measurements they rest on;
:func:`postures` returns just the labels, as a list.

A keypoint counts only when its score is ``>= min_score`` and its x, y (and score) are finite;
every other keypoint is missing. A rule whose keypoints are missing answers nothing (no label),
never a guess.

Measurements
------------
* Torso: from the shoulder midpoint to the hip midpoint, each the mean of the visible
  shoulders (hips): one side is enough, as in a side view. Its length ``T`` (pixels) is the
  unit every distance below is measured in, which makes the rules scale-free. No visible
  shoulder or hip, or a zero-length torso, means no torso and then **no label at all**.
* Torso tilt: the angle between the hip→shoulder vector and "up" (0° upright, 90° horizontal,
  180° head-down).
* Legs: a leg counts when its hip, knee and ankle are all visible (and its thigh and shank have
  non-zero length). Its knee angle is the hip–knee–ankle angle (180° straight). The rules below
  use all visible legs; a figure with none gets neither standing nor crouching.

Rules
-----
* ``lying``: tilt strictly between 60° and 120°, i.e. the torso axis is closer to horizontal
  than to vertical. Lying excludes every other label.
* Head-down torsos (tilt >= 120°) get no label: none of the rules applies to them.
* The remaining rules need an upright-ish torso, tilt <= 60°.
* ``crouching``: every visible leg is crouched, where a leg is crouched when its knee angle is
  below 110° (knee strongly bent) or its hip is dropped near knee height (the knee lies less
  than 0.25 T below the hip, or above it). Sitting reads as crouching.
* ``standing``: tilt <= 30°, not crouching (crouching takes precedence), and on every visible
  leg the hip is above the knee, the knee above the ankle and the knee angle is at least 150°.
  A figure with tilt above 30°, or knees between 110° and 150°, may get neither label.
* ``arms_raised``: on at least one side, the wrist and the shoulder of that side are visible
  and the wrist is more than 0.2 T above the shoulder (``shoulder_y - wrist_y > 0.2 T``). It can
  go with standing or crouching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

Keypoint = tuple[float, float, float]  # (x, y, score); y grows downwards
Point = tuple[float, float]
_Visible = Callable[[str], Point | None]  # a joint's (x, y), or None when missing
_Leg = tuple[float, Point, Point, Point]  # (knee angle in degrees, hip, knee, ankle)

COCO_KEYPOINTS: Final = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
POSTURE_LABELS: Final = ("standing", "crouching", "lying", "arms_raised")

LYING_MIN_TILT_DEG: Final = 60.0  # lying: tilt in (60, 120); upright-ish: tilt <= 60
STANDING_MAX_TILT_DEG: Final = 30.0
STRAIGHT_KNEE_MIN_DEG: Final = 150.0  # standing: every visible knee angle >= this
BENT_KNEE_MAX_DEG: Final = 110.0  # crouched leg: knee angle < this ...
HIP_DROP_MAX_GAP: Final = 0.25  # ... or knee less than this many torso lengths below the hip
ARMS_RAISED_MARGIN: Final = 0.2  # wrist above its shoulder by more than this many torso lengths

_INDEX: Final = {name: i for i, name in enumerate(COCO_KEYPOINTS)}


@dataclass(frozen=True)
class PostureReading:
    """The labels that hold (in :data:`POSTURE_LABELS` order) and the measurements behind them;
    a measurement is ``None`` when its keypoints are missing."""

    labels: tuple[str, ...]
    torso_tilt_deg: float | None  # 0 upright, 90 horizontal, 180 head-down
    torso_length: float | None  # pixels
    knee_angles_deg: tuple[float | None, float | None]  # (left, right); 180 = straight


def postures(keypoints: Sequence[Keypoint], min_score: float = 0.5) -> list[str]:
    """The posture labels that hold for one person's 17 COCO keypoints (see the module
    docstring for the rules)."""
    return list(measure_posture(keypoints, min_score).labels)


def measure_posture(keypoints: Sequence[Keypoint], min_score: float = 0.5) -> PostureReading:
    """The posture labels for one person's 17 COCO keypoints, with their evidence."""
    if len(keypoints) == 0:
        return PostureReading((), None, None, (None, None))
    if len(keypoints) != len(COCO_KEYPOINTS):
        raise ValueError(f"expected {len(COCO_KEYPOINTS)} COCO keypoints, got {len(keypoints)}")

    def visible(name: str) -> Point | None:
        x, y, score = (float(v) for v in keypoints[_INDEX[name]])
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(score)):
            return None
        return (x, y) if score >= min_score else None

    legs = {side: _leg(visible, side) for side in ("left", "right")}
    left, right = legs["left"], legs["right"]
    knee_angles = (
        left[0] if left is not None else None,
        right[0] if right is not None else None,
    )
    shoulder = _mean(visible("left_shoulder"), visible("right_shoulder"))
    hip = _mean(visible("left_hip"), visible("right_hip"))
    if shoulder is None or hip is None:
        return PostureReading((), None, None, knee_angles)
    dx, dy = shoulder[0] - hip[0], shoulder[1] - hip[1]
    torso = math.hypot(dx, dy)
    if torso == 0.0 or not math.isfinite(torso):  # degenerate, or coordinates overflowing
        return PostureReading((), None, None, knee_angles)
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, -dy / torso))))

    labels: set[str] = set()
    if LYING_MIN_TILT_DEG < tilt < 180.0 - LYING_MIN_TILT_DEG:
        labels.add("lying")
    elif tilt <= LYING_MIN_TILT_DEG:
        seen = [leg for leg in legs.values() if leg is not None]
        if seen and all(_crouched(leg, torso) for leg in seen):
            labels.add("crouching")
        elif seen and tilt <= STANDING_MAX_TILT_DEG and all(_straight(leg) for leg in seen):
            labels.add("standing")
        for side in ("left", "right"):
            wrist, own_shoulder = visible(f"{side}_wrist"), visible(f"{side}_shoulder")
            if wrist is None or own_shoulder is None:
                continue
            if own_shoulder[1] - wrist[1] > ARMS_RAISED_MARGIN * torso:
                labels.add("arms_raised")
    return PostureReading(
        tuple(label for label in POSTURE_LABELS if label in labels), tilt, torso, knee_angles
    )


def _leg(visible: _Visible, side: str) -> _Leg | None:
    hip, knee, ankle = (visible(f"{side}_{joint}") for joint in ("hip", "knee", "ankle"))
    if hip is None or knee is None or ankle is None:
        return None
    ax, ay = hip[0] - knee[0], hip[1] - knee[1]
    bx, by = ankle[0] - knee[0], ankle[1] - knee[1]
    norms = math.hypot(ax, ay) * math.hypot(bx, by)
    if norms == 0.0 or not math.isfinite(norms):
        return None
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (ax * bx + ay * by) / norms))))
    return angle, hip, knee, ankle


def _crouched(leg: _Leg, torso: float) -> bool:
    angle, hip, knee, _ = leg
    return angle < BENT_KNEE_MAX_DEG or knee[1] - hip[1] < HIP_DROP_MAX_GAP * torso


def _straight(leg: _Leg) -> bool:
    angle, hip, knee, ankle = leg
    return hip[1] < knee[1] < ankle[1] and angle >= STRAIGHT_KNEE_MIN_DEG


def _mean(a: Point | None, b: Point | None) -> Point | None:
    if a is None:
        return b
    if b is None:
        return a
    return ((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0)
