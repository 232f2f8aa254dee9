"""LitServe serving the same detector with LitServe's own dynamic batching, for
bench/serve_bench.py: a multipart ``image`` upload is decoded on the CPU in
``decode_request`` (as LitServe's image examples do), batched by LitServe up to
``MAX_BATCH_SIZE`` within ``MAX_QUEUE_DELAY_MS``, and run through the detector built exactly as
hearthwatch builds it (same source, precision and passes), so only the serving differs.
"""

import os
from typing import Any

import litserve as ls
import numpy as np
from fastapi import Request

from hearthwatch.config import load_settings
from hearthwatch.runtime.accel.device import select_device
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.imaging.decode import decode_image


class DetectorAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        settings = load_settings().settings
        self.threshold = settings.detection_confidence_threshold
        self.detector: Detector = settings.detector.build(
            select_device(settings.use_gpu), settings.optimization(), lambda name, reason: None
        )

    def decode_request(self, request: Request) -> np.ndarray:
        """LitServe reads the multipart form for a ``Request``-annotated parameter (so this
        module keeps its annotations as classes, without ``from __future__``)."""
        form: Any = request
        return decode_image(form["image"].file.read(), 100_000_000)

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs

    def predict(self, images: list[np.ndarray] | np.ndarray) -> list[Detections] | Detections:
        if isinstance(images, np.ndarray):  # max_batch_size 1: LitServe does not batch
            return self.detector.detect([images])[0]
        return self.detector.detect(images)

    def unbatch(self, output: list[Detections]) -> list[Detections]:
        return output

    def encode_response(self, found: Detections) -> dict[str, Any]:
        keep = found.scores >= self.threshold
        return {
            "boxes": found.boxes[keep].tolist(),
            "scores": found.scores[keep].tolist(),
            "classes": found.class_ids[keep].tolist(),
        }


if __name__ == "__main__":
    settings = load_settings().settings
    api = DetectorAPI(
        max_batch_size=settings.max_batch_size,
        batch_timeout=settings.max_queue_delay_ms / 1000,
        api_path="/detect",
    )
    accelerator = "cuda" if settings.use_gpu and select_device(True).type == "cuda" else "cpu"
    server = ls.LitServer(api, accelerator=accelerator, devices=1, timeout=60)
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
