"""A folder camera's file is detected once though the process dies between spooling it and
moving it out of the folder: a real folder watcher and camera runtime, the state a kill leaves
recreated on disk (the file spooled, still in the folder, because ``done`` could not be made:
a plain file stands there), then a new runtime on the same spool, as after a restart."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from hearthwatch.security.admission import DetectionAdmission
from hearthwatch.security.camera import CameraRuntime, LaneItem
from hearthwatch.security.cameras import CameraConfig
from hearthwatch.security.folder_ledger import LEDGER_NAME, FolderLedger
from hearthwatch.security.sources.folder import FileVerdict, FolderWatcher
from hearthwatch.security.spool import Spool

CAMERA = "garden"


def jpeg(shade: int) -> bytes:
    image = np.full((120, 160, 3), shade, np.uint8)
    image[40:80, 60:100] = 255 - shade
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


class Camera:
    """A camera runtime watching ``folder``, its lane's items collected."""

    def __init__(self, spool: Spool, folder: Path, loop: asyncio.AbstractEventLoop):
        config = CameraConfig.model_validate(
            {"id": CAMERA, "source": {"type": "folder", "path": str(folder), "settle_s": 0}}
        )
        self.queued: list[LaneItem] = []
        self.runtime = CameraRuntime(
            config,
            "file",
            spool=spool,
            admission=DetectionAdmission(8),
            loop=loop,
            enqueue=lambda _, item: self.queued.append(item),
            on_health=lambda *_: None,
            seq_start=spool.last_seq(CAMERA),
            window_s=60,
            idle_s=10,
            offline_after_s=60,
            tamper_after_s=60,
            pending_frames=4,
            max_pixels=10_000_000,
            track_score=0.5,
            source_roots=[folder.parent],
            stream_hosts=[],
        )

    def watcher(self) -> FolderWatcher:
        source = self.runtime.source
        assert isinstance(source, FolderWatcher)
        return source

    def last_error(self) -> str | None:
        return self.watcher().status().last_error

    def run_until(
        self, loop: asyncio.AbstractEventLoop, done: Callable[[], object], timeout_s: float = 10
    ) -> None:
        """Watch the folder until ``done()`` (or ``timeout_s``), then stop watching."""
        self.runtime.start_source()
        try:
            deadline = time.monotonic() + timeout_s
            while not done() and time.monotonic() < deadline:
                loop.run_until_complete(asyncio.sleep(0.05))  # runs the lane callbacks
        finally:
            self.runtime.stop_source()
        loop.run_until_complete(asyncio.sleep(0))


