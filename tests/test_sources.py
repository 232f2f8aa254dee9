"""Detector sources on the CPU: HOG, torchvision, RT-DETR, ONNX and TorchScript exports, the YOLO
layouts and letterbox, and the optimisation passes' fall backs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import scene
from photos import photo

from hearthwatch.runtime.accel.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.settings import (
    HogConfig,
    OnnxConfig,
    RTDetrConfig,
    TorchScriptConfig,
    TorchvisionConfig,
)
from hearthwatch.runtime.detection.yolo_layouts import decode, infer_layout
from hearthwatch.runtime.imaging.letterbox import letterbox, unletterbox

CPU = torch.device("cpu")
PLAIN = OptimizationSettings()
TINY_RTDETR = {
    "backbone_config": {
        "model_type": "rt_detr_resnet", "depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128],
        "embedding_size": 16, "out_features": ["stage2", "stage3", "stage4"],
    },
    "encoder_in_channels": [32, 64, 128], "decoder_in_channels": [32, 32, 32], "d_model": 32,
    "encoder_hidden_dim": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_queries": 20,
    "decoder_layers": 2, "encoder_layers": 1,
}  # fmt: skip


def no_fallback(name: str, reason: str) -> None:
    raise AssertionError(f"unexpected fallback {name}: {reason}")


@pytest.mark.detections
def test_hog_runs_a_batch_and_maps_boxes_to_the_original_size() -> None:
    """Each frame is scaled down to ``max_side`` (1024 x 1200 → 256 x 300) and its boxes are
    those found at that scale, mapped back to the frame's own pixels."""
    detector = HogConfig(max_side=300).build(CPU, PLAIN, no_fallback)
    frames = [photo(1024), scene(960, 720), np.ascontiguousarray(photo(1024)[:, ::-1])]
    results = detector.detect(frames)
    assert len(results) == 3 and detector.class_names == ("person",)
    assert len(results[0]) >= 1 and len(results[2]) >= 1
    unscaled = HogConfig().build(CPU, PLAIN, no_fallback)
    for frame, det in zip(frames, results, strict=True):
        height, width = frame.shape[:2]
        factor = 300 / max(height, width)
        small = cv2.resize(
            frame, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA
        )
        (seen,) = unscaled.detect([small])
        np.testing.assert_array_equal(det.scores, seen.scores)
        np.testing.assert_allclose(det.boxes, seen.boxes / factor, rtol=1e-6)
        assert ((det.boxes >= 0) & (det.boxes <= [width, height, width, height])).all()
        assert ((det.scores >= 0.3) & (det.scores <= 1)).all()


def test_hog_answers_frames_smaller_than_its_window() -> None:
    detector = HogConfig().build(CPU, PLAIN, no_fallback)
    tiny = detector.detect([scene(64, 48), scene(32, 200, 1)])
    assert [len(d) for d in tiny] == [0, 0]


def scoring_everything(detector: Detector) -> Detector:
    """Drop torchvision's own 0.05 score floor: random weights score each of 91 classes at
    about 1/91, so under it they find nothing at all."""
    detector.model.eager.roi_heads.score_thresh = 0.0  # type: ignore[attr-defined]
    return detector


@pytest.mark.detections
def test_torchvision_random_init_detects_in_image_coordinates() -> None:
    """The model sees 200 x 150 and 133 x 200 (min_size 160, max_size 200); boxes come back in
    320 x 240 and 200 x 300."""
    config = TorchvisionConfig(random_init=True, score_floor=0.0, min_size=160, max_size=200)
    detector = scoring_everything(config.build(CPU, PLAIN, no_fallback))
    results = detector.detect([scene(320, 240), scene(200, 300, 1)])
    assert len(results) == 2
    assert detector.class_names[1] == "person"
    for det, (w, h) in zip(results, [(320, 240), (200, 300)], strict=True):
        assert len(det) == 100  # torchvision's detections_per_img
        assert det.boxes.dtype == np.float32 and (det.boxes >= 0).all()
        assert 0.7 * w < det.boxes[:, 2].max() <= w + 1
        assert 0.7 * h < det.boxes[:, 3].max() <= h + 1


