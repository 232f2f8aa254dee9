"""FolderWatcher on real directories: what it takes and in which order, settling, verdicts,
refusals, name collisions, a folder that comes and goes, and prompt stops."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearthwatch.security.sources import folder as folder_module
from hearthwatch.security.sources.config import FolderSourceConfig
from hearthwatch.security.sources.folder import FileVerdict, FolderWatcher
from hearthwatch.security.sources.status import SourceState

POLL_S = 0.05


class Consumer:
    """An ``on_file`` that records each call and answers from a script (then ACCEPTED)."""

    def __init__(self, *answers: FileVerdict | Exception):
        self.lock = threading.Lock()
        self.answers = list(answers)
        self.calls: list[tuple[str, bytes, float, float]] = []  # name, data, mtime, when

    def __call__(self, path: Path, data: bytes, mtime: float) -> FileVerdict:
        with self.lock:
            self.calls.append((path.name, data, mtime, time.monotonic()))
            answer = self.answers.pop(0) if self.answers else FileVerdict.ACCEPTED
        if isinstance(answer, Exception):
            raise answer
        return answer

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, *_ in self.calls]


@pytest.fixture
def watch() -> Iterator[Callable[..., FolderWatcher]]:
    watchers: list[FolderWatcher] = []

    def make(folder: Path, on_file: Consumer, **kw: object) -> FolderWatcher:
        settings = {key: kw.pop(key) for key in ("after", "settle_s") if key in kw}
        config = FolderSourceConfig(path=folder, **{"settle_s": 0.0, **settings})  # type: ignore[arg-type]
        poll_s = kw.pop("poll_s", POLL_S)
        camera = f"cam-{threading.get_ident()}-{len(watchers)}"  # names its thread uniquely
        watcher = FolderWatcher(camera, config, on_file=on_file, poll_s=poll_s, **kw)  # type: ignore[arg-type]
        watchers.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in watchers:
        watcher.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def put(
    folder: Path, name: str, data: bytes = b"\xff\xd8 image", mtime: float | None = None
) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_images_are_taken_in_order_of_mtime_then_name_and_nothing_else(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    t = time.time() - 100
    put(tmp_path, "b.jpg", b"b", t)
    put(tmp_path, "a.jpg", b"a", t)
    put(tmp_path, "c.PNG", b"c", t - 10)
    put(tmp_path, "d.JPEG", b"d", t + 5)
    ignored = [".hidden.jpg", "e.jpg.part", "f.tmp", "notes.txt", "sub/g.jpg", "done/old.jpg"]
    for name in ignored:
        put(tmp_path, name, b"x", t - 50)
    consumer = Consumer()
    watcher = watch(tmp_path, consumer)
    wait_for(lambda: watcher.status().files_taken == 4, "four files")
    time.sleep(3 * POLL_S)

    assert consumer.names() == ["c.PNG", "a.jpg", "b.jpg", "d.JPEG"]
    assert [(data, mtime) for _, data, mtime, _ in consumer.calls] == [
        (b"c", t - 10),
        (b"a", t),
        (b"b", t),
        (b"d", t + 5),
    ]
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [
        "a.jpg", "b.jpg", "c.PNG", "d.JPEG", "old.jpg"
    ]  # fmt: skip
    assert all((tmp_path / name).exists() for name in ignored)
    status = watcher.status()
    assert status.state is SourceState.STREAMING
    assert status.last_file_at is not None and abs(status.last_file_at - time.time()) < 5
    assert (status.files_corrupt, status.files_refused, status.busy_retries) == (0, 0, 0)


def test_a_file_is_taken_only_once_it_has_settled(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    consumer = Consumer()
    watch(tmp_path, consumer, settle_s=0.3)
    path = put(tmp_path, "upload.jpg", b"part 0;")
    for n in range(1, 6):  # an upload still being written, for half a second
        time.sleep(0.1)
        with path.open("ab") as file:
            file.write(f"part {n};".encode())
    last_write = time.monotonic()
    wait_for(lambda: consumer.calls != [], "the file")

    [(name, data, _, when)] = consumer.calls
    assert data == b"".join(f"part {n};".encode() for n in range(6))
    assert when - last_write >= 0.3 - 0.01


def test_corrupt_files_go_to_failed_once_and_a_busy_consumer_is_asked_again(
    tmp_path: Path, watch: Callable[..., FolderWatcher], caplog: pytest.LogCaptureFixture
) -> None:
    t = time.time() - 100
    put(tmp_path, "1-broken.jpg", b"not an image", t)
    put(tmp_path, "2-later.jpg", b"fine", t + 1)
    consumer = Consumer(FileVerdict.CORRUPT, FileVerdict.BUSY, FileVerdict.BUSY)
    with caplog.at_level(logging.WARNING):
        watcher = watch(tmp_path, consumer)
        wait_for(lambda: watcher.status().files_taken == 1, "the later file")
        time.sleep(3 * POLL_S)

    assert consumer.names() == ["1-broken.jpg", "2-later.jpg", "2-later.jpg", "2-later.jpg"]
    assert (tmp_path / "failed" / "1-broken.jpg").read_bytes() == b"not an image"
    assert (tmp_path / "done" / "2-later.jpg").exists()
    status = watcher.status()
    assert (status.files_taken, status.files_corrupt, status.busy_retries) == (1, 1, 2)
    assert status.last_error == "'1-broken.jpg' is corrupt; moved to failed/1-broken.jpg"
    assert sum("1-broken.jpg" in r.getMessage() for r in caplog.records) == 1


def test_a_busy_consumer_holds_back_later_files(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    t = time.time() - 100
    put(tmp_path, "first.jpg", b"1", t)
    put(tmp_path, "second.jpg", b"2", t + 1)
    consumer = Consumer(*[FileVerdict.BUSY] * 3)
    watcher = watch(tmp_path, consumer)
    wait_for(lambda: watcher.status().files_taken == 2, "both files")
    assert consumer.names() == ["first.jpg"] * 4 + ["second.jpg"]


def test_name_collisions_in_done_get_numbered_names(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    put(tmp_path, "done/front.jpg", b"old")
    put(tmp_path, "done/front-1.jpg", b"older")
    consumer = Consumer()
    watcher = watch(tmp_path, consumer)
    for n, content in enumerate([b"new", b"newer"], start=1):
        put(tmp_path, "front.jpg", content)
        wait_for(lambda n=n: watcher.status().files_taken == n, "the upload")  # type: ignore[misc]
    done = tmp_path / "done"
    assert (done / "front.jpg").read_bytes() == b"old"
    assert (done / "front-1.jpg").read_bytes() == b"older"
    assert (done / "front-2.jpg").read_bytes() == b"new"
    assert (done / "front-3.jpg").read_bytes() == b"newer"


class Replacing(Consumer):
    """Accepts each file, and while handling the first, the camera uploads a new picture under
    the same name (written beside it, renamed over it), of the same size and modification
    time: only the file itself (its inode) tells them apart."""

    def __call__(self, path: Path, data: bytes, mtime: float) -> FileVerdict:
        if not self.calls:
            staged = path.with_name(".upload.tmp")
            staged.write_bytes(b"NEW-PICTURE")
            old = os.stat(path).st_mtime_ns
            os.utime(staged, ns=(old, old))
            os.replace(staged, path)
        return super().__call__(path, data, mtime)


@pytest.mark.parametrize("after", ["move", "delete"])
def test_a_file_replaced_while_it_is_handled_is_taken_in_turn_not_moved_unseen(
    tmp_path: Path, watch: Callable[..., FolderWatcher], after: str
) -> None:
    put(tmp_path, "snap.jpg", b"OLD-PICTURE")
    consumer = Replacing()
    watcher = watch(tmp_path, consumer, after=after)
    wait_for(lambda: watcher.status().files_taken == 2, "both pictures")
    assert [data for _, data, *_ in consumer.calls] == [b"OLD-PICTURE", b"NEW-PICTURE"]
    assert not (tmp_path / "snap.jpg").exists()
    if after == "move":
        assert (tmp_path / "done" / "snap.jpg").read_bytes() == b"NEW-PICTURE"
        assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["snap.jpg"]


def test_accepted_files_are_deleted_when_configured(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    put(tmp_path, "snap.jpg")
    watcher = watch(tmp_path, Consumer(), after="delete")
    wait_for(lambda: watcher.status().files_taken == 1, "the file")
    wait_for(lambda: not (tmp_path / "snap.jpg").exists(), "the deletion")
    assert not (tmp_path / "done").exists()


def test_files_over_the_size_limit_are_refused_unread(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    put(tmp_path, "huge.jpg", b"x" * 2000)
    put(tmp_path, "small.jpg", b"x" * 1000)
    consumer = Consumer()
    watcher = watch(tmp_path, consumer, max_file_bytes=1000)
    wait_for(lambda: watcher.status().files_refused == 1, "the refusal")
    wait_for(lambda: watcher.status().files_taken == 1, "the small file")
    assert consumer.names() == ["small.jpg"]
    assert (tmp_path / "failed" / "huge.jpg").stat().st_size == 2000
    assert watcher.status().last_error == (
        "'huge.jpg' was refused: it is larger than 1000 bytes; moved to failed/huge.jpg"
    )


def test_links_out_of_the_folder_are_refused_and_links_within_it_followed(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    folder = tmp_path / "uploads"
    secret = put(tmp_path, "secret.jpg", b"outside")
    inner = put(folder, "sub/real.jpg", b"inside")
    (folder / "escape.jpg").symlink_to(secret)
    (folder / "alias.jpg").symlink_to(inner)
    consumer = Consumer()
    watcher = watch(folder, consumer)
    wait_for(lambda: watcher.status().files_refused == 1, "the refusal")
    wait_for(lambda: watcher.status().files_taken == 1, "the link within")

    assert [(name, data) for name, data, *_ in consumer.calls] == [("alias.jpg", b"inside")]
    assert (folder / "failed" / "escape.jpg").is_symlink()  # the link moved, not its target
    assert secret.read_bytes() == b"outside" and inner.read_bytes() == b"inside"
    assert (folder / "done" / "alias.jpg").is_symlink()


def test_what_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    put(tmp_path, "after.jpg", mtime=time.time() + 10)
    consumer = Consumer()
    watcher = watch(tmp_path, consumer)
    wait_for(lambda: watcher.status().files_taken == 1, "the file after the pipe")
    assert watcher.status().files_refused == 1
    assert consumer.names() == ["after.jpg"]


def test_an_on_file_that_raises_counts_the_file_corrupt(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    put(tmp_path, "bad.jpg")
    watcher = watch(tmp_path, Consumer(RuntimeError("the consumer broke")))
    wait_for(lambda: watcher.status().files_corrupt == 1, "the failure")
    assert (tmp_path / "failed" / "bad.jpg").exists()
    put(tmp_path, "good.jpg")
    wait_for(lambda: watcher.status().files_taken == 1, "the next file")  # it goes on


def test_a_mount_failing_while_a_file_is_handled_leaves_it_and_the_watcher_goes_on(
    tmp_path: Path, watch: Callable[..., FolderWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before the move meets an I/O error (an SMB or NFS mount dropping): the file is
    left where it is, said why, and the watcher takes the next file."""
    real_lstat, failed = os.lstat, []

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).endswith("flaky.jpg") and not failed:
            failed.append(path)
            raise OSError(errno.EIO, "Input/output error")
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(folder_module.os, "lstat", lstat)
    put(tmp_path, "flaky.jpg")
    watcher = watch(tmp_path, Consumer())
    wait_for(lambda: bool(failed), "the failing check")
    put(tmp_path, "next.jpg")
    wait_for(lambda: watcher.status().files_taken == 2, "the next file")
    assert (tmp_path / "flaky.jpg").exists(), "moved though it could not be checked"
    assert (tmp_path / "done" / "next.jpg").exists()


