"""Retention runs beside the pipeline's writes, not in their way: while a retention run is in
progress (held here until the test lets it go), pushed frames are still detected and recorded,
and stopping the pipeline waits for the run before closing the store."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from pipeline_doubles import moving_frame
from prometheus_client import CollectorRegistry
from test_pipeline_windows import SlowDetector

from hearthwatch.config import Settings
from hearthwatch.security import pipeline as pipeline_module
from hearthwatch.security.pipeline import Pipeline
from hearthwatch.security.store.retention import apply_retention

PUSHED = 14


def test_frames_are_recorded_while_retention_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def held_retention(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(30), "never let go"
        report = apply_retention(*args, **kwargs)
        finished.set()
        return report

    monkeypatch.setattr(pipeline_module, "apply_retention", held_retention)
    settings = Settings(data_dir=tmp_path, use_gpu=False, llm_enabled=False, enrich_enabled=False)

    async def run() -> int:
        pipeline = Pipeline(settings, SlowDetector(), None, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        try:
            await pipeline.add_camera({"id": "porch", "source": {"type": "push"}})
            assert await asyncio.to_thread(started.wait, 10), "retention never ran"
            for index in range(PUSHED):  # the gate calibrates on the first 11
                await pipeline.push_frame("porch", moving_frame(index), None)
            recorded = 0
            for _ in range(200):
                recorded = await asyncio.to_thread(pipeline.store.last_seq, "porch")
                if recorded == PUSHED:
                    break
                await asyncio.sleep(0.05)
            assert not finished.is_set()
            return recorded
        finally:
            release.set()
            await pipeline.stop()
            assert finished.is_set(), "stop did not wait for the retention run"

    assert asyncio.run(run()) == PUSHED, "frames were not recorded while retention ran"
