"""The labelled set: the same for the same seed, big enough, every box where it can be."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import cv2
import numpy as np
import pytest

from hearthwatch.evaluation.labelled_set import (
    EMPTY_PHOTO,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    OBJECT_PHOTOS,
    Scene,
    labelled_set,
    pasted_scenes,
    photo_scenes,
)
from hearthwatch.evaluation.scoring import iou


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return labelled_set(seed=0)


@pytest.fixture(scope="module")
def pasted(scenes: list[Scene]) -> list[Scene]:
    return scenes[len(photo_scenes()) :]


def pastes(scene: Scene) -> list[tuple[str, bool]]:
    """The photos pasted into a scene, from its name: (photo, mirrored) each."""
    listed = scene.name.split(": ", 1)[1].split(", ")
    return [(p.removesuffix(" mirrored"), p.endswith(" mirrored")) for p in listed]


def test_the_same_seed_gives_the_same_set(scenes: list[Scene]) -> None:
    again = labelled_set(seed=0)
    assert [s.name for s in again] == [s.name for s in scenes]
    assert [s.instances for s in again] == [s.instances for s in scenes]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, scenes, strict=True))


def test_another_seed_gives_other_frames(pasted: list[Scene]) -> None:
    other = pasted_scenes(seed=1)
    assert [s.instances for s in other] != [s.instances for s in pasted]


def test_the_photo_scenes_are_the_photos_and_an_empty_one() -> None:
    scenes = {s.name: s for s in photo_scenes()}
    assert list(scenes) == [*OBJECT_PHOTOS, EMPTY_PHOTO]
    assert scenes[EMPTY_PHOTO].instances == ()
    assert scenes["grace_hopper"].image.shape == (600, 512, 3)
    assert [i.label for i in scenes["motorcycle_left"].instances] == ["motorcycle", "bicycle"]


def test_enough_pasted_instances_from_every_photo_some_mirrored(pasted: list[Scene]) -> None:
    required = [i for s in pasted for i in s.instances if not i.difficult]
    assert len(required) >= 30
    used = Counter(photo for s in pasted for photo, _ in pastes(s))
    assert set(used) == set(OBJECT_PHOTOS) and min(used.values()) >= 6, used
    mirrored = Counter(photo for s in pasted for photo, flipped in pastes(s) if flipped)
    assert set(mirrored) == set(OBJECT_PHOTOS), mirrored
    assert all(1 <= len(pastes(s)) <= 3 for s in pasted)


def test_each_pasted_scene_holds_the_instances_of_its_photos(pasted: list[Scene]) -> None:
    for scene in pasted:
        expected = [(i.label, i.difficult) for p, _ in pastes(scene) for i in OBJECT_PHOTOS[p]]
        got = [(i.label, i.difficult) for i in scene.instances]
        assert sorted(got) == sorted(expected), scene.name


def test_pasted_boxes_frame_what_the_photos_boxes_frame(pasted: list[Scene]) -> None:
    # each pasted box, shrunk to 24x24, shows what the photo's box shows (mirrored with it)
    photos = {s.name: s.image for s in photo_scenes()}

    def thumbnail(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x1, y1, x2, y2 = (round(v) for v in box)
        return cv2.resize(image[y1:y2, x1:x2], (24, 24), interpolation=cv2.INTER_AREA)

    for scene in pasted:
        instances = iter(scene.instances)
        for photo, mirrored in pastes(scene):
            for original in OBJECT_PHOTOS[photo]:
                expected = thumbnail(photos[photo], original.box)
                got = thumbnail(scene.image, next(instances).box)
                got = got[:, ::-1] if mirrored else got
                difference = np.abs(got.astype(int) - expected.astype(int)).mean()
                assert difference < 8, (scene.name, photo, original.label, difference)


def test_pasted_objects_vary_in_size(pasted: list[Scene]) -> None:
    heights = [i.box[3] - i.box[1] for s in pasted for i in s.instances if not i.difficult]
    assert min(heights) < 0.25 * FRAME_HEIGHT and max(heights) > 0.5 * FRAME_HEIGHT


def test_the_set_stays_small(scenes: list[Scene]) -> None:
    assert len(scenes) <= 24


def test_every_image_is_rgb_uint8(scenes: list[Scene], pasted: list[Scene]) -> None:
    for scene in scenes:
        assert scene.image.dtype == np.uint8, scene.name
        assert scene.image.ndim == 3 and scene.image.shape[2] == 3, scene.name
    assert {s.image.shape for s in pasted} == {(FRAME_HEIGHT, FRAME_WIDTH, 3)}


def test_every_box_lies_inside_its_frame_with_area(scenes: list[Scene]) -> None:
    for scene in scenes:
        height, width = scene.image.shape[:2]
        for instance in scene.instances:
            x1, y1, x2, y2 = instance.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (scene.name, instance)


def test_pasted_instances_do_not_overlap(pasted: list[Scene]) -> None:
    # the motorcycle photo's difficult bicycle overlaps its own motorcycle; no two required
    # instances in a frame do, each from its own paste
    for scene in pasted:
        required = [i for i in scene.instances if not i.difficult]
        for a, b in combinations(required, 2):
            assert iou(a.box, b.box) == 0.0, (scene.name, a, b)
