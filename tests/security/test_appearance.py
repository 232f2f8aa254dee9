"""Appearance descriptors for cross-camera re-identification, on real people: the astronaut and
the cameraman (scikit-image's photos) and Grace Hopper (matplotlib's), each cut out along an
outline drawn by hand and pasted into two drawn camera views that the threshold benchmark
(``bench/reid_threshold.py``) never used: a front door in warm light at x1.2 brightness, the
person large, and a driveway at dusk in cool light at x0.8, the person small, shifted and
walking the other way. Each person is a three-frame track on each camera (the box a little off
in each frame, as a detector's is).

With the zoo's ``reid`` model on its installed weights (skipped only when the weights file is
absent) and with the colour histogram fallback, every person's two tracks are the same person at
the descriptor's threshold and every pair of two people is not, each by at least 0.05. Measured
here: reid same person 0.86 to 0.91 against its 0.74, different people at most 0.66; colour
same person 0.89 to 0.93 against its 0.78, different people at most 0.69. (These scenes are no
longer blind for the colour histogram: its background weighting was added when the greyscale
cameraman fell below the threshold on them.) Then the contract's validation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch

from hearthwatch.runtime.enrichment.base import EnrichItem
from hearthwatch.runtime.enrichment.catalog import DEFAULT_MODELS_FILE, load_catalog
from hearthwatch.security.appearance import (
    COLOUR_DESCRIPTOR,
    COLOUR_LENGTH,
    DEFAULT_THRESHOLDS,
    REID_DESCRIPTOR,
    REID_LENGTH,
    Appearance,
    colour_histogram,
    cosine,
    mean_descriptor,
)

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 640, 480
Box = tuple[float, float, float, float]

# The people, outlined by hand in their photos' pixels (the same outlines as the benchmark's):
# hair or hat to the photo's bottom edge, without what the person holds or stands behind.
# fmt: off
OUTLINES = {
    "astronaut": ((25, 512), (20, 400), (30, 320), (50, 280), (95, 245), (115, 215), (118, 185),
                  (140, 165), (175, 150), (165, 130), (155, 100), (160, 50), (195, 20),
                  (240, 15), (280, 30), (300, 70), (298, 105), (285, 130), (265, 150),
                  (285, 165), (302, 190), (305, 230), (340, 270), (355, 300), (362, 340),
                  (330, 350), (290, 395), (275, 450), (280, 512)),
    "grace_hopper": ((28, 600), (28, 440), (35, 400), (70, 380), (120, 355), (175, 330),
                     (178, 300), (165, 260), (158, 220), (160, 180), (165, 120), (175, 75),
                     (215, 40), (260, 28), (310, 35), (350, 70), (365, 110), (370, 140),
                     (360, 190), (350, 240), (335, 290), (320, 320), (400, 365), (470, 385),
                     (500, 420), (512, 450), (512, 600)),
    "cameraman": ((170, 80), (210, 66), (245, 80), (265, 105), (262, 135), (255, 150),
                  (250, 190), (265, 188), (300, 183), (328, 192), (330, 218), (312, 242),
                  (292, 255), (282, 285), (262, 305), (232, 312), (190, 318), (165, 335),
                  (150, 380), (148, 420), (120, 470), (100, 512), (0, 512), (0, 255),
                  (35, 200), (65, 160), (100, 130), (130, 112), (158, 100)),
}
# fmt: on
PEOPLE = tuple(OUTLINES)


def _photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        bgr = cv2.imread(str(path))
        assert bgr is not None, f"cannot read {path}"
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if name == "cameraman":
        return cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB)
    return skimage.data.astronaut()


@cache
def cutout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The person's pixels and soft-edged mask (float32, 0–1), cropped to the outline."""
    photo = _photo(name)
    points = np.array(OUTLINES[name], np.int32)
    mask = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(mask, [points], 255, cv2.LINE_AA)
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    soft = cv2.GaussianBlur(mask, (0, 0), 1.2).astype(np.float32) / 255
    return photo[y1:y2, x1:x2], soft[y1:y2, x1:x2]


def front_door() -> np.ndarray:
    """A porch: a cream wall, a brown door with a glass pane, a doormat, a tiled floor."""
    frame = np.full((HEIGHT, WIDTH, 3), (214, 200, 172), np.uint8)
    frame[360:] = (128, 122, 116)
    for x in range(0, WIDTH, 80):
        cv2.line(frame, (x, 360), (x - 40, HEIGHT), (104, 98, 92), 2)
    cv2.rectangle(frame, (440, 90), (570, 360), (104, 64, 36), -1)
    cv2.rectangle(frame, (470, 120), (540, 200), (170, 200, 215), -1)
    cv2.rectangle(frame, (430, 365), (585, 395), (70, 80, 60), -1)
    cv2.circle(frame, (100, 90), 26, (250, 240, 200), -1)
    return frame


