"""Posture labels from COCO keypoints (:mod:`hearthwatch.runtime.enrichment.posture`): each
label, its boundaries, scale-freedom, and missing keypoints (low score, non-finite) answering
nothing rather than a guess. Pixels: x right, y down; every figure's torso is 100 px long."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from hearthwatch.runtime.enrichment.posture import (
    COCO_KEYPOINTS,
    Keypoint,
    measure_posture,
    postures,
)

Joints = Mapping[str, tuple[float, ...]]  # name -> (x, y) or (x, y, score)


def figure(joints: Joints) -> list[Keypoint]:
    """17 COCO keypoints: the named joints (score 1 unless given), every other one invisible."""
    unknown = set(joints) - set(COCO_KEYPOINTS)
    assert not unknown, unknown
    points: list[Keypoint] = [(0.0, 0.0, 0.0)] * len(COCO_KEYPOINTS)
    for name, (x, y, *score) in joints.items():
        points[COCO_KEYPOINTS.index(name)] = (x, y, score[0] if score else 1.0)
    return points


def moved(joints: Joints, scale: float, dx: float, dy: float) -> dict[str, tuple[float, ...]]:
    return {n: (x * scale + dx, y * scale + dy, *rest) for n, (x, y, *rest) in joints.items()}


def with_(joints: Joints, **changes: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    return {**joints, **changes}


# Facing the camera, arms hanging: torso 100 px, vertical; legs straight down.
STANDING: dict[str, tuple[float, ...]] = {
    "nose": (100, 20),
    "left_shoulder": (115, 50), "right_shoulder": (85, 50),
    "left_elbow": (120, 100), "right_elbow": (80, 100),
    "left_wrist": (120, 150), "right_wrist": (80, 150),
    "left_hip": (110, 150), "right_hip": (90, 150),
    "left_knee": (110, 250), "right_knee": (90, 250),
    "left_ankle": (110, 350), "right_ankle": (90, 350),
}  # fmt: skip
RAISED_WRISTS = {"left_wrist": (115.0, 20.0), "right_wrist": (85.0, 20.0)}

# Torso upright; thighs 45 degrees forward-down, shanks back to under the hips: knees at 90
# degrees, knees 0.4 torso lengths below the hips (so only the knee-angle rule fires).
CROUCHING: dict[str, tuple[float, ...]] = {
    "left_shoulder": (105, 100), "right_shoulder": (95, 100),
    "left_wrist": (120, 180), "right_wrist": (110, 180),
    "left_hip": (105, 200), "right_hip": (95, 200),
    "left_knee": (145, 240), "right_knee": (135, 240),
    "left_ankle": (105, 280), "right_ankle": (95, 280),
}  # fmt: skip

# On the floor, head left: torso horizontal, legs straight (and level with the hips, which
# would read as hips dropped to knee height if lying did not exclude crouching).
LYING: dict[str, tuple[float, ...]] = {
    "nose": (20, 310),
    "left_shoulder": (50, 300), "right_shoulder": (50, 320),
    "left_hip": (150, 300), "right_hip": (150, 320),
    "left_knee": (250, 300), "right_knee": (250, 320),
    "left_ankle": (350, 300), "right_ankle": (350, 320),
}  # fmt: skip


def test_standing() -> None:
    assert postures(figure(STANDING)) == ["standing"]


def test_crouching_knees_bent_90() -> None:
    reading = measure_posture(figure(CROUCHING))
    assert reading.labels == ("crouching",)
    assert reading.knee_angles_deg == pytest.approx((90.0, 90.0))


def test_lying_with_straight_legs_is_only_lying() -> None:
    assert postures(figure(LYING)) == ["lying"]
    # wrists "above" the shoulders in the image mean nothing for a lying figure
    raised = with_(LYING, left_wrist=(50, 200), right_wrist=(50, 220))
    assert postures(figure(raised)) == ["lying"]


@pytest.mark.parametrize(
    ("joints", "expected"),
    [
        (STANDING, ["standing"]),
        (with_(STANDING, **RAISED_WRISTS), ["standing", "arms_raised"]),
        (CROUCHING, ["crouching"]),
        (LYING, ["lying"]),
    ],
    ids=["standing", "arms_raised", "crouching", "lying"],
)
@pytest.mark.parametrize(("scale", "dx", "dy"), [(0.3, 500, 40), (7.0, -300, 1000)])
def test_scale_free(
    joints: Joints, expected: list[str], scale: float, dx: float, dy: float
) -> None:
    assert postures(figure(moved(joints, scale, dx, dy))) == expected


def test_measurements() -> None:
    reading = measure_posture(figure(STANDING))
    assert reading.labels == ("standing",)
    assert reading.torso_tilt_deg == pytest.approx(0.0)
    assert reading.torso_length == pytest.approx(100.0)
    assert reading.knee_angles_deg == pytest.approx((180.0, 180.0))
    small = measure_posture(figure(moved(STANDING, 0.3, 0, 0)))
    assert small.torso_length == pytest.approx(30.0)


def _leg_figure(thigh_deg: float) -> dict[str, tuple[float, ...]]:
    """Upright torso; both thighs ``thigh_deg`` forward of straight down (80 px), shanks
    vertical (80 px): knee angle 180 - thigh_deg, knees 0.8 cos(thigh_deg) torso lengths
    below the hips."""
    t = math.radians(thigh_deg)
    joints: dict[str, tuple[float, ...]] = {}
    for side, x in (("left", 105.0), ("right", 95.0)):
        knee = (x + 80 * math.sin(t), 200 + 80 * math.cos(t))
        joints |= {
            f"{side}_shoulder": (x, 100.0),
            f"{side}_hip": (x, 200.0),
            f"{side}_knee": knee,
            f"{side}_ankle": (knee[0], knee[1] + 80),
        }
    return joints


@pytest.mark.parametrize(
    ("thigh_deg", "expected"),
    [
        (0, ["standing"]),
        (29, ["standing"]),  # knee 151 degrees: nearly straight
        (31, []),  # knee 149: not straight, not bent enough
        (50, []),  # knee 130
        (69, []),  # knee 111, knees 0.29 torso lengths below the hips
        (71, ["crouching"]),  # knee 109 (hips still 0.26 above the knees)
        (90, ["crouching"]),  # knee 90, thighs level (sitting reads as crouching)
    ],
)
def test_knee_angle_boundaries(thigh_deg: float, expected: list[str]) -> None:
    reading = measure_posture(figure(_leg_figure(thigh_deg)))
    assert reading.knee_angles_deg[0] == pytest.approx(180.0 - thigh_deg)
    assert list(reading.labels) == expected


@pytest.mark.parametrize(("gap", "expected"), [(20, ["crouching"]), (30, [])])
def test_hips_dropped_near_knee_height(gap: float, expected: list[str]) -> None:
    """Knees at 135..143 degrees (not bent enough alone): crouching when the knees are less
    than 0.25 torso lengths below the hips."""
    joints: dict[str, tuple[float, ...]] = {
        "left_shoulder": (100, 100),
        "left_hip": (100, 200),
        "left_knee": (160, 200 + gap),
        "left_ankle": (200, 280 + gap),
    }
    reading = measure_posture(figure(joints))
    assert 130 < (reading.knee_angles_deg[0] or 0) < 150
    assert list(reading.labels) == expected


def _tilted(tilt_deg: float) -> dict[str, tuple[float, ...]]:
    """Torso ``tilt_deg`` from upright (shoulders rotated about the hips), legs straight down."""
    t = math.radians(tilt_deg)
    return {
        "left_shoulder": (100 + 100 * math.sin(t), 200 - 100 * math.cos(t)),
        "left_hip": (105, 200), "right_hip": (95, 200),
        "left_knee": (105, 300), "right_knee": (95, 300),
        "left_ankle": (105, 400), "right_ankle": (95, 400),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tilt_deg", "expected"),
    [
        (0, ["standing"]),
        (25, ["standing"]),
        (35, []),  # leaning too far to stand, legs too straight to crouch
        (59, []),
        (61, ["lying"]),
        (90, ["lying"]),
        (-90, ["lying"]),
        (119, ["lying"]),
        (150, []),  # head-down: no rule applies
        (180, []),
    ],
)
def test_torso_tilt_boundaries(tilt_deg: float, expected: list[str]) -> None:
    reading = measure_posture(figure(_tilted(tilt_deg)))
    assert reading.torso_tilt_deg == pytest.approx(abs(tilt_deg))
    assert list(reading.labels) == expected


def test_leaning_crouch_is_crouching() -> None:
    bent = _leg_figure(90)
    leaning = with_(bent, left_shoulder=(170, 130), right_shoulder=(160, 130))  # 43 degrees
    assert postures(figure(leaning)) == ["crouching"]


def test_arms_raised_while_crouching() -> None:
    joints = with_(CROUCHING, left_wrist=(105, 60), right_wrist=(95, 60))
    assert postures(figure(joints)) == ["crouching", "arms_raised"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_one_arm_raised(side: str) -> None:
    joints = with_(STANDING, **{f"{side}_wrist": RAISED_WRISTS[f"{side}_wrist"]})
    assert postures(figure(joints)) == ["standing", "arms_raised"]


@pytest.mark.parametrize(
    ("above", "expected"),
    [
        (0.0, ["standing"]),  # wrist at shoulder height
        (0.15, ["standing"]),
        (0.25, ["standing", "arms_raised"]),
    ],
)
def test_arms_raised_margin(above: float, expected: list[str]) -> None:
    y = 50 - 100 * above  # shoulders at y=50, torso 100 px
    joints = with_(STANDING, left_wrist=(190, y), right_wrist=(10, y))
    assert postures(figure(joints)) == expected


def test_raised_wrist_needs_its_own_shoulder() -> None:
    joints = with_(STANDING, left_wrist=(115, 20), left_shoulder=(115, 50, 0.0))
    assert postures(figure(joints)) == ["standing"]


def test_side_view_one_side_visible() -> None:
    left_only = {name: xy for name, xy in STANDING.items() if not name.startswith("right_")}
    assert postures(figure(left_only)) == ["standing"]


def test_low_score_keypoints_are_ignored() -> None:
    dim_ankles = with_(STANDING, left_ankle=(110, 350, 0.2), right_ankle=(90, 350, 0.2))
    assert postures(figure(dim_ankles)) == []  # no visible leg: neither standing nor crouching
    assert postures(figure(dim_ankles), min_score=0.1) == ["standing"]
    assert postures(figure(with_(dim_ankles, **RAISED_WRISTS))) == ["arms_raised"]

    one_dim_ankle = with_(STANDING, left_ankle=(110, 350, 0.2))
    assert postures(figure(one_dim_ankle)) == ["standing"]  # the right leg still counts
    # a dim bent leg does not veto the visible straight one
    dim_bent = with_(STANDING, left_knee=(150, 190, 0.3), left_ankle=(110, 230, 0.3))
    assert postures(figure(dim_bent)) == ["standing"]
    assert postures(figure(dim_bent), min_score=0.3) == []  # one leg straight, one bent

    dim_hips = with_(STANDING, **RAISED_WRISTS, left_hip=(110, 150, 0.4), right_hip=(90, 150, 0.4))
    assert postures(figure(dim_hips)) == []  # no torso: no label at all


def test_no_hips_gives_nothing_even_when_lying() -> None:
    no_hips = {name: xy for name, xy in LYING.items() if not name.endswith("_hip")}
    reading = measure_posture(figure(no_hips))
    assert reading.labels == ()
    assert reading.torso_tilt_deg is None
    assert reading.knee_angles_deg == (None, None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_coordinates_are_missing(bad: float) -> None:
    no_knees = with_(STANDING, left_knee=(bad, 250), right_knee=(90, bad))
    assert postures(figure(no_knees)) == []
    one_knee = with_(STANDING, left_knee=(bad, 250))
    assert postures(figure(one_knee)) == ["standing"]
    no_hips = with_(STANDING, **RAISED_WRISTS, left_hip=(bad, 150), right_hip=(90, bad))
    assert postures(figure(no_hips)) == []
    nan_score = with_(STANDING, left_ankle=(110, 350, math.nan), right_ankle=(90, 350, bad))
    assert postures(figure(nan_score)) == []


def test_overflowing_coordinates_give_nothing() -> None:
    huge = with_(STANDING, left_hip=(1e308, 150), right_hip=(1e308, 150))  # midpoint: inf
    assert postures(figure(huge)) == []


def test_empty_and_invisible_figures() -> None:
    assert postures([]) == []
    assert postures(figure({})) == []
    dim = {name: (x, y, 0.49) for name, (x, y) in STANDING.items()}
    assert postures(figure(dim)) == []
    assert postures(figure(dim), min_score=0.49) == ["standing"]


def test_wrong_keypoint_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="17"):
        postures(figure(STANDING)[:16])
