"""Scoring detections against labelled scenes: IoU, greedy matching by score, the class filter,
the score floor, difficult instances and undefined ratios."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hearthwatch.evaluation.labelled_set import Instance, Scene
from hearthwatch.evaluation.scoring import Miss, Prediction, iou, score_detections

BOX = (100.0, 100.0, 200.0, 200.0)


def scene(*instances: Instance, name: str = "s") -> Scene:
    return Scene(name, np.zeros((300, 300, 3), np.uint8), instances)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    assert iou(BOX, BOX) == 1.0
    assert iou(BOX, (200.0, 200.0, 300.0, 300.0)) == 0.0  # touching corners
    assert iou(BOX, (150.0, 100.0, 250.0, 200.0)) == pytest.approx(50 / 150)
    assert iou(BOX, (100.0, 100.0, 150.0, 200.0)) == 0.5  # half of it, inside it
    assert iou((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)) == 0.0


def test_an_exact_match_is_recall_and_precision_one() -> None:
    quality = score_detections(
        [scene(Instance("person", BOX))], [[Prediction("person", BOX, 0.9)]], {"person"}
    )
    assert quality.overall.true_positives == 1
    assert quality.overall.recall == 1.0 and quality.overall.precision == 1.0
    assert quality.misses == ()


def test_a_box_at_iou_0_4_is_a_miss_and_a_false_positive() -> None:
    shifted = (100.0 + 300 / 7, 100.0, 200.0 + 300 / 7, 200.0)
    assert iou(BOX, shifted) == pytest.approx(0.4)
    quality = score_detections(
        [scene(Instance("cat", BOX), name="yard")], [[Prediction("cat", shifted, 0.9)]], {"cat"}
    )
    assert (quality.overall.true_positives, quality.overall.false_positives) == (0, 1)
    assert quality.overall.false_negatives == 1
    assert quality.misses == (Miss("yard", "cat", BOX),)
    assert quality.overall.recall == 0.0 and quality.overall.precision == 0.0


def test_the_iou_threshold_is_inclusive_and_adjustable() -> None:
    half = (100.0, 100.0, 150.0, 200.0)  # IoU 0.5 exactly
    scenes, found = [scene(Instance("cat", BOX))], [[Prediction("cat", half, 0.9)]]
    assert score_detections(scenes, found, {"cat"}).overall.true_positives == 1
    assert score_detections(scenes, found, {"cat"}, iou_threshold=0.6).overall.recall == 0.0


def test_a_wrong_label_is_a_miss_and_a_false_positive() -> None:
    quality = score_detections(
        [scene(Instance("cat", BOX))], [[Prediction("dog", BOX, 0.9)]], {"cat", "dog"}
    )
    assert quality.per_class["cat"].false_negatives == 1
    assert quality.per_class["dog"].false_positives == 1
    assert quality.overall.true_positives == 0


def test_a_duplicate_on_one_instance_counts_against_precision() -> None:
    nudged = (102.0, 101.0, 201.0, 199.0)
    quality = score_detections(
        [scene(Instance("person", BOX))],
        [[Prediction("person", nudged, 0.6), Prediction("person", BOX, 0.8)]],
        {"person"},
    )
    assert (quality.overall.true_positives, quality.overall.false_positives) == (1, 1)
    assert quality.overall.recall == 1.0 and quality.overall.precision == 0.5


def test_matching_takes_predictions_by_descending_score() -> None:
    # the best-scoring prediction overlaps both people and takes the one it overlaps most;
    # the exact box on that one, listed first but scoring lower, comes too late: a duplicate
    left, right = (0.0, 0.0, 100.0, 100.0), (40.0, 0.0, 140.0, 100.0)
    between = (15.0, 0.0, 115.0, 100.0)
    assert iou(between, left) > iou(between, right) >= 0.5 > iou(left, right)
    found = [Prediction("person", left, 0.5), Prediction("person", between, 0.9)]
    quality = score_detections(
        [scene(Instance("person", left), Instance("person", right), name="two")],
        [found],
        {"person"},
    )
    assert quality.overall.true_positives == 1 and quality.overall.false_positives == 1
    assert quality.misses == (Miss("two", "person", right),)


def test_the_classes_filter_ignores_other_labels() -> None:
    scenes = [scene(Instance("person", BOX), Instance("tie", (140.0, 150.0, 160.0, 200.0)))]
    found = [[Prediction("person", BOX, 0.9), Prediction("airplane", BOX, 0.9)]]
    quality = score_detections(scenes, found, {"person", "car"})
    assert quality.overall.true_positives == 1
    assert quality.overall.false_positives == 0 and quality.overall.false_negatives == 0
    assert set(quality.per_class) == {"person", "car"}


def test_min_score_drops_low_predictions() -> None:
    scenes = [scene(Instance("car", BOX))]
    found = [[Prediction("car", BOX, 0.2), Prediction("car", (0.0, 0.0, 50.0, 50.0), 0.1)]]
    assert score_detections(scenes, found, {"car"}).overall.false_positives == 1
    quality = score_detections(scenes, found, {"car"}, min_score=0.25)
    assert quality.overall.true_positives == 0 and quality.overall.false_positives == 0
    assert quality.overall.false_negatives == 1 and quality.overall.precision is None


def test_undefined_recall_and_precision_are_none() -> None:
    nothing = score_detections([scene()], [[]], {"person"})
    assert nothing.overall.recall is None and nothing.overall.precision is None
    assert nothing.per_class["person"].recall is None
    false_alarm = score_detections([scene()], [[Prediction("person", BOX, 0.9)]], {"person"})
    assert false_alarm.overall.recall is None and false_alarm.overall.precision == 0.0


def test_a_difficult_instance_is_neither_required_nor_a_false_positive() -> None:
    scenes = [scene(Instance("bicycle", BOX, difficult=True))]
    missed = score_detections(scenes, [[]], {"bicycle"})
    assert missed.overall.false_negatives == 0 and missed.misses == ()
    found = score_detections(
        scenes,
        [[Prediction("bicycle", BOX, 0.9), Prediction("bicycle", BOX, 0.8)]],
        {"bicycle"},
    )
    assert found.overall == missed.overall  # all zero
    elsewhere = score_detections(
        scenes, [[Prediction("bicycle", (0.0, 0.0, 50.0, 50.0), 0.9)]], {"bicycle"}
    )
    assert elsewhere.overall.false_positives == 1


def test_counts_add_up_over_scenes_and_the_report_is_json() -> None:
    scenes = [
        scene(Instance("person", BOX), name="a"),
        scene(Instance("cat", BOX), Instance("person", (0.0, 0.0, 50.0, 90.0)), name="b"),
    ]
    found = [[Prediction("person", BOX, 0.9)], [Prediction("cat", BOX, 0.7)]]
    quality = score_detections(scenes, found, ["person", "cat"])
    assert quality.overall.true_positives == 2 and quality.overall.false_negatives == 1
    assert quality.overall.recall == pytest.approx(2 / 3)
    assert quality.misses == (Miss("b", "person", (0.0, 0.0, 50.0, 90.0)),)
    report = json.loads(json.dumps(quality.to_dict()))
    assert report["per_class"]["person"] == {
        "true_positives": 1, "false_positives": 0, "false_negatives": 1,
        "recall": 0.5, "precision": 1.0,
    }  # fmt: skip
    assert report["misses"] == [{"scene": "b", "label": "person", "box": [0, 0, 50, 90]}]
    assert report["iou_threshold"] == 0.5


def test_predictions_must_come_one_list_per_scene() -> None:
    with pytest.raises(ValueError, match="1 prediction lists for 2 scenes"):
        score_detections([scene(), scene()], [[]], {"person"})
