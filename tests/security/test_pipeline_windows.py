"""Windows close while a camera is busy: frames arriving faster than the detector keep its lane
from ever emptying, and each window must still close on the camera's clock and get its event.
The detector here answers after a fixed delay (the real one runs in the end-to-end tests): what
is tested is the pipeline's scheduling, not detection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from pipeline_doubles import moving_frame
from prometheus_client import CollectorRegistry

from hearthwatch.config import Settings
from hearthwatch.security.detector_link import FrameDetections
from hearthwatch.security.observations import ObjectDetection
from hearthwatch.security.pipeline import Pipeline


class SlowDetector:
    """A person in every frame, 0.15 s a frame."""

    async def detect(self, image: np.ndarray) -> FrameDetections:
        await asyncio.sleep(0.15)
        return FrameDetections([ObjectDetection("person", 0.9, (300.0, 100.0, 400.0, 350.0))], 1)


def test_a_camera_whose_lane_never_empties_still_gets_its_events(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        use_gpu=False,
        llm_enabled=False,
        enrich_enabled=False,
        batch_window_seconds=2.0,
        batch_idle_timeout_seconds=1.0,
        detection_queue_max_size=64,
    )

    async def run() -> tuple[int, int, int]:
        pipeline = Pipeline(settings, SlowDetector(), None, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        try:
            await pipeline.add_camera({"id": "porch", "source": {"type": "push"}})
            loop = asyncio.get_running_loop()
            started = loop.time()
            index = 0
            while loop.time() - started < 10.0:  # 10 frames/s in, under 7 detected a second
                await pipeline.push_frame("porch", moving_frame(index), None)
                index += 1
                await asyncio.sleep(0.1)
            queued = pipeline.status("porch")["queued"]
            events, _ = await asyncio.to_thread(pipeline.store.list_events, cameras=["porch"])
            unanalysed = await asyncio.to_thread(pipeline.store.unanalysed_windows)
            return queued, len(events), len(unanalysed)
        finally:
            await pipeline.stop()

    queued, events, unanalysed = asyncio.run(run())
    assert queued > 5, "the lane was never busy: nothing was tested"
    # 6 s or so of frames detected so far: two 2-second windows are over, closed in the store
    assert events + unanalysed >= 2, (events, unanalysed)
    assert events >= 1
