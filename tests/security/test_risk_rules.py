"""Risk rules: a user's rule matches by camera, zone, class, local hours and arm mode, raises the
score to its level's floor (never lowers it) and shows as a reason citing what matched; the
threat rule; critical triggers; the rules' validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import time
from typing import Any

import pytest
from pipeline_doubles import scenarios
from pydantic import ValidationError

from hearthwatch.security.analysis.base import check_citations
from hearthwatch.security.analysis.risk_rules import (
    RiskRule,
    RiskRules,
    apply_rules,
    critical_matches,
)
from hearthwatch.security.evidence import Analysis, Reason, WindowEvidence

SCENARIOS = scenarios()
LOITERING = SCENARIOS["t14_loitering_back_door_3am"].evidence  # Back door, 03:04 London
CROWBAR = SCENARIOS["t19_crowbar_back_door_night"].evidence
BACK_DOOR_AWAY = {
    "name": "back door at night while away",
    "at_least": "high",
    "cameras": ["back-door"],
    "zones": ["back_door"],
    "labels": ["person"],
    "arm_modes": ["away"],
    "starts": "23:00",
    "ends": "06:00",
}


def low(evidence: WindowEvidence, score: float = 12.0) -> Analysis:
    first = evidence.detections[0].id
    return Analysis(score, "low", (Reason("someone", (first,)),), "test", "summary")


def rules(**changes: Any) -> RiskRules:
    return RiskRules(rules=(RiskRule.model_validate({**BACK_DOOR_AWAY, **changes}),))


def test_a_matching_rule_raises_the_score_to_its_floor_and_says_why() -> None:
    away = replace(LOITERING, arm_mode="away")
    ruled = apply_rules(low(away), away, rules())
    assert (ruled.score, ruled.level) == (60.0, "high")
    first = ruled.reasons[0]
    assert first.text == (
        "Rule 'back door at night while away': person on back-door in back_door between 23:00 "
        "and 06:00 while away: at least high."
    )
    in_zone = {d.id for d in away.detections if "back_door" in d.zones}
    assert first.detection_ids and set(first.detection_ids) <= in_zone
    assert ruled.reasons[1:] == low(away).reasons
    assert ruled.details["rules_applied"] == ["back door at night while away"]
    check_citations(ruled, away)


@pytest.mark.parametrize(
    ("change", "evidence_change"),
    [
        ({}, {"arm_mode": "home"}),
        ({"cameras": ["front-door"]}, {}),
        ({"zones": ["garage"]}, {}),
        ({"labels": ["car"]}, {}),
        ({"starts": "08:00", "ends": "20:00"}, {}),
        ({"starts": "03:30", "ends": "06:00"}, {}),  # the window is 03:04–03:1x
    ],
)
def test_a_rule_that_does_not_match_changes_nothing(
    change: dict[str, Any], evidence_change: dict[str, Any]
) -> None:
    evidence = replace(LOITERING, **{"arm_mode": "away", **evidence_change})
    analysis = low(evidence)
    assert apply_rules(analysis, evidence, rules(**change)) is analysis


def test_empty_conditions_match_anything_and_a_higher_score_is_kept() -> None:
    anything = RiskRules(rules=(RiskRule(name="any person", at_least="medium"),), threat_floor=None)
    ruled = apply_rules(low(LOITERING, 75.0), LOITERING, anything)
    assert (ruled.score, ruled.level) == (75.0, "high")  # not lowered
    assert ruled.reasons[0].text == "someone"  # the analyser's reason stays first
    assert ruled.reasons[-1].text.startswith("Rule 'any person'")


def test_the_threat_rule_makes_a_weapon_critical_and_is_a_critical_trigger() -> None:
    ruled = apply_rules(low(CROWBAR), CROWBAR, RiskRules())
    assert (ruled.score, ruled.level) == (85.0, "critical")
    assert ruled.reasons[0].text == "Rule: a threat was detected (crowbar): at least critical."
    assert [m.name for m in critical_matches(CROWBAR, RiskRules())] == ["threat"]
    assert critical_matches(LOITERING, RiskRules()) == []
    assert apply_rules(low(CROWBAR), CROWBAR, RiskRules(threat_floor=None)).score == 12.0
    unsure = RiskRules(threat_min_score=0.99)
    assert apply_rules(low(CROWBAR), CROWBAR, unsure).score == 12.0


def test_a_critical_user_rule_is_a_critical_trigger() -> None:
    away = replace(LOITERING, arm_mode="away")
    assert critical_matches(away, rules()) == []
    (match,) = critical_matches(away, rules(at_least="critical"))
    assert match.level == "critical" and match.detection_ids


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"starts": "23:00"}, "both starts and ends"),
        ({"starts": "23:00", "ends": "23:00"}, "must differ"),
        ({"starts": "23:00+01:00", "ends": "06:00"}, "local time"),
        ({"at_least": "extreme"}, "at_least"),
        ({"arm_modes": ["vacation"]}, "arm_modes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_rules_are_refused_saying_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RiskRule.model_validate({"name": "r", "at_least": "high", **fields})


def test_rules_read_from_settings_are_checked_at_start_up() -> None:
    from hearthwatch.config import Settings

    settings = Settings(
        pipeline_enabled=True, risk_rules={"rules": [BACK_DOOR_AWAY], "threat_floor": "high"}
    )
    parsed = settings.parsed_risk_rules()
    (rule,) = parsed.rules
    assert rule.starts == time(23, 0) and rule.arm_modes == frozenset({"away"})
    assert parsed.threat_floor == "high"
    with pytest.raises(ValidationError, match="at_least"):
        Settings(pipeline_enabled=True, risk_rules={"rules": [{"name": "no floor"}]})


def test_hours_are_the_camera_s_local_time_over_midnight() -> None:
    sydney = SCENARIOS["t17_repeated_passes_across_cameras_night"].evidence  # 01:31, UTC 15:31
    assert sydney.timezone == "Australia/Sydney"

    def ruled(starts: str, ends: str) -> float:
        rule = RiskRule.model_validate(
            {"name": "r", "at_least": "high", "starts": starts, "ends": ends}
        )
        return apply_rules(low(sydney), sydney, RiskRules(rules=(rule,))).score

    assert ruled("23:00", "06:00") == 60.0  # over midnight, in Sydney
    assert ruled("01:00", "02:00") == 60.0
    assert ruled("15:00", "16:00") == 12.0  # the UTC hour of the window: not a match
    assert ruled("06:00", "23:00") == 12.0
