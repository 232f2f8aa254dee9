"""The events store: cameras, the frames and detections the pipeline records, their tracks and
windows, enrichments, and the events analysers make of closed windows.

Every operation is one transaction, validated before it touches the database (errors are those
of :mod:`hearthwatch.security.store.errors`). Writes that may be repeated after a crash are
idempotent: a frame per (camera, seq), an event per window, closing a window. Every detection
belongs to exactly one window (``window_id`` is required), and a window to at most one event,
so once its window is analysed a detection is in exactly one event.

:class:`EventStore` is synchronous and thread-safe: it holds no state of its own beyond the
:class:`Database`, and each call runs in its own session on the calling thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import numpy as np
from sqlalchemy import exists, func, insert, or_, select
from sqlalchemy.orm import Session

from hearthwatch.security.evidence import (
    LEVELS,
    DetectionEvidence,
    Level,
    Reason,
    RecentEvent,
    TrackEvidence,
    WindowEvidence,
)
from hearthwatch.security.store.database import Database
from hearthwatch.security.store.errors import (
    BadCursorError,
    InvalidQueryError,
    InvalidRecordError,
    UnknownReferenceError,
    WindowStateError,
)
from hearthwatch.security.store.json_lists import json_list_has
from hearthwatch.security.store.records import (
    CameraOrigin,
    CameraRow,
    DetectionRecord,
    EnrichmentRow,
    EventDetail,
    EventFields,
    EventKind,
    EventRecord,
    EventRow,
    FrameRecord,
    WindowContents,
    WindowLinkRecord,
    WindowRow,
    WindowStatus,
    WindowUpdate,
)
from hearthwatch.security.store.schema import (
    LABEL_LENGTH,
    Camera,
    Detection,
    Enrichment,
    Event,
    Frame,
    Track,
    Window,
    WindowLink,
)
from hearthwatch.security.store.validation import (
    MAX_INT64,
    check_camera_id,
    check_choice,
    check_embedding,
    check_id,
    check_int,
    check_json_object,
    check_number,
    check_text,
    check_time,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MAX_PAGE = 500
MAX_CURSOR_LENGTH = 512
MAX_FILTER_ITEMS = 100
EVENT_ID_ALPHABET = string.ascii_lowercase + string.digits

LockedRow = TypeVar("LockedRow", Track, Window)
RowT = TypeVar("RowT", bound="DataclassInstance")


def new_event_id(started_at: float) -> str:
    """Frigate's form: the start in epoch seconds with 6 decimals, a dash, 6 random
    characters (``1718000000.123456-a1b2c3``): ids sort roughly by time and never collide."""
    micros = round(started_at * 1_000_000)
    suffix = "".join(secrets.choice(EVENT_ID_ALPHABET) for _ in range(6))
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}-{suffix}"


def encode_cursor(started_at: float, event_id: str) -> str:
    """The opaque cursor that continues a listing after the event (started_at, event_id)."""
    raw = json.dumps([started_at, event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position :func:`encode_cursor` wrote; :class:`BadCursorError` for anything else."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise BadCursorError("the cursor is not one this server handed out")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, event_id = json.loads(raw)
        check_id("cursor", event_id)
    except (binascii.Error, ValueError, TypeError):  # InvalidRecordError is a ValueError
        raise BadCursorError("the cursor is not one this server handed out") from None
    if isinstance(started_at, bool) or not isinstance(started_at, int | float):
        raise BadCursorError("the cursor is not one this server handed out")
    if not math.isfinite(started_at):
        raise BadCursorError("the cursor is not one this server handed out")
    return float(started_at), event_id


@contextmanager
def _as_query_error() -> Iterator[None]:
    """Validation of a query's parameters reports as :class:`InvalidQueryError`."""
    try:
        yield
    except InvalidRecordError as exc:
        raise InvalidQueryError(str(exc)) from None


def _row(row_type: type[RowT], stored: object, **converted: Any) -> RowT:
    """The ``row_type`` dataclass of a stored ORM object: each field the value of the column
    of its name, except those given ``converted``."""
    named = (f.name for f in fields(row_type) if f.name not in converted)
    return row_type(**{name: getattr(stored, name) for name in named}, **converted)


