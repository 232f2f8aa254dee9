"""What an analyser is given about one closed window, and what it answers.

Plain frozen data, safe to share between threads. Every reason an analyser gives cites the ids
of the detections it rests on; ids it was not given are an analyser bug (the pipeline checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hearthwatch.security.observations import Box

Level = Literal["none", "low", "medium", "high", "critical"]
LEVELS: tuple[Level, ...] = ("none", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class DetectionEvidence:
    id: int
    frame_id: int
    track_key: str
    label: str
    score: float
    box: Box
    zones: tuple[str, ...]
    captured_at: float
    """Epoch seconds (UTC)."""


@dataclass(frozen=True)
class TrackEvidence:
    key: str
    label: str
    first_seen: float
    last_seen: float
    zones_entered: tuple[str, ...]
    stationary: bool
    best_detection_id: int | None
    enrichments: Mapping[str, Any] = field(default_factory=dict)
    """Per enrichment model, its latest result for this track."""


@dataclass(frozen=True)
class WindowEvidence:
    window_id: str
    camera_id: str
    camera_name: str
    zone_description: str
    timezone: str
    """IANA name, e.g. ``Europe/Berlin``: the camera's local time decides night and day."""
    opened_at: float
    closed_at: float
    linked_window_ids: tuple[str, ...]
    tracks: tuple[TrackEvidence, ...]
    detections: tuple[DetectionEvidence, ...]
    frame_paths: Mapping[int, str]
    """Frame id → its stored JPEG, relative to the data directory (frames kept for media)."""


@dataclass(frozen=True)
class Reason:
    text: str
    detection_ids: tuple[int, ...]


@dataclass(frozen=True)
class Analysis:
    score: float
    """0–100."""
    level: Level
    reasons: tuple[Reason, ...]
    analyser: str
    summary: str
