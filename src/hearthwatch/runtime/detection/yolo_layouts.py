"""Decoding of the common YOLO export layouts into boxes, scores and classes.

- ``yolov8``: (B, 4 + nc, N), centre-size boxes and per-class scores (Ultralytics v8/11 raw).
- ``yolov5``: (B, N, 5 + nc), centre-size boxes, objectness, per-class scores.
- ``end2end``: (B, N, 6) x1 y1 x2 y2 score class, NMS built in (``nms=True`` exports, v10, 26).
- ``efficient_nms``: four outputs num_dets (B, 1), boxes (B, K, 4), scores (B, K), classes (B, K).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms, box_convert

from hearthwatch.runtime.detection.settings import Layout

Decoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def infer_layout(shapes: Sequence[Sequence[int | str | None]]) -> Layout:
    """Guess the layout from output shapes (dynamic dimensions may be strings or None)."""
    if len(shapes) == 4:
        return "efficient_nms"
    if len(shapes) != 1 or len(shapes[0]) != 3:
        raise ValueError(f"cannot infer a YOLO layout from output shapes {list(shapes)}")
    _, d1, d2 = shapes[0]
    if d2 == 6:
        return "end2end"
    if isinstance(d1, int) and isinstance(d2, int):
        return "yolov8" if d1 < d2 else "yolov5"
    if isinstance(d1, int):
        return "yolov8"
    if isinstance(d2, int):
        return "yolov5"
    raise ValueError(f"cannot infer a YOLO layout from output shapes {list(shapes)}; set `layout`")


def _nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float, max_det: int
) -> Decoded:
    keep = batched_nms(boxes.float(), scores.float(), classes, iou)[:max_det]
    return boxes[keep], scores[keep], classes[keep]


def decode(
    outputs: Sequence[torch.Tensor],
    layout: Layout,
    score_floor: float,
    iou_threshold: float,
    max_detections: int,
) -> list[Decoded]:
    """Per image: boxes (N, 4) xyxy in model-input pixels, scores (N,), class ids (N,)."""
    if layout == "auto":
        layout = infer_layout([tuple(o.shape) for o in outputs])
    results: list[Decoded] = []
    if layout == "efficient_nms":
        num, boxes, scores, classes = outputs
        for i in range(boxes.shape[0]):
            n = int(num[i].reshape(-1)[0])
            keep = scores[i, :n] >= score_floor
            results.append((boxes[i, :n][keep], scores[i, :n][keep], classes[i, :n][keep].long()))
        return results
    (raw,) = outputs
    if layout == "end2end":
        for det in raw:
            det = det[det[:, 4] >= score_floor][:max_detections]
            results.append((det[:, :4], det[:, 4], det[:, 5].long()))
        return results
    if layout == "yolov8":
        raw = raw.transpose(1, 2)
        boxes_all, class_scores = raw[..., :4], raw[..., 4:]
    elif layout == "yolov5":
        boxes_all, class_scores = raw[..., :4], raw[..., 5:] * raw[..., 4:5]
    else:
        raise ValueError(f"unknown YOLO layout {layout!r}")
    scores_all, classes_all = class_scores.max(dim=-1)
    for boxes, scores, classes in zip(boxes_all, scores_all, classes_all, strict=True):
        keep = scores >= score_floor
        xyxy = box_convert(boxes[keep], "cxcywh", "xyxy")
        results.append(_nms(xyxy, scores[keep], classes[keep], iou_threshold, max_detections))
    return results
