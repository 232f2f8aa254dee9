"""Shared base for exported YOLO-style models (ONNX, TorchScript): letterboxed square input
in [0, 1], and outputs in one of the layouts :mod:`.yolo_layouts` decodes."""

from __future__ import annotations

import abc
import ast
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import COCO_80, Detections
from hearthwatch.runtime.detection.settings import Layout, YoloExportConfig
from hearthwatch.runtime.detection.yolo_layouts import decode
from hearthwatch.runtime.imaging.letterbox import LetterboxInfo, letterbox_batch, unletterbox


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """Class names from an Ultralytics ``names`` metadata entry (``{0: 'person', ...}``)."""
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    return None


class YoloExportDetector(Detector):
    """Letterbox on the host, run the export, decode its layout, map boxes back."""

    config: YoloExportConfig
    input_size: int
    layout: Layout

    def _setup(self, config: YoloExportConfig, metadata_names: tuple[str, ...] | None) -> None:
        self.config = config
        self.class_names = tuple(config.class_names or metadata_names or COCO_80)

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        return letterbox_batch(images, self.input_size)

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> list[torch.Tensor]:
        """Model outputs for a (B, 3, S, S) float32 batch, as tensors."""

    def forward(self, prepared: tuple[np.ndarray, list[LetterboxInfo]]) -> list[torch.Tensor]:
        return self.run(prepared[0])

    def finish(
        self, outputs: Any, prepared: tuple[np.ndarray, list[LetterboxInfo]]
    ) -> list[Detections]:
        c = self.config
        decoded = decode(outputs, self.layout, c.score_floor, c.iou_threshold, c.max_detections)
        rows = [
            torch.cat([b.float(), s.float()[:, None], k.float()[:, None]], 1) for b, s, k in decoded
        ]
        host = torch.cat(rows).cpu().numpy()  # one device→host copy for the batch
        results, start = [], 0
        for part, info in zip(rows, prepared[1], strict=True):
            mine, start = host[start : start + len(part)], start + len(part)
            results.append(
                Detections(
                    unletterbox(mine[:, :4], info), mine[:, 4].copy(), mine[:, 5].astype(np.int64)
                )
            )
        return results
