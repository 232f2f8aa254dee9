"""OpenCV's built-in HOG person detector: the offline default that needs no weights."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.detection.settings import HogConfig
from hearthwatch.runtime.imaging.preprocess import shrunk

Prepared = list[tuple[np.ndarray, float]]


class HogDetector(Detector):
    """Scores are the SVM margin through a sigmoid, so a margin of 0 is a score of 0.5."""

    platform = "opencv_hog"

    def __init__(self, config: HogConfig):
        self.config = config
        self.class_names = tuple(config.class_names or ("person",))
        self._pool = ThreadPoolExecutor(config.threads or max(1, cv2.getNumberOfCPUs()))
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))
        # the margin at which sigmoid(margin) equals the floor
        floor = min(max(config.score_floor, 1e-6), 1 - 1e-6)
        self._hit_threshold = math.log(floor / (1 - floor))

    def warmup(self, batch_sizes: Iterable[int], height: int = 720, width: int = 1280) -> None:
        """HOG has nothing to compile or tune: one small frame checks it runs."""
        self.detect([np.zeros((128, 64, 3), np.uint8)])

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        return [shrunk(image, self.config.max_side) for image in images]

    def _detect_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        win_w, win_h = self._hog.winSize
        if image.shape[0] < win_h or image.shape[1] < win_w:
            # no person fits, and OpenCV crashes on frames smaller than its window
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        stride, pad = self.config.win_stride, self.config.padding
        rects, weights = self._hog.detectMultiScale(
            image,
            hitThreshold=self._hit_threshold,
            winStride=(stride, stride),
            padding=(pad, pad),
            scale=self.config.scale,
        )
        return np.asarray(rects, np.float32).reshape(-1, 4), np.asarray(weights, np.float32).ravel()

    def forward(self, prepared: Prepared) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(self._pool.map(self._detect_one, [image for image, _ in prepared]))

    def finish(
        self, outputs: list[tuple[np.ndarray, np.ndarray]], prepared: Prepared
    ) -> list[Detections]:
        results = []
        for (rects, margins), (_, factor) in zip(outputs, prepared, strict=True):
            boxes = rects.copy()
            boxes[:, 2:] += boxes[:, :2]
            boxes /= factor
            scores = (1.0 / (1.0 + np.exp(-margins))).astype(np.float32)
            results.append(Detections(boxes, scores, np.zeros(len(scores), np.int64)))
        return results
