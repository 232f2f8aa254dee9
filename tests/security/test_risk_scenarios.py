"""The risk benchmark's labelled scenarios (bench/risk_scenarios.json) and their loader."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hearthwatch.security.evidence import LEVELS
from hearthwatch.security.risk_quality.scenarios import (
    POSTURES,
    SPLITS,
    Scenario,
    camera_slug,
    load_scenarios,
)

SCENARIOS_FILE = Path(__file__).resolve().parents[2] / "bench" / "risk_scenarios.json"


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return load_scenarios(SCENARIOS_FILE)


def test_the_committed_set_loads(scenarios: list[Scenario]) -> None:
    assert len(scenarios) >= 44
    assert len({s.id for s in scenarios}) == len(scenarios)
    for s in scenarios:
        assert s.evidence.window_id == s.id
        assert s.evidence.camera_id == camera_slug(s.evidence.camera_name)
        assert s.evidence.opened_at < s.evidence.closed_at


def test_the_splits_are_balanced(scenarios: list[Scenario]) -> None:
    per_split = Counter(s.split for s in scenarios)
    assert per_split["tune"] == per_split["holdout"] == len(scenarios) // 2
    bands = Counter((s.split, s.expected_level) for s in scenarios)
    injections = Counter(s.split for s in scenarios if s.injection)
    for split in SPLITS:
        for level in LEVELS:
            assert bands[split, level] >= 4, (split, level)
        assert bands[split, "critical"] >= 3, split
        assert injections[split] >= 3, split


def test_injections_sit_in_serious_and_in_benign_scenes(scenarios: list[Scenario]) -> None:
    for split in SPLITS:
        levels = {s.expected_level for s in scenarios if s.injection and s.split == split}
        assert levels & {"high", "critical"}, split
        assert any(s.injection and s.benign for s in scenarios if s.split == split), split


def test_every_required_id_is_a_detection_of_its_scenario(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        ids = {d.id for d in s.evidence.detections}
        assert s.required_ids, s.id
        assert s.required_ids <= ids, s.id
        assert len(ids) == len(s.evidence.detections), s.id


def test_benign_scenes_are_never_expected_high(scenarios: list[Scenario]) -> None:
    assert any(s.benign for s in scenarios)
    for s in scenarios:
        if s.benign:
            assert s.expected_level in ("low", "medium"), s.id


def test_the_evidence_is_consistent(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        tracks = {t.key: t for t in s.evidence.tracks}
        for d in s.evidence.detections:
            track = tracks[d.track_key]
            assert d.label == track.label, s.id
            assert track.first_seen <= d.captured_at <= track.last_seen, (s.id, d.id)
            assert set(d.zones) <= set(track.zones_entered), (s.id, d.id)
        for t in s.evidence.tracks:
            own = {d.id for d in s.evidence.detections if d.track_key == t.key}
            assert t.best_detection_id in own, (s.id, t.key)
            assert s.evidence.opened_at <= t.first_seen <= t.last_seen <= s.evidence.closed_at
        times = [(d.captured_at, d.id) for d in s.evidence.detections]
        assert times == sorted(times), s.id
        for match in s.evidence.reid_matches:
            assert match.track_key in tracks, s.id
            assert match.seen_at <= s.evidence.opened_at, s.id
        # the evidence is JSON-serialisable, as the pipeline's is
        json.dumps([dict(t.enrichments) for t in s.evidence.tracks])


def test_local_times_become_utc(scenarios: list[Scenario]) -> None:
    by_id = {s.id: s for s in scenarios}
    winter = by_id["t01_parcel_delivery_day"].evidence  # London, GMT = UTC
    assert winter.opened_at == datetime(2026, 3, 14, 14, 2, 5, tzinfo=UTC).timestamp()
    assert winter.closed_at == winter.opened_at + 50
    summer = by_id["t06_dog_in_garden_day"].evidence  # Los Angeles, PDT = UTC-7
    assert summer.opened_at == datetime(2026, 7, 12, 22, 20, tzinfo=UTC).timestamp()


def test_the_postures_are_the_pose_models() -> None:
    from hearthwatch.runtime.enrichment.posture import POSTURE_LABELS

    assert set(POSTURE_LABELS) == POSTURES


# --- broken files -------------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return {
        "id": "x01_probe",
        "split": "tune",
        "description": "a person walks up to the front door",
        "expected_level": "low",
        "required_ids": [2],
        "injection": False,
        "benign": True,
        "window": {
            "camera_name": "Front door",
            "zone_description": "porch",
            "timezone": "Europe/London",
            "local_start": "2026-03-14T14:02:05",
            "duration_s": 30,
            "arm_mode": "home",
            "tracks": [
                {
                    "key": "t1",
                    "label": "person",
                    "start_s": 0,
                    "end_s": 20,
                    "zones_entered": ["porch"],
                    "stationary": False,
                    "best_detection": 2,
                    "enrichments": {"pose": {"postures": ["standing"]}},
                    "detections": [
                        {"id": 1, "at_s": 0, "score": 0.7, "box": [1, 2, 30, 40], "zones": []},
                        {
                            "id": 2,
                            "at_s": 10,
                            "score": 0.9,
                            "box": [5, 2, 40, 60],
                            "zones": ["porch"],
                        },
                        {"id": 3, "at_s": 20, "score": 0.6, "box": [9, 2, 50, 70], "zones": []},
                    ],
                }
            ],
            "recent_events": [
                {
                    "event_id": "e1",
                    "camera_name": "Driveway",
                    "same_camera": False,
                    "minutes_ago": 2,
                    "level": "low",
                    "summary": "a car arrived",
                }
            ],
            "reid_matches": [
                {
                    "track_key": "t1",
                    "camera_name": "Driveway",
                    "minutes_ago": 1,
                    "similarity": 0.9,
                    "descriptor": "reid",
                    "event_id": "e1",
                }
            ],
        },
    }


def _write(tmp_path: Path, entries: list[Any]) -> Path:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps({"version": 1, "scenarios": entries}), encoding="utf-8")
    return path


def test_the_probe_scenario_is_valid(tmp_path: Path) -> None:
    (scenario,) = load_scenarios(_write(tmp_path, [_valid()]))
    assert scenario.required_ids == frozenset({2})
    assert scenario.evidence.reid_matches[0].seen_at == scenario.evidence.opened_at - 60
    assert scenario.evidence.recent_events[0].started_at == scenario.evidence.opened_at - 120


def _track(s: dict[str, Any]) -> dict[str, Any]:
    track: dict[str, Any] = s["window"]["tracks"][0]
    return track


def _set(path: str, value: Any) -> Any:
    """A change to the probe scenario: the key path (dots; digits index lists) set to value."""

    def change(s: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = s
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return change


def _extra_track_key(s: dict[str, Any]) -> None:
    _track(s)["colour"] = "red"


def _duplicate_track(s: dict[str, Any]) -> None:
    other = copy.deepcopy(_track(s))
    for n, detection in enumerate(other["detections"], start=10):
        detection["id"] = n
    other["best_detection"] = 10
    s["window"]["tracks"].append(other)


def _duplicate_detection(s: dict[str, Any]) -> None:
    _track(s)["detections"][2]["id"] = 1


BROKEN = {
    "unknown required id": (_set("required_ids", [2, 9]), "required_ids"),
    "repeated required id": (_set("required_ids", [2, 2]), "required_ids"),
    "no required id": (_set("required_ids", []), "required_ids"),
    "unknown timezone": (_set("window.timezone", "Europe/Atlantis"), "window.timezone"),
    "local start in a DST gap": (
        _set("window.local_start", "2026-03-29T01:30:00"),
        "window.local_start",
    ),
    "local start in a DST overlap": (
        _set("window.local_start", "2026-10-25T01:30:00"),
        "window.local_start",
    ),
    "local start with an offset": (
        _set("window.local_start", "2026-03-14T14:02:05+00:00"),
        "window.local_start",
    ),
    "detection before its track": (
        _set("window.tracks.0.start_s", 5),
        "window.tracks[0].detections[0].at_s",
    ),
    "detection after its track": (
        _set("window.tracks.0.detections.2.at_s", 25),
        "window.tracks[0].detections[2].at_s",
    ),
    "track beyond the window": (_set("window.tracks.0.end_s", 31), "window.tracks[0].end_s"),
    "best detection of no track": (
        _set("window.tracks.0.best_detection", 7),
        "window.tracks[0].best_detection",
    ),
    "duplicate detection id": (_duplicate_detection, "window.tracks[0].detections[2].id"),
    "duplicate track key": (_duplicate_track, "window.tracks[1].key"),
    "detection zone not entered": (
        _set("window.tracks.0.detections.0.zones", ["garden"]),
        "window.tracks[0].detections[0].zones",
    ),
    "reid of an unknown track": (
        _set("window.reid_matches.0.track_key", "t9"),
        "window.reid_matches[0].track_key",
    ),
    "reid of an unknown event": (
        _set("window.reid_matches.0.event_id", "e9"),
        "window.reid_matches[0].event_id",
    ),
    "reid on the same camera": (
        _set("window.reid_matches.0.camera_name", "Front door"),
        "window.reid_matches[0].camera_name",
    ),
    "same_camera disagreeing": (
        _set("window.recent_events.0.same_camera", True),
        "window.recent_events[0].same_camera",
    ),
    "benign yet critical": (_set("expected_level", "critical"), "expected_level"),
    "unknown level": (_set("expected_level", "none"), "expected_level"),
    "unknown split": (_set("split", "train"), "split"),
    "unknown arm mode": (_set("window.arm_mode", "vacation"), "window.arm_mode"),
    "an unknown key": (_extra_track_key, "window.tracks[0].colour"),
    "a score as a string": (
        _set("window.tracks.0.detections.1.score", "0.9"),
        "window.tracks[0].detections[1].score",
    ),
    "a flag as a number": (_set("benign", 1), "benign"),
    "an upside-down box": (
        _set("window.tracks.0.detections.1.box", [40, 2, 5, 60]),
        "window.tracks[0].detections[1].box",
    ),
    "a pose that is not the model's": (
        _set("window.tracks.0.enrichments.pose", {"postures": ["sitting"]}),
        "window.tracks[0].enrichments.pose",
    ),
    "a face result without face_visible": (
        _set("window.tracks.0.enrichments.face", {"visible": True}),
        "window.tracks[0].enrichments.face",
    ),
    "a threat result that is flat": (
        _set("window.tracks.0.enrichments.threat", {"threats": [{"label": "knife"}]}),
        "window.tracks[0].enrichments.threat",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_scenario_is_named(tmp_path: Path, case: str) -> None:
    change, field = BROKEN[case]
    good = _valid()
    broken = copy.deepcopy(good)
    broken["id"] = "x02_broken"
    change(broken)
    path = _write(tmp_path, [good, broken])
    with pytest.raises(ValueError) as raised:
        load_scenarios(path)
    message = str(raised.value)
    assert message.startswith("scenario 'x02_broken': "), message
    assert field in message, message


def test_a_duplicate_scenario_id_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^scenario 'x01_probe': id: duplicate"):
        load_scenarios(_write(tmp_path, [_valid(), _valid()]))


def test_a_scenario_without_an_id_is_named_by_position(tmp_path: Path) -> None:
    nameless = _valid()
    del nameless["id"]
    with pytest.raises(ValueError, match=r"^scenario '#1': id: "):
        load_scenarios(_write(tmp_path, [_valid(), nameless]))


@pytest.mark.parametrize(
    "document",
    [{"version": 2, "scenarios": []}, {"scenarios": []}, {"version": 1, "scenarios": {}}],
)
def test_a_broken_document_is_refused(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError):
        load_scenarios(path)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scenarios(path)
