"""The rule-based analyser: a closed window scored 0–100 from its evidence alone, with a reason
a home user understands for every point, each citing the detections it rests on.

Scoring (points add up; the total is capped at 100), every amount a :class:`RuleConfig` field:

* Presence: each label seen adds its weight (``label_weights``: person ≫ vehicle > animal;
  ``other_label_weight`` for labels not listed); each person track beyond the first adds
  ``extra_person_points`` (at most ``max_extra_people`` of them).
* Loitering: a person track whose dwell (its ``last_seen − first_seen``) reaches
  ``loitering_seconds`` adds ``loitering_points``; reaching ``long_loitering_seconds``, it adds
  ``long_loitering_points`` instead. A person the tracker found stationary adds
  ``stationary_points``.
* Zones: each zone a track entered adds ``zone_points``, or ``sensitive_zone_points`` for a
  zone listed in ``sensitive_zones``.
* Enrichment results, recognised by their shape whatever the enricher is called, anything
  else ignored: ``{"postures": [...]}`` on a person (pose) adds ``posture_points`` of each
  posture listed there; ``{"face_visible": false}`` on a person at night, with no result of
  the track saying true, adds ``hidden_face_at_night_points``; ``{"frame": {"threats":
  [{"label", "score"}]}}`` adds ``threat_points`` per threat label scoring at least
  ``threat_min_score``; ``{"label": "van"}`` (a classifier's type) only names the object.
* Night: every point above that a track earns (its label's presence, its loitering,
  stillness, zones and postures) is multiplied by ``night_multiplier`` when the track was seen
  at night, between ``night_starts`` and ``night_ends`` in the camera's own time zone (either
  end of the track then, or a track longer than the day). Threats and the hidden face are not.

Levels (:func:`level_of`): below 15 ``none``, below 35 ``low``, below 60 ``medium``, below 85
``high``, else ``critical``. With the defaults: a cat by day or night, or a parked car by day,
is ``none``; a person passing by day ``low``, by night ``medium``; a person lingering a few
minutes in a zone at night ``high``, and ``critical`` when also crouching or hiding their face;
a knife or gun next to a person ``high``.

Every window has detections, so every label seen yields at least its presence reason, citing
the best detection of each of its tracks; loitering cites a track's first, best and last
detections. Deterministic, pure Python. :class:`RuleAnalyser` is immutable: thread-safe.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hearthwatch.security.analysis.base import EvidenceError
from hearthwatch.security.evidence import (
    Analysis,
    DetectionEvidence,
    Level,
    Reason,
    TrackEvidence,
    WindowEvidence,
)

LEVEL_FLOORS: Final[tuple[tuple[float, Level], ...]] = (
    (85.0, "critical"),
    (60.0, "high"),
    (35.0, "medium"),
    (15.0, "low"),
)
"""The least score of each level above ``none``, highest first."""

LEVEL_WORDS: Final[Mapping[Level, str]] = {
    "none": "No notable risk",
    "low": "Low risk",
    "medium": "Medium risk",
    "high": "High risk",
    "critical": "Critical risk",
}

DEFAULT_LABEL_WEIGHTS: Final[Mapping[str, float]] = {
    "person": 25.0,
    "car": 12.0,
    "truck": 12.0,
    "motorcycle": 12.0,
    "bus": 8.0,
    "bicycle": 8.0,
    "dog": 4.0,
    "horse": 4.0,
    "cow": 3.0,
    "sheep": 3.0,
    "cat": 2.0,
    "bird": 1.0,
}
PERSON: Final = "person"

POSTURE_PHRASES: Final[Mapping[str, str]] = {
    "crouching": "was crouching",
    "lying": "was lying on the ground",
    "arms_raised": "had their arms raised",
    "standing": "was standing",
}
PLURALS: Final[Mapping[str, str]] = {"person": "people", "bus": "buses", "sheep": "sheep"}
MAX_ENRICHMENT_RESULTS: Final = 64
"""Per track, the most enrichment results read; per result, the most list items read."""
MAX_NAME_CHARS: Final = 40
"""Labels and zone names from the evidence are cut to this many characters in reason texts."""
UNKNOWN_KIND: Final = "unknown"
LATEST_EPOCH_S: Final = 4_102_444_800.0
"""2100-01-01 UTC: capture times from 1970 up to this are accepted; a track's first and last
sighting outside it are ignored (its detections' times are used)."""

Points = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class RuleConfig(BaseModel):
    """The weights, thresholds and hours of :class:`RuleAnalyser` (see the module docstring
    for how each counts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_weights: dict[str, Points] = Field(default_factory=lambda: dict(DEFAULT_LABEL_WEIGHTS))
    other_label_weight: Points = 2.0
    night_multiplier: float = Field(1.6, ge=1.0, le=10.0, allow_inf_nan=False)
    night_starts: time = time(22, 0)
    night_ends: time = time(6, 0)
    extra_person_points: Points = 8.0
    max_extra_people: int = Field(3, ge=0, le=100)
    loitering_seconds: float = Field(60.0, gt=0.0, allow_inf_nan=False)
    loitering_points: Points = 12.0
    long_loitering_seconds: float = Field(300.0, gt=0.0, allow_inf_nan=False)
    long_loitering_points: Points = 20.0
    stationary_points: Points = 6.0
    zone_points: Points = 4.0
    sensitive_zones: frozenset[str] = frozenset()
    sensitive_zone_points: Points = 12.0
    posture_points: dict[str, Points] = Field(
        default_factory=lambda: {"crouching": 8.0, "lying": 8.0}
    )
    hidden_face_at_night_points: Points = 8.0
    threat_points: Points = 40.0
    threat_min_score: float = Field(0.5, ge=0.0, le=1.0)

    @field_validator("night_starts", "night_ends")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("night hours are the camera's local time: give no UTC offset")
        return value

    @model_validator(mode="after")
    def _in_order(self) -> RuleConfig:
        if self.night_starts == self.night_ends:
            raise ValueError("night_starts and night_ends must differ")
        if self.long_loitering_seconds < self.loitering_seconds:
            raise ValueError("long_loitering_seconds is below loitering_seconds")
        return self


def level_of(score: float) -> Level:
    """The level of a 0–100 score (:data:`LEVEL_FLOORS`)."""
    for floor, level in LEVEL_FLOORS:
        if score >= floor:
            return level
    return "none"


class RuleAnalyser:
    """Scores a closed window with the rules of the module docstring."""

    name: str = "rules"

    def __init__(self, config: RuleConfig | None = None):
        self.config = config if config is not None else RuleConfig()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RuleAnalyser:
        """A rule analyser with ``options`` (:class:`RuleConfig` fields) validated."""
        return cls(RuleConfig.model_validate(dict(options)))

    async def analyse(self, evidence: WindowEvidence) -> Analysis:
        """Raises :class:`EvidenceError` for a window without detections, with a non-finite
        capture time or with a time zone the system does not know."""
        zone = _checked_zone(evidence)
        clock = _Clock(zone, self.config.night_starts, self.config.night_ends)
        tracks = _tracks_of(evidence)
        findings = [
            *_presence(tracks, evidence.camera_name, clock, self.config),
            *(f for track in tracks for f in _track_findings(track, evidence, clock, self.config)),
            *_threats(tracks, self.config),
        ]
        findings.sort(key=lambda finding: -finding.points)  # stable: ties keep their order
        score = round(min(100.0, sum(finding.points for finding in findings)), 1)
        level = level_of(score)
        return Analysis(
            score=score,
            level=level,
            reasons=tuple(Reason(f.text, f.detection_ids) for f in findings),
            analyser=self.name,
            summary=f"{LEVEL_WORDS[level]} ({score:g}/100): {findings[0].text}",
        )


@dataclass(frozen=True)
class _Finding:
    points: float
    text: str
    detection_ids: tuple[int, ...]


@dataclass(frozen=True)
class _Enrichment:
    """What the rules read from one track's enrichment results."""

    postures: frozenset[str] = frozenset()
    face_visible: bool | None = None
    kind: str | None = None
    threats: Mapping[str, float] = field(default_factory=dict)
    """Threat label → its highest score."""


@dataclass(frozen=True)
class _Track:
    """One track as the rules see it: its detections in this window (at least one), by time."""

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
    enrichment: _Enrichment

    @property
    def dwell_s(self) -> float:
        return self.last_seen - self.first_seen


@dataclass(frozen=True)
class _Clock:
    """Local times of the camera and whether they fall at night."""

    zone: ZoneInfo
    night_starts: time
    night_ends: time

    def local(self, timestamp: float) -> datetime:
        return datetime.fromtimestamp(timestamp, self.zone)

    def hhmm(self, timestamp: float) -> str:
        return self.local(timestamp).strftime("%H:%M")

    def is_night(self, timestamp: float) -> bool:
        now = self.local(timestamp).time()
        if self.night_starts > self.night_ends:  # over midnight
            return now >= self.night_starts or now < self.night_ends
        return self.night_starts <= now < self.night_ends

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


def _checked_zone(evidence: WindowEvidence) -> ZoneInfo:
    if not evidence.detections:
        raise EvidenceError(f"window {evidence.window_id} has no detections")
    if not all(_plausible(d.captured_at) for d in evidence.detections):
        raise EvidenceError(
            f"window {evidence.window_id} has a capture time outside 1970–2100 (or not finite)"
        )
    try:
        return ZoneInfo(evidence.timezone)
    except (KeyError, ValueError, OSError) as error:  # ZoneInfoNotFoundError is a KeyError
        raise EvidenceError(f"unknown time zone {evidence.timezone!r}") from error


def _plausible(timestamp: float) -> bool:
    """Whether ``timestamp`` is an epoch time local dates can be reckoned with."""
    return 0.0 <= timestamp < LATEST_EPOCH_S


def _tracks_of(evidence: WindowEvidence) -> list[_Track]:
    """The window's tracks that have detections in it, by first sighting; detections whose
    track the evidence lacks make a track of their own key."""
    by_key: dict[str, list[DetectionEvidence]] = {}
    for detection in evidence.detections:
        by_key.setdefault(detection.track_key, []).append(detection)
    known = {track.key: track for track in evidence.tracks}
    tracks = [_track(known.get(key), key, detections) for key, detections in by_key.items()]
    return sorted(tracks, key=lambda track: (track.first_seen, track.key))


def _track(track: TrackEvidence | None, key: str, detections: list[DetectionEvidence]) -> _Track:
    detections = sorted(detections, key=lambda d: (d.captured_at, d.id))
    ids = {d.id for d in detections}
    first_seen, last_seen = detections[0].captured_at, detections[-1].captured_at
    if track is not None:
        label = track.label
        stated = (track.first_seen, track.last_seen)
        if all(_plausible(t) for t in stated) and stated[0] <= stated[1]:
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
    return _Track(
        key=key,
        label=label,
        first_id=detections[0].id,
        best_id=best_id,
        last_id=detections[-1].id,
        first_seen=first_seen,
        last_seen=last_seen,
        zone_first_ids=zone_first_ids,
        stationary=track.stationary if track is not None else False,
        enrichment=_read_enrichments(track.enrichments if track is not None else None),
    )


def _read_enrichments(results: object) -> _Enrichment:
    """The postures, face visibility, object kind and threats among ``results`` (enricher
    name → its latest result); anything of another shape is ignored."""
    if not isinstance(results, Mapping):
        return _Enrichment()
    postures: set[str] = set()
    faces: set[bool] = set()
    kinds: list[str] = []
    threats: dict[str, float] = {}
    for result in itertools.islice(results.values(), MAX_ENRICHMENT_RESULTS):
        if not isinstance(result, Mapping):
            continue
        postures.update(_names(result.get("postures")))
        if isinstance(result.get("face_visible"), bool):
            faces.add(result["face_visible"])
        kind = _name(result.get("label"))
        if kind is not None and kind != UNKNOWN_KIND:
            kinds.append(kind)
        frame = result.get("frame")
        if isinstance(frame, Mapping):
            for label, score in _threat_labels(frame.get("threats")):
                threats[label] = max(score, threats.get(label, score))
    return _Enrichment(
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
        label, score = _name(threat.get("label")), _number(threat.get("score"))
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


def _names(values: object) -> Iterable[str]:
    if isinstance(values, list | tuple):
        for value in itertools.islice(values, MAX_ENRICHMENT_RESULTS):
            name = _name(value)
            if name is not None:
                yield name


_UNSAFE = re.compile(r"[^\w \-'.]+")


def _name(value: object) -> str | None:
    """``value`` as a short plain name for a reason's text, or None when it is no string."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_UNSAFE.sub(" ", value).split())[:MAX_NAME_CHARS]
    return cleaned or None


def _words(name: str) -> str:
    return _name(name.replace("_", " ")) or "object"


def _with_article(words: str) -> str:
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def _plural(label: str) -> str:
    return PLURALS.get(label, f"{_words(label)}s")


def _night(flag: bool) -> str:
    return ", at night" if flag else ""


def _presence(
    tracks: list[_Track], camera_name: str, clock: _Clock, config: RuleConfig
) -> list[_Finding]:
    """One finding per label seen, in order of first sighting."""
    by_label: dict[str, list[_Track]] = {}
    for track in tracks:
        by_label.setdefault(track.label, []).append(track)
    findings = []
    camera = f'on the "{_name(camera_name) or "unnamed"}" camera'
    for label, same in by_label.items():
        night = any(clock.saw_night(t.first_seen, t.last_seen) for t in same)
        points = config.label_weights.get(label, config.other_label_weight)
        if label == PERSON:
            points += min(len(same) - 1, config.max_extra_people) * config.extra_person_points
        points *= config.night_multiplier if night else 1.0
        ids = tuple(dict.fromkeys(t.best_id for t in same))
        first, last = clock.hhmm(same[0].first_seen), clock.hhmm(max(t.last_seen for t in same))
        if len(same) == 1:
            what = _words(label)
            if same[0].enrichment.kind is not None and same[0].enrichment.kind != label:
                what += f" ({_words(same[0].enrichment.kind)})"
            text = f"{_with_article(what).capitalize()} was seen {camera} at {first}"
        else:
            text = f"{len(same)} different {_plural(label)} were seen {camera}"
            text += f" at {first}" if first == last else f" between {first} and {last}"
        findings.append(_Finding(points, f"{text}{_night(night)}.", ids))
    return findings


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _track_findings(
    track: _Track, evidence: WindowEvidence, clock: _Clock, config: RuleConfig
) -> list[_Finding]:
    """Loitering, stillness, zones, posture and a hidden face of one track."""
    what = _with_article(_words(track.label)).capitalize()
    night = clock.saw_night(track.first_seen, track.last_seen)
    factor = config.night_multiplier if night else 1.0
    zones = list(track.zone_first_ids)
    if zones:
        where = "in the " + ", ".join(f'"{_name(zone) or "unnamed"}"' for zone in zones[:3])
        where += " zone" if len(zones) == 1 else " zones"
    else:
        where = f'in view of the "{_name(evidence.camera_name) or "unnamed"}" camera'
    findings = []
    if track.label == PERSON and track.dwell_s >= config.loitering_seconds:
        long = track.dwell_s >= config.long_loitering_seconds
        findings.append(
            _Finding(
                factor * (config.long_loitering_points if long else config.loitering_points),
                f"{what} stayed {_duration(track.dwell_s)} {where} from "
                f"{clock.hhmm(track.first_seen)}{_night(night)}.",
                tuple(dict.fromkeys((track.first_id, track.best_id, track.last_id))),
            )
        )
    if track.label == PERSON and track.stationary:
        findings.append(
            _Finding(
                factor * config.stationary_points,
                f"{what} stood still {where}.",
                tuple(dict.fromkeys((track.best_id, track.last_id))),
            )
        )
    for zone, detection_id in track.zone_first_ids.items():
        shown = _name(zone) or "unnamed"
        if zone in config.sensitive_zones:
            points, text = config.sensitive_zone_points, f'the sensitive zone "{shown}"'
        else:
            points, text = config.zone_points, f'the "{shown}" zone'
        findings.append(_Finding(factor * points, f"{what} entered {text}.", (detection_id,)))
    if track.label != PERSON:
        return findings
    cited = tuple(dict.fromkeys((track.best_id, track.last_id)))
    for posture, points in sorted(config.posture_points.items()):
        if posture in track.enrichment.postures:
            phrase = POSTURE_PHRASES.get(posture, f"was {_words(posture)}")
            findings.append(_Finding(factor * points, f"{what} {phrase}.", cited))
    if night and track.enrichment.face_visible is False:
        findings.append(
            _Finding(
                config.hidden_face_at_night_points,
                f"{what}'s face could not be seen, at night.",
                cited,
            )
        )
    return findings


def _threats(tracks: list[_Track], config: RuleConfig) -> list[_Finding]:
    """One finding per threat label an enricher reported with enough confidence."""
    carriers: dict[str, list[int]] = {}
    for track in tracks:
        for label, score in track.enrichment.threats.items():
            if score >= config.threat_min_score:
                carriers.setdefault(label, []).append(track.best_id)
    return [
        _Finding(
            config.threat_points,
            f"Something that looks like {_with_article(_words(label))} was seen.",
            tuple(dict.fromkeys(ids)),
        )
        for label, ids in sorted(carriers.items())
    ]
