"""Letterboxing: fit each image into a square model input keeping its aspect ratio, and map
boxes back to the image's own pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxInfo:
    scale: float
    left: int
    top: int
    width: int
    height: int


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, LetterboxInfo]:
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, LetterboxInfo(scale, left, top, width, height)


def letterbox_batch(
    images: Sequence[np.ndarray], size: int
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """(B, 3, size, size) float32 in [0, 1] and the per-image mapping."""
    boxed = [letterbox(img, size) for img in images]
    batch = np.stack([b[0] for b in boxed]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return np.ascontiguousarray(batch), [b[1] for b in boxed]


def unletterbox(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Boxes (N, 4) in model-input pixels → the original image's pixels, clipped to it."""
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - info.left) / info.scale
    out[:, [1, 3]] = (out[:, [1, 3]] - info.top) / info.scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, info.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, info.height)
    return out
