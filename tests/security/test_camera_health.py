"""Camera health on drawn footage fed through the motion gate (as the pipeline feeds it): a
lens covered black or grey, the view swapped for another photo or a patterned cloth, an IR
lamp switching, a person walking through, and frames stopping and coming back."""

from __future__ import annotations

import numpy as np
import pytest
from scenes import Walk, photo_backdrop, scene_frames, yard

from hearthwatch.security.health import CameraHealth, HealthChange
from hearthwatch.security.motion import MotionGate

FPS = 2.0
WIDTH, HEIGHT = 640, 360


def small_greys(backdrop: np.ndarray, count: int, **scene: object) -> list[np.ndarray]:
    gate = MotionGate()
    frames = scene_frames(backdrop, count=count, **scene)  # type: ignore[arg-type]
    return [gate.observe(frame.image).small_grey for frame in frames]


def feed(health: CameraHealth, greys: list[np.ndarray], start: float) -> list[HealthChange]:
    """Feed ``greys`` at :data:`FPS` from ``start`` on; the changes they made."""
    changes = (health.observe(grey, start + i / FPS) for i, grey in enumerate(greys))
    return [change for change in changes if change is not None]


def brief(changes: list[HealthChange]) -> list[tuple[str, str | None, float]]:
    return [(change.state, change.reason, change.since) for change in changes]


def test_a_black_image_is_covered_after_the_delay_and_not_before() -> None:
    health = CameraHealth(tamper_after_s=10.0)
    view = small_greys(yard(WIDTH, HEIGHT), 20)
    black = small_greys(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 30, noise_sigma=2.0)
    assert brief(feed(health, view, 0.0)) == [("online", None, 0.0)]
    assert feed(health, black[:20], 10.0) == []  # 10.0 to 19.5 s: not yet
    covered = feed(health, black[20:], 20.0)
    assert brief(covered) == [("tampered", "covered", 10.0)]
    assert health.state == "tampered" and health.last_change == covered[0]
    assert "uniform" in covered[0].detail
    assert brief(feed(health, view[:2], 25.0)) == [("online", None, 25.0)]


def test_a_uniform_grey_image_is_covered() -> None:
    health = CameraHealth(tamper_after_s=10.0)
    feed(health, small_greys(yard(WIDTH, HEIGHT), 10), 0.0)
    grey = small_greys(np.full((HEIGHT, WIDTH, 3), 128, np.uint8), 30, noise_sigma=3.0)
    assert brief(feed(health, grey, 5.0)) == [("tampered", "covered", 5.0)]


@pytest.mark.parametrize("other_view", ["rocket", "coffee", "grass"])
def test_a_different_view_is_moved_after_the_delay(other_view: str) -> None:
    """The camera turned to another scene, or covered with a patterned cloth (grass)."""
    health = CameraHealth(tamper_after_s=10.0)
    view = small_greys(yard(WIDTH, HEIGHT), 20, walk=Walk((-60, 340), (700, 330), 0, 19, 200))
    other = small_greys(photo_backdrop(other_view, WIDTH, HEIGHT), 30, seed=1)
    assert brief(feed(health, view, 0.0)) == [("online", None, 0.0)]
    assert feed(health, other[:20], 10.0) == []
    moved = feed(health, other[20:], 20.0)
    assert brief(moved) == [("tampered", "moved", 10.0)]
    assert "view match" in moved[0].detail
    # turned back: online at once
    assert brief(feed(health, view[:3], 25.0)) == [("online", None, 25.0)]


def test_an_ir_like_brightness_step_keeps_it_online() -> None:
    health = CameraHealth(tamper_after_s=10.0)
    steps = {20: 0.6, 60: 1.0}  # darker for 20 s, then back
    lamp = small_greys(yard(WIDTH, HEIGHT), 90, brightness_steps=steps, noise_sigma=4.0)
    assert lamp[30].mean() < 0.65 * lamp[10].mean()
    assert brief(feed(health, lamp, 0.0)) == [("online", None, 0.0)]
    # and it still sees a real change of view
    swapped = small_greys(photo_backdrop("rocket", WIDTH, HEIGHT), 21)
    assert brief(feed(health, swapped, 45.0)) == [("tampered", "moved", 45.0)]


def test_a_person_walking_through_keeps_it_online() -> None:
    health = CameraHealth(tamper_after_s=10.0)
    # a tall figure (two thirds of the frame) walking slowly across for 30 s
    walk = Walk((-80, 350), (720, 340), 4, 63, 240)
    walking = small_greys(yard(WIDTH, HEIGHT), 68, walk=walk)
    assert brief(feed(health, walking, 0.0)) == [("online", None, 0.0)]
    assert health.state == "online"


def test_no_frames_is_offline_and_frames_bring_it_back() -> None:
    health = CameraHealth(offline_after_s=30.0)
    view = small_greys(yard(WIDTH, HEIGHT), 12)
    assert health.state == "offline"
    assert health.check(100.0) is None  # offline until the first frame: nothing changes
    assert brief(feed(health, view[:10], 100.0)) == [("online", None, 100.0)]  # to 104.5 s
    assert health.check(134.0) is None
    offline = health.check(134.5)
    assert offline is not None and brief([offline]) == [("offline", "no_frames", 104.5)]
    assert offline.detail == "no frame for 30 s"
    assert health.check(200.0) is None and health.state == "offline"
    back = feed(health, view[10:], 210.5)
    assert brief(back) == [("online", None, 210.5)]
    assert "after 106 s" in back[0].detail


def test_a_break_in_the_condition_restarts_the_delay() -> None:
    health = CameraHealth(tamper_after_s=10.0)
    view = small_greys(yard(WIDTH, HEIGHT), 21)
    black = small_greys(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 31, noise_sigma=2.0)
    feed(health, view[:20], 0.0)
    assert feed(health, black[:10], 10.0) == []  # 10.0 to 14.5 s
    assert health.observe(view[20], 15.0) is None  # uncovered for a moment
    changes = feed(health, black[10:], 15.5)  # 15.5 to 30.5 s
    assert brief(changes) == [("tampered", "covered", 15.5)]
    assert health.last_change is not None and health.last_change == changes[0]


def test_frames_and_times_it_cannot_take_are_refused() -> None:
    health = CameraHealth()
    grey = small_greys(yard(WIDTH, HEIGHT), 1)[0]
    with pytest.raises(TypeError):
        health.observe(grey.tolist(), 0.0)  # type: ignore[arg-type]
    for bad in (
        grey.astype(np.float32),
        np.dstack([grey] * 3),
        grey[:8],
        np.zeros((1001, 1001), np.uint8),
    ):
        with pytest.raises(ValueError):
            health.observe(bad, 0.0)
    health.observe(grey, 5.0)
    with pytest.raises(ValueError, match="went back"):
        health.observe(grey, 4.0)
    with pytest.raises(ValueError):
        health.check(float("nan"))
    for settings in (
        {"offline_after_s": 0.0},
        {"tamper_after_s": -1.0},
        {"uniform_std": -1.0},
        {"scene_change": 1.0},
    ):
        with pytest.raises(ValueError):
            CameraHealth(**settings)  # type: ignore[arg-type]
