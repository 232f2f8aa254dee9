"""Cross-camera re-identification: the same person (or vehicle) seen by two cameras within a
time horizon, found by the cosine similarity of appearance descriptors, becomes an incident
linking their events ("same person: front_door 14:02 → back_door 14:07").

Descriptors (:mod:`.appearance`) are enrichments with an embedding: the zoo's ``reid`` model
(MobileNetV2) for people when it is available; otherwise, and for vehicles, the colour-histogram
fallback, stored as the ``appearance`` enrichment and named as the fallback wherever a match
is shown. Each kind has its own :class:`~.vector_index.VectorIndex` (vectors of one kind are
only compared with their kind) holding the descriptors of the last ``horizon_s``, loaded from
the store at start and pruned as time passes; the store stays the record (retention removes
descriptors with their tracks, and a hit whose track has no event any more is ignored).

When a window closes, each person or vehicle track of it is described by the mean of its
descriptors and searched for among other cameras' tracks of the same class seen within the
horizon before the window's end; the best track per other camera at or above the kind's
threshold is a match. The matches go into the analyser's evidence and, once the window's event
is stored, into an incident. :class:`ReidMatcher` is event-loop-confined (its indexes are
thread-safe); store calls go through the pipeline's store executor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from hearthwatch.security.appearance import (
    COLOUR_DESCRIPTOR,
    DEFAULT_THRESHOLDS,
    REID_DESCRIPTOR,
    mean_descriptor,
)
from hearthwatch.security.evidence import ReidMatch, WindowEvidence
from hearthwatch.security.store.incidents import Descriptor, IncidentStore, Match
from hearthwatch.security.vector_index import VectorIndex

log = logging.getLogger(__name__)

REID_MODEL: Final = "reid"
APPEARANCE_MODEL: Final = "appearance"
"""The enrichment name of the colour-histogram fallback the pipeline stores."""
DESCRIPTOR_OF: Final[Mapping[str, str]] = {
    REID_MODEL: REID_DESCRIPTOR,
    APPEARANCE_MODEL: COLOUR_DESCRIPTOR,
}
PEOPLE: Final = frozenset({"person"})
VEHICLES: Final = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})
SEARCHED: Final = 32
"""Nearest descriptors fetched per search before the camera and class filters."""


@dataclass(frozen=True)
class _Entry:
    track_id: str
    camera_id: str
    label: str
    model: str
    seen_at: float


@dataclass(frozen=True)
class FoundMatch:
    """A match of one track of the window, with what the incident needs."""

    evidence: ReidMatch
    match: Match
    label: str


class ReidMatcher:
    def __init__(
        self,
        incidents: IncidentStore,
        store_call: Callable[..., Awaitable[Any]],
        camera_name: Callable[[str], Awaitable[str]],
        *,
        horizon_s: float,
        thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS,
    ):
        self._incidents = incidents
        self._call = store_call
        self._camera_name = camera_name
        self.horizon_s = horizon_s
        self._thresholds = thresholds
        self._indexes: dict[str, VectorIndex] = {}
        self._entries: dict[int, _Entry] = {}

    async def load(self, now: float) -> int:
        """Index the descriptors of the last horizon; how many."""
        found = await self._call(self._incidents.descriptors, since=now - self.horizon_s)
        await self.add(*found)
        return len(found)

    async def add(self, *descriptors: Descriptor) -> None:
        """Index stored descriptors (those of a kind this matcher knows); the index work runs
        on a worker thread."""
        kept = [d for d in descriptors if d.model in DESCRIPTOR_OF and _described(d.label)]
        for descriptor in kept:
            if descriptor.model not in self._indexes:
                self._indexes[descriptor.model] = VectorIndex(int(descriptor.vector.shape[0]))
        indexed = await asyncio.to_thread(self._index, kept)
        for descriptor in indexed:
            self._entries[descriptor.enrichment_id] = _Entry(
                descriptor.track_id,
                descriptor.camera_id,
                descriptor.label,
                descriptor.model,
                descriptor.seen_at,
            )

    def _index(self, descriptors: list[Descriptor]) -> list[Descriptor]:
        """Those of ``descriptors`` the indexes took (on a worker thread)."""
        indexed = []
        for descriptor in descriptors:
            try:
                self._indexes[descriptor.model].add(
                    descriptor.enrichment_id, descriptor.vector, descriptor.seen_at
                )
            except ValueError as exc:  # a stored vector of another length, or none at all
                log.warning("descriptor %d not indexed: %s", descriptor.enrichment_id, exc)
                continue
            indexed.append(descriptor)
        return indexed

    def prune(self, before: float) -> int:
        """Forget descriptors seen before ``before``; how many."""
        old: dict[str, list[int]] = {}
        for key, entry in self._entries.items():
            if entry.seen_at < before:
                old.setdefault(entry.model, []).append(key)
        for model, keys in old.items():
            self._indexes[model].remove(keys)
            for key in keys:
                del self._entries[key]
        return sum(len(keys) for keys in old.values())

    async def matches(self, evidence: WindowEvidence) -> list[FoundMatch]:
        """The window's tracks that match tracks of other cameras (see the module
        docstring)."""
        tracks = {t.key: t.label for t in evidence.tracks if _described(t.label)}
        if not tracks or not self._indexes:
            return []
        since = evidence.opened_at - self.horizon_s
        own: list[Descriptor] = await self._call(
            self._incidents.descriptors, since=since, track_ids=sorted(tracks)
        )
        grouped: dict[tuple[str, str], list[np.ndarray]] = {}
        for descriptor in own:
            grouped.setdefault((descriptor.track_id, descriptor.model), []).append(
                descriptor.vector
            )
        own_keys = {d.enrichment_id for d in own}
        best: dict[tuple[str, str], tuple[float, str, str, float]] = {}
        for (track_id, model), vectors in grouped.items():
            index = self._indexes.get(model)
            if index is None:
                continue
            label = tracks[track_id]
            # only other cameras' tracks of the class are candidates: the rest is excluded in
            # the index, so however many there are they cannot crowd the candidates out
            exclude = own_keys | {
                key
                for key, entry in self._entries.items()
                if entry.camera_id == evidence.camera_id or entry.label != label
            }
            try:
                query = mean_descriptor(vectors)
                hits = await asyncio.to_thread(
                    index.search, query, SEARCHED, since=since, until=evidence.closed_at,
                    exclude=exclude,
                )  # fmt: skip
            except ValueError as exc:
                log.warning("track %s not searched: %s", track_id, exc)
                continue
            threshold = self._thresholds[DESCRIPTOR_OF[model]]
            for key, similarity in hits:
                entry = self._entries.get(key)
                if entry is None or similarity < threshold or key in exclude:
                    continue
                slot = (track_id, entry.camera_id)
                if slot not in best or similarity > best[slot][0]:
                    best[slot] = (similarity, entry.track_id, model, entry.seen_at)
        if not best:
            return []
        events = await self._call(
            self._incidents.events_of_tracks, sorted({hit[1] for hit in best.values()})
        )
        found = []
        for (track_id, camera_id), (similarity, other, model, seen_at) in sorted(best.items()):
            event = events.get(other)
            if event is None:  # the matched track's window has no event (yet, or any more)
                continue
            event_id, _ = event
            found.append(
                FoundMatch(
                    ReidMatch(
                        track_key=track_id,
                        camera_name=await self._camera_name(camera_id),
                        seen_at=seen_at,
                        similarity=round(similarity, 3),
                        descriptor=DESCRIPTOR_OF[model],
                        event_id=event_id,
                    ),
                    Match(event_id, other, similarity),
                    tracks[track_id],
                )
            )
        return found

    async def link(self, event_id: str, found: list[FoundMatch], now: float) -> list[str]:
        """The window's event joined to the incidents of its matches; their ids."""
        by_track: dict[str, list[FoundMatch]] = {}
        for item in found:
            by_track.setdefault(item.evidence.track_key, []).append(item)
        incidents = []
        for track_id, items in by_track.items():
            incident: str = await self._call(
                self._incidents.link,
                event_id,
                track_id,
                [item.match for item in items],
                label=items[0].label,
                descriptor=items[0].evidence.descriptor,
                now=now,
            )
            incidents.append(incident)
        return incidents


def _described(label: str) -> bool:
    return label in PEOPLE or label in VEHICLES


def descriptor_model(label: str, reid_available: bool) -> str | None:
    """Which descriptor a track of ``label`` gets: the re-ID model's for a person when it is
    available, else the colour-histogram fallback; None for a class not re-identified."""
    if label in PEOPLE and reid_available:
        return REID_MODEL
    return APPEARANCE_MODEL if _described(label) else None
