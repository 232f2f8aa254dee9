"""Risk rules: floors under an analysis that no analyser, and nothing in the scene, can lower.

A :class:`RiskRule` is written by the user per camera, zone, object class, time of day (the
camera's local time) and arm mode, e.g. "a person at back_door between 23:00 and 06:00 while
away: at least high". The built-in threat rule puts a window where an enrichment model saw a
weapon or break-in tool (``{"frame": {"threats": [...]}}`` at or above ``threat_min_score``)
at ``threat_floor``. :func:`apply_rules` raises an analysis's score to the floor of each
matching rule's level, adds a reason citing the detections that matched and lists the rules in
``details.rules_applied``; the level is derived again from the raised score.

A rule whose floor is ``critical`` is a critical trigger: :func:`critical_matches` finds those
on a window still open, for an early alert. Immutable pydantic models and pure functions:
thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import time
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearthwatch.security.analysis.window_view import (
    Clock,
    TrackView,
    checked_zone,
    tracks_of,
    within_hours,
)
from hearthwatch.security.evidence import (
    LEVEL_FLOORS,
    Analysis,
    ArmMode,
    Level,
    Reason,
    WindowEvidence,
    level_of,
)

FLOOR_OF: Final[dict[Level, float]] = {level: floor for floor, level in LEVEL_FLOORS}
MAX_RULES: Final = 200
CITED_PER_RULE: Final = 4


class RiskRule(BaseModel):
    """A floor under the score of the windows it matches; every condition left empty matches
    anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    at_least: Level
    cameras: frozenset[str] = Field(frozenset(), description="Camera ids.")
    zones: frozenset[str] = Field(frozenset(), description="A detection in any of these zones.")
    labels: frozenset[str] = Field(frozenset({"person"}), description="Object classes.")
    arm_modes: frozenset[ArmMode] = frozenset()
    starts: time | None = Field(None, description="Local time of day, with `ends`.")
    ends: time | None = None

    @model_validator(mode="after")
    def _hours(self) -> RiskRule:
        if (self.starts is None) != (self.ends is None):
            raise ValueError("give both starts and ends, or neither")
        if self.starts is not None and self.starts == self.ends:
            raise ValueError("starts and ends must differ")
        for hour in (self.starts, self.ends):
            if hour is not None and hour.tzinfo is not None:
                raise ValueError("hours are the camera's local time: give no UTC offset")
        return self

    def describe(self) -> str:
        """The rule in words, for the reason it adds."""
        parts = [" or ".join(sorted(self.labels)) or "anything"]
        if self.cameras:
            parts.append("on " + " or ".join(sorted(self.cameras)))
        if self.zones:
            parts.append("in " + " or ".join(sorted(self.zones)))
        if self.starts is not None and self.ends is not None:
            parts.append(f"between {self.starts:%H:%M} and {self.ends:%H:%M}")
        if self.arm_modes:
            parts.append("while " + " or ".join(sorted(self.arm_modes)))
        return " ".join(parts) + f": at least {self.at_least}"


class RiskRules(BaseModel):
    """The user's rules and the built-in threat rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RiskRule, ...] = Field((), max_length=MAX_RULES)
    threat_floor: Level | None = Field("critical", description="None: no threat rule.")
    threat_min_score: float = Field(0.5, ge=0.0, le=1.0)


@dataclass(frozen=True)
class RuleMatch:
    name: str
    level: Level
    text: str
    detection_ids: tuple[int, ...]


def matches(evidence: WindowEvidence, rules: RiskRules) -> list[RuleMatch]:
    """Every rule the window matches, with the detections that matched it."""
    clock = Clock(checked_zone(evidence), time(22, 0), time(6, 0))
    tracks = tracks_of(evidence)
    found = [m for rule in rules.rules if (m := _match(rule, evidence, tracks, clock))]
    if rules.threat_floor is not None:
        threatening = [
            (label, track.best_id)
            for track in tracks
            for label, score in sorted(track.enrichment.threats.items())
            if score >= rules.threat_min_score
        ]
        if threatening:
            labels = ", ".join(sorted({label for label, _ in threatening}))
            found.append(
                RuleMatch(
                    "threat",
                    rules.threat_floor,
                    f"Rule: a threat was detected ({labels}): at least {rules.threat_floor}.",
                    tuple(dict.fromkeys(i for _, i in threatening))[:CITED_PER_RULE],
                )
            )
    return found


def critical_matches(evidence: WindowEvidence, rules: RiskRules) -> list[RuleMatch]:
    """The matches that make a window critical: the triggers of an early alert."""
    return [m for m in matches(evidence, rules) if m.level == "critical"]


def apply_rules(analysis: Analysis, evidence: WindowEvidence, rules: RiskRules) -> Analysis:
    """``analysis`` with every matching rule's floor under its score (see the module
    docstring); unchanged when none matches."""
    found = matches(evidence, rules)
    if not found:
        return analysis
    score = max([analysis.score, *(FLOOR_OF[m.level] for m in found)])
    reasons = tuple(Reason(m.text, m.detection_ids) for m in found)
    return replace(
        analysis,
        score=score,
        level=level_of(score),
        reasons=reasons + analysis.reasons
        if score > analysis.score
        else analysis.reasons + reasons,
        details={**analysis.details, "rules_applied": [m.name for m in found]},
    )


def _match(
    rule: RiskRule, evidence: WindowEvidence, tracks: Sequence[TrackView], clock: Clock
) -> RuleMatch | None:
    if rule.cameras and evidence.camera_id not in rule.cameras:
        return None
    if rule.arm_modes and evidence.arm_mode not in rule.arm_modes:
        return None
    ids = [
        detection.id
        for track in tracks
        if not rule.labels or track.label in rule.labels
        for detection in track.detections
        if (not rule.zones or rule.zones & set(detection.zones))
        and _in_hours(rule, clock, detection.captured_at)
    ]
    if not ids:
        return None
    return RuleMatch(
        rule.name,
        rule.at_least,
        f"Rule {rule.name!r}: {rule.describe()}.",
        _spread(ids),
    )


def _in_hours(rule: RiskRule, clock: Clock, at: float) -> bool:
    if rule.starts is None or rule.ends is None:
        return True
    return within_hours(clock.local(at).time(), rule.starts, rule.ends)


def _spread(ids: Iterable[int]) -> tuple[int, ...]:
    """At most :data:`CITED_PER_RULE` of ``ids``: the first, the last and some between."""
    unique = list(dict.fromkeys(ids))
    if len(unique) <= CITED_PER_RULE:
        return tuple(unique)
    step = (len(unique) - 1) / (CITED_PER_RULE - 1)
    return tuple(dict.fromkeys(unique[round(step * k)] for k in range(CITED_PER_RULE)))