def test_a_round_that_fails_is_reported_and_the_watcher_goes_on(
    tmp_path: Path, watch: Callable[..., FolderWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = []
    real_poll = FolderWatcher._poll

    def poll(self: FolderWatcher) -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("a round broke")
        real_poll(self)

    monkeypatch.setattr(FolderWatcher, "_poll", poll)
    put(tmp_path, "snap.jpg")
    watcher = watch(tmp_path, Consumer())
    wait_for(lambda: watcher.status().files_taken == 1, "the file, after the failed round")
    assert len(rounds) >= 2


def test_a_missing_folder_is_reported_and_watched_for(
    tmp_path: Path, watch: Callable[..., FolderWatcher]
) -> None:
    folder = tmp_path / "not-yet"
    consumer = Consumer()
    watcher = watch(folder, consumer)
    wait_for(lambda: watcher.status().state is SourceState.RECONNECTING, "the failure")
    assert watcher.status().last_error == (
        f"the folder {str(folder)!r} cannot be listed (No such file or directory)"
    )
    put(folder, "late.jpg")
    wait_for(lambda: watcher.status().files_taken == 1, "the file")
    assert watcher.status().state is SourceState.STREAMING


def test_stop_is_prompt_and_final(tmp_path: Path, watch: Callable[..., FolderWatcher]) -> None:
    consumer = Consumer()
    watcher = watch(tmp_path, consumer, poll_s=5.0)
    wait_for(lambda: watcher.status().state is SourceState.STREAMING, "the first poll")
    thread_name = f"folder-{watcher.camera_id}"
    assert thread_name in {t.name for t in threading.enumerate()}
    began = time.monotonic()
    watcher.stop()
    assert time.monotonic() - began < 0.5
    assert thread_name not in {t.name for t in threading.enumerate()}
    assert watcher.status().state is SourceState.STOPPED
    put(tmp_path, "after-stop.jpg")
    time.sleep(3 * POLL_S)
    assert consumer.calls == [] and (tmp_path / "after-stop.jpg").exists()


def test_settings_out_of_range_are_refused(tmp_path: Path) -> None:
    config = FolderSourceConfig(path=tmp_path)
    with pytest.raises(ValueError, match="poll_s"):
        FolderWatcher("cam", config, on_file=Consumer(), poll_s=0.0)
    with pytest.raises(ValueError, match="max_file_bytes"):
        FolderWatcher("cam", config, on_file=Consumer(), max_file_bytes=0)
