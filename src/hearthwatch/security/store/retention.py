"""Retention: :func:`apply_retention` removes what is older than the age limit, then the oldest
of what remains until the stored files fit the size limit.

What it removes comes in units, each in its own transaction, oldest first (by start time):

- an event: its row and files (snapshot, clip); for a window event also its window;
- a closed window that has no event yet (its analysis never came), unless the pipeline says
  its analysis is queued or under way;
- a frame none of whose detections remain (or that had none), with its image.

Removing a window removes its detections, its links to other windows, the frames left without
detections (with their images) and the tracks left without detections (with their
enrichments and embeddings); a track that lives on in another window keeps its enrichments and
points its best detection at its best remaining one. Open windows are never touched, nor their
detections, frames or tracks.

Files are deleted after their rows' transaction commits (a crash leaves a stray file, never a
row without its file), and only inside the data directory: a stored path that resolves outside
it (an absolute path, ``..``, a symlink out) is left alone and reported. Each stored file is
expected to belong to one row only.

Runs on the calling thread; it is safe to run while the pipeline writes (each unit is checked
again under lock before it is removed), but not twice at once.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import delete, exists, func, or_, select, union
from sqlalchemy.orm import Session

from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.schema import (
    Detection,
    Enrichment,
    Event,
    Frame,
    Incident,
    IncidentEvent,
    Track,
    Window,
    WindowLink,
)
from hearthwatch.security.store.validation import MAX_INT64, check_int, check_number, check_time

SECONDS_PER_DAY = 86_400.0
MAX_AGE_DAYS = 36_500.0
BATCH = 100
CHUNK = 500
"""Ids per ``IN (...)`` list: far below any database's limit on bound parameters."""

UnitKind = Literal["event", "window", "frame"]


@dataclass(frozen=True)
class RetentionReport:
    events_deleted: int
    windows_deleted: int
    detections_deleted: int
    frames_deleted: int
    tracks_deleted: int
    enrichments_deleted: int
    files_deleted: int
    bytes_freed: int
    bytes_kept: int
    """What the files still referenced take (as counted before and during the run)."""
    refused_paths: tuple[str, ...]
    """Stored paths that lead outside the data directory: neither deleted nor counted."""


@dataclass
class _Removed:
    """What one unit's transaction removed, and the files to delete once it commits."""

    events: int = 0
    windows: int = 0
    detections: int = 0
    frames: int = 0
    tracks: int = 0
    enrichments: int = 0
    paths: list[str] = field(default_factory=list)

    def count(self, other: _Removed) -> None:
        """Adds the rows ``other`` removed to this tally."""
        self.events += other.events
        self.windows += other.windows
        self.detections += other.detections
        self.frames += other.frames
        self.tracks += other.tracks
        self.enrichments += other.enrichments


@dataclass(frozen=True)
class _Unit:
    at: float
    kind: UnitKind
    key: str | int


