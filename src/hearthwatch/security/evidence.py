"""What an analyser is given about one closed window, and what it answers.

Plain frozen data, safe to share between threads. Every reason an analyser gives cites the ids
of the detections it rests on; ids it was not given are an analyser bug (the pipeline checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hearthwatch.security.observations import Box

Level = Literal["low", "medium", "high", "critical"]
LEVELS: tuple[Level, ...] = ("low", "medium", "high", "critical")
LEVEL_FLOORS: tuple[tuple[float, Level], ...] = (
    (85.0, "critical"),
    (60.0, "high"),
    (30.0, "medium"),
    (0.0, "low"),
)
"""The least score of each level, highest first: low 0–29, medium 30–59, high 60–84,
critical 85–100. A level is always derived from a score (:func:`level_of`), never taken from
an analyser's own words."""

ArmMode = Literal["home", "away", "night"]
ARM_MODES: tuple[ArmMode, ...] = ("home", "away", "night")


def level_of(score: float) -> Level:
    """The level of a 0–100 score (:data:`LEVEL_FLOORS`)."""
    for floor, level in LEVEL_FLOORS:
        if score >= floor:
            return level
    return "low"


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
class RecentEvent:
    """An event stored shortly before the window, on its camera or another."""

    event_id: str
    camera_name: str
    same_camera: bool
    started_at: float
    level: Level
    summary: str


@dataclass(frozen=True)
class ReidMatch:
    """A track of this window whose appearance matches a track seen on another camera."""

    track_key: str
    """The track of this window."""
    camera_name: str
    """Where the matching track was seen."""
    seen_at: float
    """Epoch seconds (UTC) of the matching track's last sighting."""
    similarity: float
    """Cosine similarity of the two appearance descriptors, -1 to 1."""
    descriptor: str
    """What was compared: the re-ID model's embeddings or the colour-histogram fallback."""
    event_id: str | None = None
    """The matching track's event, when it has one."""


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
    arm_mode: ArmMode = "home"
    """The system's arm mode when the window closed."""
    recent_events: tuple[RecentEvent, ...] = ()
    reid_matches: tuple[ReidMatch, ...] = ()


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
    recommended_action: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """How the analysis went, as JSON data: attempts, a fallback and why, citations dropped,
    the risk rules that raised the score."""
