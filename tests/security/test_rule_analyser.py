"""The rule-based analyser on hand-built evidence: levels, reasons, citations, time zones,
defensive reading of enrichment results; the registry and the citation check."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from hearthwatch.security.analysis import ANALYSERS, UnknownAnalyserError, build_analyser
from hearthwatch.security.analysis.base import CitationError, EvidenceError, check_citations
from hearthwatch.security.analysis.rules import RuleAnalyser, RuleConfig
from hearthwatch.security.evidence import (
    Analysis,
    DetectionEvidence,
    Reason,
    TrackEvidence,
    WindowEvidence,
    level_of,
)

NIGHT_IN_BERLIN = datetime(2024, 1, 15, 1, 13, tzinfo=UTC).timestamp()
"""02:13 in Berlin, 10:13 in Tokyo."""
DAY_IN_BERLIN = datetime(2024, 1, 15, 12, 30, tzinfo=UTC).timestamp()
"""13:30 in Berlin."""

_ids = itertools.count(1)

Track = tuple[TrackEvidence, list[DetectionEvidence]]


def track(
    label: str,
    start: float,
    dwell_s: float = 4.0,
    *,
    zones: tuple[str, ...] = (),
    stationary: bool = False,
    enrichments: Mapping[str, Any] | None = None,
    sightings: int = 3,
) -> Track:
    """A track seen ``sightings`` times evenly over ``dwell_s``; the middle sighting scores
    best; every sighting but the first is in ``zones``."""
    key = f"cam1-{start:.0f}-{next(_ids)}"
    detections = []
    for i in range(sightings):
        detection_id = next(_ids)
        detections.append(
            DetectionEvidence(
                id=detection_id,
                frame_id=detection_id,
                track_key=key,
                label=label,
                score=0.9 if i == sightings // 2 else 0.6,
                box=(10.0, 20.0, 60.0, 120.0),
                zones=zones if i > 0 else (),
                captured_at=start + dwell_s * i / max(1, sightings - 1),
            )
        )
    best = detections[sightings // 2].id
    evidence = TrackEvidence(
        key=key,
        label=label,
        first_seen=detections[0].captured_at,
        last_seen=detections[-1].captured_at,
        zones_entered=zones,
        stationary=stationary,
        best_detection_id=best,
        enrichments=enrichments if enrichments is not None else {},
    )
    return evidence, detections


def window(*tracks: Track, timezone: str = "Europe/Berlin") -> WindowEvidence:
    detections = tuple(d for _, ds in tracks for d in ds)
    times = [d.captured_at for d in detections] or [NIGHT_IN_BERLIN]
    return WindowEvidence(
        window_id="w-1",
        camera_id="cam1",
        camera_name="Front door",
        zone_description="the path to the front door",
        timezone=timezone,
        opened_at=min(times),
        closed_at=max(times) + 30,
        linked_window_ids=(),
        tracks=tuple(t for t, _ in tracks),
        detections=detections,
        frame_paths={},
    )


def analyse(evidence: WindowEvidence, config: RuleConfig | None = None) -> Analysis:
    analysis = asyncio.run(RuleAnalyser(config).analyse(evidence))
    check_citations(analysis, evidence)
    return analysis


def texts(analysis: Analysis) -> str:
    return "\n".join(reason.text for reason in analysis.reasons)


def test_a_person_lingering_at_night_is_high_and_cites_first_best_and_last() -> None:
    lingering = track("person", NIGHT_IN_BERLIN, 360.0, zones=("front door",))
    analysis = analyse(window(lingering))
    assert analysis.level == "high"
    assert analysis.analyser == "rules"
    stayed = [r for r in analysis.reasons if "stayed" in r.text]
    assert len(stayed) == 1
    assert stayed[0].text == 'A person stayed 6 min in the "front door" zone from 02:13, at night.'
    first, best, last = (d.id for d in lingering[1])
    assert stayed[0].detection_ids == (first, best, last)
    assert analysis.summary.startswith(("High risk", "Critical risk"))


def test_crouching_with_a_hidden_face_at_night_is_critical() -> None:
    enrichments = {
        "pose": {"pose_score": 0.9, "keypoints": [], "postures": ["crouching"]},
        "face": {"face_visible": False, "faces": []},
    }
    lingering = track(
        "person", NIGHT_IN_BERLIN, 240.0, zones=("front door",), enrichments=enrichments
    )
    plain = analyse(window(track("person", NIGHT_IN_BERLIN, 240.0, zones=("front door",))))
    analysis = analyse(window(lingering))
    assert analysis.level == "critical"
    assert analysis.score > plain.score
    assert "A person was crouching." in texts(analysis)
    assert "A person's face could not be seen, at night." in texts(analysis)


def test_a_cat_by_day_is_low() -> None:
    analysis = analyse(window(track("cat", DAY_IN_BERLIN, 20.0)))
    assert analysis.level == "low"
    assert analysis.score < 15
    assert [r.text for r in analysis.reasons] == [
        'A cat was seen on the "Front door" camera at 13:30.'
    ]


def test_a_person_by_day_is_low_and_outscores_a_cat_and_a_car() -> None:
    person = analyse(window(track("person", DAY_IN_BERLIN)))
    car = analyse(window(track("car", DAY_IN_BERLIN)))
    cat = analyse(window(track("cat", DAY_IN_BERLIN)))
    assert person.level == "low"
    assert person.score > car.score > cat.score


def test_two_people_score_higher_than_one() -> None:
    one = analyse(window(track("person", DAY_IN_BERLIN, 10.0)))
    two = analyse(
        window(track("person", DAY_IN_BERLIN, 10.0), track("person", DAY_IN_BERLIN + 5, 10.0))
    )
    assert two.score > one.score
    assert '2 different people were seen on the "Front door" camera at 13:30.' in texts(two)
    presence = next(r for r in two.reasons if "people" in r.text)
    assert len(presence.detection_ids) == 2  # the best detection of each person


def test_the_time_zone_decides_night_and_day() -> None:
    same_instant = track("person", NIGHT_IN_BERLIN, 90.0)
    berlin = analyse(window(same_instant, timezone="Europe/Berlin"))
    tokyo = analyse(window(same_instant, timezone="Asia/Tokyo"))
    assert berlin.score > tokyo.score
    assert "at 02:13, at night" in texts(berlin)
    assert "at 10:13" in texts(tokyo)
    assert "night" not in texts(tokyo)


def test_night_hours_are_configurable() -> None:
    evening = datetime(2024, 1, 15, 19, 30, tzinfo=UTC).timestamp()  # 20:30 in Berlin
    default = analyse(window(track("person", evening)))
    early = analyse(window(track("person", evening)), RuleConfig(night_starts="20:00"))
    assert "night" not in texts(default)
    assert "at 20:30, at night" in texts(early)
    assert early.score > default.score


def test_a_track_spanning_the_night_counts_as_night() -> None:
    all_night = track("person", DAY_IN_BERLIN + 8 * 3600, 14 * 3600.0)  # 21:30 to 11:30
    assert ", at night" in texts(analyse(window(all_night)))


def test_zones_stillness_and_sensitive_zones_raise_the_score() -> None:
    config = RuleConfig(sensitive_zones=frozenset({"back door"}), zone_points=4.0)
    base = analyse(window(track("person", DAY_IN_BERLIN)), config)
    zoned = analyse(window(track("person", DAY_IN_BERLIN, zones=("garden",))), config)
    sensitive = analyse(window(track("person", DAY_IN_BERLIN, zones=("back door",))), config)
    still = analyse(window(track("person", DAY_IN_BERLIN, stationary=True)), config)
    assert base.score < zoned.score < sensitive.score
    assert still.score > base.score
    assert 'A person entered the "garden" zone.' in texts(zoned)
    assert 'A person entered the sensitive zone "back door".' in texts(sensitive)
    assert "A person stood still" in texts(still)


def test_loitering_grows_with_the_dwell() -> None:
    short = analyse(window(track("person", DAY_IN_BERLIN, 30.0)))
    loitering = analyse(window(track("person", DAY_IN_BERLIN, 120.0)))
    long = analyse(window(track("person", DAY_IN_BERLIN, 900.0)))
    assert short.score < loitering.score < long.score
    assert "stayed" not in texts(short)
    assert "A person stayed 15 min" in texts(long)


def test_enrichment_names_the_vehicle_and_threats_raise_the_score() -> None:
    van = {"vehicle": {"label": "van", "score": 0.8, "scores": {"van": 0.8}}}
    threat = {"threat": {"frame": {"threats": [{"label": "knife", "score": 0.8, "box": []}]}}}
    weak_threat = {"threat": {"frame": {"threats": [{"label": "knife", "score": 0.2}]}}}
    car = analyse(window(track("car", DAY_IN_BERLIN, enrichments=van)))
    armed = analyse(window(track("person", DAY_IN_BERLIN, enrichments=threat)))
    unsure = analyse(window(track("person", DAY_IN_BERLIN, enrichments=weak_threat)))
    assert 'A car (van) was seen on the "Front door" camera at 13:30.' in texts(car)
    assert "Something that looks like a knife was seen." in texts(armed)
    assert armed.level == "medium"  # by day at home; the threat rule makes it critical
    assert "knife" not in texts(unsure)
    assert unsure.score < armed.score


def test_every_reason_cites_detections_of_the_evidence() -> None:
    enrichments = {
        "pose": {"postures": ["lying", "arms_raised"]},
        "face": {"face_visible": False},
        "threat": {"frame": {"threats": [{"label": "gun", "score": 0.9}]}},
    }
    evidence = window(
        track("person", NIGHT_IN_BERLIN, 400.0, zones=("porch", "drive"), enrichments=enrichments),
        track("person", NIGHT_IN_BERLIN + 10, 20.0, stationary=True),
        track("car", NIGHT_IN_BERLIN, 60.0, enrichments={"vehicle": {"label": "suv"}}),
        track("cat", NIGHT_IN_BERLIN, 5.0, zones=("porch",)),
        track("umbrella", NIGHT_IN_BERLIN, 1.0, sightings=1),
    )
    analysis = analyse(evidence, RuleConfig(sensitive_zones=frozenset({"drive"})))
    known = {d.id for d in evidence.detections}
    assert len(analysis.reasons) >= 10
    for reason in analysis.reasons:
        assert reason.detection_ids, reason.text
        assert set(reason.detection_ids) <= known, reason.text
    assert analysis.score == 100.0
    assert analysis.level == "critical"
    assert "An umbrella was seen" in texts(analysis)


def test_detections_of_a_track_the_evidence_lacks_are_still_analysed() -> None:
    orphan_track, orphan_detections = track("person", DAY_IN_BERLIN)
    evidence = dataclasses.replace(window((orphan_track, orphan_detections)), tracks=())
    analysis = analyse(evidence)
    assert analysis.level == "low"
    assert analysis.reasons[0].detection_ids == (orphan_detections[1].id,)  # the highest score


MALFORMED: list[Any] = [
    {"pose": {"postures": "crouching"}},
    {"pose": {"postures": [1, None, {"crouching": True}, ["lying"]]}},
    {"face": {"face_visible": "no"}},
    {"face": {"face_visible": 0}},
    {"pose": None, "face": 3, "other": [1, 2, 3], "x": "text"},
    {"threat": {"frame": {"threats": "knife"}}},
    {"threat": {"frame": {"threats": [{"label": 5, "score": 0.9}, {"label": "gun"}]}}},
    {"threat": {"frame": {"threats": [{"label": "gun", "score": float("nan")}]}}},
    {"threat": {"frame": {"threats": [{"label": "gun", "score": 10**400}]}}},
    {"threat": {"frame": {"threats": [{"label": "gun", "score": True}]}}},
    {"threat": {"frame": ["threats"]}},
    {"vehicle": {"label": {"nested": "van"}}},
    {"vehicle": {"label": ""}},
    {"vehicle": {"label": "unknown"}},
    ["not", "a", "mapping"],
    None,
]


@pytest.mark.parametrize("enrichments", MALFORMED)
def test_malformed_enrichment_results_are_ignored(enrichments: Any) -> None:
    plain = analyse(window(track("person", NIGHT_IN_BERLIN, 90.0)))
    odd_track, detections = track("person", NIGHT_IN_BERLIN, 90.0)
    odd_track = dataclasses.replace(odd_track, enrichments=enrichments)
    odd = analyse(window((odd_track, detections)))
    assert (odd.score, odd.level) == (plain.score, plain.level)
    assert [r.text for r in odd.reasons] == [r.text for r in plain.reasons]


def test_hostile_names_are_cut_and_cleaned_in_reason_texts() -> None:
    name = "<script>alert(1)</script>" + "x" * 500
    analysis = analyse(window(track("person", DAY_IN_BERLIN, zones=(name,))))
    entered = next(r.text for r in analysis.reasons if "entered" in r.text)
    assert "<" not in entered and ">" not in entered
    assert len(entered) < 100


def test_the_analysis_is_deterministic_whatever_the_order_of_the_evidence() -> None:
    evidence = window(
        track("person", NIGHT_IN_BERLIN, 100.0, zones=("a", "b")),
        track("person", NIGHT_IN_BERLIN + 3, 10.0),
        track("dog", NIGHT_IN_BERLIN + 1, 10.0),
    )
    shuffled = dataclasses.replace(
        evidence,
        tracks=tuple(reversed(evidence.tracks)),
        detections=tuple(reversed(evidence.detections)),
    )
    assert analyse(evidence) == analyse(evidence) == analyse(shuffled)


def test_a_big_window_is_analysed_fast() -> None:
    tracks = [
        track(label, NIGHT_IN_BERLIN + i, 120.0, zones=("porch",), sightings=50)
        for i, label in zip(range(200), itertools.cycle(("person", "car", "cat")), strict=False)
    ]
    evidence = window(*tracks)
    started = time.perf_counter()
    analysis = analyse(evidence)
    assert time.perf_counter() - started < 1.0
    assert len(evidence.detections) == 10_000
    assert (analysis.level, analysis.score) == ("high", 84.0)  # no threat: capped below critical


@pytest.mark.parametrize(
    ("score", "level"),
    [(0, "low"), (29.9, "low"), (30, "medium"), (59.9, "medium")]
    + [(60, "high"), (84.9, "high"), (85, "critical"), (100, "critical")],
)
def test_levels_follow_the_documented_thresholds(score: float, level: str) -> None:
    assert level_of(score) == level


def test_unusable_evidence_is_refused() -> None:
    empty = window()
    with pytest.raises(EvidenceError, match="no detections"):
        analyse(empty)
    for zone in ("Mars/Olympus_Mons", "../../etc/passwd", ""):
        with pytest.raises(EvidenceError, match="time zone"):
            analyse(window(track("person", DAY_IN_BERLIN), timezone=zone))
    person, detections = track("person", DAY_IN_BERLIN)
    for when in (float("nan"), float("inf"), -1.0, 1e18):
        broken = [dataclasses.replace(detections[0], captured_at=when), *detections[1:]]
        with pytest.raises(EvidenceError, match="capture time"):
            analyse(window((person, broken)))


def test_implausible_track_times_fall_back_to_the_detections() -> None:
    person, detections = track("person", DAY_IN_BERLIN, 30.0)
    for first, last in ((1e18, 2e18), (float("nan"), DAY_IN_BERLIN), (DAY_IN_BERLIN, -5.0)):
        odd = dataclasses.replace(person, first_seen=first, last_seen=last)
        analysis = analyse(window((odd, detections)))
        assert analysis.level == "low"
        assert "stayed" not in texts(analysis)


def test_the_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        RuleConfig(night_starts="06:00", night_ends="06:00")
    with pytest.raises(ValidationError):
        RuleConfig(loitering_seconds=600, long_loitering_seconds=60)
    with pytest.raises(ValidationError):
        RuleConfig(label_weights={"person": -5})
    with pytest.raises(ValidationError):
        RuleConfig.model_validate({"night_multiplier": float("inf")})
    with pytest.raises(ValidationError):
        RuleConfig.model_validate({"unknown_field": 1})


def test_check_citations_refuses_unknown_ids_and_reasons_citing_nothing() -> None:
    evidence = window(track("person", DAY_IN_BERLIN))
    known = evidence.detections[0].id

    def with_reason(*ids: int) -> Analysis:
        return Analysis(10.0, "low", (Reason("ok", (known,)), Reason("x", ids)), "test", "s")

    check_citations(with_reason(known), evidence)
    with pytest.raises(CitationError, match=r"\[999999\]"):
        check_citations(with_reason(known, 999_999), evidence)
    with pytest.raises(CitationError, match="cites no detection"):
        check_citations(with_reason(), evidence)


def test_the_registry_builds_the_rule_analyser_with_its_options() -> None:
    assert set(ANALYSERS) == {"rules", "llm"}
    default = build_analyser("rules")
    assert isinstance(default, RuleAnalyser)
    assert default.name == "rules"
    tuned = build_analyser("rules", {"night_multiplier": 2.0, "sensitive_zones": ["shed"]})
    assert isinstance(tuned, RuleAnalyser)
    assert tuned.config.night_multiplier == 2.0
    assert tuned.config.sensitive_zones == frozenset({"shed"})
    with pytest.raises(UnknownAnalyserError, match="known: llm, rules"):
        build_analyser("llm-that-does-not-exist")
    with pytest.raises(ValidationError):
        build_analyser("rules", {"night_multiplier": "very"})
