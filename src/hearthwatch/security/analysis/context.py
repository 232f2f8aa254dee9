"""The structured context an LLM is given about one closed window, and the short ids it cites.

:func:`build_context` turns a :class:`~hearthwatch.security.evidence.WindowEvidence` into JSON
data: the camera (name, zone text, time zone), the local time and whether it is night, the arm
mode, each track (``t1``, ``t2`` … by first sighting) with its class, dwell, path across the
frame, zones, stillness and a few of its detections (``d1``, ``d2`` …: first, best, last and
evenly spaced ones between), the enrichment results present and the models that did not answer
for it, re-identification matches and recent events.

Everything that came from a camera, a user or a model (names, zone text, labels, enrichment
results) is data: the caller puts the whole context inside one delimited block of the prompt,
serialised as JSON, so text cannot leave its string; strings are cut short and stripped of
control characters and angle brackets (so no tag closes the block). The whole context keeps to a
character budget (a busy window is shown in less detail). :class:`RiskContext` maps every
short id back to the detection it stands for (a track's id to its best detection), so an
answer's citations are checked against what the model was shown. Pure functions over frozen
data: thread-safe.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, Final

from hearthwatch.security.analysis.window_view import (
    Clock,
    TrackView,
    checked_zone,
    tracks_of,
)
from hearthwatch.security.evidence import DetectionEvidence, WindowEvidence

DATA_OPEN: Final = "<window_data>"
DATA_CLOSE: Final = "</window_data>"
MAX_TEXT_CHARS: Final = 120
"""Any string from the evidence is cut to this many characters."""
MAX_TRACKS: Final = 12
"""Tracks shown, longest-dwelling people first; the rest are counted."""
DETECTIONS_PER_TRACK: Final = 4
MAX_ENRICHMENT_ITEMS: Final = 8
"""Per enrichment result, the most keys and list items shown (nested ones too)."""
MAX_RECENT: Final = 6
MAX_CONTEXT_CHARS: Final = 6_000
"""The budget of a context's JSON: about 1 500 tokens, so that with the instructions and the
answer it fits a 2 048-token engine slot (the CPU profile's)."""
EXPECTED_MODELS: Final[Mapping[str, tuple[str, ...]]] = {
    "person": ("pose", "face", "reid"),
    "car": ("vehicle",),
    "truck": ("vehicle",),
    "bus": ("vehicle",),
    "motorcycle": ("vehicle",),
    "bicycle": ("vehicle",),
    "cat": ("pet",),
    "dog": ("pet",),
}
"""The enrichment models that look at each class: one without a result is said to be absent,
so the model is not left to guess whether, say, a face was checked."""

_ANGLES = re.compile(r"[<>\u2039\u203a\u27e8\u27e9\u3008\u3009\uff1c\uff1e\ufe64\ufe65]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class RiskContext:
    """The data shown to the model and what its short ids stand for."""

    data: Mapping[str, Any]
    ids: Mapping[str, int]
    """Short id (``d3``, ``t1``) → the detection it cites (a track: its best detection)."""

    def text(self) -> str:
        """The data as compact JSON, the delimiters escaped out of it."""
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))

    def resolve(self, short_id: object) -> int | None:
        """The detection a cited id stands for; None for an id the model was not shown."""
        if not isinstance(short_id, str):
            return None
        return self.ids.get(short_id.strip().lower())


