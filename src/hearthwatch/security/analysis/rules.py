"""The rule-based analyser: a closed window scored 0–100 from its evidence alone, with a reason
a home user understands for every point, each citing the detections it rests on.

Scoring (points add up; the total is capped at 100), every amount a :class:`RuleConfig` field:

* Presence: each label seen adds its weight (``label_weights``: person ≫ vehicle > animal;
  ``other_label_weight`` for labels not listed); each person track beyond the first adds
  ``extra_person_points`` (at most ``max_extra_people`` of them).
* Loitering: the person track that stayed longest, if its dwell (``last_seen − first_seen``)
  reaches ``loitering_seconds``, adds ``loitering_points``; reaching
  ``long_loitering_seconds``, ``long_loitering_points`` instead (others are counted as extra
  people). A person the tracker found stationary adds ``stationary_points``. A vehicle that
  stays ``vehicle_idle_seconds`` at night adds ``vehicle_idle_points``.
* Zones: each zone a track entered adds ``zone_points`` (none by default), or
  ``sensitive_zone_points`` for a zone listed in ``sensitive_zones``.
* Enrichment results, recognised by their shape whatever the enricher is called, anything
  else ignored: ``{"postures": [...]}`` on a person (pose) adds ``posture_points`` of each
  posture listed there; ``{"face_visible": false}`` on a person at night, with no result of
  the track saying true, adds ``hidden_face_at_night_points``; ``{"frame": {"threats":
  [{"label", "score"}]}}`` adds ``threat_points`` per threat label scoring at least
  ``threat_min_score``; ``{"label": "van"}`` (a classifier's type) only names the object.
* Context: a person re-identified on another camera adds ``reid_points``; each medium or
  worse event on another camera shortly before (at most ``max_recent_events``) adds
  ``recent_event_points``.
* Time and arm mode: every point a track earns (its label's presence, its loitering,
  stillness, zones, postures and re-identification) is multiplied by ``night_multiplier`` when
  the track was seen at night, between ``night_starts`` and ``night_ends`` in the camera's own
  time zone (either end of the track then, or a track longer than the day), by
  ``home_day_multiplier`` by day while the household is home, and also by
  ``away_multiplier`` while it is away. Threats and the hidden face are not.
* Ceiling: without a threat, or a person in one of the ``concerning_postures`` at night, the
  score stops at ``max_without_threat`` (high): counting people and minutes alone never makes
  a window critical.

Levels (:func:`~hearthwatch.security.evidence.level_of`): below 30 ``low``, below 60
``medium``, below 85 ``high``, else ``critical``. With the defaults: a cat by day or night, a
parked car, a delivery or a gardener by day at home is ``low``; a stranger at the door by day
while away, a person passing by night or a car idling at the kerb at night ``medium``; a person
lingering five minutes or more at night, or hiding their face at night, ``high``; lingering and
crouching at night ``critical``. A knife next to a person by day at home is only ``medium``
here: the built-in threat rule (:mod:`.risk_rules`), applied after any analyser, makes it
critical.

Every window has detections, so every label seen yields at least its presence reason, citing
the best detection of each of its tracks; loitering cites a track's first, best and last
detections. Deterministic, pure Python. :class:`RuleAnalyser` is immutable: thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hearthwatch.security.analysis.window_view import (
    Clock,
    TrackView,
    checked_zone,
    short_name,
    tracks_of,
)
from hearthwatch.security.evidence import (
    Analysis,
    ArmMode,
    Level,
    Reason,
    WindowEvidence,
    level_of,
)

LEVEL_WORDS: Final[Mapping[Level, str]] = {
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
VEHICLES: Final = frozenset({"car", "truck", "bus", "motorcycle"})

POSTURE_PHRASES: Final[Mapping[str, str]] = {
    "crouching": "was crouching",
    "lying": "was lying on the ground",
    "arms_raised": "had their arms raised",
    "standing": "was standing",
}
PLURALS: Final[Mapping[str, str]] = {"person": "people", "bus": "buses", "sheep": "sheep"}
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
    zone_points: Points = 0.0
    sensitive_zones: frozenset[str] = frozenset()
    sensitive_zone_points: Points = 12.0
    posture_points: dict[str, Points] = Field(
        default_factory=lambda: {"crouching": 12.0, "lying": 8.0, "arms_raised": 12.0}
    )
    home_day_multiplier: float = Field(0.6, ge=0.0, le=10.0, allow_inf_nan=False)
    away_multiplier: float = Field(1.2, ge=0.0, le=10.0, allow_inf_nan=False)
    vehicle_idle_seconds: float = Field(300.0, gt=0.0, allow_inf_nan=False)
    vehicle_idle_points: Points = 15.0
    reid_points: Points = 15.0
    recent_event_points: Points = 6.0
    max_recent_events: int = Field(2, ge=0, le=20)
    max_without_threat: Points = 84.0
    concerning_postures: frozenset[str] = frozenset({"crouching", "arms_raised"})
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
        zone = checked_zone(evidence)
        clock = Clock(zone, self.config.night_starts, self.config.night_ends)
        tracks = tracks_of(evidence)
        config = self.config
        people = [track for track in tracks if track.label == PERSON]
        loiterer = max(people, key=lambda t: t.dwell_s).key if people else None
        threats = _threats(tracks, config)
        findings = [
            *_presence(tracks, evidence.camera_name, evidence.arm_mode, clock, config),
            *(
                finding
                for track in tracks
                for finding in _track_findings(
                    track, evidence, clock, config, loiterer=track.key == loiterer
                )
            ),
            *_context_findings(evidence, tracks, clock, config),
            *threats,
        ]
        findings.sort(key=lambda finding: -finding.points)  # stable: ties keep their order
        ceiling = 100.0
        if not threats and not _concerning_posture_at_night(people, clock, config):
            ceiling = config.max_without_threat
        score = round(min(ceiling, sum(finding.points for finding in findings)), 1)
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


def _words(name: str) -> str:
    return short_name(name.replace("_", " ")) or "object"


def _with_article(words: str) -> str:
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def _plural(label: str) -> str:
    return PLURALS.get(label, f"{_words(label)}s")


def _night(flag: bool) -> str:
    return ", at night" if flag else ""


def _factor(night: bool, arm_mode: ArmMode, config: RuleConfig) -> float:
    """What a track's points are multiplied by: at night ``night_multiplier``, by day while
    home ``home_day_multiplier``; while away also ``away_multiplier``."""
    factor = config.night_multiplier if night else 1.0
    if not night and arm_mode == "home":
        factor = config.home_day_multiplier
    return factor * (config.away_multiplier if arm_mode == "away" else 1.0)


def _presence(
    tracks: list[TrackView],
    camera_name: str,
    arm_mode: ArmMode,
    clock: Clock,
    config: RuleConfig,
) -> list[_Finding]:
    """One finding per label seen, in order of first sighting."""
    by_label: dict[str, list[TrackView]] = {}
    for track in tracks:
        by_label.setdefault(track.label, []).append(track)
    findings = []
    camera = f'on the "{short_name(camera_name) or "unnamed"}" camera'
    for label, same in by_label.items():
        night = any(clock.saw_night(t.first_seen, t.last_seen) for t in same)
        points = config.label_weights.get(label, config.other_label_weight)
        if label == PERSON:
            points += min(len(same) - 1, config.max_extra_people) * config.extra_person_points
        points *= _factor(night, arm_mode, config)
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
    track: TrackView,
    evidence: WindowEvidence,
    clock: Clock,
    config: RuleConfig,
    *,
    loiterer: bool,
) -> list[_Finding]:
    """Loitering (of ``loiterer``, the person who stayed longest), a vehicle idling at night,
    stillness, zones, posture and a hidden face of one track."""
    what = _with_article(_words(track.label)).capitalize()
    night = clock.saw_night(track.first_seen, track.last_seen)
    factor = _factor(night, evidence.arm_mode, config)
    zones = list(track.zone_first_ids)
    if zones:
        where = "in the " + ", ".join(f'"{short_name(zone) or "unnamed"}"' for zone in zones[:3])
        where += " zone" if len(zones) == 1 else " zones"
    else:
        where = f'in view of the "{short_name(evidence.camera_name) or "unnamed"}" camera'
    findings = []
    if night and track.label in VEHICLES and track.dwell_s >= config.vehicle_idle_seconds:
        findings.append(
            _Finding(
                factor * config.vehicle_idle_points,
                f"{what} stayed {_duration(track.dwell_s)} {where} from "
                f"{clock.hhmm(track.first_seen)}, at night.",
                tuple(dict.fromkeys((track.first_id, track.best_id, track.last_id))),
            )
        )
    if loiterer and track.dwell_s >= config.loitering_seconds:
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
        shown = short_name(zone) or "unnamed"
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


def _context_findings(
    evidence: WindowEvidence, tracks: list[TrackView], clock: Clock, config: RuleConfig
) -> list[_Finding]:
    """A person seen on another camera shortly before (re-identified), and notable events on
    other cameras in the minutes before the window."""
    findings = []
    by_key = {track.key: track for track in tracks}
    matched: set[str] = set()
    for match in evidence.reid_matches:
        track = by_key.get(match.track_key)
        if track is None or track.label != PERSON or track.key in matched:
            continue
        matched.add(track.key)
        night = clock.saw_night(track.first_seen, track.last_seen)
        minutes = max(0, round((track.first_seen - match.seen_at) / 60))
        findings.append(
            _Finding(
                _factor(night, evidence.arm_mode, config) * config.reid_points,
                f'The same person was seen on the "{short_name(match.camera_name) or "unnamed"}"'
                f" camera {minutes} min before{_night(night)}.",
                (track.best_id,),
            )
        )
    others = [
        event
        for event in evidence.recent_events
        if not event.same_camera and event.level in ("medium", "high", "critical")
    ][: config.max_recent_events]
    cited = tuple(dict.fromkeys(track.best_id for track in tracks if track.label == PERSON))
    for event in others if cited else ():
        findings.append(
            _Finding(
                config.recent_event_points,
                f'A {event.level} event on the "{short_name(event.camera_name) or "unnamed"}" '
                f"camera came shortly before.",
                cited[:3],
            )
        )
    return findings


def _concerning_posture_at_night(people: list[TrackView], clock: Clock, config: RuleConfig) -> bool:
    return any(
        track.enrichment.postures & config.concerning_postures
        and clock.saw_night(track.first_seen, track.last_seen)
        for track in people
    )


def _threats(tracks: list[TrackView], config: RuleConfig) -> list[_Finding]:
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
