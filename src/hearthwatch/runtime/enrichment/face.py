"""Faces on person crops with YuNet (libfacedetection, compiled into the ``yuface`` wheel, which
``hearthwatch models install`` installs): whether a face is visible, and each face's box,
score and five landmarks (eyes, nose tip, mouth corners) in frame pixels. No identity: nothing
here recognises who a face belongs to.

YuNet is fully convolutional and finds faces from about 10 pixels; crops longer than
``max_side`` are shrunk first (its speed and accuracy fall past 960). It runs on the host.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from hearthwatch.runtime.enrichment.base import Enricher, EnricherConfig, EnrichItem
from hearthwatch.runtime.imaging.preprocess import shrunk
from hearthwatch.weights.packaged import YUFACE, WeightsOrigin, installed_origin

LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


class FaceEnricher(Enricher):
    half_precision = False

    def __init__(self, min_score: float, max_side: int):
        self.min_score = min_score
        self.max_side = max_side

    def prepare(self, items: Sequence[EnrichItem], device: torch.device, dtype: torch.dtype) -> Any:
        prepared = []
        for item in items:
            image, scale = shrunk(item.image, self.max_side)
            prepared.append((np.ascontiguousarray(image[:, :, ::-1]), scale))  # YuNet takes BGR
        return prepared

    def forward(self, module: Any, prepared: Any) -> Any:
        return [(module(image), scale) for image, scale in prepared]

    def finish(self, outputs: Any, items: Sequence[EnrichItem]) -> list[dict[str, Any]]:
        results = []
        for (rows, scale), item in zip(outputs, items, strict=True):
            ox, oy = item.origin
            faces: list[dict[str, Any]] = []
            for row in np.asarray(rows, np.float64).reshape(-1, 16):
                score = row[0] / 100.0
                if score < self.min_score:
                    continue
                x, y, w, h = (float(v) for v in row[1:5] / scale)
                points = row[5:15].reshape(5, 2) / scale
                faces.append({
                    "box": [ox + x, oy + y, ox + x + w, oy + y + h],
                    "score": float(score),
                    "landmarks": {
                        name: [ox + float(px), oy + float(py)]
                        for name, (px, py) in zip(LANDMARK_NAMES, points, strict=True)
                    },
                })  # fmt: skip
            faces.sort(key=lambda f: -f["score"])
            results.append({"face_visible": bool(faces), "faces": faces})
        return results


def _yuface_detect() -> Any:
    from yuface.yuface import detect  # the extension itself: rows of score, box, landmarks

    return detect


class FaceConfig(EnricherConfig):
    type: Literal["face"] = "face"
    runs_on_host: ClassVar[bool] = True
    min_score: float = Field(
        0.8, ge=0.0, le=1.0, description="Real faces score about 0.9; headlights up to 0.75."
    )
    max_side: int = Field(960, ge=32, description="Longer crops are shrunk to this side first.")

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("yuface") is None:
            return "the yuface package is not installed; `hearthwatch models install` installs it"
        return None

    def weights_bytes(self) -> int:
        spec = importlib.util.find_spec("yuface")
        if spec is None or spec.origin is None:
            return 0
        return sum(p.stat().st_size for p in Path(spec.origin).parent.glob("*.so*"))

    def origin(self) -> WeightsOrigin:
        return installed_origin(YUFACE, self.weights_bytes())

    def build(self) -> Any:
        return _yuface_detect()

    def enricher(self) -> Enricher:
        return FaceEnricher(self.min_score, self.max_side)
