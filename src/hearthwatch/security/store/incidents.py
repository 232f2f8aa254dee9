"""Incidents and the appearance descriptors they are found with: the re-identification side of
the events store.

A track's appearance descriptors are its enrichments that carry an embedding (the re-ID model's,
or the colour-histogram fallback's). :meth:`IncidentStore.link` joins a new event to the
incident of the events whose tracks it matched, or opens one with them; an incident's events
are removed with them (the database cascades) and retention drops an incident left with fewer
than two. :class:`IncidentStore` is thread-safe (each call is its own transaction).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from hearthwatch.security.store.database import Database
from hearthwatch.security.store.errors import UnknownReferenceError
from hearthwatch.security.store.schema import (
    Camera,
    Detection,
    Enrichment,
    Event,
    Incident,
    IncidentEvent,
    Track,
)
from hearthwatch.security.store.validation import check_id, check_int, check_time

MAX_PAGE = 500


@dataclass(frozen=True)
class Descriptor:
    enrichment_id: int
    track_id: str
    camera_id: str
    label: str
    model: str
    vector: np.ndarray
    seen_at: float


@dataclass(frozen=True)
class Match:
    event_id: str
    track_id: str
    similarity: float


@dataclass(frozen=True)
class IncidentEntry:
    event_id: str
    camera_id: str
    camera_name: str
    started_at: float
    track_id: str
    similarity: float | None


@dataclass(frozen=True)
class IncidentRow:
    id: str
    label: str
    descriptor: str
    created_at: float
    updated_at: float
    events: tuple[IncidentEntry, ...]
    """By the time each event started."""


class IncidentStore:
    def __init__(self, database: Database):
        self._database = database

    def descriptors(
        self, *, since: float, track_ids: Sequence[str] | None = None
    ) -> list[Descriptor]:
        """Appearance descriptors of detections captured since ``since`` (of ``track_ids``
        only, if given); ``seen_at`` is the detection's capture time."""
        check_time("since", since)
        statement = (
            select(Enrichment, Track.camera_id, Track.label, Detection.captured_at)
            .join(Track, Track.id == Enrichment.track_id)
            .join(Detection, Detection.id == Enrichment.detection_id)
            .where(Enrichment.embedding.is_not(None), Detection.captured_at >= since)
            .order_by(Enrichment.id)
        )
        if track_ids is not None:
            for track_id in track_ids:
                check_id("track_id", track_id)
            statement = statement.where(Enrichment.track_id.in_(list(track_ids)))
        rows = self._database.read(lambda session: session.execute(statement).all())
        return [
            Descriptor(
                enrichment_id=row.id,
                track_id=row.track_id,
                camera_id=camera_id,
                label=label,
                model=row.model,
                vector=np.frombuffer(row.embedding or b"", dtype="<f4").astype(np.float32),
                seen_at=captured_at,
            )
            for row, camera_id, label, captured_at in rows
        ]

    def events_of_tracks(self, track_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """Per track, the latest window event it has detections in and when that started."""
        if not track_ids:
            return {}
        statement = (
            select(Detection.track_id, Event.id, Event.started_at)
            .join(Event, Event.window_id == Detection.window_id)
            .where(Detection.track_id.in_(list(track_ids)))
            .distinct()
            .order_by(Event.started_at)
        )
        found: dict[str, tuple[str, float]] = {}
        for track_id, event_id, started_at in self._database.read(
            lambda session: session.execute(statement).all()
        ):
            found[track_id] = (event_id, started_at)
        return found

    def link(
        self,
        event_id: str,
        track_id: str,
        matches: Sequence[Match],
        *,
        label: str,
        descriptor: str,
        now: float,
    ) -> str:
        """Joins ``event_id`` (by its ``track_id``) to the incident (of ``label``) that holds
        one of the matched tracks, or opens one holding them; answers the incident's id."""
        check_id("event_id", event_id)
        check_time("now", now)
        check_int("matches", len(matches), 1, MAX_PAGE)

        def link(session: Session) -> str:
            if session.get(Event, event_id) is None:
                raise UnknownReferenceError(f"no event {event_id}")
            matched = [m for m in matches if session.get(Event, m.event_id) is not None]
            if not matched:
                raise UnknownReferenceError("none of the matched events exists any more")
            existing = session.scalar(
                select(IncidentEvent.incident_id)
                .join(Incident, Incident.id == IncidentEvent.incident_id)
                .where(
                    tuple_(IncidentEvent.event_id, IncidentEvent.track_id).in_(
                        [(m.event_id, m.track_id) for m in matched]
                    ),
                    Incident.label == label,
                )
                .order_by(Incident.created_at)
                .limit(1)
            )
            incident: Incident | None
            if existing is None:
                incident = Incident(
                    id=f"inc-{event_id}-{secrets.token_hex(3)}",
                    label=label,
                    descriptor=descriptor,
                    created_at=now,
                    updated_at=now,
                )
                session.add(incident)
                session.flush()
            else:
                incident = session.get(Incident, existing, with_for_update=True)
                assert incident is not None
                incident.updated_at = now
            rows: list[tuple[str, str, float | None]] = [
                (m.event_id, m.track_id, None) for m in matched
            ]
            rows.append((event_id, track_id, max(m.similarity for m in matched)))
            for member, track, similarity in rows:
                if session.get(IncidentEvent, (incident.id, member, track)) is None:
                    session.add(
                        IncidentEvent(
                            incident_id=incident.id,
                            event_id=member,
                            track_id=track,
                            similarity=similarity,
                            added_at=now,
                        )
                    )
            return incident.id

        return self._database.write(link)

    def list(self, *, limit: int = 50, event_id: str | None = None) -> list[IncidentRow]:
        """Incidents, most recently grown first (those of ``event_id`` only, if given)."""
        check_int("limit", limit, 1, MAX_PAGE)
        statement = select(Incident).order_by(Incident.updated_at.desc()).limit(limit)
        if event_id is not None:
            check_id("event_id", event_id)
            statement = statement.where(
                Incident.id.in_(
                    select(IncidentEvent.incident_id).where(IncidentEvent.event_id == event_id)
                )
            )

        def read(session: Session) -> list[IncidentRow]:
            incidents = list(session.scalars(statement))
            out = []
            for incident in incidents:
                members = session.execute(
                    select(IncidentEvent, Event.camera_id, Event.started_at, Camera.name)
                    .join(Event, Event.id == IncidentEvent.event_id)
                    .outerjoin(Camera, Camera.id == Event.camera_id)
                    .where(IncidentEvent.incident_id == incident.id)
                    .order_by(Event.started_at, Event.id)
                ).all()
                entries = tuple(
                    IncidentEntry(
                        event_id=member.event_id,
                        camera_id=camera_id,
                        camera_name=name if name is not None else camera_id,
                        started_at=started_at,
                        track_id=member.track_id,
                        similarity=member.similarity,
                    )
                    for member, camera_id, started_at, name in members
                )
                out.append(
                    IncidentRow(
                        incident.id,
                        incident.label,
                        incident.descriptor,
                        incident.created_at,
                        incident.updated_at,
                        entries,
                    )
                )
            return out

        return self._database.read(read)