class _Run:
    """One retention run's tally; confined to the thread running it."""

    def __init__(self, store: EventStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.rows = _Removed()
        self.files_deleted = 0
        self.bytes_freed = 0
        self.refused: dict[str, None] = {}

    def file(self, stored: str) -> tuple[Path, int] | None:
        """The regular file a stored path names and its size, if it lies inside the data
        directory and exists; a path leading outside is noted as refused."""
        resolved = (self.root / stored).resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            self.refused[stored] = None
            return None
        try:
            status = resolved.stat()
        except OSError:
            return None
        return (resolved, status.st_size) if stat.S_ISREG(status.st_mode) else None

    def remove(self, unit: _Unit) -> int:
        """Removes the unit's rows, then its files; answers the bytes freed."""
        removed = self.store.database.write(lambda session: _REMOVERS[unit.kind](session, unit))
        self.rows.count(removed)
        freed = 0
        for stored in dict.fromkeys(removed.paths):
            found = self.file(stored)
            if found is not None:
                found[0].unlink(missing_ok=True)
                self.files_deleted += 1
                freed += found[1]
        self.bytes_freed += freed
        return freed

    def referenced_bytes(self) -> int:
        paths = union(
            select(Event.snapshot_path.label("path")),
            select(Event.clip_path),
            select(Frame.image_path),
        )
        stored = self.store.database.read(lambda session: list(session.scalars(paths)))
        sizes = (self.file(path) for path in stored if path is not None)
        return sum(found[1] for found in sizes if found is not None)

    def report(self, bytes_kept: int) -> RetentionReport:
        return RetentionReport(
            events_deleted=self.rows.events,
            windows_deleted=self.rows.windows,
            detections_deleted=self.rows.detections,
            frames_deleted=self.rows.frames,
            tracks_deleted=self.rows.tracks,
            enrichments_deleted=self.rows.enrichments,
            files_deleted=self.files_deleted,
            bytes_freed=self.bytes_freed,
            bytes_kept=bytes_kept,
            refused_paths=tuple(self.refused),
        )


def apply_retention(
    store: EventStore,
    data_dir: Path,
    *,
    now: float,
    max_age_days: float,
    max_bytes: int,
    analysing: Callable[[str], bool] = lambda window_id: False,
) -> RetentionReport:
    """Removes every unit that started more than ``max_age_days`` before ``now``, then the
    oldest units until the files the remaining rows reference take at most ``max_bytes``
    (fewer when only open windows' files remain). A closed window for which ``analysing``
    answers True (its analysis queued or under way; called from this thread) is left alone."""
    check_time("now", now)
    check_number("max_age_days", max_age_days, 0.0, MAX_AGE_DAYS)
    check_int("max_bytes", max_bytes, 0, MAX_INT64)
    run = _Run(store, data_dir.resolve())
    cutoff = now - max_age_days * SECONDS_PER_DAY

    def removable(units: Iterator[_Unit]) -> Iterator[_Unit]:
        return (u for u in units if u.kind != "window" or not analysing(str(u.key)))

    for unit in removable(_oldest_first(store, before=cutoff)):
        run.remove(unit)
    kept = run.referenced_bytes()
    if kept > max_bytes:
        for unit in removable(_oldest_first(store, before=None)):
            kept -= run.remove(unit)
            if kept <= max_bytes:
                break
    return run.report(max(kept, 0))


def _oldest_first(store: EventStore, *, before: float | None) -> Iterator[_Unit]:
    """Removable units, oldest first, in batches read afresh (the caller removes each before
    asking for the next); ends when none is left or a batch brings nothing new."""
    seen: set[tuple[UnitKind, str | int]] = set()
    while True:
        batch = store.database.read(lambda session: _oldest_units(session, before))
        fresh = [unit for unit in batch if (unit.kind, unit.key) not in seen]
        if not fresh:
            return
        for unit in fresh:
            seen.add((unit.kind, unit.key))
            yield unit


def _oldest_units(session: Session, before: float | None) -> list[_Unit]:
    events = select(Event.started_at, Event.id).order_by(Event.started_at, Event.id)
    windows = (
        select(Window.opened_at, Window.id)
        .where(Window.status == "closed")
        .order_by(Window.opened_at, Window.id)
    )
    frames = (
        select(Frame.captured_at, Frame.id)
        .where(~exists().where(Detection.frame_id == Frame.id))
        .order_by(Frame.captured_at, Frame.id)
    )
    if before is not None:
        events = events.where(Event.started_at < before)
        windows = windows.where(Window.opened_at < before)
        frames = frames.where(Frame.captured_at < before)
    units = [_Unit(at, "event", key) for at, key in session.execute(events.limit(BATCH))]
    units += [_Unit(at, "window", key) for at, key in session.execute(windows.limit(BATCH))]
    units += [_Unit(at, "frame", key) for at, key in session.execute(frames.limit(BATCH))]
    return sorted(units, key=lambda unit: (unit.at, unit.kind, str(unit.key)))[:BATCH]


def _chunks(ids: Iterable[int | str]) -> Iterator[list[int | str]]:
    ordered = sorted(ids, key=str)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _remove_event(session: Session, unit: _Unit) -> _Removed:
    event = session.get(Event, unit.key)
    if event is None or event.provisional:  # an early alert: its window is open or analysed now
        return _Removed()
    incidents = session.scalars(
        select(IncidentEvent.incident_id).where(IncidentEvent.event_id == event.id)
    ).all()
    session.delete(event)  # its feedback and incident entries go with it (ON DELETE CASCADE)
    session.flush()
    for incident_id in incidents:  # an incident of fewer than two events links nothing
        left = session.scalar(
            select(func.count())
            .select_from(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
        )
        if (left or 0) < 2:
            session.execute(delete(Incident).where(Incident.id == incident_id))
    removed = _remove_window(session, event.window_id) if event.window_id else _Removed()
    removed.events += 1
    removed.paths += [path for path in (event.snapshot_path, event.clip_path) if path]
    return removed


def _remove_unanalysed_window(session: Session, unit: _Unit) -> _Removed:
    window = session.get(Window, unit.key, with_for_update=True)
    if window is None or window.status != "closed":  # analysed since it was listed
        return _Removed()
    return _remove_window(session, window.id)


def _remove_frame(session: Session, unit: _Unit) -> _Removed:
    frame = session.get(Frame, unit.key, with_for_update=True)
    if frame is None or session.scalar(select(exists().where(Detection.frame_id == frame.id))):
        return _Removed()
    session.delete(frame)
    return _Removed(frames=1, paths=[frame.image_path] if frame.image_path else [])


_REMOVERS = {"event": _remove_event, "window": _remove_unanalysed_window, "frame": _remove_frame}


def _remove_window(session: Session, window_id: str) -> _Removed:
    """The window and its detections, links, and the frames and tracks left without
    detections; tracks that live on get their best remaining detection."""
    removed = _Removed(windows=1)
    detections = session.execute(
        select(Detection.id, Detection.frame_id, Detection.track_id).where(
            Detection.window_id == window_id
        )
    ).all()
    session.execute(
        delete(WindowLink).where(
            or_(WindowLink.window_id == window_id, WindowLink.linked_window_id == window_id)
        )
    )
    session.execute(delete(Detection).where(Detection.window_id == window_id))
    session.execute(delete(Window).where(Window.id == window_id))
    removed.detections = len(detections)
    frame_ids = {row.frame_id for row in detections}
    for chunk in _chunks(frame_ids):
        orphans = session.execute(
            select(Frame.id, Frame.image_path).where(
                Frame.id.in_(chunk), ~exists().where(Detection.frame_id == Frame.id)
            )
        ).all()
        session.execute(delete(Frame).where(Frame.id.in_([row.id for row in orphans])))
        removed.frames += len(orphans)
        removed.paths += [row.image_path for row in orphans if row.image_path]
    _settle_tracks(
        session, {row.track_id for row in detections}, {row.id for row in detections}, removed
    )
    return removed


def _settle_tracks(
    session: Session, track_ids: set[str], gone: set[int], removed: _Removed
) -> None:
    """Removes the tracks left without detections (their enrichments too); points the others'
    best detection at their best remaining one when it was among ``gone``."""
    for chunk in _chunks(track_ids):
        tracks: Sequence[Track] = session.scalars(
            select(Track).where(Track.id.in_(chunk)).order_by(Track.id).with_for_update()
        ).all()
        for track in tracks:
            best = session.execute(
                select(Detection.id, Detection.score)
                .where(Detection.track_id == track.id)
                .order_by(Detection.score.desc(), Detection.id)
                .limit(1)
            ).first()
            if best is None:
                enrichments = session.scalars(
                    select(Enrichment.id).where(Enrichment.track_id == track.id)
                ).all()
                session.execute(delete(Enrichment).where(Enrichment.track_id == track.id))
                session.execute(delete(WindowLink).where(WindowLink.track_id == track.id))
                session.delete(track)
                removed.enrichments += len(enrichments)
                removed.tracks += 1
            elif track.best_detection_id is None or track.best_detection_id in gone:
                track.best_detection_id, track.best_score = best.id, best.score
