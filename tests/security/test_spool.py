"""The spool: what is being written is never taken for a leftover, leftovers of a killed
process are removed at start-up only, a frame that failed for good is kept aside, and a write
that fails leaves nothing."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from hearthwatch.security.spool import Spool


def test_listing_the_spool_never_removes_a_frame_being_written(tmp_path: Path) -> None:
    """Listing happens while cameras are added or replaced, as frames are being spooled: a
    partial file then is a frame on its way, and must survive to be renamed."""
    spool = Spool(tmp_path)
    spool.put("porch", 1, 1000.0, "push", b"\xff\xd8\xff done", "jpg")
    writing = spool.root / "porch" / ".000000000002-1001000000.push.jpg.partial"
    writing.write_bytes(b"\xff\xd8\xff half")
    assert [f.seq for f in spool.pending()["porch"]] == [1]
    assert spool.last_seq("porch") == 1
    assert writing.exists()
    assert spool.remove_partials() == 1  # at start-up, nothing is being written
    assert not writing.exists()


def test_spooling_and_listing_at_once_lose_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    errors: list[BaseException] = []

    def put_many() -> None:
        try:
            for seq in range(1, 201):
                spool.put("yard", seq, 1000.0 + seq, "push", b"x" * 2048, "jpg")
        except BaseException as exc:  # a listing that removed a file being written
            errors.append(exc)

    writer = threading.Thread(target=put_many)
    writer.start()
    while writer.is_alive():
        spool.pending()
    writer.join()
    assert not errors
    assert [f.seq for f in spool.pending_of("yard")] == list(range(1, 201))


def test_numbering_never_goes_back_after_frames_are_discarded(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    frames = [spool.put("gate", seq, 1000.0, "push", b"x", "jpg") for seq in (1, 2, 3)]
    for frame in frames:
        spool.discard(frame)
    assert spool.pending_of("gate") == []
    assert Spool(tmp_path).last_seq("gate") == 3  # a restart continues after 3


def test_a_frame_that_failed_for_good_is_kept_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    frame = spool.put("gate", 7, 1000.0, "folder", b"\x89PNG broken", "png")
    kept = spool.quarantine(frame)
    assert kept == tmp_path / "failed" / "gate" / frame.path.name
    assert kept.read_bytes() == b"\x89PNG broken"
    assert spool.pending_of("gate") == []


@pytest.mark.parametrize("failing", ["the file's sync", "the folder's sync"])
def test_a_write_that_fails_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A full or failing disk: neither a partial file nor a frame not known to be durable is
    left, so the number can be written again."""
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == (1 if failing == "the file's sync" else 2):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = Spool(tmp_path)
    with pytest.raises(OSError):
        spool.put("porch", 1, 0.0, "push", b"\xff\xd8 a frame", "jpg")
    assert list((tmp_path / "spool" / "porch").iterdir()) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert spool.put("porch", 1, 0.0, "push", b"\xff\xd8", "jpg").path.is_file()
