"""What the pipeline's stages hand each other about one object in one frame.

Plain frozen data: safe to share between threads.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in the frame's own pixels."""


@dataclass(frozen=True)
class ObjectDetection:
    """One object the detector found in one frame."""

    label: str
    score: float
    box: Box


@dataclass(frozen=True)
class TrackedDetection:
    """A detection the tracker has assigned to a track of its camera.

    ``track_key`` is unique across the whole process and across restarts (it begins with the
    camera id and the time the track started); ``stationary`` says the object has not moved
    for the tracker's stationary threshold.
    """

    detection: ObjectDetection
    track_key: str
    stationary: bool
    new_track: bool
