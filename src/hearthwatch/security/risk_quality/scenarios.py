"""The labelled scenario set of the risk-quality benchmark: closed windows, each with the level
a careful home-security expert would give it, read from ``bench/risk_scenarios.json``.

Contract
--------
:func:`load_scenarios` reads the file and returns one :class:`Scenario` per entry, in file
order, or raises :class:`ValueError` naming the failing scenario's id (``#<index>`` when the
entry has no usable id) and the field at fault, as ``scenario 'id': field.path: message``.
Nothing is guessed or repaired.

The file is ``{"version": 1, "scenarios": [...]}``; every object in it is closed (an unknown
key is an error). A scenario is::

    {"id", "split": "tune" | "holdout", "description", "expected_level",
     "required_ids": [detection ids a good answer must cite], "injection", "benign",
     "window": {"camera_name", "zone_description", "timezone" (IANA), "local_start"
                (ISO date-time without offset, the camera's local wall-clock time),
                "duration_s", "arm_mode", "tracks": [...], "recent_events": [...],
                "reid_matches": [...]}}

with each track ``{"key", "label", "start_s", "end_s", "zones_entered", "stationary",
"best_detection", "enrichments", "detections": [{"id", "at_s", "score", "box", "zones"}]}``,
each recent event ``{"event_id", "camera_name", "same_camera", "minutes_ago", "level",
"summary"}`` and each re-ID match ``{"track_key", "camera_name", "minutes_ago",
"similarity", "descriptor", "event_id"?}``. Offsets (``*_s``) count seconds from the window's
opening; ``minutes_ago`` counts back from it.

Checked beyond the types: scenario ids unique; the time zone known and the local start a
wall-clock time that exists exactly once there (not in a DST gap or overlap); track keys
unique; a track's span within the window; detection ids positive and unique within the
scenario; each detection within its track's span, its zones among the track's
``zones_entered``; the best detection one of the track's; ``required_ids`` non-empty, without
repeats, each a detection of the scenario; a benign scenario not expected ``high`` or
``critical``; a recent event's ``same_camera`` agreeing with its camera name, its id unique; a
re-ID match naming a track of the window, another camera, and (when it has one) a recent
event of the scenario. Enrichment results with a known model name must have the shape that
model produces (``pose``: ``{"postures": [...]}``; ``face``: ``{"face_visible": bool}``;
``threat``: ``{"frame": {"threats": [{"label", "score"}]}}``; ``vehicle`` and ``pet``:
``{"label", "score"}``); any other name (e.g. ``ocr``, ``caption``) is free-form.

Conversion to :class:`~hearthwatch.security.evidence.WindowEvidence`: ``window_id`` is the
scenario id, ``camera_id`` a slug of the camera name, times epoch seconds UTC (the local start
converted in the camera's zone), every detection's ``frame_id`` its id and its label its
track's, ``frame_paths`` and ``linked_window_ids`` empty; tracks ordered by first sighting then
key, detections by capture time then id. Enrichments are plain ``dict``s (JSON-serialisable,
as the pipeline's are), deep copies of the file's.

Pure and deterministic; the returned data is frozen apart from its plain dicts (enrichments,
the empty ``frame_paths``), which no caller may mutate.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hearthwatch.security.evidence import (
    ArmMode,
    DetectionEvidence,
    Level,
    RecentEvent,
    ReidMatch,
    TrackEvidence,
    WindowEvidence,
)

Split = Literal["tune", "holdout"]
SPLITS: Final[tuple[Split, ...]] = ("tune", "holdout")

POSTURES: Final = frozenset({"standing", "crouching", "lying", "arms_raised"})
"""The pose model's posture labels (``hearthwatch.runtime.enrichment.posture.POSTURE_LABELS``;
not imported, to keep the runtime out of this module)."""

_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_]*$"


@dataclass(frozen=True)
class Scenario:
    """One labelled window: what a good analyser answers for ``evidence``."""

    id: str
    split: Split
    description: str
    expected_level: Level
    required_ids: frozenset[int]
    """The detections carrying the decisive evidence: a good answer cites each of them."""
    injection: bool
    """Some text in the evidence tries to steer the analyser; it must be ignored."""
    benign: bool
    """The scene is harmless: a good analyser must not score it high or critical."""
    evidence: WindowEvidence


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


NonEmpty = Annotated[str, Field(min_length=1)]
Offset = Annotated[float, Field(ge=0)]


class _Detection(_Closed):
    id: Annotated[int, Field(gt=0)]
    at_s: Offset
    score: Annotated[float, Field(ge=0, le=1)]
    box: tuple[float, float, float, float]
    zones: list[NonEmpty] = Field(default_factory=list)

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, ...]:
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 and 0 <= y1 < y2):
            raise ValueError("a box is [x1, y1, x2, y2] with 0 <= x1 < x2 and 0 <= y1 < y2")
        return box


class _Track(_Closed):
    key: NonEmpty
    label: NonEmpty
    start_s: Offset
    end_s: Offset
    zones_entered: list[NonEmpty] = Field(default_factory=list)
    stationary: bool
    best_detection: Annotated[int, Field(gt=0)] | None
    enrichments: dict[str, Any] = Field(default_factory=dict)
    detections: Annotated[list[_Detection], Field(min_length=1)]


class _RecentEvent(_Closed):
    event_id: NonEmpty
    camera_name: NonEmpty
    same_camera: bool
    minutes_ago: Annotated[float, Field(gt=0)]
    level: Level
    summary: NonEmpty


class _ReidMatch(_Closed):
    track_key: NonEmpty
    camera_name: NonEmpty
    minutes_ago: Annotated[float, Field(ge=0)]
    similarity: Annotated[float, Field(ge=-1, le=1)]
    descriptor: NonEmpty
    event_id: NonEmpty | None = None


class _Window(_Closed):
    camera_name: NonEmpty
    zone_description: str
    timezone: NonEmpty
    local_start: NonEmpty
    duration_s: Annotated[float, Field(gt=0)]
    arm_mode: ArmMode
    tracks: Annotated[list[_Track], Field(min_length=1)]
    recent_events: list[_RecentEvent] = Field(default_factory=list)
    reid_matches: list[_ReidMatch] = Field(default_factory=list)


class _Scenario(_Closed):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    split: Split
    description: NonEmpty
    expected_level: Level
    required_ids: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    injection: bool
    benign: bool
    window: _Window


class _File(_Closed):
    version: Literal[1]
    scenarios: list[Any]


def load_scenarios(path: Path) -> list[Scenario]:
    """Every scenario of the file at ``path``, in file order (see the module's contract)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    try:
        document = _File.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {_first_error(exc)}") from exc
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for index, entry in enumerate(document.scenarios):
        scenario = scenario_from(entry, index)
        if scenario.id in seen:
            _fail(scenario.id, "id", "duplicate scenario id")
        seen.add(scenario.id)
        scenarios.append(scenario)
    return scenarios


def scenario_from(entry: Any, index: int = 0) -> Scenario:
    """One scenario of a file's ``scenarios`` list (the ``index``-th, for the message of a
    scenario without an id), checked as :func:`load_scenarios` checks it."""
    name = entry.get("id") if isinstance(entry, dict) else None
    sid = name if isinstance(name, str) and name else f"#{index}"
    try:
        # JSON mode: strict types (no "1" for 1, no 1 for true) yet arrays for tuples
        model = _Scenario.model_validate_json(json.dumps(entry))
    except (ValidationError, TypeError, ValueError) as exc:
        detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ValueError(f"scenario {sid!r}: {detail}") from exc
    return _scenario(model)


def camera_slug(name: str) -> str:
    """The camera id a camera name stands for: lower case, runs of other characters as ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    return f"{where.lstrip('.') or '(root)'}: {error['msg']}"


def _fail(sid: str, field: str, message: str) -> NoReturn:
    raise ValueError(f"scenario {sid!r}: {field}: {message}")


def _opened_at(sid: str, window: _Window) -> float:
    try:
        zone = ZoneInfo(window.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(sid, "window.timezone", f"unknown time zone {window.timezone!r}")
    try:
        local = datetime.fromisoformat(window.local_start)
    except ValueError:
        _fail(sid, "window.local_start", f"not an ISO date-time: {window.local_start!r}")
    if local.tzinfo is not None:
        _fail(sid, "window.local_start", "must be a local time without an offset")
    early, late = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        _fail(sid, "window.local_start", f"{local} is ambiguous in {window.timezone} (DST)")
    if early.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != local:
        _fail(sid, "window.local_start", f"{local} does not exist in {window.timezone} (DST)")
    return early.timestamp()


def _check_enrichments(sid: str, field: str, enrichments: Mapping[str, Any]) -> None:
    def bad(model: str, shape: str) -> NoReturn:
        _fail(sid, f"{field}.{model}", f"not the {model} model's shape: {shape}")

    def scored_label(value: Any) -> bool:
        return (
            isinstance(value, dict)
            and isinstance(value.get("label"), str)
            and isinstance(value.get("score"), int | float)
            and not isinstance(value.get("score"), bool)
            and 0 <= value["score"] <= 1
        )

    for model, result in enrichments.items():
        if model == "pose":
            postures = result.get("postures") if isinstance(result, dict) else None
            if not isinstance(postures, list) or not set(postures) <= POSTURES:
                bad(model, f'{{"postures": [...]}} with postures among {sorted(POSTURES)}')
        elif model == "face":
            if not isinstance(result, dict) or not isinstance(result.get("face_visible"), bool):
                bad(model, '{"face_visible": true | false}')
        elif model == "threat":
            frame = result.get("frame") if isinstance(result, dict) else None
            threats = frame.get("threats") if isinstance(frame, dict) else None
            if not isinstance(threats, list) or not all(scored_label(t) for t in threats):
                bad(model, '{"frame": {"threats": [{"label": str, "score": 0..1}]}}')
        elif model in ("vehicle", "pet") and not scored_label(result):
            bad(model, '{"label": str, "score": 0..1}')


def _tracks(
    sid: str, window: _Window, opened_at: float
) -> tuple[list[TrackEvidence], list[DetectionEvidence]]:
    tracks: list[TrackEvidence] = []
    detections: list[DetectionEvidence] = []
    keys: set[str] = set()
    ids: set[int] = set()
    for t, track in enumerate(window.tracks):
        where = f"window.tracks[{t}]"
        if track.key in keys:
            _fail(sid, f"{where}.key", f"duplicate track key {track.key!r}")
        keys.add(track.key)
        if not track.start_s <= track.end_s <= window.duration_s:
            _fail(
                sid,
                f"{where}.end_s",
                f"the span {track.start_s}..{track.end_s} s is not within the window's "
                f"0..{window.duration_s} s",
            )
        own: set[int] = set()
        for d, detection in enumerate(track.detections):
            at = f"{where}.detections[{d}]"
            if detection.id in ids:
                _fail(sid, f"{at}.id", f"duplicate detection id {detection.id}")
            ids.add(detection.id)
            own.add(detection.id)
            if not track.start_s <= detection.at_s <= track.end_s:
                _fail(
                    sid,
                    f"{at}.at_s",
                    f"{detection.at_s} s is outside track {track.key!r}'s span "
                    f"{track.start_s}..{track.end_s} s",
                )
            stray = sorted(set(detection.zones) - set(track.zones_entered))
            if stray:
                _fail(sid, f"{at}.zones", f"{stray} not in track {track.key!r}'s zones_entered")
            detections.append(
                DetectionEvidence(
                    id=detection.id,
                    frame_id=detection.id,
                    track_key=track.key,
                    label=track.label,
                    score=detection.score,
                    box=detection.box,
                    zones=tuple(detection.zones),
                    captured_at=opened_at + detection.at_s,
                )
            )
        if track.best_detection is not None and track.best_detection not in own:
            _fail(
                sid,
                f"{where}.best_detection",
                f"{track.best_detection} is not a detection of track {track.key!r}",
            )
        _check_enrichments(sid, f"{where}.enrichments", track.enrichments)
        tracks.append(
            TrackEvidence(
                key=track.key,
                label=track.label,
                first_seen=opened_at + track.start_s,
                last_seen=opened_at + track.end_s,
                zones_entered=tuple(track.zones_entered),
                stationary=track.stationary,
                best_detection_id=track.best_detection,
                enrichments=copy.deepcopy(track.enrichments),
            )
        )
    tracks.sort(key=lambda e: (e.first_seen, e.key))
    detections.sort(key=lambda e: (e.captured_at, e.id))
    return tracks, detections


def _recent_events(sid: str, window: _Window, opened_at: float) -> list[RecentEvent]:
    events: list[RecentEvent] = []
    seen: set[str] = set()
    for e, event in enumerate(window.recent_events):
        where = f"window.recent_events[{e}]"
        if event.event_id in seen:
            _fail(sid, f"{where}.event_id", f"duplicate event id {event.event_id!r}")
        seen.add(event.event_id)
        if event.same_camera != (event.camera_name == window.camera_name):
            _fail(
                sid,
                f"{where}.same_camera",
                f"{event.same_camera} disagrees with camera {event.camera_name!r} "
                f"(the window's is {window.camera_name!r})",
            )
        events.append(
            RecentEvent(
                event_id=event.event_id,
                camera_name=event.camera_name,
                same_camera=event.same_camera,
                started_at=opened_at - 60.0 * event.minutes_ago,
                level=event.level,
                summary=event.summary,
            )
        )
    return events


def _reid_matches(sid: str, window: _Window, opened_at: float) -> list[ReidMatch]:
    keys = {track.key for track in window.tracks}
    events = {event.event_id for event in window.recent_events}
    matches: list[ReidMatch] = []
    for m, match in enumerate(window.reid_matches):
        where = f"window.reid_matches[{m}]"
        if match.track_key not in keys:
            _fail(sid, f"{where}.track_key", f"no track {match.track_key!r} in the window")
        if match.camera_name == window.camera_name:
            _fail(sid, f"{where}.camera_name", "a re-ID match is on another camera")
        if match.event_id is not None and match.event_id not in events:
            _fail(sid, f"{where}.event_id", f"no recent event {match.event_id!r}")
        matches.append(
            ReidMatch(
                track_key=match.track_key,
                camera_name=match.camera_name,
                seen_at=opened_at - 60.0 * match.minutes_ago,
                similarity=match.similarity,
                descriptor=match.descriptor,
                event_id=match.event_id,
            )
        )
    return matches


def _scenario(model: _Scenario) -> Scenario:
    sid, window = model.id, model.window
    if model.benign and model.expected_level in ("high", "critical"):
        _fail(sid, "expected_level", f"a benign scene cannot be expected {model.expected_level}")
    camera_id = camera_slug(window.camera_name)
    if not camera_id:
        _fail(sid, "window.camera_name", "has no letter or digit to make a camera id of")
    opened_at = _opened_at(sid, window)
    tracks, detections = _tracks(sid, window, opened_at)
    known = {detection.id for detection in detections}
    if len(set(model.required_ids)) != len(model.required_ids):
        _fail(sid, "required_ids", "repeats an id")
    unknown = sorted(set(model.required_ids) - known)
    if unknown:
        _fail(sid, "required_ids", f"{unknown} are not detections of the scenario")
    evidence = WindowEvidence(
        window_id=sid,
        camera_id=camera_id,
        camera_name=window.camera_name,
        zone_description=window.zone_description,
        timezone=window.timezone,
        opened_at=opened_at,
        closed_at=opened_at + window.duration_s,
        linked_window_ids=(),
        tracks=tuple(tracks),
        detections=tuple(detections),
        frame_paths={},
        arm_mode=window.arm_mode,
        recent_events=tuple(_recent_events(sid, window, opened_at)),
        reid_matches=tuple(_reid_matches(sid, window, opened_at)),
    )
    return Scenario(
        id=sid,
        split=model.split,
        description=model.description,
        expected_level=model.expected_level,
        required_ids=frozenset(model.required_ids),
        injection=model.injection,
        benign=model.benign,
        evidence=evidence,
    )


def split_of(scenarios: Sequence[Scenario], split: Split) -> list[Scenario]:
    """The scenarios of one split, in order."""
    return [scenario for scenario in scenarios if scenario.split == split]
