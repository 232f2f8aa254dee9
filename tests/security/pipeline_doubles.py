"""What the in-process pipeline tests share: a detector that sees one person walking right in
every frame, frames with something moving for the motion gate, and the committed risk
scenarios by id."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from hearthwatch.security.detector_link import FrameDetections
from hearthwatch.security.observations import ObjectDetection
from hearthwatch.security.risk_quality.scenarios import Scenario, load_scenarios

SCENARIO_FILE = Path(__file__).resolve().parents[2] / "bench" / "risk_scenarios.json"


class PersonDetector:
    """A person in every frame, 10 pixels further right each call."""

    def __init__(self) -> None:
        self.calls = 0

    async def detect(self, image: np.ndarray) -> FrameDetections:
        self.calls += 1
        x = 40.0 + 10 * self.calls
        return FrameDetections([ObjectDetection("person", 0.9, (x, 100.0, x + 80, 300.0))], 1)


def moving_frame(index: int) -> bytes:
    """A JPEG in which something has moved since frame ``index - 1``."""
    image = np.full((360, 640, 3), 90, np.uint8)
    x = 20 + (index * 15) % 560
    image[150:300, x : x + 40] = 230
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    return jpeg.tobytes()


@cache
def scenarios() -> dict[str, Scenario]:
    return {scenario.id: scenario for scenario in load_scenarios(SCENARIO_FILE)}
