"""Typed shapes of ``/api/cameras``, ``/api/events`` and the risk routes (arm mode, feedback, risk
rules) for the OpenAPI document and the risk routes' bodies. Imported only
where the camera pipeline's routes are served (it imports the camera settings, pydantic only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hearthwatch.security.analysis.risk_rules import RiskRules
from hearthwatch.security.cameras import CameraConfig

__all__ = ["CameraConfig", "RiskRules"]  # re-exported for the OpenAPI table


class CameraOut(CameraConfig):
    """A camera as the API shows it: a stream URL's password as ``***``."""

    origin: Literal["file", "api"] = Field(
        description="file: defined in the cameras file (edit it there); api: created here."
    )


class CameraList(BaseModel):
    cameras: list[CameraOut]


class SourceStatusOut(BaseModel):
    type: str
    state: str = Field(description="connecting, streaming, reconnecting, stopped, finished; push")
    reconnects: int
    last_error: str | None


class HealthOut(BaseModel):
    state: Literal["online", "offline", "tampered"]
    reason: str | None = Field(description="no_frames, covered or moved")
    since: float | None
    detail: str | None


class CameraStatus(BaseModel):
    camera: str
    name: str
    enabled: bool
    source: SourceStatusOut
    health: HealthOut
    fps_in: float = Field(description="Frames read or received per second, last 10 s.")
    fps_detected: float = Field(description="Frames the detector ran on per second, last 10 s.")
    motion_share: float = Field(description="Share of the frames that had motion.")
    frames: dict[str, int] = Field(
        description="frames_in, skipped_motion, deduped, dropped, corrupt, detected, failed"
    )
    dropped: int
    reconnects: int
    queued: int = Field(description="Frames of this camera waiting for the detector.")
    open_windows: int
    last_frame_at: float | None


class FrameAccepted(BaseModel):
    camera: str
    seq: int | None = Field(description="The frame's number; null when deduplicated.")
    captured_at: float
    deduplicated: bool = Field(
        description="The same bytes as the camera's last frame: counted, not queued (200)."
    )


class ReasonOut(BaseModel):
    text: str
    detection_ids: list[int]


class EventOut(BaseModel):
    id: str = Field(description="Epoch seconds, a fraction and 6 characters, as Frigate's.")
    kind: Literal["window", "health"]
    camera: str
    window_id: str | None
    started_at: float
    ended_at: float
    score: float
    level: Literal["low", "medium", "high", "critical"] = Field(
        description="From the score: low 0–29, medium 30–59, high 60–84, critical 85–100."
    )
    reasons: list[ReasonOut]
    analyser: str
    summary: str
    labels: list[str]
    zones: list[str]
    created_at: float = Field(description="When the event was stored (its window closed).")
    has_snapshot: bool
    has_clip: bool
    provisional: bool = Field(
        description="An early alert, raised before the window closed; its analysis replaces it."
    )
    recommended_action: str
    details: dict[str, Any] | None = Field(
        description="How it was analysed: model, attempts, failures, a fallback, dropped "
        "citations, risk rules applied, the arm mode."
    )


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class WindowOut(BaseModel):
    id: str
    opened_at: float
    closed_at: float | None
    status: str
    linked_window_ids: list[str]


class TrackOut(BaseModel):
    id: str
    label: str
    first_seen: float
    last_seen: float
    zones_entered: list[str]
    stationary: bool
    best_detection_id: int | None


class DetectionOut(BaseModel):
    id: int
    frame_id: int
    track_id: str
    label: str
    score: float
    box: list[float] = Field(description="x1, y1, x2, y2 in the frame's pixels.")
    zones: list[str]
    captured_at: float


class EnrichmentOut(BaseModel):
    track_id: str
    detection_id: int | None
    model: str
    result: dict[str, Any]
    embedding_size: int | None
    created_at: float


class EventDetail(EventOut):
    camera_name: str | None
    window: WindowOut | None = None
    tracks: list[TrackOut] = []
    detections: list[DetectionOut] = []
    enrichments: list[EnrichmentOut]


class ArmMode(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["home", "away", "night"]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    verdict: Literal["false_alarm", "confirmed"]
    note: str = Field("", max_length=2_000)


class FeedbackOut(BaseModel):
    id: int
    event_id: str
    verdict: Literal["false_alarm", "confirmed"]
    note: str
    created_at: float


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut]


class ScenarioFile(BaseModel):
    """The format ``bench/risk_eval.py --scenarios`` reads (see ``bench/risk_scenarios.json``)."""

    version: Literal[1]
    scenarios: list[dict[str, Any]]


class IncidentEventOut(BaseModel):
    event_id: str
    camera: str
    camera_name: str
    started_at: float
    track_id: str
    similarity: float | None = Field(description="To the track it matched; null: the first.")


class IncidentOut(BaseModel):
    id: str
    label: str
    descriptor: str = Field(description="What was compared: the re-ID model or the fallback.")
    created_at: float
    updated_at: float
    summary: str
    events: list[IncidentEventOut]


class IncidentList(BaseModel):
    incidents: list[IncidentOut]