def _camera_row(camera: Camera) -> CameraRow:
    return _row(CameraRow, camera)


def _window_row(window: Window) -> WindowRow:
    return _row(WindowRow, window)


def _event_row(event: Event) -> EventRow:
    reasons = tuple(
        Reason(text=reason["text"], detection_ids=tuple(reason["detection_ids"]))
        for reason in event.reasons
    )
    return _row(
        EventRow,
        event,
        reasons=reasons,
        labels=tuple(event.labels),
        zones=tuple(event.zones),
        provisional=bool(event.provisional),
    )


def _event_columns(event: EventRecord) -> dict[str, Any]:
    """The record's fields as the events table holds them (JSON for the reasons and lists)."""
    columns = {f.name: getattr(event, f.name) for f in fields(EventFields)}
    columns["reasons"] = [
        {"text": r.text, "detection_ids": list(r.detection_ids)} for r in event.reasons
    ]
    columns["labels"], columns["zones"] = list(event.labels), list(event.zones)
    columns["details"] = None if event.details is None else dict(event.details)
    return columns


def _enrichment_row(enrichment: Enrichment) -> EnrichmentRow:
    embedding = None
    if enrichment.embedding is not None:
        embedding = np.frombuffer(enrichment.embedding, dtype="<f4").astype(np.float32)
        embedding.flags.writeable = False
    return _row(EnrichmentRow, enrichment, track_key=enrichment.track_id, embedding=embedding)


def _detection_evidence(detection: Detection) -> DetectionEvidence:
    return DetectionEvidence(
        id=detection.id,
        frame_id=detection.frame_id,
        track_key=detection.track_id,
        label=detection.label,
        score=detection.score,
        box=(detection.x1, detection.y1, detection.x2, detection.y2),
        zones=tuple(detection.zones),
        captured_at=detection.captured_at,
    )


def _window_contents(session: Session, window_id: str) -> WindowContents:
    window = session.get(Window, window_id)
    if window is None:
        raise UnknownReferenceError(f"no window {window_id}")
    detections = session.scalars(
        select(Detection)
        .where(Detection.window_id == window_id)
        .order_by(Detection.captured_at, Detection.id)
    ).all()
    track_ids = select(Detection.track_id).where(Detection.window_id == window_id)
    latest: dict[str, dict[str, Any]] = {}
    for enrichment in session.scalars(
        select(Enrichment)
        .where(Enrichment.track_id.in_(track_ids))
        .order_by(Enrichment.created_at, Enrichment.id)
    ):
        latest.setdefault(enrichment.track_id, {})[enrichment.model] = enrichment.result
    tracks = tuple(
        TrackEvidence(
            key=track.id,
            label=track.label,
            first_seen=track.first_seen,
            last_seen=track.last_seen,
            zones_entered=tuple(track.zones_entered),
            stationary=track.stationary,
            best_detection_id=track.best_detection_id,
            enrichments=latest.get(track.id, {}),
        )
        for track in session.scalars(
            select(Track).where(Track.id.in_(track_ids)).order_by(Track.first_seen, Track.id)
        )
    )
    links = session.execute(
        select(WindowLink.window_id, WindowLink.linked_window_id).where(
            or_(WindowLink.window_id == window_id, WindowLink.linked_window_id == window_id)
        )
    )
    linked = sorted({other for pair in links for other in pair if other != window_id})
    frame_paths = session.execute(
        select(Frame.id, Frame.image_path).where(
            Frame.id.in_(select(Detection.frame_id).where(Detection.window_id == window_id)),
            Frame.image_path.is_not(None),
        )
    )
    return WindowContents(
        window=_window_row(window),
        linked_window_ids=tuple(linked),
        tracks=tracks,
        detections=tuple(_detection_evidence(detection) for detection in detections),
        frame_paths={frame_id: path for frame_id, path in frame_paths if path is not None},
    )


