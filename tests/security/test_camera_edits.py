"""Creating, replacing and deleting cameras at once, as concurrent API requests do: each edit is
whole (no camera started twice, none stopped twice, no runtime left that the camera list does
not show); two cameras may not watch one folder; a relative ``file``/``folder`` path is stored
absolute. The detector answers after a fixed delay (what is tested is the pipeline's bookkeeping,
not detection)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_pipeline_windows import SlowDetector

from hearthwatch.config import Settings
from hearthwatch.security.errors import (
    CameraConflictError,
    InvalidCameraError,
    UnknownCameraError,
)
from hearthwatch.security.pipeline import Pipeline


def with_pipeline(tmp_path: Path, work: Callable[[Pipeline, Path], Awaitable[None]]) -> None:
    media = tmp_path / "media"
    media.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        source_roots=[media],
        use_gpu=False,
        llm_enabled=False,
        enrich_enabled=False,
    )

    async def run() -> None:
        pipeline = Pipeline(settings, SlowDetector(), None, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        try:
            await work(pipeline, media)
        finally:
            await pipeline.stop()

    asyncio.run(run())


def folder_camera(camera_id: str, folder: Path) -> dict[str, Any]:
    return {"id": camera_id, "source": {"type": "folder", "path": str(folder)}}


def watcher_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("folder-")]


def test_concurrent_creates_of_one_id_start_one_camera(tmp_path: Path) -> None:
    async def work(pipeline: Pipeline, media: Path) -> None:
        (media / "garden").mkdir()
        results = await asyncio.gather(
            *(pipeline.add_camera(folder_camera("garden", media / "garden")) for _ in range(5)),
            return_exceptions=True,
        )
        created = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, CameraConflictError)]
        assert (len(created), len(refused)) == (1, 4), results
        assert watcher_threads() == ["folder-garden"]
        await pipeline.remove_camera("garden")
        assert watcher_threads() == [] and pipeline.list_cameras() == []

    with_pipeline(tmp_path, work)


def test_concurrent_replace_and_delete_of_one_camera_end_consistent(tmp_path: Path) -> None:
    async def work(pipeline: Pipeline, media: Path) -> None:
        for name in ("a", "b"):
            (media / name).mkdir()
        await pipeline.add_camera(folder_camera("porch", media / "a"))
        results = await asyncio.gather(
            pipeline.replace_camera("porch", folder_camera("porch", media / "b")),
            pipeline.remove_camera("porch"),
            pipeline.replace_camera("porch", folder_camera("porch", media / "b")),
            return_exceptions=True,
        )
        # in order: replaced, deleted, then unknown (404), never a KeyError (500)
        assert not isinstance(results[0], BaseException), results
        assert results[1] is None, results
        assert isinstance(results[2], UnknownCameraError), results
        assert pipeline.list_cameras() == [] and watcher_threads() == []

    with_pipeline(tmp_path, work)


def test_two_cameras_may_not_watch_one_folder_or_its_done_folder(tmp_path: Path) -> None:
    async def work(pipeline: Pipeline, media: Path) -> None:
        (media / "shared" / "done").mkdir(parents=True)
        (media / "other").mkdir()
        await pipeline.add_camera(folder_camera("first", media / "shared"))
        for clash in (media / "shared", media / "other" / ".." / "shared", media / "shared/done"):
            with pytest.raises(InvalidCameraError, match="camera 'first' watches the folder"):
                await pipeline.add_camera(folder_camera("second", clash))
        await pipeline.add_camera(folder_camera("second", media / "other"))
        with pytest.raises(InvalidCameraError, match="camera 'first' watches the folder"):
            await pipeline.replace_camera("second", folder_camera("second", media / "shared"))
        await pipeline.replace_camera("first", folder_camera("first", media / "shared"))

    with_pipeline(tmp_path, work)


def test_a_relative_source_path_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def work(pipeline: Pipeline, media: Path) -> None:
        (media / "garden").mkdir()
        view = await pipeline.add_camera(folder_camera("garden", Path("media/garden")))
        assert view.config.source.path == media / "garden"  # type: ignore[union-attr]
        stored = await asyncio.to_thread(pipeline.store.get_camera, "garden")
        assert stored is not None and stored.config["source"]["path"] == str(media / "garden")

    with_pipeline(tmp_path, work)