def test_torchvision_refuses_shapes_its_resize_would_shrink_to_nothing() -> None:
    config = TorchvisionConfig(random_init=True, min_size=160, max_size=200)
    detector = config.build(CPU, PLAIN, no_fallback)
    assert detector.max_aspect_ratio == 100
    assert detector.input_problem(1, 100) is None
    assert len(detector.detect([np.full((1, 100, 3), 90, np.uint8)])) == 1  # runs at the limit
    problem = detector.input_problem(1, 3000)
    assert problem is not None and "elongated" in problem and "100-fold" in problem
    with pytest.raises(RuntimeError):  # what the check keeps out of every batch
        detector.detect([np.full((1, 3000, 3), 90, np.uint8)])
    assert detector.input_problem(0, 5) == "image of 5x0 has no pixels"


def test_hog_takes_any_shape_with_pixels() -> None:
    detector = HogConfig().build(CPU, PLAIN, no_fallback)
    assert detector.input_problem(1, 100_000) is None
    assert [len(d) for d in detector.detect([np.zeros((1, 100_000, 3), np.uint8)])] == [0]


def test_torchvision_needs_weights_or_an_explicit_random_init(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="random_init"):
        TorchvisionConfig()
    missing = TorchvisionConfig(weights=tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        missing.build(CPU, PLAIN, no_fallback)


@pytest.mark.detections
def test_torchvision_loads_a_local_weights_file(tmp_path: Path) -> None:
    sizes = {"min_size": 160, "max_size": 200, "score_floor": 0.0}
    random = TorchvisionConfig(random_init=True, **sizes).build(CPU, PLAIN, no_fallback)
    path = tmp_path / "weights.pth"
    torch.save(random.model.eager.state_dict(), path)  # type: ignore[attr-defined]
    loaded = TorchvisionConfig(weights=path, **sizes).build(CPU, PLAIN, no_fallback)
    other = TorchvisionConfig(random_init=True, **sizes).build(CPU, PLAIN, no_fallback)
    frame = photo(320)
    expected, got, unrelated = (
        scoring_everything(d).detect([frame])[0] for d in (random, loaded, other)
    )
    assert len(expected) > 0 and len(got) == len(expected)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes, rtol=1e-4, atol=1e-3)
    assert not np.allclose(unrelated.boxes, expected.boxes, atol=1e-3)  # weights matter


