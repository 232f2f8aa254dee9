"""What the events store is handed and what it answers: frozen dataclasses, never ORM objects.

Input records (``FrameRecord``, ``DetectionRecord``, ``WindowUpdate``, ``WindowLinkRecord``,
``EventRecord``) validate themselves when built and raise :class:`InvalidRecordError` saying
which field is wrong, so nothing malformed reaches the database. Output rows are read back from
the database and trusted.

Plain frozen data: safe to share between threads (an ``EnrichmentRow``'s embedding is a
read-only array).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from hearthwatch.security.evidence import (
    LEVELS,
    DetectionEvidence,
    Level,
    Reason,
    TrackEvidence,
    WindowEvidence,
)
from hearthwatch.security.observations import Box, TrackedDetection
from hearthwatch.security.store.errors import InvalidRecordError, WindowStateError
from hearthwatch.security.store.schema import ID_LENGTH, LABEL_LENGTH
from hearthwatch.security.store.validation import (
    MAX_DIMENSION,
    MAX_INT64,
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
    check_camera_id,
    check_choice,
    check_id,
    check_int,
    check_json_object,
    check_names,
    check_number,
    check_relative_path,
    check_text,
    check_time,
)

CameraOrigin = Literal["file", "api"]
FrameOrigin = Literal["stream", "push", "folder"]
WindowStatus = Literal["open", "closed", "analysed"]
EventKind = Literal["window", "health"]


@dataclass(frozen=True)
class FrameRecord:
    """One processed frame of a camera; ``seq`` numbers a camera's frames from 1."""

    camera_id: str
    seq: int
    captured_at: float
    width: int
    height: int
    origin: FrameOrigin
    image_path: str | None = None
    """Its stored JPEG relative to the data directory, if it was kept."""

    def __post_init__(self) -> None:
        check_camera_id(self.camera_id)
        check_int("seq", self.seq, 1, MAX_INT64)
        check_time("captured_at", self.captured_at)
        check_int("width", self.width, 1, MAX_DIMENSION)
        check_int("height", self.height, 1, MAX_DIMENSION)
        check_choice("origin", self.origin, get_args(FrameOrigin))
        check_relative_path("image_path", self.image_path)


@dataclass(frozen=True)
class DetectionRecord:
    """One tracked detection of the frame it is recorded with, in the window it falls in."""

    track_key: str
    window_id: str
    label: str
    score: float
    """0–1."""
    box: Box
    zones: tuple[str, ...] = ()
    stationary: bool = False

    def __post_init__(self) -> None:
        check_id("track_key", self.track_key)
        check_id("window_id", self.window_id)
        check_text("label", self.label, LABEL_LENGTH)
        check_number("score", self.score, 0.0, 1.0)
        if not isinstance(self.box, tuple) or len(self.box) != 4:
            raise InvalidRecordError("box must be a tuple (x1, y1, x2, y2)")
        x1, y1, x2, y2 = (check_number("box", v, -1e6, 1e6) for v in self.box)
        if x2 < x1 or y2 < y1:
            raise InvalidRecordError("box must have x1 <= x2 and y1 <= y2")
        check_names("zones", self.zones)
        if not isinstance(self.stationary, bool):
            raise InvalidRecordError("stationary must be true or false")

    @classmethod
    def of(
        cls, tracked: TrackedDetection, window_id: str, zones: tuple[str, ...] = ()
    ) -> DetectionRecord:
        """The record of what the tracker handed on."""
        found = tracked.detection
        return cls(
            track_key=tracked.track_key,
            window_id=window_id,
            label=found.label,
            score=found.score,
            box=found.box,
            zones=zones,
            stationary=tracked.stationary,
        )


@dataclass(frozen=True)
class WindowUpdate:
    """A window the frame's detections fall in: created when the store lacks it, else its
    ``last_detection_at`` and ``closes_by`` are moved forward (never back)."""

    window_id: str
    camera_id: str
    opened_at: float
    last_detection_at: float
    closes_by: float

    def __post_init__(self) -> None:
        check_id("window_id", self.window_id)
        check_camera_id(self.camera_id)
        check_time("opened_at", self.opened_at)
        check_time("last_detection_at", self.last_detection_at)
        check_time("closes_by", self.closes_by)
        if not self.opened_at <= self.last_detection_at <= self.closes_by:
            raise InvalidRecordError("a window needs opened_at <= last_detection_at <= closes_by")


@dataclass(frozen=True)
class WindowLinkRecord:
    """The track ``track_key`` was seen in both windows."""

    window_id: str
    linked_window_id: str
    track_key: str

    def __post_init__(self) -> None:
        check_id("window_id", self.window_id)
        check_id("linked_window_id", self.linked_window_id)
        check_id("track_key", self.track_key)
        if self.window_id == self.linked_window_id:
            raise InvalidRecordError("a window cannot be linked to itself")