def quoted(value: object, limit: int = MAX_TEXT_CHARS) -> str:
    """``value`` as inert data: a string without control characters or angle brackets (of any
    script: no tag can close the data block), cut to ``limit`` characters (anything else:
    its ``str``)."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(" ", text)
    text = _ANGLES.sub(" ", text)  # no tag of any spelling can close the data block
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class _Detail:
    """How much of the window a context shows."""

    tracks: int = MAX_TRACKS
    detections: int = DETECTIONS_PER_TRACK
    depth: int = 3
    """How deep enrichment results are shown (1: their top-level values only)."""


TIERS: Final = (
    _Detail(),
    _Detail(depth=1),
    _Detail(detections=2, depth=1),
    _Detail(tracks=6, detections=1, depth=1),
    _Detail(tracks=3, detections=1, depth=0),
)
"""Ever smaller views of a window, tried in order until one fits the budget."""


def build_context(
    evidence: WindowEvidence,
    *,
    night_starts: time = time(22, 0),
    night_ends: time = time(6, 0),
    max_chars: int = MAX_CONTEXT_CHARS,
) -> RiskContext:
    """The context of ``evidence`` (see the module docstring), in at most ``max_chars``
    characters of JSON where the window allows: a busy window is shown with fewer details
    (enrichment results flattened, then fewer detections per track, then fewer tracks, the
    people who stayed longest kept). Raises
    :class:`~hearthwatch.security.analysis.base.EvidenceError` for a window without
    detections, with an implausible capture time or an unknown time zone."""
    clock = Clock(checked_zone(evidence), night_starts, night_ends)
    tracks = tracks_of(evidence)
    for detail in TIERS:
        context = _context(evidence, tracks, clock, detail)
        if len(context.text()) <= max_chars:
            break
    return context


def _context(
    evidence: WindowEvidence, tracks: list[TrackView], clock: Clock, detail: _Detail
) -> RiskContext:
    shown = sorted(tracks, key=lambda t: (t.label != "person", -t.dwell_s, t.first_seen))
    shown = sorted(shown[: detail.tracks], key=lambda t: (t.first_seen, t.key))
    ids: dict[str, int] = {}
    start = min(d.captured_at for d in evidence.detections)
    end = max(d.captured_at for d in evidence.detections)
    track_names: dict[str, str] = {}
    track_data = []
    numbers = itertools.count(1)
    for number, track in enumerate(shown, start=1):
        name = f"t{number}"
        track_names[track.key] = name
        ids[name] = track.best_id
        track_data.append(_track(track, name, ids, numbers, start, clock, detail))
    local = clock.local(start)
    data: dict[str, Any] = {
        "camera": {
            "name": quoted(evidence.camera_name),
            "zone_description": quoted(evidence.zone_description),
            "time_zone": quoted(evidence.timezone),
        },
        "local_time": local.strftime("%A %Y-%m-%d %H:%M"),
        "daylight": "night" if clock.saw_night(start, end) else "day",
        "arm_mode": evidence.arm_mode,
        "window_seconds": round(max(0.0, end - start), 1),
        "tracks": track_data,
    }
    if len(tracks) > len(shown):
        data["tracks_not_shown"] = len(tracks) - len(shown)
    matches = [
        {
            "track": track_names[m.track_key],
            "seen_on_camera": quoted(m.camera_name),
            "minutes_before": _minutes_before(m.seen_at, start),
            "similarity": round(m.similarity, 2),
            "compared": quoted(m.descriptor),
        }
        for m in evidence.reid_matches
        if m.track_key in track_names and math.isfinite(m.similarity)
    ]
    if matches:
        data["same_individual_seen_before"] = matches
    recent = sorted(evidence.recent_events, key=lambda e: -e.started_at)[:MAX_RECENT]
    if recent:
        data["recent_events"] = [
            {
                "camera": "this camera" if e.same_camera else quoted(e.camera_name),
                "minutes_before": _minutes_before(e.started_at, start),
                "level": e.level,
                "summary": quoted(e.summary),
            }
            for e in recent
        ]
    return RiskContext(data, ids)


def _track(
    track: TrackView,
    name: str,
    ids: dict[str, int],
    numbers: Iterator[int],
    start: float,
    clock: Clock,
    detail: _Detail,
) -> dict[str, Any]:
    """One track as data; its sampled detections get the next short ids, added to ``ids``."""
    detections = []
    for detection in _sampled(track, detail.detections):
        short = f"d{next(numbers)}"
        ids[short] = detection.id
        entry: dict[str, Any] = {
            "id": short,
            "at_s": round(detection.captured_at - start, 1),
            "confidence": round(detection.score, 2),
        }
        if detection.zones:
            entry["zones"] = [quoted(z) for z in detection.zones[:MAX_ENRICHMENT_ITEMS]]
        if detection.id == track.best_id:
            entry["best"] = True
        detections.append(entry)
    data: dict[str, Any] = {
        "id": name,
        "class": quoted(track.label),
        "first_seen": clock.local(track.first_seen).strftime("%H:%M:%S"),
        "dwell_seconds": round(track.dwell_s, 1),
        "path": _path(track.detections),
        "zones_entered": [quoted(z) for z in list(track.zone_first_ids)[:MAX_ENRICHMENT_ITEMS]],
        "stood_still": track.stationary,
        "detections": detections,
    }
    results, absent = _enrichments(track, detail.depth)
    if results:
        data["enrichments"] = results
    if absent:
        data["models_without_result"] = absent
    return data


def _sampled(track: TrackView, most: int) -> list[DetectionEvidence]:
    """The best detection, then the first and last, then evenly spaced ones between, by time:
    ``most`` of them (at least the best)."""
    best = {i for i, d in enumerate(track.detections) if d.id == track.best_id}
    if most <= 1:
        return [track.detections[i] for i in sorted(best or {0})]
    chosen = {0, len(track.detections) - 1} | best
    spare = most - len(chosen)
    if spare > 0 and len(track.detections) > len(chosen):
        step = (len(track.detections) - 1) / (spare + 1)
        chosen |= {round(step * (k + 1)) for k in range(spare)}
    return [track.detections[i] for i in sorted(chosen)]


def _path(detections: tuple[DetectionEvidence, ...]) -> str:
    """Where the track went across the frame, from the centres of its first and last boxes,
    relative to the size of its boxes."""
    first, last = detections[0].box, detections[-1].box
    width = max(1.0, max(b.box[2] - b.box[0] for b in detections))
    height = max(1.0, max(b.box[3] - b.box[1] for b in detections))
    dx = ((last[0] + last[2]) - (first[0] + first[2])) / 2 / width
    dy = ((last[1] + last[3]) - (first[1] + first[3])) / 2 / height
    if not (math.isfinite(dx) and math.isfinite(dy)) or max(abs(dx), abs(dy)) < 0.5:
        return "stayed in one place"
    moves = []
    if abs(dx) >= 0.5:
        moves.append("left to right" if dx > 0 else "right to left")
    if abs(dy) >= 0.5:
        moves.append("towards the camera" if dy > 0 else "away from the camera")
    return "moved " + " and ".join(moves)


def _enrichments(track: TrackView, depth: int) -> tuple[dict[str, Any], list[str]]:
    """The track's enrichment results as data, ``depth`` levels deep (0: their names only),
    and the models expected for its class that gave none."""
    results: dict[str, Any] = {}
    for model, result in itertools.islice(_items(track), MAX_ENRICHMENT_ITEMS):
        if isinstance(result, Mapping) and "embedding" in result or depth == 0:
            results[quoted(model, 40)] = "result present"
            continue
        results[quoted(model, 40)] = _data(result, depth=0, most=depth)
    absent = [m for m in EXPECTED_MODELS.get(track.label, ()) if m not in results]
    return results, absent


def _items(track: TrackView) -> list[tuple[str, Any]]:
    found = track.enrichment_results
    return sorted(((str(k), v) for k, v in found.items()), key=lambda item: item[0])


def _data(value: Any, depth: int, most: int) -> Any:
    """A bounded, JSON-safe copy of an enrichment result: strings quoted, numbers finite and
    rounded, containers cut short and no deeper than ``most`` levels (a deeper one: "…")."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        number = float(value)
        return round(number, 3) if math.isfinite(number) else None
    if isinstance(value, Mapping | list | tuple) and depth >= most:
        return "…"
    if isinstance(value, Mapping):
        return {
            quoted(k, 40): _data(v, depth + 1, most)
            for k, v in itertools.islice(value.items(), MAX_ENRICHMENT_ITEMS)
        }
    if isinstance(value, list | tuple):
        return [_data(v, depth + 1, most) for v in value[:MAX_ENRICHMENT_ITEMS]]
    return quoted(value)


def _minutes_before(at: float, start: float) -> float | None:
    minutes = (start - at) / 60
    return round(minutes, 1) if math.isfinite(minutes) else None
