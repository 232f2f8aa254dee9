"""Cross-camera re-identification through the pipeline, on real person crops: people cut out of
the photos the packages ship, composited onto two cameras' scenes (different light, white
balance, size and walking direction; :mod:`test_appearance` makes them). The same person
crossing the front and back cameras becomes one incident linking both events, and the back
event's analysis is told of the match; a different person on a third camera is in no incident.
Run with the real MobileNetV2 embedder (the zoo's ``reid`` model on its installed weights,
behind a thin stand-in for the enrichment service) and with the colour-histogram fallback
(no re-ID model), whose incident says it is the fallback.

The detector is a stand-in that finds what differs from the camera's empty scene (the real
detectors are tested elsewhere): what is tested is the matching, not detection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from test_appearance import CAMERAS, crop_of, reid, track  # noqa: F401 (reid: a fixture)

from hearthwatch.config import Settings
from hearthwatch.runtime.enrichment.service import EnrichmentResult, InputDetection
from hearthwatch.security.appearance import COLOUR_DESCRIPTOR, REID_DESCRIPTOR
from hearthwatch.security.detector_link import FrameDetections
from hearthwatch.security.observations import ObjectDetection
from hearthwatch.security.pipeline import Pipeline

WALKS = [("front", "astronaut", "A"), ("back", "astronaut", "B"), ("side", "grace_hopper", "B")]
"""(camera, person, view): who walks past which camera, in this order."""


def empty_scene(view: str) -> np.ndarray:
    """The view's scene without anyone, lit as its frames are (RGB uint8)."""
    camera = CAMERAS[view]
    lit = camera.scene().astype(np.float32) * camera.light * np.array(camera.balance, np.float32)
    return np.clip(lit, 0, 255).astype(np.uint8)


class ChangeDetector:
    """A 'person' box around what differs from the camera's empty scene."""

    def __init__(self) -> None:
        self.scenes = [empty_scene(view) for view in CAMERAS]

    async def detect(self, image: np.ndarray) -> FrameDetections:
        rgb = image.astype(np.int16)
        diff = min((np.abs(rgb - s).max(axis=2) for s in self.scenes), key=lambda d: d.mean())
        mask = (diff > 60).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        if mask.sum() < 2000:
            return FrameDetections([], 1)
        x, y, w, h = cv2.boundingRect(mask)
        return FrameDetections([ObjectDetection("person", 0.9, (x, y, x + w, y + h))], 1)


class ReidService:
    """The enrichment service with the zoo's ``reid`` model alone: crops → embeddings."""

    models = {"reid": None}

    def __init__(self, embed: Callable[[Sequence[np.ndarray]], list[np.ndarray]]):
        self.embed = embed

    async def enrich(
        self, image: np.ndarray, detections: Sequence[InputDetection], timeout_s: float
    ) -> EnrichmentResult:
        crops = [crop_of(image, d.box) for d in detections if d.label == "person"]
        vectors = await asyncio.to_thread(self.embed, crops)
        return EnrichmentResult(detections=[{"reid": {"embedding": v.tolist()}} for v in vectors])


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def run(tmp_path: Path, enrichment: Any) -> dict[str, Any]:
    """Each walk: the empty scene while the motion gate learns it, then the person's three
    frames; the next walk once the last one's event is stored. The events by camera and the
    incidents."""
    settings = Settings(
        data_dir=tmp_path, use_gpu=False, llm_enabled=False, enrich_enabled=False,
        batch_window_seconds=60.0, batch_idle_timeout_seconds=0.8, enrichment_interval_s=0.01,
    )  # fmt: skip

    async def go() -> dict[str, Any]:
        pipeline = Pipeline(settings, ChangeDetector(), enrichment, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        try:
            events: dict[str, Any] = {}
            for camera, person, view in WALKS:
                await pipeline.add_camera({"id": camera, "source": {"type": "push"}})
                empty = empty_scene(view)
                noise = np.random.default_rng(len(events))
                for _ in range(12):  # the gate learns the scene on its first 11 frames
                    jitter = noise.integers(-2, 3, empty.shape, dtype=np.int16)
                    still = np.clip(empty.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
                    await pipeline.push_frame(camera, jpeg(still), None)
                for frame, _ in track(person, view):
                    await pipeline.push_frame(camera, jpeg(frame), None)
                    await asyncio.sleep(0.2)
                events[camera] = await _event_of(pipeline, camera)
            assert pipeline.incidents is not None
            incidents = await asyncio.to_thread(pipeline.incidents.list)
            return {"events": events, "incidents": incidents}
        finally:
            await pipeline.stop()

    return asyncio.run(go())


async def _event_of(pipeline: Pipeline, camera: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        rows, _ = await asyncio.to_thread(pipeline.store.list_events, cameras=[camera])
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, f"no event on {camera}"
        await asyncio.sleep(0.1)


def check(seen: dict[str, Any], descriptor: str) -> None:
    events = seen["events"]
    (incident,) = seen["incidents"]  # the grace_hopper event joined none
    assert (incident.label, incident.descriptor) == ("person", descriptor)
    assert [e.event_id for e in incident.events] == [events["front"].id, events["back"].id]
    assert incident.events[1].similarity is not None
    assert events["side"].id not in {e.event_id for e in incident.events}
    reasons = " ".join(r.text for r in events["back"].reasons)
    assert 'The same person was seen on the "front" camera' in reasons
    assert not any("same person" in r.text for r in events["side"].reasons)


def test_the_same_person_on_two_cameras_is_one_incident_with_the_reid_model(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    embed = request.getfixturevalue("reid")  # the real embedder; skips without its weights
    check(run(tmp_path, ReidService(embed)), REID_DESCRIPTOR)


def test_without_the_reid_model_the_colour_histogram_links_them_and_says_so(
    tmp_path: Path,
) -> None:
    check(run(tmp_path, None), COLOUR_DESCRIPTOR)
