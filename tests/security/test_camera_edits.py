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
from pipeline_doubles import moving_frame
from prometheus_client import CollectorRegistry
from test_pipeline_windows import SlowDetector

from hearthwatch.config import Settings
from hearthwatch.security import pipeline as pipeline_module
from hearthwatch.security.errors import (
    CameraConflictError,
    InvalidCameraError,
    PipelineClosedError,
    UnknownCameraError,
)
from hearthwatch.security.folder_ledger import LEDGER_NAME
from hearthwatch.security.pipeline import Pipeline, check_cameras_file


def with_pipeline(
    tmp_path: Path, work: Callable[[Pipeline, Path], Awaitable[None]], media_name: str = "media"
) -> None:
    """``work`` on a started pipeline whose data is in ``tmp_path/data`` and whose only source
    root is ``tmp_path/<media_name>`` (made if missing)."""
    media = tmp_path / media_name
    media.mkdir(exist_ok=True)
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


CAMERAS = ("garden", "porch")
"""This module's cameras (other modules' watchers may still be ending in this process)."""


def watcher_threads() -> list[str]:
    names = {f"folder-{camera}" for camera in CAMERAS}
    return [t.name for t in threading.enumerate() if t.name in names]


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
        # each whole, in some order: the delete succeeds, a replace before it too, one after it
        # finds no camera (404), never a KeyError (500)
        assert results[1] is None, results
        for result in (results[0], results[2]):
            assert not isinstance(result, BaseException) or isinstance(
                result, UnknownCameraError
            ), results
        assert pipeline.list_cameras() == [] and watcher_threads() == []

    with_pipeline(tmp_path, work)


def test_two_cameras_may_not_watch_one_folder_or_its_done_folder(tmp_path: Path) -> None:
    async def work(pipeline: Pipeline, media: Path) -> None:
        (media / "shared" / "done").mkdir(parents=True)
        (media / "other").mkdir()
        (media / "alias").symlink_to(media / "shared")
        await pipeline.add_camera(folder_camera("first", media / "shared"))
        clashes = [
            media / "shared",
            media / "other" / ".." / "shared",
            media / "alias",  # a link to it
            media / "shared" / "done",  # where it moves its files
        ]
        for clash in clashes:
            with pytest.raises(InvalidCameraError, match="camera 'first' watches the folder"):
                await pipeline.add_camera(folder_camera("second", clash))
        await pipeline.add_camera(folder_camera("second", media / "other"))
        with pytest.raises(InvalidCameraError, match="camera 'first' watches the folder"):
            await pipeline.replace_camera("second", folder_camera("second", media / "shared"))
        await pipeline.replace_camera("first", folder_camera("first", media / "shared"))
        # a camera whose done/ is another camera's folder
        (media / "upper").mkdir()
        (media / "upper" / "done").symlink_to(media / "other")
        with pytest.raises(InvalidCameraError, match="camera 'second' watches the folder"):
            await pipeline.add_camera(folder_camera("third", media / "upper"))

    with_pipeline(tmp_path, work)


def test_a_cameras_file_with_two_cameras_on_one_folder_stops_start_up(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "garden").mkdir(parents=True)
    cameras = {
        "front": {"source": {"type": "folder", "path": str(media / "garden")}},
        "back": {"source": {"type": "folder", "path": str(media / "garden") + "/"}},
    }
    settings = Settings(
        data_dir=tmp_path / "data", source_roots=[media], cameras=cameras, use_gpu=False
    )
    with pytest.raises(InvalidCameraError, match="camera 'back': camera 'front' watches"):
        check_cameras_file(settings)


def test_a_relative_source_path_is_stored_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def work(pipeline: Pipeline, media: Path) -> None:
        for name in ("garden", "porch"):
            (media / name).mkdir()
        for edit, path in ((pipeline.add_camera, "garden"), (pipeline.replace_camera, "porch")):
            fields = folder_camera("garden", Path("media") / path)
            view = await (edit(fields) if path == "garden" else edit("garden", fields))  # type: ignore[operator]
            absolute = (Path("media") / path).resolve()
            assert view.config.source.path == absolute  # type: ignore[union-attr]
            stored = await asyncio.to_thread(pipeline.store.get_camera, "garden")
            assert stored is not None and stored.config["source"]["path"] == str(absolute)

    with_pipeline(tmp_path, work)


def test_stop_waits_for_an_edit_under_way_and_refuses_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit is held while it compares folders (under the edit lock): stop does not end
    before it, and stops the camera it made."""
    media = tmp_path / "media"
    (media / "garden").mkdir(parents=True)
    settings = Settings(
        data_dir=tmp_path / "data", source_roots=[media], use_gpu=False, llm_enabled=False
    )
    comparing, release = threading.Event(), threading.Event()
    distinct = pipeline_module.check_folders_distinct

    def held(configs: Any) -> None:
        if configs:  # not the start's check of the (no) cameras in the file
            comparing.set()
            assert release.wait(30)
        distinct(configs)

    monkeypatch.setattr(pipeline_module, "check_folders_distinct", held)

    async def run() -> None:
        pipeline = Pipeline(settings, SlowDetector(), None, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        adding = asyncio.create_task(pipeline.add_camera(folder_camera("garden", media / "garden")))
        assert await asyncio.to_thread(comparing.wait, 10)
        stopping = asyncio.create_task(pipeline.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done(), "stop did not wait for the edit"
        release.set()
        await adding
        await stopping
        assert watcher_threads() == [], "the camera the edit made was not stopped"
        with pytest.raises(PipelineClosedError):
            await pipeline.add_camera(folder_camera("porch", media / "garden"))

    asyncio.run(run())


def test_a_stored_camera_that_did_not_start_can_be_deleted(tmp_path: Path) -> None:
    """SOURCE_ROOTS no longer holds its folder: refused at start, kept in the store;
    a DELETE removes it there (a second answers 404)."""

    async def create(pipeline: Pipeline, media: Path) -> None:
        (media / "garden").mkdir()
        (media / "garden" / "a.jpg").write_bytes(moving_frame(0))
        await pipeline.add_camera(folder_camera("garden", media / "garden"))
        ledger = tmp_path / "data" / "spool" / "garden" / LEDGER_NAME
        for _ in range(100):  # the file is taken: the camera has a ledger
            if ledger.exists():
                break
            await asyncio.sleep(0.05)
        assert ledger.exists()

    with_pipeline(tmp_path, create)

    async def delete(pipeline: Pipeline, media: Path) -> None:
        assert pipeline.list_cameras() == []
        await pipeline.remove_camera("garden")
        assert await asyncio.to_thread(pipeline.store.get_camera, "garden") is None
        assert not list((tmp_path / "data" / "spool" / "garden").iterdir()), "its ledger left"
        with pytest.raises(UnknownCameraError):
            await pipeline.remove_camera("garden")

    with_pipeline(tmp_path, delete, media_name="narrowed")