def stuck_folder(tmp_path: Path) -> tuple[Spool, Path]:
    """A spool, and a camera folder holding ``a.jpg`` where ``done`` is a plain file: a file
    taken from it stays in the folder, as after a kill between spooling and moving it."""
    spool, folder = Spool(tmp_path / "data"), tmp_path / "media" / "garden"
    folder.mkdir(parents=True)
    (folder / "done").write_text("not a directory")
    (folder / "a.jpg").write_bytes(jpeg(60))
    return spool, folder


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_file_spooled_before_a_kill_and_not_moved_is_not_taken_again(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    spool, folder = stuck_folder(tmp_path)
    first = Camera(spool, folder, loop)
    first.run_until(loop, first.last_error)
    assert "cannot be moved to done/" in (first.last_error() or "")
    assert [item.frame.seq for item in first.queued] == [1]
    assert [f.seq for f in spool.pending_of(CAMERA)] == [1]

    (folder / "done").unlink()
    (folder / "b.jpg").write_bytes(jpeg(120))
    second = Camera(spool, folder, loop)
    second.run_until(loop, lambda: not list(folder.glob("*.jpg")))
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["a.jpg", "b.jpg"]
    # a.jpg moved away, not spooled again; b.jpg, new, spooled after it
    assert [item.frame.seq for item in second.queued] == [2]
    assert [f.seq for f in spool.pending_of(CAMERA)] == [1, 2]
    assert second.runtime.counters.snapshot()["frames_in"] == 1


def test_a_file_whose_ledger_entry_was_written_but_never_spooled_is_taken(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """Killed between the ledger write and the spool write: the entry's sequence number is
    above every spooled one, so the file is taken, under that number."""
    spool, folder = Spool(tmp_path / "data"), tmp_path / "media" / "garden"
    folder.mkdir(parents=True)
    data = jpeg(60)
    (folder / "a.jpg").write_bytes(data)
    FolderLedger(spool.root / CAMERA / LEDGER_NAME, folder, 0).taking("a.jpg", data, 1)
    camera = Camera(spool, folder, loop)
    camera.run_until(loop, lambda: not (folder / "a.jpg").exists())
    assert [item.frame.seq for item in camera.queued] == [1]
    assert (folder / "done" / "a.jpg").read_bytes() == data


def test_a_file_changed_since_it_was_taken_is_taken_again(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The camera uploaded a new picture under the old name before the restart."""
    spool, folder = stuck_folder(tmp_path)
    first = Camera(spool, folder, loop)
    first.run_until(loop, lambda: first.queued)
    (folder / "done").unlink()
    (folder / "a.jpg").write_bytes(jpeg(200))
    second = Camera(spool, folder, loop)
    second.run_until(loop, lambda: not (folder / "a.jpg").exists())
    assert [item.frame.seq for item in second.queued] == [2]


def test_a_file_that_cannot_be_moved_is_not_taken_again_after_two_restarts(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    spool, folder = stuck_folder(tmp_path)
    first = Camera(spool, folder, loop)
    first.run_until(loop, lambda: first.queued)
    for _ in range(2):
        again = Camera(spool, folder, loop)
        again.run_until(loop, again.last_error)
        assert again.queued == [], "taken again"
        assert (folder / "a.jpg").exists()
    assert [f.seq for f in spool.pending_of(CAMERA)] == [1]


def test_the_ledger_of_another_folder_or_an_unreadable_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    data = jpeg(60)
    FolderLedger(path, tmp_path / "old", 0).taking("a.jpg", data, 1)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a.jpg").write_bytes(data)
    assert FolderLedger(path, tmp_path / "old", 1).taken("a.jpg", data)
    assert not FolderLedger(path, tmp_path / "new", 1).taken("a.jpg", data)
    path.write_text("{not json")
    assert not FolderLedger(path, tmp_path / "old", 1).taken("a.jpg", data)
    (tmp_path / "old" / "b.jpg").write_bytes(data)
    FolderLedger(path, tmp_path / "old", 1).taking("b.jpg", data, 2)  # and it is rewritten
    assert FolderLedger(path, tmp_path / "old", 2).taken("b.jpg", data)


def test_a_file_handed_on_again_after_a_touch_is_not_spooled_twice(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A sync tool sets the modification time while the file is handled: the watcher hands it
    on again (it changed), and the ledger knows its bytes were spooled."""
    spool, folder = stuck_folder(tmp_path)
    camera = Camera(spool, folder, loop)
    data = (folder / "a.jpg").read_bytes()
    camera.runtime.start_source()
    try:
        for _ in range(200):  # the watcher takes it (and cannot move it)
            if camera.queued:
                break
            loop.run_until_complete(asyncio.sleep(0.05))
        answer = camera.runtime.on_folder_file(folder / "a.jpg", data, 0.0)  # handed on again
    finally:
        camera.runtime.stop_source()
    loop.run_until_complete(asyncio.sleep(0))
    assert answer is FileVerdict.ACCEPTED
    assert [item.frame.seq for item in camera.queued] == [1]
    assert [f.seq for f in spool.pending_of(CAMERA)] == [1]
    assert camera.runtime.counters.snapshot()["frames_in"] == 1


def test_a_quarantined_frame_keeps_its_sequence_number_taken(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(CAMERA, 1, 0.0, "push", jpeg(10), "jpg")
    spool.quarantine(spool.put(CAMERA, 2, 0.1, "push", jpeg(20), "jpg"))
    assert spool.last_seq(CAMERA) == 2


def test_a_file_that_cannot_be_spooled_stays_and_is_taken_once_the_disk_lets_it(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A full or failing disk is not a corrupt file: the file stays in the folder, uncounted,
    takes no sequence number, leaves no partial write, and is taken at a later poll. The
    spool's write is made to fail (a directory stands where its temporary file goes); the
    ledger's succeeds."""
    spool, folder = Spool(tmp_path / "data"), tmp_path / "media" / "garden"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg(60))
    os.utime(folder / "a.jpg", (1_700_000_000.5, 1_700_000_000.5))
    blocker = spool.root / CAMERA / ".000000000001-1700000000500000.folder.jpg.partial"
    blocker.mkdir(parents=True)
    camera = Camera(spool, folder, loop)
    camera.run_until(loop, lambda: camera.watcher().status().busy_retries >= 2)
    assert (folder / "a.jpg").exists() and not (folder / "failed").exists()
    assert camera.queued == [] and camera.runtime.counters.snapshot()["frames_in"] == 0
    assert [p.name for p in (spool.root / CAMERA).iterdir() if p.name.endswith(".partial")] == [
        blocker.name
    ]
    blocker.rmdir()
    camera = Camera(spool, folder, loop)  # a runtime's source starts once: a restart
    camera.run_until(loop, lambda: not (folder / "a.jpg").exists())
    assert [item.frame.seq for item in camera.queued] == [1]
    assert camera.runtime.counters.snapshot()["frames_in"] == 1
    assert not [p for p in (spool.root / CAMERA).iterdir() if p.name.endswith(".partial")]


def test_a_stopped_camera_spools_nothing_more(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """Its watcher's thread may outlive the stop (a read that does not return): a file it hands
    on after the stop is left for the camera's successor."""
    spool, folder = Spool(tmp_path / "data"), tmp_path / "media" / "garden"
    folder.mkdir(parents=True)
    camera = Camera(spool, folder, loop)
    camera.runtime.start_source()
    camera.runtime.stop_source()
    (folder / "a.jpg").write_bytes(jpeg(60))  # after the stop: only this call hands it on
    data = (folder / "a.jpg").read_bytes()
    assert camera.runtime.on_folder_file(folder / "a.jpg", data, 0.0) is FileVerdict.BUSY
    assert spool.pending_of(CAMERA) == []