class EventStore:
    """The repository over one :class:`Database` (whose schema is upgraded already)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def database(self) -> Database:
        """The database it runs on (retention and shutdown use it)."""
        return self._database

    # cameras

    def put_camera(
        self,
        camera_id: str,
        name: str,
        origin: CameraOrigin,
        config: Mapping[str, Any],
        *,
        now: float,
    ) -> None:
        """Creates the camera or replaces its name, origin and config (``created_at`` kept)."""
        check_camera_id(camera_id)
        check_text("name", name, 200)
        check_choice("origin", origin, get_args(CameraOrigin))
        stored_config = check_json_object("config", config)
        check_time("now", now)

        def put(session: Session) -> None:
            camera = session.get(Camera, camera_id, with_for_update=True)
            if camera is None:
                session.add(
                    Camera(
                        id=camera_id,
                        name=name,
                        origin=origin,
                        config=stored_config,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                camera.name, camera.origin = name, origin
                camera.config, camera.updated_at = stored_config, now

        self._database.write(put)

    def get_camera(self, camera_id: str) -> CameraRow | None:
        def get(session: Session) -> CameraRow | None:
            camera = session.get(Camera, camera_id)
            return None if camera is None else _camera_row(camera)

        return self._database.read(get) if _is_id(camera_id) else None

    def list_cameras(self) -> list[CameraRow]:
        """Every camera, by id."""
        return self._database.read(
            lambda session: [
                _camera_row(camera)
                for camera in session.scalars(select(Camera).order_by(Camera.id))
            ]
        )

    def delete_camera(self, camera_id: str) -> bool:
        """Removes the camera; its recorded history stays until retention removes it. False
        when there was no such camera."""
        if not _is_id(camera_id):
            return False

        def remove(session: Session) -> bool:
            camera = session.get(Camera, camera_id)
            if camera is not None:
                session.delete(camera)
            return camera is not None

        return self._database.write(remove)

    # frames, detections, tracks, windows

    def record_frame(
        self,
        frame: FrameRecord,
        detections: Sequence[DetectionRecord] = (),
        windows: Sequence[WindowUpdate] = (),
        links: Sequence[WindowLinkRecord] = (),
    ) -> list[int]:
        """Records a processed frame in one transaction: the frame, its detections, their
        tracks (created, or advanced: ``last_seen``, the best-scoring detection, the zones
        entered, ``stationary``), the windows (created when missing, else moved forward) and
        the window links. Answers the detection ids in the order given.

        Idempotent: when the camera already has a frame of this ``seq`` nothing is written and
        the ids of that frame's detections are answered, in their original order.

        Every detection's window must be open, and either in ``windows`` or stored already;
        every link's windows and track must exist once the frame's own are written."""
        _check_all("frame", [frame], FrameRecord)
        _check_all("detections", detections, DetectionRecord)
        _check_all("windows", windows, WindowUpdate)
        _check_all("links", links, WindowLinkRecord)
        updates = {update.window_id: update for update in windows}
        if len(updates) != len(windows):
            raise InvalidRecordError("windows names a window twice")
        if any(update.camera_id != frame.camera_id for update in windows):
            raise InvalidRecordError("windows names a window of another camera")
        return self._database.write(
            lambda session: _record_frame(session, frame, detections, updates, links)
        )

    def last_seq(self, camera_id: str) -> int:
        """The highest recorded frame ``seq`` of the camera; 0 when none."""
        statement = select(func.max(Frame.seq)).where(Frame.camera_id == camera_id)
        return self._database.read(lambda session: session.scalar(statement) or 0)

    def stored_image_of(self, camera_id: str, seq: int) -> str | None:
        """The kept image of the camera's recorded frame ``seq``; None when the frame kept none
        or is not recorded."""
        statement = select(Frame.image_path).where(Frame.camera_id == camera_id, Frame.seq == seq)
        return self._database.read(lambda session: session.scalar(statement))

    def open_windows(self) -> list[WindowRow]:
        """Every open window, oldest first."""
        return self._windows_in("open")

    def unanalysed_windows(self) -> list[WindowRow]:
        """Every closed window that has no event yet, oldest first."""
        return self._windows_in("closed")

    def _windows_in(self, status: WindowStatus) -> list[WindowRow]:
        statement = (
            select(Window).where(Window.status == status).order_by(Window.opened_at, Window.id)
        )
        return self._database.read(
            lambda session: [_window_row(window) for window in session.scalars(statement)]
        )

    def close_window(self, window_id: str, closed_at: float) -> None:
        """Closes an open window; a closed (or analysed) one is left as it was."""
        check_id("window_id", window_id)
        check_time("closed_at", closed_at)

        def close(session: Session) -> None:
            window = session.get(Window, window_id, with_for_update=True)
            if window is None:
                raise UnknownReferenceError(f"no window {window_id}")
            if window.status != "open":
                return
            if closed_at < window.opened_at:
                raise InvalidRecordError(f"closed_at is before window {window_id} opened")
            window.status, window.closed_at = "closed", closed_at

        self._database.write(close)

    def window_contents(self, window_id: str) -> WindowContents:
        """Everything stored of the window (open or closed)."""
        check_id("window_id", window_id)
        return self._database.read(lambda session: _window_contents(session, window_id))

    def window_evidence(
        self, window_id: str, *, camera_name: str, zone_description: str, timezone: str
    ) -> WindowEvidence:
        """What an analyser is given about the closed window: its tracks (zones entered, the
        latest enrichment per model), its detections by time, the windows linked to it either
        way and the stored images of its frames. :class:`WindowStateError` while it is open."""
        contents = self.window_contents(window_id)
        return contents.evidence(
            camera_name=camera_name, zone_description=zone_description, timezone=timezone
        )

    # events

    def add_event(self, event: EventRecord) -> str:
        """Stores the event and answers its id. A window event also marks its window analysed,
        in the same transaction; for a window that has an analysed event already nothing
        changes and that event's id is answered. The window must be closed, of the event's
        camera, and every reason may only cite detections of the window. Health events always
        insert.

        A provisional event (an early alert) may be stored while its window is open, once per
        window (a second answers the first's id); the window's analysed event then replaces
        its fields and keeps its id."""
        _check_all("event", [event], EventRecord)
        return self._database.write(lambda session: _add_event(session, event))

    def add_enrichment(
        self,
        track_key: str,
        detection_id: int,
        model: str,
        result: Mapping[str, Any],
        embedding: np.ndarray | None,
        *,
        created_at: float,
    ) -> int:
        """Stores an enrichment model's answer about a track, from the crop of one of its
        detections, with an optional embedding (finite 1-D float32); answers its id."""
        check_id("track_key", track_key)
        check_int("detection_id", detection_id, 1, MAX_INT64)
        check_id("model", model)
        stored_result = check_json_object("result", result)
        vector = check_embedding(embedding)
        check_time("created_at", created_at)
        blob = None if vector is None else vector.astype("<f4").tobytes()

        def add(session: Session) -> int:
            owner = session.scalar(select(Detection.track_id).where(Detection.id == detection_id))
            if owner is None:
                raise UnknownReferenceError(f"no detection {detection_id}")
            if owner != track_key:
                raise InvalidRecordError(f"detection {detection_id} is not of track {track_key}")
            enrichment = Enrichment(
                track_id=track_key,
                detection_id=detection_id,
                model=model,
                result=stored_result,
                embedding=blob,
                created_at=created_at,
            )
            session.add(enrichment)
            session.flush()
            return enrichment.id

        return self._database.write(add)

    def list_events(
        self,
        *,
        cameras: Sequence[str] | None = None,
        levels: Sequence[Level] | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        after: float | None = None,
        before: float | None = None,
        stored_after: float | None = None,
        label: str | None = None,
        kind: EventKind | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[EventRow], str | None]:
        """Events newest first (by ``started_at``, then id), filtered: on any of ``cameras``,
        any of ``levels``, ``min_score <= score <= max_score``, ``after <= started_at <
        before``, ``created_at > stored_after`` (stored since, however long before it
        started), ``label`` among the event's labels, ``kind``. Answers a page of at most
        ``limit`` (1–500) and the cursor of the next page (``None`` on the last); the cursor
        must come with the same filters."""
        conditions: list[Any] = []
        with _as_query_error():
            if cameras is not None:
                for camera_id in _filter_items("cameras", cameras):
                    check_camera_id(camera_id)
                conditions.append(Event.camera_id.in_(list(cameras)))
            if levels is not None:
                for level in _filter_items("levels", levels):
                    check_choice("each of levels", level, LEVELS)
                conditions.append(Event.level.in_(list(levels)))
            if min_score is not None:
                conditions.append(Event.score >= check_number("min_score", min_score, 0.0, 100.0))
            if max_score is not None:
                conditions.append(Event.score <= check_number("max_score", max_score, 0.0, 100.0))
            if min_score is not None and max_score is not None and min_score > max_score:
                raise InvalidRecordError("min_score is above max_score")
            if after is not None:
                conditions.append(Event.started_at >= check_time("after", after))
            if before is not None:
                conditions.append(Event.started_at < check_time("before", before))
            if stored_after is not None:
                conditions.append(Event.created_at > check_time("stored_after", stored_after))
            if label is not None:
                conditions.append(
                    json_list_has(Event.labels, check_text("label", label, LABEL_LENGTH))
                )
            if kind is not None:
                conditions.append(Event.kind == check_choice("kind", kind, get_args(EventKind)))
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidQueryError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        if cursor is not None:
            started_at, event_id = decode_cursor(cursor)
            conditions.append(
                or_(
                    Event.started_at < started_at,
                    (Event.started_at == started_at) & (Event.id < event_id),
                )
            )
        statement = (
            select(Event)
            .where(*conditions)
            .order_by(Event.started_at.desc(), Event.id.desc())
            .limit(limit + 1)
        )
        rows = self._database.read(
            lambda session: [_event_row(event) for event in session.scalars(statement)]
        )
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.started_at, last.id)

    def recent_events(
        self, camera_id: str, *, since: float, until: float, limit: int = 6
    ) -> list[RecentEvent]:
        """Window events that started in ``since`` … ``until`` on any camera, newest first:
        what an analyser is told happened shortly before a window."""
        check_camera_id(camera_id)
        check_time("since", since)
        check_time("until", until)
        statement = (
            select(Event, Camera.name)
            .outerjoin(Camera, Camera.id == Event.camera_id)
            .where(Event.kind == "window", Event.started_at >= since, Event.started_at < until)
            .order_by(Event.started_at.desc(), Event.id.desc())
            .limit(max(1, min(limit, MAX_PAGE)))
        )
        return [
            RecentEvent(
                event_id=event.id,
                camera_name=name if name is not None else event.camera_id,
                same_camera=event.camera_id == camera_id,
                started_at=event.started_at,
                level=event.level,  # type: ignore[arg-type]
                summary=event.summary,
            )
            for event, name in self._database.read(lambda s: s.execute(statement).all())
        ]

    def get_event(self, event_id: str) -> EventDetail | None:
        """The event with its window's contents and every enrichment of the window's tracks;
        ``None`` when there is no such event."""
        return self._database.read(lambda session: _event_detail(session, event_id))

    def count_events_by_level(self) -> dict[Level, int]:
        """How many events there are of each level (every level present, 0 when none)."""
        statement = select(Event.level, func.count()).group_by(Event.level)
        counted: dict[str, int] = {
            level: count
            for level, count in self._database.read(lambda s: s.execute(statement).all())
        }
        return {level: counted.get(level, 0) for level in LEVELS}

    def detection_ids_by_event(self) -> dict[str, list[int]]:
        """Per window event, the ids of the detections it covers (those of its window),
        ascending. An audit: every detection is in its window's event and no other."""
        statement = (
            select(Event.id, Detection.id)
            .join(Detection, Detection.window_id == Event.window_id)
            .order_by(Event.id, Detection.id)
        )
        covered: dict[str, list[int]] = {}
        for event_id, detection_id in self._database.read(
            lambda session: session.execute(statement).all()
        ):
            covered.setdefault(event_id, []).append(detection_id)
        return covered

    def detections_without_event(self) -> list[int]:
        """The ids of detections whose window has no event yet (open or unanalysed), ascending."""
        statement = (
            select(Detection.id)
            .where(~exists().where(Event.window_id == Detection.window_id))
            .order_by(Detection.id)
        )
        return self._database.read(lambda session: list(session.scalars(statement)))


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


def _check_all(name: str, records: Sequence[object], kind: type) -> None:
    if isinstance(records, str | bytes) or not all(isinstance(r, kind) for r in records):
        raise InvalidRecordError(f"{name} must be {kind.__name__} records")


def _record_frame(
    session: Session,
    frame: FrameRecord,
    detections: Sequence[DetectionRecord],
    updates: Mapping[str, WindowUpdate],
    links: Sequence[WindowLinkRecord],
) -> list[int]:
    recorded = session.scalar(
        select(Frame.id).where(Frame.camera_id == frame.camera_id, Frame.seq == frame.seq)
    )
    if recorded is not None:
        return list(
            session.scalars(
                select(Detection.id).where(Detection.frame_id == recorded).order_by(Detection.id)
            )
        )
    _prepare_windows(session, frame, detections, updates, links)
    tracks = _locked(
        session, Track, {d.track_key for d in detections} | {link.track_key for link in links}
    )
    if any(track.camera_id != frame.camera_id for track in tracks.values()):
        raise InvalidRecordError("a detection names a track of another camera")
    frame_row = Frame(
        camera_id=frame.camera_id,
        seq=frame.seq,
        captured_at=frame.captured_at,
        width=frame.width,
        height=frame.height,
        origin=frame.origin,
        image_path=frame.image_path,
    )
    session.add(frame_row)
    session.flush()
    ids = []
    for detection in detections:
        track = tracks.get(detection.track_key)
        if track is None:
            track = Track(
                id=detection.track_key,
                camera_id=frame.camera_id,
                label=detection.label,
                first_seen=frame.captured_at,
                last_seen=frame.captured_at,
                best_detection_id=None,
                best_score=detection.score,
                zones_entered=[],
                stationary=detection.stationary,
            )
            session.add(track)
            tracks[detection.track_key] = track
        x1, y1, x2, y2 = detection.box
        detection_id = session.execute(
            insert(Detection).returning(Detection.id),
            {
                "frame_id": frame_row.id,
                "camera_id": frame.camera_id,
                "track_id": detection.track_key,
                "window_id": detection.window_id,
                "label": detection.label,
                "score": detection.score,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "zones": list(detection.zones),
                "captured_at": frame.captured_at,
            },
        ).scalar_one()
        ids.append(detection_id)
        track.last_seen = max(track.last_seen, frame.captured_at)
        if track.best_detection_id is None or detection.score > track.best_score:
            track.best_detection_id, track.best_score = detection_id, detection.score
        entered = [zone for zone in detection.zones if zone not in track.zones_entered]
        if entered:
            track.zones_entered = [*track.zones_entered, *dict.fromkeys(entered)]
        track.stationary = detection.stationary
    session.flush()
    # a link is stored once, its windows in id order, whichever way it was given
    keys = [(*sorted((link.window_id, link.linked_window_id)), link.track_key) for link in links]
    for first, second, track_key in dict.fromkeys(keys):
        if track_key not in tracks:
            raise UnknownReferenceError(f"a link names no stored track {track_key}")
        if session.get(WindowLink, (first, second, track_key)) is None:
            session.add(WindowLink(window_id=first, linked_window_id=second, track_id=track_key))
    return ids


def _locked(session: Session, model: type[LockedRow], ids: set[str]) -> dict[str, LockedRow]:
    """The stored rows of these ids, locked against concurrent writers (in id order, so two
    writers never wait on each other)."""
    if not ids:
        return {}
    rows = session.scalars(
        select(model).where(model.id.in_(sorted(ids))).order_by(model.id).with_for_update()
    )
    return {row.id: row for row in rows}


def _prepare_windows(
    session: Session,
    frame: FrameRecord,
    detections: Sequence[DetectionRecord],
    updates: Mapping[str, WindowUpdate],
    links: Sequence[WindowLinkRecord],
) -> None:
    """Creates or moves forward the windows of ``updates``; checks that every detection's
    window is open and of the frame's camera, and that every linked window exists."""
    named = {d.window_id for d in detections} | set(updates)
    named |= {w for link in links for w in (link.window_id, link.linked_window_id)}
    windows: dict[str, Window] = _locked(session, Window, named)
    for window_id, update in updates.items():
        window = windows.get(window_id)
        if window is None:
            windows[window_id] = Window(
                id=window_id,
                camera_id=update.camera_id,
                opened_at=update.opened_at,
                last_detection_at=update.last_detection_at,
                closes_by=update.closes_by,
                closed_at=None,
                status="open",
            )
            session.add(windows[window_id])
            continue
        if window.camera_id != frame.camera_id:
            raise InvalidRecordError(f"window {window_id} is of another camera")
        if window.status != "open":
            raise WindowStateError(f"window {window_id} is closed")
        window.last_detection_at = max(window.last_detection_at, update.last_detection_at)
        window.closes_by = max(window.closes_by, update.closes_by)
    for window_id in named - windows.keys():
        raise UnknownReferenceError(f"no window {window_id}")
    for detection in detections:
        window = windows[detection.window_id]
        if window.camera_id != frame.camera_id:
            raise InvalidRecordError(f"window {window.id} is of another camera")
        if window.status != "open":
            raise WindowStateError(f"window {window.id} is closed")


def _add_event(session: Session, event: EventRecord) -> str:
    if event.window_id is None:
        return _insert_event(session, event)
    window = session.get(Window, event.window_id, with_for_update=True)
    if window is None:
        raise UnknownReferenceError(f"no window {event.window_id}")
    existing = session.scalar(select(Event).where(Event.window_id == window.id))
    if existing is not None and (event.provisional or not existing.provisional):
        return existing.id
    if window.status == "open" and not event.provisional:
        raise WindowStateError(f"window {window.id} is still open")
    if window.camera_id != event.camera_id:
        raise InvalidRecordError(f"window {window.id} is of another camera")
    cited = {i for reason in event.reasons for i in reason.detection_ids}
    if cited:
        found = session.scalars(
            select(Detection.id).where(
                Detection.window_id == window.id, Detection.id.in_(sorted(cited))
            )
        )
        foreign = sorted(cited - set(found))
        if foreign:
            shown = ", ".join(map(str, foreign[:10]))
            raise InvalidRecordError(f"reasons cite detections not in the window: {shown}")
    if not event.provisional:
        window.status = "analysed"
    if existing is None:
        return _insert_event(session, event)
    for name, value in _event_columns(event).items():  # the analysis replaces the early alert
        setattr(existing, name, value)
    return existing.id


def _insert_event(session: Session, event: EventRecord) -> str:
    event_id = new_event_id(event.started_at)
    session.add(Event(id=event_id, **_event_columns(event)))
    return event_id


def _filter_items(name: str, values: Sequence[str]) -> Sequence[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidRecordError(f"{name} must be a list")
    if not 1 <= len(values) <= MAX_FILTER_ITEMS:
        raise InvalidRecordError(f"{name} must hold 1 to {MAX_FILTER_ITEMS} values")
    return values


def _event_detail(session: Session, event_id: str) -> EventDetail | None:
    if not _is_id(event_id):
        return None
    event = session.get(Event, event_id)
    if event is None:
        return None
    camera = session.get(Camera, event.camera_id)
    contents = enrichments = None
    if event.window_id is not None:
        contents = _window_contents(session, event.window_id)
        enrichments = session.scalars(
            select(Enrichment)
            .where(
                Enrichment.track_id.in_(
                    select(Detection.track_id).where(Detection.window_id == event.window_id)
                )
            )
            .order_by(Enrichment.created_at, Enrichment.id)
        )
    return EventDetail(
        event=_event_row(event),
        camera_name=None if camera is None else camera.name,
        window=contents,
        enrichments=tuple(_enrichment_row(e) for e in enrichments or ()),
    )