def driveway() -> np.ndarray:
    """Dusk: a dark blue sky over a hedge, a tarmac drive and a parked red car."""
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    t = np.linspace(0, 1, 150)[:, None, None]
    frame[:150] = (np.array((30, 40, 90)) * (1 - t) + np.array((120, 110, 130)) * t).astype(
        np.uint8
    )
    frame[150:210] = (40, 75, 35)
    frame[210:] = (70, 70, 74)
    cv2.rectangle(frame, (40, 230), (300, 330), (150, 30, 35), -1)
    cv2.rectangle(frame, (80, 200), (250, 240), (120, 140, 160), -1)
    cv2.circle(frame, (90, 335), 28, (20, 20, 20), -1)
    cv2.circle(frame, (250, 335), 28, (20, 20, 20), -1)
    rng = np.random.default_rng(7)
    noisy = frame + rng.normal(0, 4, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class View:
    """A camera view: its scene, light (brightness factor), white balance (R, G, B gains), the
    person's height (share of the frame's) and centre (share of its width), and whether the
    person walks the other way (mirrored)."""

    scene: Callable[[], np.ndarray]
    light: float
    balance: tuple[float, float, float]
    height: float
    centre: float
    mirrored: bool


CAMERAS = {
    "A": View(front_door, 1.2, (1.06, 1.0, 0.92), height=0.92, centre=0.38, mirrored=False),
    "B": View(driveway, 0.8, (0.93, 1.0, 1.07), height=0.55, centre=0.68, mirrored=True),
}
JITTER = ((0.0, 0.0, 0.0, 0.0), (-0.05, 0.03, 0.04, -0.02), (0.04, -0.04, -0.05, 0.03))
"""Per frame of a track: how far each box edge is off, as a share of the box's size."""


@cache
def track(person: str, camera: str) -> tuple[tuple[np.ndarray, Box], ...]:
    """Three frames of ``person`` on ``camera`` (RGB uint8, read-only, through JPEG) and the
    boxes a detector puts around them."""
    view = CAMERAS[camera]
    photo, mask = cutout(person)
    if view.mirrored:
        photo, mask = photo[:, ::-1], mask[:, ::-1]
    frames = []
    for step, jitter in enumerate(JITTER):
        height = round(HEIGHT * view.height * (1 + 0.03 * (step - 1)))
        width = round(photo.shape[1] * height / photo.shape[0])
        size = (width, height)
        scaled = cv2.resize(np.ascontiguousarray(photo), size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(np.ascontiguousarray(mask), size, interpolation=cv2.INTER_AREA)
        x = round(view.centre * WIDTH - width / 2) + 8 * (step - 1)
        y = HEIGHT - height
        lit = view.scene().astype(np.float32)
        region = lit[y:, x : x + width]
        region[...] = region * (1 - alpha[..., None]) + scaled * alpha[..., None]
        lit *= view.light * np.array(view.balance, np.float32)
        rgb = np.clip(lit, 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert ok and decoded is not None
        frame = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        frame.flags.writeable = False
        box = np.array([x, y, x + width, y + height], float)
        box += np.array(jitter) * np.array([width, height] * 2)
        frames.append((frame, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    return tuple(frames)


def crop_of(frame: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``box`` as the enrichment service crops a detection."""
    x1, y1, x2, y2 = box
    left, top = max(0, int(x1)), max(0, int(y1))
    right, bottom = min(frame.shape[1], math.ceil(x2)), min(frame.shape[0], math.ceil(y2))
    return np.ascontiguousarray(frame[top:bottom, left:right])


@pytest.fixture(scope="module")
def reid() -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The zoo's ``reid`` entry on its installed weights, run as the enrichment service runs
    it (on the CPU): crops → embeddings."""
    (entry,) = [m for m in load_catalog(DEFAULT_MODELS_FILE, REPO / "models") if m.name == "reid"]
    config = entry.source
    assert config.path is not None
    if not config.path.exists():
        pytest.skip(f"no re-ID weights at {config.path}: `hearthwatch models install` puts them")
    assert config.unavailable_reason() is None, config.unavailable_reason()
    module = config.build().eval()
    enricher = config.enricher()

    def embed(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = enricher.run(module, [EnrichItem(c) for c in crops], torch.device("cpu"),
                               torch.float32)  # fmt: skip
        return [np.asarray(r["embedding"], np.float32) for r in results]

    return embed


def appearances(describe: Callable[[Sequence[tuple[np.ndarray, Box]]], list[np.ndarray]],
                descriptor: str) -> dict[tuple[str, str], Appearance]:  # fmt: skip
    return {
        (person, camera): Appearance.of_track(descriptor, describe(track(person, camera)))
        for person in PEOPLE
        for camera in CAMERAS
    }


def assert_separates(found: dict[tuple[str, str], Appearance], same_margin: float,
                     other_margin: float) -> None:  # fmt: skip
    """Each person's camera-A track matches their camera-B track by ``same_margin`` above the
    threshold, and every two people's tracks on the two cameras stay ``other_margin`` below."""
    descriptor = next(iter(found.values())).descriptor
    threshold = DEFAULT_THRESHOLDS[descriptor]
    similarity = {(a, b): found[a, "A"].similarity(found[b, "B"]) for a in PEOPLE for b in PEOPLE}
    table = {f"{a}@A vs {b}@B": round(v, 3) for (a, b), v in similarity.items()}
    for (a, b), value in similarity.items():
        if a == b:
            assert value >= threshold + same_margin, (descriptor, threshold, table)
            assert found[a, "A"].matches(found[b, "B"])
        else:
            assert value <= threshold - other_margin, (descriptor, threshold, table)
            assert not found[a, "A"].matches(found[b, "B"])


def test_reid_embeddings_match_the_same_person_across_cameras(reid: Callable[..., Any]) -> None:
    found = appearances(lambda frames: reid([crop_of(f, b) for f, b in frames]), REID_DESCRIPTOR)
    for appearance in found.values():
        assert appearance.vector.shape == (REID_LENGTH,) and appearance.crops == 3
    assert_separates(found, same_margin=0.05, other_margin=0.05)


def test_colour_histograms_match_the_same_person_across_cameras() -> None:
    found = appearances(lambda frames: [colour_histogram(f, b) for f, b in frames],
                        COLOUR_DESCRIPTOR)  # fmt: skip
    assert_separates(found, same_margin=0.05, other_margin=0.05)


def test_the_thresholds_are_the_benchmark_s_newest_record() -> None:
    records = sorted((REPO / "bench" / "results").glob("reid_threshold_cpu_*.json"))
    assert records, "no bench/results/reid_threshold_cpu_*.json: run bench/reid_threshold.py"
    record = json.loads(records[-1].read_text())
    assert record["thresholds"] == dict(DEFAULT_THRESHOLDS), records[-1].name
    assert record["thresholds_match_appearance_py"] is True


# -- the colour histogram's contract -----------------------------------------------------------
def test_a_colour_histogram_is_a_fixed_length_unit_vector_and_read_only() -> None:
    frame, box = track("astronaut", "A")[0]
    vector = colour_histogram(frame, box)
    assert vector.shape == (COLOUR_LENGTH,) and vector.dtype == np.float32
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)
    assert not vector.flags.writeable
    assert (vector >= 0).all()
    tiny = colour_histogram(frame, (300.2, 300.7, 300.9, 301.1))  # inside one pixel
    assert tiny.shape == (COLOUR_LENGTH,)
    assert np.isfinite(tiny).all()


def test_brightness_alone_barely_moves_a_colour_histogram() -> None:
    """Hue and saturation do not change when the light does; +-20 % (a 1.5x ratio between the
    two) keeps each person's vector near itself and far from the others'."""
    found = {}
    for person in PEOPLE:
        frame, box = track(person, "A")[0]
        for light in (0.8, 1.2):
            lit = np.clip(frame.astype(np.float32) * light, 0, 255).astype(np.uint8)
            found[person, light] = colour_histogram(lit, box)
    for person in PEOPLE:
        assert cosine(found[person, 0.8], found[person, 1.2]) >= 0.9, person
    assert cosine(found["astronaut", 0.8], found["grace_hopper", 1.2]) < 0.75


def test_a_box_reaching_out_of_the_frame_is_clipped() -> None:
    frame, (x1, y1, x2, y2) = track("grace_hopper", "A")[0]
    inside = (max(x1, 0.0), max(y1, 0.0), min(x2, WIDTH), min(y2, HEIGHT))
    beyond = (x1 - 500, y1 - 500, x2 + 500, y2 + 500)
    outward = (math.floor(inside[0]), math.floor(inside[1]), math.ceil(inside[2]),
               math.ceil(inside[3]))  # fmt: skip
    clipped = colour_histogram(frame, outward)
    assert np.array_equal(colour_histogram(frame, inside), clipped)
    assert colour_histogram(frame, beyond).shape == (COLOUR_LENGTH,)


@pytest.mark.parametrize(
    ("image", "box", "message"),
    [
        (np.zeros((48, 64, 3), np.float32), (1, 1, 10, 10), "uint8"),
        (np.zeros((48, 64), np.uint8), (1, 1, 10, 10), "RGB"),
        (np.zeros((48, 64, 4), np.uint8), (1, 1, 10, 10), "RGB"),
        ([[0, 0, 0]], (1, 1, 10, 10), "RGB"),
        (np.zeros((48, 64, 3), np.uint8), (10, 10, 10, 20), "empty box"),
        (np.zeros((48, 64, 3), np.uint8), (20, 10, 10, 20), "empty box"),
        (np.zeros((48, 64, 3), np.uint8), (70, 10, 90, 20), "empty crop"),
        (np.zeros((48, 64, 3), np.uint8), (-20, -20, 0, 0), "empty crop"),
        (np.zeros((48, 64, 3), np.uint8), (1, 1, float("nan"), 10), "finite"),
        (np.zeros((48, 64, 3), np.uint8), (1, 1, float("inf"), 10), "finite"),
        (np.zeros((48, 64, 3), np.uint8), (1, 1, 10), "four"),
        (np.zeros((48, 64, 3), np.uint8), ("1", 1, 10, 10), "four"),
    ],
)
def test_colour_histogram_refuses_bad_input(image: Any, box: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        colour_histogram(image, box)


# -- tracks and similarities -------------------------------------------------------------------
def test_a_track_s_descriptor_is_the_unit_mean_of_its_unit_vectors() -> None:
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.5, 0.0])
    mean = mean_descriptor([a, b])
    assert np.allclose(mean, [math.sqrt(0.5), math.sqrt(0.5), 0.0], atol=1e-6)  # equal weights
    assert mean.dtype == np.float32 and not mean.flags.writeable
    assert a.flags.writeable  # the input is not frozen in passing
    assert np.allclose(mean_descriptor([a]), [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([], "at least one"),
        ([np.ones(3), np.ones(4)], "one length"),
        ([np.ones(3), np.array([1.0, np.nan, 0.0])], "not finite"),
        ([np.array([np.inf, 0.0])], "not finite"),
        ([np.zeros(3)], "zero vector"),
        ([np.array([1.0, 0.0]), np.array([-2.0, 0.0])], "cancel out"),
        ([np.ones((2, 2))], "one-dimensional"),
        ([np.array([])], "one-dimensional"),
        ([["a", "b"]], "numbers"),
    ],
)
def test_mean_descriptor_refuses_bad_vectors(vectors: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mean_descriptor(vectors)


def test_cosine_checks_its_vectors() -> None:
    assert cosine(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([-3.0, 0.0])) == pytest.approx(-1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 5.0])) == pytest.approx(0.0)
    for a, b, message in [
        (np.ones(3), np.ones(4), "one length"),
        (np.ones(3), np.array([1.0, np.nan, 1.0]), "not finite"),
        (np.zeros(3), np.ones(3), "zero vector"),
    ]:
        with pytest.raises(ValueError, match=message):
            cosine(a, b)


def test_appearances_of_different_descriptors_are_not_compared() -> None:
    frame, box = track("astronaut", "A")[0]
    colour = Appearance.of_track(COLOUR_DESCRIPTOR, [colour_histogram(frame, box)] * 2)
    assert colour.crops == 2 and colour.similarity(colour) == pytest.approx(1.0)
    reid = Appearance(REID_DESCRIPTOR, np.eye(REID_LENGTH)[0] * 3)
    assert math.isclose(float(np.linalg.norm(reid.vector)), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="cannot compare"):
        colour.similarity(reid)
    with pytest.raises(ValueError, match="unknown descriptor"):
        Appearance("sift", np.ones(3))
    with pytest.raises(ValueError, match="at least one crop"):
        Appearance(COLOUR_DESCRIPTOR, np.ones(3), crops=0)
    with pytest.raises(ValueError, match="not finite"):
        Appearance(COLOUR_DESCRIPTOR, np.array([1.0, np.nan]))
    other = Appearance(REID_DESCRIPTOR, np.eye(REID_LENGTH)[1])
    assert not reid.matches(other) and reid.matches(other, threshold=0.0)
