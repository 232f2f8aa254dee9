"""The per-camera tracker: ids kept through crossings and short misses, new ids after long ones,
stationary objects, labels kept apart, low-score detections only continuing tracks, and invalid
input refused whole."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from hearthwatch.security.observations import ObjectDetection, TrackedDetection
from hearthwatch.security.tracker import InvalidDetectionError, Tracker

EPOCH = 1_700_000_000.0


def det(
    x: float, y: float, w: float = 60, h: float = 150, score: float = 0.9, label: str = "person"
) -> ObjectDetection:
    return ObjectDetection(label=label, score=score, box=(x, y, x + w, y + h))


def new_tracker(**kwargs: Any) -> Tracker:
    return Tracker("front-door", id_clock=lambda: EPOCH, **kwargs)


def keys(tracked: list[TrackedDetection]) -> list[str]:
    return [t.track_key for t in tracked]


def test_two_people_crossing_paths_keep_their_ids() -> None:
    # Two people of the same size walking towards each other at 20 px per detector run: at the
    # crossing each one's new box overlaps the other's last box more than its own, so only the
    # predicted boxes tell them apart.
    tracker = new_tracker()
    first = tracker.update([det(0, 100), det(390, 104)], now=0.0)
    key_a, key_b = keys(first)
    assert key_a != key_b
    for step in range(1, 21):
        a = det(20 * step, 100)
        b = det(390 - 20 * step, 104)
        # The detector's order says nothing about identity: alternate it.
        batch = [a, b] if step % 2 else [b, a]
        tracked = {t.detection: t for t in tracker.update(batch, now=step * 0.2)}
        assert tracked[a].track_key == key_a, f"step {step}: A took another id"
        assert tracked[b].track_key == key_b, f"step {step}: B took another id"
        assert not tracked[a].new_track and not tracked[b].new_track
    assert [t.track_key for t in tracker.active_tracks()] == [key_a, key_b]


def test_a_person_missed_for_a_few_updates_keeps_the_id_and_the_prediction_follows() -> None:
    tracker = new_tracker(max_missed=5)
    (start,) = tracker.update([det(0, 100)], now=0.0)
    for step in range(1, 11):  # walking at 15 px per detector run, up to x = 150
        (walking,) = tracker.update([det(15 * step, 100)], now=step)
        assert walking.track_key == start.track_key
    for step in range(11, 15):  # behind a tree: four detector runs find nothing
        assert tracker.update([], now=step) == []
    (snapshot,) = tracker.active_tracks()
    assert snapshot.missed == 4
    # Predicted on along the walk, but damped: short of the four full steps (x = 210).
    assert 150 + 2 * 15 < snapshot.box[0] < 150 + 3.5 * 15
    (back,) = tracker.update([det(225, 100)], now=15.0)
    assert back.track_key == start.track_key
    assert back.new_track is False


def test_a_person_missed_for_max_missed_updates_gets_a_new_id() -> None:
    tracker = new_tracker(max_missed=5)
    (start,) = tracker.update([det(0, 100)], now=0.0)
    for step in range(1, 6):
        tracker.update([], now=step)
    assert tracker.active_tracks() == ()
    (again,) = tracker.update([det(0, 100)], now=6.0)
    assert again.track_key != start.track_key
    assert again.new_track is True


def test_missed_counts_updates_not_seconds() -> None:
    tracker = new_tracker(max_missed=3)
    (start,) = tracker.update([det(0, 100)], now=0.0)
    tracker.update([], now=1.0)
    tracker.update([], now=2.0)
    # An hour without motion runs no detector: the track is still only twice missed.
    (later,) = tracker.update([det(2, 100)], now=3600.0)
    assert later.track_key == start.track_key


def test_forget_idle_drops_tracks_unmatched_for_the_wall_clock_time() -> None:
    tracker = new_tracker()
    (parked,) = tracker.update([det(0, 100, label="car")], now=100.0)
    tracker.update([det(500, 100)], now=110.0)
    assert tracker.forget_idle(now=129.9, idle_s=30.0) == ()
    assert tracker.forget_idle(now=130.0, idle_s=30.0) == (parked.track_key,)
    assert [t.label for t in tracker.active_tracks()] == ["person"]
    (again,) = tracker.update([det(0, 100, label="car")], now=131.0)
    assert again.new_track and again.track_key != parked.track_key


def test_standing_still_for_60_updates_is_one_stationary_track_until_it_moves() -> None:
    tracker = new_tracker()
    flags = []
    seen = set()
    for step in range(60):
        jitter = (-1, 0, 1)[step % 3]
        (t,) = tracker.update([det(200 + jitter, 100 - jitter, score=0.6)], now=step)
        flags.append(t.stationary)
        seen.add(t.track_key)
    assert len(seen) == 1
    assert flags == [False] * 10 + [True] * 50
    assert tracker.active_tracks()[0].stationary is True

    (moved,) = tracker.update([det(220, 100)], now=60.0)
    assert moved.track_key in seen
    assert moved.stationary is False
    flags = [tracker.update([det(220, 100)], now=61.0 + i)[0].stationary for i in range(10)]
    assert flags == [False] * 9 + [True]


def test_labels_never_mix() -> None:
    tracker = new_tracker()
    (person,) = tracker.update([det(100, 100)], now=0.0)
    # A dog exactly where the person was, the person unseen: a new track, not the person's.
    (dog,) = tracker.update([det(100, 100, label="dog")], now=1.0)
    assert dog.new_track and dog.track_key != person.track_key
    # Both again, the dog's box now overlapping the person's predicted box better than its own.
    tracked = tracker.update([det(100, 100, label="dog"), det(102, 100, label="person")], now=2.0)
    by_label = {t.detection.label: t.track_key for t in tracked}
    assert by_label == {"dog": dog.track_key, "person": person.track_key}
    assert {(s.track_key, s.label) for s in tracker.active_tracks()} == {
        (person.track_key, "person"),
        (dog.track_key, "dog"),
    }


def test_a_low_score_detection_continues_a_track_but_never_starts_one() -> None:
    tracker = new_tracker()
    assert tracker.update([det(0, 100, score=0.3)], now=0.0) == []
    assert tracker.active_tracks() == ()

    (start,) = tracker.update([det(0, 100, score=0.9)], now=1.0)
    (dim,) = tracker.update([det(4, 100, score=0.3)], now=2.0)
    assert dim.track_key == start.track_key and not dim.new_track
    assert tracker.active_tracks()[0].missed == 0

    # Below low_score a detection is ignored: the track counts a miss.
    assert tracker.update([det(6, 100, score=0.05)], now=3.0) == []
    assert tracker.active_tracks()[0].missed == 1


def test_high_score_detections_are_matched_before_low_score_ones() -> None:
    tracker = new_tracker()
    (start,) = tracker.update([det(100, 100)], now=0.0)
    low = det(100, 100, score=0.2)  # a perfect overlap, but weak
    high = det(110, 100, score=0.8)
    tracked = tracker.update([low, high], now=1.0)
    assert [(t.detection, t.track_key) for t in tracked] == [(high, start.track_key)]


def test_an_unmatched_high_score_detection_starts_a_track_beside_a_matched_one() -> None:
    tracker = new_tracker()
    (start,) = tracker.update([det(100, 100)], now=0.0)
    tracked = tracker.update([det(600, 100), det(104, 100)], now=1.0)
    assert [t.new_track for t in tracked] == [True, False]
    assert tracked[1].track_key == start.track_key
    assert len(tracker.active_tracks()) == 2


def test_track_keys_carry_camera_and_start_time_and_never_repeat() -> None:
    first = new_tracker().update([det(0, 0), det(300, 0)], now=0.0)
    # Another tracker for the same camera in the same second (a pipeline restarted in-process).
    second = new_tracker().update([det(0, 0)], now=0.0)
    all_keys = keys(first) + keys(second)
    assert len(set(all_keys)) == 3
    for key in all_keys:
        assert re.fullmatch(r"front-door-1700000000-[0-9a-f]{6}-\d+", key), key


@pytest.mark.parametrize(
    "bad",
    [
        det(0, 0, w=0),
        det(0, 0, h=-5),
        det(math.nan, 0),
        det(math.inf, 0),
        ObjectDetection("person", 0.9, (0.0, 0.0, 1.0)),  # type: ignore[arg-type]
        ObjectDetection("person", 0.9, ("0", "0", "1", "1")),  # type: ignore[arg-type]
        ObjectDetection("person", 0.9, (-1e308, 0.0, 1e308, 1.0)),
        det(0, 0, score=1.5),
        det(0, 0, score=-0.1),
        det(0, 0, score=math.nan),
        det(0, 0, label=""),
    ],
)
def test_invalid_detections_are_refused_and_change_nothing(bad: ObjectDetection) -> None:
    tracker = new_tracker()
    (kept,) = tracker.update([det(500, 100)], now=0.0)
    with pytest.raises(InvalidDetectionError):
        tracker.update([det(0, 100), bad], now=1.0)
    (snapshot,) = tracker.active_tracks()
    assert snapshot.track_key == kept.track_key and snapshot.missed == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"high_score": 0.2, "low_score": 0.3},
        {"high_score": 1.5},
        {"match_iou": 0.0},
        {"stationary_iou": 1.2},
        {"max_missed": 0},
        {"stationary_updates": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        new_tracker(**kwargs)


def test_non_finite_times_are_refused() -> None:
    tracker = new_tracker()
    with pytest.raises(ValueError):
        tracker.update([det(0, 0)], now=math.nan)
    with pytest.raises(ValueError):
        tracker.forget_idle(now=math.inf, idle_s=30.0)
    with pytest.raises(ValueError):
        tracker.forget_idle(now=0.0, idle_s=0.0)
    assert tracker.active_tracks() == ()
