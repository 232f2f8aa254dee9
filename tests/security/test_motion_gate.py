"""The motion gate on drawn footage: a yard of real brick and gravel under sensor noise, a
person cut from a real photo walking across, lighting steps, masks, tiny movers and repeated
frames; and its cost on 1080p frames."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scenes import SceneFrame, Walk, scene_frames, yard

from hearthwatch.security.motion import InvalidFrameError, MotionGate, MotionVerdict

CALIBRATING = 11
"""The first frame and the default ten calibration frames after it."""


def watch(gate: MotionGate, frames: list[SceneFrame]) -> list[MotionVerdict]:
    return [gate.observe(frame.image) for frame in frames]


def covered_share(box: tuple[int, int, int, int], boxes: tuple[tuple[float, ...], ...]) -> float:
    """The share of ``box`` that the union of ``boxes`` covers."""
    x1, y1, x2, y2 = box
    covered = np.zeros((y2 - y1, x2 - x1), bool)
    for bx1, by1, bx2, by2 in boxes:
        covered[
            max(0, round(by1) - y1) : max(0, round(by2) - y1),
            max(0, round(bx1) - x1) : max(0, round(bx2) - x1),
        ] = True
    return float(covered.mean())


def near(box: tuple[int, int, int, int], other: tuple[float, ...], margin: float) -> bool:
    x1, y1, x2, y2 = box
    return not (
        other[2] < x1 - margin or other[0] > x2 + margin
        or other[3] < y1 - margin or other[1] > y2 + margin
    )  # fmt: skip


def test_a_static_noisy_scene_shows_no_motion_after_calibration() -> None:
    frames = scene_frames(yard(), count=110, noise_sigma=6.0, seed=1)
    gate = MotionGate()
    verdicts = [gate.observe(frame.image) for frame in frames]
    assert all(v.recalibrating for v in verdicts[:CALIBRATING])
    assert not any(v.recalibrating for v in verdicts[CALIBRATING:])
    assert not any(v.motion or v.boxes or v.duplicate for v in verdicts)
    assert max(v.changed_fraction for v in verdicts) == 0.0
    assert verdicts[-1].small_grey.shape == (100, 178)
    assert not verdicts[-1].small_grey.flags.writeable


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1001, 757), (320, 180)])
def test_a_walking_person_is_motion_boxed_where_they_are(width: int, height: int) -> None:
    scale = height / 1080
    walk = Walk(
        (-150 * scale, 1000 * scale), (width + 150 * scale, 950 * scale), 20, 79, round(420 * scale)
    )
    frames = list(scene_frames(yard(width, height), count=95, walk=walk, seed=2))
    verdicts = watch(MotionGate(), frames)
    margin = 3 * height / 100  # three pixels of the small frame
    coverage = []
    for frame, verdict in zip(frames[CALIBRATING:], verdicts[CALIBRATING:], strict=True):
        if frame.person_box is None:
            assert not verdict.motion, f"motion without anyone in frame {frame.index}"
            continue
        x1, _, x2, _ = frame.person_box
        if x2 - x1 < 0.2 * walk.height:
            continue  # entering or leaving: only an edge of them in view
        assert verdict.motion, f"no motion in frame {frame.index}"
        coverage.append(covered_share(frame.person_box, verdict.boxes))
        assert coverage[-1] >= 0.5, frame.index  # the box includes the air between the legs
        assert all(near(frame.person_box, box, margin) for box in verdict.boxes), frame.index
        assert all(0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height for b in verdict.boxes)
    assert len(coverage) > 40
    assert np.mean(coverage) >= 0.8


def test_a_brightness_step_recalibrates_instead_of_moving() -> None:
    walk = Walk((-100, 1000), (2020, 980), 75, 109, 420)
    steps = {30: 0.6, 60: 1.0}  # an IR lamp switching on, and off again
    frames = list(scene_frames(yard(), count=110, walk=walk, brightness_steps=steps, seed=3))
    verdicts = watch(MotionGate(), frames)
    assert not any(v.motion for v in verdicts[:75])
    for step in steps:
        assert all(v.recalibrating for v in verdicts[step : step + CALIBRATING]), step
        assert not verdicts[step + CALIBRATING].recalibrating, step
    assert verdicts[35].mean_brightness == pytest.approx(
        0.6 * verdicts[25].mean_brightness, rel=0.03
    )
    # and it sees again: the person walking in afterwards is motion
    assert sum(v.motion for v in verdicts[80:105]) >= 20


def test_motion_inside_a_mask_is_ignored() -> None:
    walk = Walk((100, 1000), (700, 1000), 12, 59, 420)
    frames = list(scene_frames(yard(), count=60, walk=walk, seed=4))
    left_part = [(0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0)]
    masked = watch(MotionGate(masks=[left_part]), frames)
    unmasked = watch(MotionGate(), frames)
    assert not any(v.motion for v in masked)
    assert max(v.changed_fraction for v in masked) == 0.0
    assert sum(v.motion for v in unmasked) >= 40


def test_a_mover_below_the_contour_area_is_no_motion() -> None:
    # a figure 30 px tall crossing in front of the wall: about 3 px at the small scale
    walk = Walk((300, 400), (1500, 400), 12, 50, 30)
    frames = list(scene_frames(yard(), count=51, walk=walk, seed=5))
    verdicts = watch(MotionGate(contour_area=10), frames)
    assert not any(v.motion for v in verdicts)
    assert sum(v.changed_fraction > 0 for v in verdicts) >= 5, "it does change pixels"
    assert sum(v.motion for v in watch(MotionGate(contour_area=0), frames)) >= 5


def test_an_identical_frame_is_a_duplicate_and_teaches_nothing() -> None:
    frames = list(scene_frames(yard(640, 360), count=12, seed=6))
    gate = MotionGate(calibration_frames=3)
    first = gate.observe(frames[0].image)
    assert first.recalibrating and not first.duplicate
    repeats = [gate.observe(frames[0].image.copy()) for _ in range(5)]
    assert all(v.duplicate and not v.motion and v.recalibrating for v in repeats)
    # the repeats did not count as calibration frames: three fresh frames still calibrate
    fresh = [gate.observe(frame.image) for frame in frames[1:5]]
    assert [v.recalibrating for v in fresh] == [True, True, True, False]
    assert not any(v.duplicate for v in fresh)


def test_a_new_frame_size_recalibrates() -> None:
    gate = MotionGate(calibration_frames=0)
    for frame in scene_frames(yard(640, 360), count=3, seed=7):
        gate.observe(frame.image)
    resized = next(scene_frames(yard(1280, 720), count=1, seed=7))
    verdict = gate.observe(resized.image)
    assert verdict.recalibrating and not verdict.motion


def test_the_gate_costs_little_on_static_1080p_frames() -> None:
    """Cost is CPU time (all of the process's threads), which other work on the machine does
    not inflate the way it does wall time."""
    frames = [frame.image for frame in scene_frames(yard(), count=12, seed=8)]
    gate = MotionGate()
    for image in frames:
        gate.observe(image)
    observations = 240
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for i in range(observations):
        gate.observe(frames[i % len(frames)])
    cpu_ms = 1000 * (time.process_time() - cpu_started) / observations
    wall_ms = 1000 * (time.perf_counter() - wall_started) / observations
    print(f"motion gate on 1080p: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall a frame")
    assert cpu_ms < 5.0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((360, 640, 3), np.float32),
        np.zeros((360, 640, 3), np.uint16),
        np.zeros((360, 640), np.uint8),
        np.zeros((360, 640, 4), np.uint8),
        np.zeros((0, 640, 3), np.uint8),
        np.zeros((360, 0, 3), np.uint8),
        np.zeros((99, 640, 3), np.uint8),
        np.zeros((4321, 7681, 3), np.uint8),
        np.zeros((200, 1700, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=[
        "float",
        "uint16",
        "grey",
        "bgra",
        "no rows",
        "no columns",
        "too few rows",
        "over 8K",
        "too narrow",
        "a list",
    ],  # fmt: skip
)
def test_frames_it_cannot_judge_are_refused(image: np.ndarray) -> None:
    with pytest.raises(InvalidFrameError):
        MotionGate().observe(image)


@pytest.mark.parametrize(
    "settings",
    [
        {"frame_height": 8},
        {"threshold": 0},
        {"contour_area": -1},
        {"contour_area": float("nan")},
        {"lightning_threshold": 0},
        {"calibration_frames": -1},
        {"masks": [[(0.0, 0.0), (1.0, 1.0)]]},
        {"masks": [[(0.0, 0.0), (1.5, 0.0), (0.0, 1.0)]]},
    ],
)
def test_settings_out_of_range_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MotionGate(**settings)  # type: ignore[arg-type]
