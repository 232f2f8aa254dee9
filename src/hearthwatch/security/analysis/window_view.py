"""A closed window as the analysers read it: its tracks with their detections in order (first,
best and last ids, zones and the detection that first entered each), what the enrichment results
say in the shapes the models produce (postures, face visibility, an object's kind, threats), and
the camera's local clock (night hours in its own time zone).

Anything of an unexpected shape in the evidence is ignored, never trusted; names read from it
are cut short and stripped of anything but word characters. Pure functions over frozen data:
thread-safe.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from hearthwatch.security.analysis.base import EvidenceError
from hearthwatch.security.evidence import DetectionEvidence, TrackEvidence, WindowEvidence

MAX_ENRICHMENT_RESULTS: Final = 64
"""Per track, the most enrichment results read; per result, the most list items read."""
MAX_NAME_CHARS: Final = 40
"""Labels and zone names from the evidence are cut to this many characters in reason texts."""
UNKNOWN_KIND: Final = "unknown"
LATEST_EPOCH_S: Final = 4_102_444_800.0
"""2100-01-01 UTC: capture times from 1970 up to this are accepted; a track's first and last
sighting outside it are ignored (its detections' times are used)."""


@dataclass(frozen=True)
class Enrichment:
    """What the analysers read from one track's enrichment results."""

    postures: frozenset[str] = frozenset()
    face_visible: bool | None = None
    kind: str | None = None
    threats: Mapping[str, float] = field(default_factory=dict)
    """Threat label → its highest score."""


@dataclass(frozen=True)
class TrackView:
    """One track as the analysers see it: its detections in this window (at least one), by
    capture time then id."""

    key: str
    label: str
    first_id: int
    best_id: int
    last_id: int
    first_seen: float
    last_seen: float
    zone_first_ids: Mapping[str, int]
    """Zone entered → the first detection in it (the best one when no detection says)."""
    stationary: bool
    enrichment: Enrichment
    detections: tuple[DetectionEvidence, ...]
    enrichment_results: Mapping[str, Any]
    """The track's raw enrichment results (model → latest result); empty when not a mapping."""

    @property
    def dwell_s(self) -> float:
        return self.last_seen - self.first_seen


@dataclass(frozen=True)
class Clock:
    """Local times of the camera and whether they fall at night."""

    zone: ZoneInfo
    night_starts: time
    night_ends: time

    def local(self, timestamp: float) -> datetime:
        return datetime.fromtimestamp(timestamp, self.zone)

    def hhmm(self, timestamp: float) -> str:
        return self.local(timestamp).strftime("%H:%M")

    def is_night(self, timestamp: float) -> bool:
        return within_hours(self.local(timestamp).time(), self.night_starts, self.night_ends)

    def saw_night(self, first: float, last: float) -> bool:
        """Whether any of ``first`` … ``last`` fell at night: an end at night, or a night that
        began in between."""
        if self.is_night(first) or self.is_night(last) or last - first >= 86400:
            return True
        start = self.local(first)
        night = datetime.combine(start.date(), self.night_starts, tzinfo=self.zone)
        if night <= start:
            night += timedelta(days=1)
        return night.timestamp() <= last


def within_hours(moment: time, starts: time, ends: time) -> bool:
    """Whether the time of day ``moment`` is in ``starts`` … ``ends`` (over midnight when
    ``starts`` is the later)."""
    if starts > ends:
        return moment >= starts or moment < ends
    return starts <= moment < ends


def checked_zone(evidence: WindowEvidence) -> ZoneInfo:
    if not evidence.detections:
        raise EvidenceError(f"window {evidence.window_id} has no detections")
    if not all(plausible(d.captured_at) for d in evidence.detections):
        raise EvidenceError(
            f"window {evidence.window_id} has a capture time outside 1970–2100 (or not finite)"
        )
    try:
        return ZoneInfo(evidence.timezone)
    except (KeyError, ValueError, OSError) as error:  # ZoneInfoNotFoundError is a KeyError
        raise EvidenceError(f"unknown time zone {evidence.timezone!r}") from error


def plausible(timestamp: float) -> bool:
    """Whether ``timestamp`` is an epoch time local dates can be reckoned with."""
    return 0.0 <= timestamp < LATEST_EPOCH_S


def tracks_of(evidence: WindowEvidence) -> list[TrackView]:
    """The window's tracks that have detections in it, by first sighting; detections whose
    track the evidence lacks make a track of their own key."""
    by_key: dict[str, list[DetectionEvidence]] = {}
    for detection in evidence.detections:
        by_key.setdefault(detection.track_key, []).append(detection)
    known = {track.key: track for track in evidence.tracks}
    tracks = [_track_view(known.get(key), key, detections) for key, detections in by_key.items()]
    return sorted(tracks, key=lambda track: (track.first_seen, track.key))


def _track_view(
    track: TrackEvidence | None, key: str, detections: list[DetectionEvidence]
) -> TrackView:
    detections = sorted(detections, key=lambda d: (d.captured_at, d.id))
    ids = {d.id for d in detections}
    first_seen, last_seen = detections[0].captured_at, detections[-1].captured_at
    if track is not None:
        label = track.label
        stated = (track.first_seen, track.last_seen)
        if all(plausible(t) for t in stated) and stated[0] <= stated[1]:
            first_seen, last_seen = min(first_seen, stated[0]), max(last_seen, stated[1])
    else:
        label = Counter(d.label for d in detections).most_common(1)[0][0]
    if track is not None and track.best_detection_id in ids:
        best_id = track.best_detection_id
    else:
        best_id = max(detections, key=lambda d: (d.score, -d.captured_at, -d.id)).id
    zone_first_ids: dict[str, int] = {}
    for detection in detections:
        for zone in detection.zones:
            zone_first_ids.setdefault(zone, detection.id)
    for zone in track.zones_entered if track is not None else ():
        zone_first_ids.setdefault(zone, best_id)
    return TrackView(
        key=key,
        label=label,
        first_id=detections[0].id,
        best_id=best_id,
        last_id=detections[-1].id,
        first_seen=first_seen,
        last_seen=last_seen,
        zone_first_ids=zone_first_ids,
        stationary=track.stationary if track is not None else False,
        enrichment=read_enrichments(track.enrichments if track is not None else None),
        detections=tuple(detections),
        enrichment_results=_results_of(track),
    )


def _results_of(track: TrackEvidence | None) -> Mapping[str, Any]:
    results = track.enrichments if track is not None else None
    if not isinstance(results, Mapping):
        return {}
    return dict(itertools.islice(results.items(), MAX_ENRICHMENT_RESULTS))


def read_enrichments(results: object) -> Enrichment:
    """The postures, face visibility, object kind and threats among ``results`` (enricher
    name → its latest result); anything of another shape is ignored."""
    if not isinstance(results, Mapping):
        return Enrichment()
    postures: set[str] = set()
    faces: set[bool] = set()
    kinds: list[str] = []
    threats: dict[str, float] = {}
    for result in itertools.islice(results.values(), MAX_ENRICHMENT_RESULTS):
        if not isinstance(result, Mapping):
            continue
        postures.update(short_names(result.get("postures")))
        if isinstance(result.get("face_visible"), bool):
            faces.add(result["face_visible"])
        kind = short_name(result.get("label"))
        if kind is not None and kind != UNKNOWN_KIND:
            kinds.append(kind)
        frame = result.get("frame")
        if isinstance(frame, Mapping):
            for label, score in _threat_labels(frame.get("threats")):
                threats[label] = max(score, threats.get(label, score))
    return Enrichment(
        postures=frozenset(postures),
        face_visible=True if True in faces else (False if faces else None),
        kind=kinds[0] if kinds else None,
        threats=threats,
    )


def _threat_labels(threats: object) -> Iterable[tuple[str, float]]:
    if not isinstance(threats, list | tuple):
        return
    for threat in itertools.islice(threats, MAX_ENRICHMENT_RESULTS):
        if not isinstance(threat, Mapping):
            continue
        label, score = short_name(threat.get("label")), _number(threat.get("score"))
        if label is not None and score is not None:
            yield label, score


def _number(value: object) -> float | None:
    """``value`` when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None


def short_names(values: object) -> Iterable[str]:
    if isinstance(values, list | tuple):
        for value in itertools.islice(values, MAX_ENRICHMENT_RESULTS):
            name = short_name(value)
            if name is not None:
                yield name


_UNSAFE = re.compile(r"[^\w \-'.]+")


def short_name(value: object) -> str | None:
    """``value`` as a short plain name for a reason's text, or None when it is no string."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_UNSAFE.sub(" ", value).split())[:MAX_NAME_CHARS]
    return cleaned or None
