"""The events store's tables as SQLAlchemy 2 declarative models: the one description of the
schema that the migrations must agree with (a test compares them).

Times are epoch seconds (UTC) as floats; paths are relative to the data directory. Data rows
name their camera by id without a foreign key: deleting a camera leaves its history, which
retention removes in time. ``tracks.best_detection_id`` has no foreign key either (it would
make tracks and detections refer to each other); the store and retention keep it pointing at
the track's best remaining detection.

The model classes are only used inside the store's sessions; nothing of them leaves the store.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import false

ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids; on SQLite ``INTEGER`` so that the id is the rowid and numbers itself."""

ID_LENGTH = 128
LABEL_LENGTH = 64
PATH_LENGTH = 1024

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {float: Double()}


class Camera(Base):
    __tablename__ = "cameras"
    __table_args__ = (CheckConstraint("origin IN ('file', 'api')", name="origin"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(8))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float]
    updated_at: Mapped[float]


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("camera_id", "seq"),
        CheckConstraint("origin IN ('stream', 'push', 'folder')", name="origin"),
        Index(None, "captured_at"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    captured_at: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    origin: Mapped[str] = mapped_column(String(8))
    image_path: Mapped[str | None] = mapped_column(String(PATH_LENGTH))


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    first_seen: Mapped[float]
    last_seen: Mapped[float]
    best_detection_id: Mapped[int | None] = mapped_column(ROW_ID)
    best_score: Mapped[float]
    zones_entered: Mapped[list[str]] = mapped_column(JSON)
    stationary: Mapped[bool]


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed', 'analysed')", name="status"),
        Index(None, "status", "opened_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    opened_at: Mapped[float]
    last_detection_at: Mapped[float]
    closes_by: Mapped[float]
    closed_at: Mapped[float | None]
    status: Mapped[str] = mapped_column(String(8))


class WindowLink(Base):
    """A track seen in two windows links them (stored once, read in both directions)."""

    __tablename__ = "window_links"
    __table_args__ = (Index(None, "linked_window_id"), Index(None, "track_id"))

    window_id: Mapped[str] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    linked_window_id: Mapped[str] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"), primary_key=True)


class Detection(Base):
    __tablename__ = "detections"
    __table_args__ = (
        Index(None, "frame_id"),
        Index(None, "track_id"),
        Index(None, "window_id", "captured_at"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"))
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"))
    window_id: Mapped[str] = mapped_column(ForeignKey("windows.id"))
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    score: Mapped[float]
    x1: Mapped[float]
    y1: Mapped[float]
    x2: Mapped[float]
    y2: Mapped[float]
    zones: Mapped[list[str]] = mapped_column(JSON)
    captured_at: Mapped[float]


class Enrichment(Base):
    """An enrichment model's answer about a track, from the crop of one of its detections;
    ``embedding`` is little-endian float32 bytes."""

    __tablename__ = "enrichments"
    __table_args__ = (Index(None, "track_id", "created_at"), Index(None, "detection_id"))

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    detection_id: Mapped[int | None] = mapped_column(
        ForeignKey("detections.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(ID_LENGTH))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[float]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("kind IN ('window', 'health')", name="kind"),
        CheckConstraint("level IN ('low', 'medium', 'high', 'critical')", name="level"),
        Index(None, "started_at", "id"),
        Index(None, "camera_id", "started_at", "id"),
        Index(None, "level", "started_at", "id"),
        Index(None, "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    camera_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    window_id: Mapped[str | None] = mapped_column(ForeignKey("windows.id"), unique=True)
    started_at: Mapped[float]
    ended_at: Mapped[float]
    score: Mapped[float]
    level: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    analyser: Mapped[str] = mapped_column(String(ID_LENGTH))
    summary: Mapped[str] = mapped_column(Text, server_default="")
    labels: Mapped[list[str]] = mapped_column(JSON)
    zones: Mapped[list[str]] = mapped_column(JSON)
    snapshot_path: Mapped[str | None] = mapped_column(String(PATH_LENGTH))
    clip_path: Mapped[str | None] = mapped_column(String(PATH_LENGTH))
    created_at: Mapped[float]
    provisional: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """Raised early by a critical trigger; the window's analysed event replaces it."""
    recommended_action: Mapped[str] = mapped_column(Text, server_default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """How the event was analysed: attempts, fallback, dropped citations, user rules applied."""


class Feedback(Base):
    """A person's verdict on an event; removed with it."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("verdict IN ('false_alarm', 'confirmed')", name="verdict"),
        Index(None, "event_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[float]


class SystemState(Base):
    """Settings changed at run time that outlive a restart (the arm mode), by key."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[float]


class Incident(Base):
    """Events linked by the same individual, re-identified by appearance across cameras."""

    __tablename__ = "incidents"
    __table_args__ = (Index(None, "updated_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    descriptor: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[float]
    updated_at: Mapped[float]


class IncidentEvent(Base):
    """An event of an incident, by the track in it that matched (``similarity``: to the
    track it matched; None for the incident's first)."""

    __tablename__ = "incident_events"
    __table_args__ = (Index(None, "event_id"),)

    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    track_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    similarity: Mapped[float | None]
    added_at: Mapped[float]