@dataclass(frozen=True)
class EventFields:
    """What an event says, as stored: the fields of an :class:`EventRecord` (what is handed to
    the store) and an :class:`EventRow` (what it answers, with the id it assigned)."""

    kind: EventKind
    camera_id: str
    window_id: str | None
    started_at: float
    ended_at: float
    score: float
    """0–100."""
    level: Level
    reasons: tuple[Reason, ...]
    analyser: str
    summary: str
    labels: tuple[str, ...]
    zones: tuple[str, ...]
    created_at: float
    """Epoch seconds at which it was written (stamped as its write is issued, so writes
    issued at nearly the same time may be stored a little out of this order)."""
    snapshot_path: str | None = None
    clip_path: str | None = None
    provisional: bool = False
    """Raised by a critical trigger before its window closed; the analysed event replaces its
    fields (same id) when the window is analysed."""
    recommended_action: str = ""
    details: Mapping[str, Any] | None = None
    """How it was analysed: the analyser's attempts, a fallback and why, citations dropped,
    the user rules applied (a JSON object)."""


@dataclass(frozen=True)
class EventRecord(EventFields):
    """An event to store: a window's analysis (``kind`` 'window', ``window_id`` set) or a
    camera health event (``kind`` 'health', no window). The store assigns its id."""

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, get_args(EventKind))
        check_camera_id(self.camera_id)
        if (self.kind == "window") != (self.window_id is not None):
            raise InvalidRecordError("a window event names its window; a health event none")
        if self.window_id is not None:
            check_id("window_id", self.window_id)
        check_time("started_at", self.started_at)
        check_time("ended_at", self.ended_at)
        if self.ended_at < self.started_at:
            raise InvalidRecordError("ended_at is before started_at")
        check_number("score", self.score, 0.0, 100.0)
        check_choice("level", self.level, LEVELS)
        if not isinstance(self.reasons, tuple) or len(self.reasons) > MAX_LIST_ITEMS:
            raise InvalidRecordError(f"reasons must be a tuple of at most {MAX_LIST_ITEMS}")
        for reason in self.reasons:
            if not isinstance(reason, Reason) or not isinstance(reason.detection_ids, tuple):
                raise InvalidRecordError("each reason must be a Reason with a tuple of ids")
            check_text("a reason's text", reason.text, MAX_TEXT_LENGTH)
            for detection_id in reason.detection_ids:
                check_int("a reason's detection id", detection_id, 1, MAX_INT64)
        check_text("analyser", self.analyser, ID_LENGTH)
        check_text("summary", self.summary, MAX_TEXT_LENGTH, empty=True)
        check_names("labels", self.labels)
        check_names("zones", self.zones)
        check_time("created_at", self.created_at)
        check_relative_path("snapshot_path", self.snapshot_path)
        check_relative_path("clip_path", self.clip_path)
        if self.provisional and self.window_id is None:
            raise InvalidRecordError("only a window's event can be provisional")
        check_text("recommended_action", self.recommended_action, MAX_TEXT_LENGTH, empty=True)
        if self.details is not None:
            check_json_object("details", self.details)


@dataclass(frozen=True)
class CameraRow:
    id: str
    name: str
    origin: CameraOrigin
    config: Mapping[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class WindowRow:
    id: str
    camera_id: str
    opened_at: float
    last_detection_at: float
    closes_by: float
    closed_at: float | None
    status: WindowStatus


@dataclass(frozen=True, kw_only=True)
class EventRow(EventFields):
    """A stored event: its fields and the id the store gave it."""

    id: str


@dataclass(frozen=True)
class EnrichmentRow:
    id: int
    track_key: str
    detection_id: int | None
    """``None`` once retention removed the detection (the track lives on in a later window)."""
    model: str
    result: Mapping[str, Any]
    embedding: np.ndarray | None = field(compare=False)
    """Read-only float32 vector."""
    created_at: float


@dataclass(frozen=True)
class WindowContents:
    """Everything the store holds about one window: :meth:`evidence` adds what the camera's
    settings say to make it an analyser's :class:`WindowEvidence`."""

    window: WindowRow
    linked_window_ids: tuple[str, ...]
    tracks: tuple[TrackEvidence, ...]
    detections: tuple[DetectionEvidence, ...]
    """Ordered by capture time, then id."""
    frame_paths: Mapping[int, str]

    def evidence(
        self, *, camera_name: str, zone_description: str, timezone: str, so_far: bool = False
    ) -> WindowEvidence:
        """The analyser's view of this window, which must be closed unless ``so_far`` (an open
        window is then seen up to its last detection)."""
        closed_at = self.window.closed_at
        if closed_at is None and not so_far:
            raise WindowStateError(f"window {self.window.id} is still open")
        return WindowEvidence(
            window_id=self.window.id,
            camera_id=self.window.camera_id,
            camera_name=camera_name,
            zone_description=zone_description,
            timezone=timezone,
            opened_at=self.window.opened_at,
            closed_at=self.window.last_detection_at if closed_at is None else closed_at,
            linked_window_ids=self.linked_window_ids,
            tracks=self.tracks,
            detections=self.detections,
            frame_paths=self.frame_paths,
        )


@dataclass(frozen=True)
class EventDetail:
    """An event with what it rests on: its window's contents (``None`` for a health event) and
    every enrichment of the window's tracks, oldest first."""

    event: EventRow
    camera_name: str | None
    """The camera's name, ``None`` if the camera has since been deleted."""
    window: WindowContents | None
    enrichments: tuple[EnrichmentRow, ...]
