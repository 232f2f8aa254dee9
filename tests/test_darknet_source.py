"""Unit tests of the Darknet source's decoding, suppression and merging, on hand-made rows in the
layout OpenCV's region layer writes (no packaged weights, no model run): the tiny cfg + weights
written here only serve the constructor's checks of the class names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hearthwatch.runtime.detection.darknet_source import (
    DarknetDetector,
    _classes_in,
    read_class_names,
)
from hearthwatch.runtime.detection.settings import DarknetConfig
from hearthwatch.runtime.imaging.letterbox import LetterboxInfo, letterbox

CLASSES = 4
FLOOR = 0.25  # exact in float32, so "at the floor" is exactly at it
IOU = 0.45


def detector(**overrides: object) -> DarknetDetector:
    """A detector without its nets: ``_candidates``, ``_suppressed`` and ``finish`` only read
    ``config`` (``class_names`` is set as the constructor would)."""
    fields: dict[str, object] = {
        "cfg": Path("unused.cfg"),
        "weights": Path("unused.weights"),
        "names": None,
        "input_sizes": [416, 224],
        "score_floor": FLOOR,
        "iou_threshold": IOU,
        "max_detections": 100,
    }
    fields.update(overrides)
    made = DarknetDetector.__new__(DarknetDetector)
    made.config = DarknetConfig.model_validate(fields)
    made.class_names = tuple(f"class{i}" for i in range(CLASSES))
    return made


def row(
    cx: float, cy: float, w: float, h: float, objectness: float, scores: list[float]
) -> list[float]:
    """One region-layer row; ``scores`` already times objectness, as OpenCV writes them."""
    padded = scores + [0.0] * (CLASSES - len(scores))
    return [cx, cy, w, h, objectness, *padded]


def rows(*made: list[float]) -> np.ndarray:
    return np.asarray(made, np.float32).reshape(-1, 5 + CLASSES)


def boxed(width: int, height: int, size: int) -> LetterboxInfo:
    """The letterbox of a ``width`` x ``height`` image into ``size``, by its formula: scaled by
    the limiting side, the other side rounded and centred (floor of half the padding)."""
    scale = min(size / width, size / height)
    new_w, new_h = round(width * scale), round(height * scale)
    return LetterboxInfo(scale, (size - new_w) // 2, (size - new_h) // 2, width, height)


# 300 x 200 into 416: scale 416 / 300, 416 x 277 placed 69 px down; the portrait 69 px in
LANDSCAPE = LetterboxInfo(416 / 300, 0, 69, 300, 200)
PORTRAIT = LetterboxInfo(416 / 300, 69, 0, 200, 300)


def test_the_hand_made_letterboxes_are_the_ones_letterbox_makes() -> None:
    assert boxed(300, 200, 416) == LANDSCAPE
    assert boxed(200, 300, 416) == PORTRAIT
    for width, height in ((300, 200), (200, 300)):
        for size in (416, 224):
            made = letterbox(np.zeros((height, width, 3), np.uint8), size)[1]
            assert made == boxed(width, height, size)


@pytest.mark.parametrize("info", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_a_tall_box_decodes_to_exact_image_pixels(info: LetterboxInfo) -> None:
    cx, cy, w, h, size = 0.45, 0.5, 0.1, 0.5, 416
    found_boxes, scores, class_ids = detector()._candidates(
        rows(row(cx, cy, w, h, 0.9, [0.0, 0.0, 0.9])), size, info
    )
    # input pixels: x 187.2 ± 20.8, y 208 ± 104; then the letterbox undone by hand
    x1 = (cx * size - w * size / 2 - info.left) / info.scale
    x2 = (cx * size + w * size / 2 - info.left) / info.scale
    y1 = (cy * size - h * size / 2 - info.top) / info.scale
    y2 = (cy * size + h * size / 2 - info.top) / info.scale
    assert 0 < x1 < x2 < info.width and 0 < y1 < y2 < info.height  # nothing clipped
    assert y2 - y1 == pytest.approx(5 * (x2 - x1))  # tall: 5 times its width
    assert found_boxes.shape == (1, 4)
    assert found_boxes[0].tolist() == pytest.approx([x1, y1, x2, y2], abs=1e-3)
    assert scores.tolist() == pytest.approx([0.9])
    assert class_ids.tolist() == [2]


def test_the_landscape_corners_by_hand() -> None:
    """The numbers themselves, so a formula shared by test and code cannot hide a slip."""
    found_boxes = detector()._candidates(
        rows(row(0.45, 0.5, 0.1, 0.5, 0.9, [0.9])), 416, LANDSCAPE
    )[0]
    # x: 166.4 .. 208 over 416/300; y: 104 - 69 .. 312 - 69 over 416/300
    expected = [120.0, 35 * 300 / 416, 150.0, 243 * 300 / 416]
    assert found_boxes[0].tolist() == pytest.approx(expected, abs=1e-3)


def test_the_class_score_is_not_multiplied_by_objectness_again() -> None:
    _, scores, class_ids = detector()._candidates(
        rows(row(0.5, 0.5, 0.2, 0.2, 0.5, [0.0, 0.8])), 416, LANDSCAPE
    )
    assert scores.tolist() == pytest.approx([0.8])
    assert class_ids.tolist() == [1]


def test_the_best_class_and_its_score_are_reported() -> None:
    _, scores, class_ids = detector()._candidates(
        rows(
            row(0.3, 0.5, 0.2, 0.2, 0.9, [0.1, 0.7, 0.3, 0.2]),
            row(0.7, 0.5, 0.2, 0.2, 0.9, [0.4, 0.3, 0.2, 0.6]),
            row(0.5, 0.3, 0.2, 0.2, 0.9, [0.5, 0.1, 0.45, 0.3]),
        ),
        416,
        LANDSCAPE,
    )
    assert class_ids.tolist() == [1, 3, 0]
    assert scores.tolist() == pytest.approx([0.7, 0.6, 0.5])
    assert scores.dtype == np.float32


def test_rows_under_the_score_floor_are_dropped_those_at_or_above_kept() -> None:
    _, scores, _ = detector()._candidates(
        rows(
            row(0.2, 0.5, 0.1, 0.1, 0.9, [0.2]),
            row(0.4, 0.5, 0.1, 0.1, 0.9, [FLOOR]),
            row(0.6, 0.5, 0.1, 0.1, 0.9, [0.0, 0.249]),
            row(0.8, 0.5, 0.1, 0.1, 0.9, [0.0, 0.0, 0.9]),
            row(0.5, 0.2, 0.1, 0.1, 0.99, [0.1, 0.1, 0.1, 0.1]),  # high objectness alone
        ),
        416,
        LANDSCAPE,
    )
    assert scores.tolist() == pytest.approx([FLOOR, 0.9])


def test_no_rows_decode_to_no_candidates() -> None:
    found_boxes, scores, class_ids = detector()._candidates(rows(), 416, LANDSCAPE)
    assert found_boxes.shape == (0, 4) and len(scores) == 0 and len(class_ids) == 0
    assert len(detector()._suppressed(found_boxes, scores, class_ids)) == 0


def suppressed(
    boxes: list[list[float]], scores: list[float], class_ids: list[int], **overrides: object
) -> tuple[list[list[float]], list[float], list[int]]:
    found = detector(**overrides)._suppressed(
        np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(class_ids)
    )
    return found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist()


def test_suppression_is_per_class() -> None:
    a, b = [0.0, 0.0, 100.0, 100.0], [10.0, 0.0, 110.0, 100.0]  # IoU 0.82
    boxes, scores, class_ids = suppressed([a, b], [0.9, 0.8], [0, 1])
    assert boxes == [a, b] and scores == pytest.approx([0.9, 0.8]) and class_ids == [0, 1]

    boxes, scores, class_ids = suppressed([b, a], [0.8, 0.9], [2, 2])
    assert boxes == [a] and scores == pytest.approx([0.9]) and class_ids == [2]


def test_suppression_keeps_same_class_boxes_overlapping_under_the_iou_threshold() -> None:
    a, c = [0.0, 0.0, 100.0, 100.0], [48.0, 0.0, 148.0, 100.0]  # IoU 52 / 148 = 0.35
    boxes, _, class_ids = suppressed([a, c], [0.9, 0.8], [1, 1])
    assert boxes == [a, c] and class_ids == [1, 1]
    assert suppressed([a, c], [0.9, 0.8], [1, 1], iou_threshold=0.3)[0] == [a]


def test_at_most_max_detections_are_kept_the_best_first() -> None:
    apart = [[i * 50.0, 0.0, i * 50.0 + 40.0, 40.0] for i in range(5)]
    boxes, scores, class_ids = suppressed(
        apart, [0.3, 0.9, 0.5, 0.7, 0.6], [0, 1, 2, 3, 0], max_detections=3
    )
    assert scores == pytest.approx([0.9, 0.7, 0.6])
    assert boxes == [apart[1], apart[3], apart[4]] and class_ids == [1, 3, 0]
    assert len(suppressed(apart, [0.3, 0.9, 0.5, 0.7, 0.6], [0] * 5)[1]) == 5


def seen(
    box: list[float], info: LetterboxInfo, size: int, objectness: float, scores: list[float]
) -> list[float]:
    """The row of an object at ``box`` (image pixels) in the letterboxed input of ``size``."""
    x1, y1, x2, y2 = (
        box[0] * info.scale + info.left,
        box[1] * info.scale + info.top,
        box[2] * info.scale + info.left,
        box[3] * info.scale + info.top,
    )
    return row(
        (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size,
        objectness, scores,
    )  # fmt: skip


def test_finish_merges_the_candidates_of_every_input_size() -> None:
    """Two images through 416 and 224 (``prepare``'s shape: per size a (B, 3, size, size) blob
    and per image its letterbox; ``forward``'s: per size, per image, the rows)."""
    infos = {size: [boxed(300, 200, size), boxed(200, 300, size)] for size in (416, 224)}
    person, car, dog = (
        [120.0, 40.0, 160.0, 160.0],
        [20.0, 120.0, 100.0, 180.0],
        [50.0, 80.0, 150.0, 250.0],
    )
    noise = row(0.5, 0.5, 0.3, 0.3, 0.3, [0.1, 0.2])
    outputs = [
        [  # 416: the person (0.9) in the first image, the dog in the second
            rows(seen(person, infos[416][0], 416, 0.9, [0.9]), noise),
            rows(noise, seen(dog, infos[416][1], 416, 0.8, [0.0, 0.0, 0.7])),
        ],
        [  # 224: the person again (0.6), and a car only this size finds; nothing else
            rows(
                noise,
                seen(person, infos[224][0], 224, 0.7, [0.6]),
                seen(car, infos[224][0], 224, 0.8, [0.0, 0.8]),
            ),
            rows(noise),
        ],
    ]
    prepared = [(np.zeros((2, 3, size, size), np.float32), infos[size]) for size in (416, 224)]
    first, second = detector().finish(outputs, prepared)
    assert first.class_ids.tolist() == [0, 1]  # the person once, at 416's score; the car
    assert first.scores.tolist() == pytest.approx([0.9, 0.8])
    assert first.boxes == pytest.approx(np.array([person, car]), abs=1e-3)
    assert second.class_ids.tolist() == [2]
    assert second.scores.tolist() == pytest.approx([0.7])
    assert second.boxes == pytest.approx(np.array([dog]), abs=1e-3)


def test_read_class_names_reports_coco_spellings(tmp_path: Path) -> None:
    names = tmp_path / "coco.names"
    names.write_text(
        "person\nmotorbike\n\naeroplane \nsofa\npottedplant\ndiningtable\ntvmonitor\ndog\n"
    )
    assert read_class_names(names) == (
        "person", "motorcycle", "airplane", "couch", "potted plant", "dining table", "tv", "dog"
    )  # fmt: skip


def test_classes_in_reads_the_yolo_layers_classes(tmp_path: Path) -> None:
    cfg = tmp_path / "yolo.cfg"
    cfg.write_text("[net]\nwidth=416\n\n[yolo]\nmask=0,1,2\nclasses=80\nnum=6\n")
    assert _classes_in(cfg) == 80
    cfg.write_text("[yolo]\n  classes = 3\n")
    assert _classes_in(cfg) == 3


def test_classes_in_refuses_a_cfg_without_classes(tmp_path: Path) -> None:
    cfg = tmp_path / "other.cfg"
    cfg.write_text("[net]\nwidth=416\n\n[convolutional]\nfilters=16\n")
    with pytest.raises(ValueError, match="names no classes="):
        _classes_in(cfg)


TINY_CFG = """[net]
width=32
height=32
channels=3

[convolutional]
filters=18
size=1
stride=1
pad=0
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=1
num=3
"""


def tiny_model(folder: Path) -> tuple[Path, Path]:
    """A one-class YOLO of one 1x1 convolution, weights all zero: enough for OpenCV to load."""
    cfg, weights = folder / "tiny.cfg", folder / "tiny.weights"
    cfg.write_text(TINY_CFG)
    with weights.open("wb") as out:
        np.array([0, 2, 0], np.int32).tofile(out)  # major, minor, revision
        np.array([0], np.int64).tofile(out)  # images seen
        np.zeros(18 + 18 * 3, np.float32).tofile(out)  # biases, then kernels
    return cfg, weights


def test_the_constructor_reads_names_and_refuses_a_count_unlike_the_cfg(tmp_path: Path) -> None:
    cfg, weights = tiny_model(tmp_path)
    names = tmp_path / "one.names"
    names.write_text("motorbike\n")
    common = {"cfg": cfg, "weights": weights, "names": names, "input_sizes": [32]}
    assert DarknetDetector(DarknetConfig.model_validate(common)).class_names == ("motorcycle",)
    override = DarknetConfig.model_validate({**common, "class_names": ["thing"]})
    assert DarknetDetector(override).class_names == ("thing",)
    two = DarknetConfig.model_validate({**common, "class_names": ["thing", "other"]})
    with pytest.raises(ValueError, match="has 1 classes but 2 class names"):
        DarknetDetector(two)