@pytest.mark.detections
def test_rtdetr_v2_from_a_local_directory(tmp_path: Path) -> None:
    settings = {"input_size": 128, "score_floor": 0.0, "max_detections": 50}
    random = RTDetrConfig(random_init=True, config_overrides=TINY_RTDETR, **settings)
    built = random.build(CPU, PLAIN, no_fallback)
    built.model.eager.model.save_pretrained(tmp_path)  # type: ignore[attr-defined]
    detector = RTDetrConfig(path=tmp_path, **settings).build(CPU, PLAIN, no_fallback)
    assert detector.class_names[:3] == ("person", "bicycle", "car")
    frames = [photo(200), scene(64, 64, 1)]
    results = detector.detect(frames)
    assert [len(r) for r in results] == [50, 50]
    assert results[0].boxes[:, 0].min() >= -200 and results[0].scores.max() <= 1
    assert np.all(np.diff(results[0].scores) <= 0)  # best first
    for got, expected in zip(results, built.detect(frames), strict=True):
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
        np.testing.assert_allclose(got.boxes, expected.boxes, rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(got.class_ids, expected.class_ids)
    with pytest.raises(FileNotFoundError, match="config.json"):
        RTDetrConfig(path=tmp_path / "empty").build(CPU, PLAIN, no_fallback)


class PlantedYolo(torch.nn.Module):
    """Outputs fixed YOLOv8-layout predictions: one box of class 2 at a known place."""

    def __init__(self, size: int, classes: int = 3, anchors: int = 8):
        super().__init__()
        out = torch.zeros(1, 4 + classes, anchors)
        out[0, :4, :] = torch.tensor([10.0, 10.0, 4.0, 4.0]).unsqueeze(1)
        out[0, 4:, :] = 0.01
        out[0, :4, 3] = torch.tensor([size / 2, size / 2, size / 4, size / 8])
        out[0, 4 + 2, 3] = 0.9
        self.register_buffer("planted", out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.planted.expand(x.shape[0], -1, -1) + x.mean() * 0


def expected_box(width: int, height: int, size: int) -> np.ndarray:
    """The planted box (model-input centre, size/4 x size/8) in original image pixels."""
    scale = min(size / width, size / height)
    cx, cy = width / 2, height / 2
    return np.array(
        [
            cx - size / 8 / scale,
            cy - size / 16 / scale,
            cx + size / 8 / scale,
            cy + size / 16 / scale,
        ]
    )


def export_onnx(path: Path, size: int) -> None:
    model = PlantedYolo(size)
    torch.onnx.export(
        model,
        (torch.rand(1, 3, size, size),),
        str(path),
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        dynamo=False,
    )


@pytest.mark.detections
def test_onnx_yolov8_export_decodes_to_original_pixels(tmp_path: Path) -> None:
    path = tmp_path / "yolo.onnx"
    export_onnx(path, 64)
    detector = OnnxConfig(path=path, class_names=["a", "b", "c"]).build(CPU, PLAIN, no_fallback)
    results = detector.detect([scene(320, 160), scene(100, 200, 1)])
    for det, (w, h) in zip(results, [(320, 160), (100, 200)], strict=True):
        assert len(det) == 1 and det.class_ids[0] == 2
        assert det.scores[0] == pytest.approx(0.9)
        np.testing.assert_allclose(det.boxes[0], expected_box(w, h, 64), atol=1.0)


def test_onnx_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxConfig(path=tmp_path / "missing.onnx").build(CPU, PLAIN, no_fallback)


@pytest.mark.detections
def test_torchscript_export_runs_the_same_decoding(tmp_path: Path) -> None:
    path = tmp_path / "yolo.pt"
    torch.jit.trace(PlantedYolo(64), torch.rand(1, 3, 64, 64)).save(str(path))
    config = TorchScriptConfig(path=path, input_size=64, layout="yolov8")
    det = config.build(CPU, PLAIN, no_fallback).detect([scene(128, 128)])[0]
    assert len(det) == 1 and det.class_ids[0] == 2
    np.testing.assert_allclose(det.boxes[0], expected_box(128, 128, 64), atol=1.0)


def test_layouts_are_recognised_from_shapes() -> None:
    assert infer_layout([(1, 84, 8400)]) == "yolov8"
    assert infer_layout([(1, 25200, 85)]) == "yolov5"
    assert infer_layout([(1, 300, 6)]) == "end2end"
    assert infer_layout([(1, 1), (1, 100, 4), (1, 100), (1, 100)]) == "efficient_nms"
    assert infer_layout([("batch", 84, "anchors")]) == "yolov8"
    with pytest.raises(ValueError, match="layout"):
        infer_layout([(1, 2)])


def test_yolov5_and_end2end_and_efficient_nms_decoding() -> None:
    v5 = torch.zeros(1, 3, 5 + 2)
    v5[0, :, :4] = torch.tensor([[50, 50, 20, 20], [51, 51, 20, 20], [10, 10, 4, 4]])
    v5[0, :, 4] = torch.tensor([0.9, 0.8, 0.9])
    v5[0, :, 5:] = torch.tensor([[0.1, 1.0], [0.1, 1.0], [0.01, 0.02]])
    boxes, scores, classes = decode([v5], "yolov5", 0.1, 0.5, 100)[0]
    assert len(boxes) == 1  # the overlapping twin is suppressed, the weak one dropped
    assert classes.tolist() == [1] and scores.tolist() == pytest.approx([0.9])
    assert boxes[0].tolist() == [40, 40, 60, 60]

    e2e = torch.tensor([[[1, 2, 3, 4, 0.7, 5], [0, 0, 0, 0, 0.0, 0]]])
    boxes, scores, classes = decode([e2e], "end2end", 0.25, 0.5, 100)[0]
    assert boxes.tolist() == [[1, 2, 3, 4]] and classes.tolist() == [5]

    num = torch.tensor([[2]])
    nboxes = torch.tensor([[[1, 1, 2, 2], [3, 3, 4, 4], [9, 9, 9, 9]]], dtype=torch.float32)
    nscores = torch.tensor([[0.9, 0.1, 0.8]])
    nclasses = torch.tensor([[0, 1, 2]])
    boxes, scores, classes = decode([num, nboxes, nscores, nclasses], "auto", 0.2, 0.5, 100)[0]
    assert classes.tolist() == [0]  # the third is past num_dets, the second under the floor


def test_letterbox_round_trip() -> None:
    image = scene(300, 100)
    boxed, info = letterbox(image, 64)
    assert boxed.shape == (64, 64, 3)
    box = np.array([[30.0, 10.0, 150.0, 90.0]])
    forward = box.copy()
    forward[:, [0, 2]] = forward[:, [0, 2]] * info.scale + info.left
    forward[:, [1, 3]] = forward[:, [1, 3]] * info.scale + info.top
    np.testing.assert_allclose(unletterbox(forward, info), box, atol=1e-3)


def test_a_failing_compile_falls_back_to_eager_and_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_compile(module: torch.nn.Module) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("inductor could not compile")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    reported: list[tuple[str, str]] = []
    settings = OptimizationSettings(torch_compile=True)
    optimized = optimize_module(torch.nn.Linear(4, 2), CPU, settings, lambda *r: reported.append(r))
    assert "torch_compile" in optimized.applied
    out = optimized(torch.ones(1, 4))
    assert out.shape == (1, 2)
    assert reported and reported[0][0] == "torch_compile" and "inductor" in reported[0][1]
    assert "torch_compile" not in optimized.applied
    optimized(torch.ones(1, 4))
    assert len(reported) == 1  # reported once, then plain eager


def test_a_failing_precision_pass_falls_back_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoHalf(torch.nn.Linear):
        def to(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
            if torch.float16 in args:
                raise TypeError("fp16 not supported here")
            return super().to(*args, **kwargs)  # type: ignore[arg-type]

    reported: list[tuple[str, str]] = []
    settings = OptimizationSettings(precision="fp16", channels_last=False)
    optimized = optimize_module(NoHalf(4, 2), CPU, settings, lambda *r: reported.append(r))
    assert optimized.dtype == torch.float32
    assert reported[0][0] == "precision"


def test_sources_keep_every_optimisation_setting_they_do_not_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hearthwatch.runtime.detection import torchscript_source, torchvision_source

    seen: list[OptimizationSettings] = []
    for module in (torchscript_source, torchvision_source):
        real = module.optimize_module
        monkeypatch.setattr(
            module,
            "optimize_module",
            lambda m, device, settings, hook, real=real: (
                seen.append(settings)
                or real(m, device, dataclasses.replace(settings, torch_compile=False), hook)
            ),
        )
    asked = OptimizationSettings(cuda_graphs=False, max_batch_size=32, torch_compile=True)
    path = tmp_path / "yolo.pt"
    torch.jit.trace(PlantedYolo(64), torch.rand(1, 3, 64, 64)).save(str(path))
    TorchScriptConfig(path=path, input_size=64).build(CPU, asked, no_fallback)
    TorchvisionConfig(random_init=True, min_size=64, max_size=64).build(CPU, asked, no_fallback)
    assert [(s.cuda_graphs, s.max_batch_size) for s in seen] == [(False, 32), (False, 32)]
    assert [s.torch_compile for s in seen] == [False, True]  # TorchScript is never compiled
    assert seen[1].channels_last is False  # a list-of-images model gains nothing from it
    with pytest.raises(TypeError):
        OptimizationSettings("fp32")  # type: ignore[misc]  # keyword-only: no silent shifts
