"""Frames admitted for detection, kept on disk until their detections are stored: the
durability of the camera pipeline.

A frame is spooled under ``<data_dir>/spool/<camera_id>/<seq>-<captured_at_us>.<origin>.<ext>``:
written to a temporary name, flushed and fsynced, renamed, and the directory fsynced, so once
:meth:`Spool.put` returns the frame survives a killed process (and a power cut, where the
filesystem honours fsync). After its detections are stored, a frame is either moved into the
frames store (kept for snapshots and clips, :meth:`Spool.keep`) or deleted
(:meth:`Spool.discard`, which leaves an empty tombstone of the newest sequence number so
numbering never goes back); one whose processing failed for good is moved aside
(:meth:`Spool.quarantine`). :meth:`Spool.pending` lists what a restart must process again, per
camera in sequence order; the store's unique (camera, seq) key makes processing it twice
harmless. Listing never deletes: the partial writes a killed process left are removed by
:meth:`Spool.remove_partials`, once, before anything is spooled.

Thread-safe: every call touches only its own files; sequence numbers come from the caller.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Origin = Literal["stream", "push", "folder"]
ORIGINS: tuple[Origin, ...] = ("stream", "push", "folder")
_NAME = re.compile(
    r"^(?P<seq>\d{12})-(?P<us>\d{1,20})\.(?P<origin>stream|push|folder)\.(?P<ext>jpg|png)$"
)


_TOMBSTONE = ".discarded"


@dataclass(frozen=True)
class SpooledFrame:
    camera_id: str
    seq: int
    captured_at: float
    origin: Origin
    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all or nothing, on disk when this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    try:
        _fsync_dir(path.parent)
    except BaseException:  # not known durable: not there, so its name can be written again
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


class Spool:
    def __init__(self, data_dir: Path):
        self.root = data_dir / "spool"
        self.frames_root = data_dir / "frames"
        self.data_dir = data_dir

    def put(
        self, camera_id: str, seq: int, captured_at: float, origin: Origin, data: bytes, ext: str
    ) -> SpooledFrame:
        micros = max(0, round(captured_at * 1_000_000))
        name = f"{seq:012d}-{micros}.{origin}.{ext}"
        path = self.root / camera_id / name
        write_durably(path, data)
        return SpooledFrame(camera_id, seq, micros / 1_000_000, origin, path)

    def remove_partials(self) -> int:
        """Delete the partial writes a killed process left; only before any frame is spooled
        (at start-up): while frames are spooled, a partial file is one being written."""
        removed = 0
        for path in self.root.glob("*/.*.partial"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def pending(self) -> dict[str, list[SpooledFrame]]:
        """Per camera, the spooled frames in sequence order. Read-only."""
        if not self.root.is_dir():
            return {}
        found = {p.name: self.pending_of(p.name) for p in self.root.iterdir() if p.is_dir()}
        return {camera: frames for camera, frames in sorted(found.items()) if frames}

    def pending_of(self, camera_id: str) -> list[SpooledFrame]:
        """The camera's spooled frames in sequence order. Read-only."""
        camera_dir = self.root / camera_id
        if not camera_dir.is_dir():
            return []
        frames = []
        for path in camera_dir.iterdir():
            match = _NAME.match(path.name)
            if match is None:
                continue
            frames.append(
                SpooledFrame(
                    camera_id,
                    int(match["seq"]),
                    int(match["us"]) / 1_000_000,
                    match["origin"],  # type: ignore[arg-type]  # the pattern allows ORIGINS only
                    path,
                )
            )
        return sorted(frames, key=lambda f: f.seq)

    def quarantine(self, frame: SpooledFrame) -> Path:
        """Move a frame whose processing failed for good out of the spool, to
        ``<data_dir>/failed/<camera_id>/``, where it is kept for inspection (never deleted)."""
        target = self.data_dir / "failed" / frame.camera_id / frame.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(frame.path, target)
        return target

    def last_seq(self, camera_id: str) -> int:
        """The highest sequence number spooled for the camera, pending, discarded (see
        :meth:`discard`) or quarantined: numbering never goes back, across restarts too."""
        frames = self.pending_of(camera_id)
        pending = frames[-1].seq if frames else 0
        failed = self.data_dir / "failed" / camera_id
        quarantined = [
            int(match["seq"])
            for match in map(_NAME.match, os.listdir(failed) if failed.is_dir() else [])
            if match is not None
        ]
        return max(pending, *quarantined, *(seq for seq, _ in self._tombstones(camera_id)), 0)

    def _tombstones(self, camera_id: str) -> list[tuple[int, Path]]:
        found = []
        for path in self.root.glob(f".{camera_id}.*{_TOMBSTONE}"):
            seq = path.name[len(camera_id) + 2 :].removesuffix(_TOMBSTONE)
            if seq.isdigit():
                found.append((int(seq), path))
        return found

    def stored_path(self, frame: SpooledFrame) -> str:
        """Where :meth:`keep` puts ``frame``, relative to the data directory."""
        ext = frame.path.suffix
        return f"frames/{frame.camera_id}/{frame.seq:012d}{ext}"

    def keep(self, frame: SpooledFrame) -> None:
        """Move ``frame`` to :meth:`stored_path` (done again harmlessly after a restart)."""
        target = self.data_dir / self.stored_path(frame)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(frame.path, target)

    def forget_camera(self, camera_id: str) -> None:
        """A deleted camera's spool: its frames discarded (their numbers kept, see
        :meth:`discard`), and what else its folder holds (a folder camera's ledger) removed."""
        for frame in self.pending_of(camera_id):
            self.discard(frame)
        camera_dir = self.root / camera_id
        if camera_dir.is_dir():
            for path in camera_dir.iterdir():
                if path.is_file() or path.is_symlink():
                    path.unlink(missing_ok=True)

    def discard(self, frame: SpooledFrame) -> None:
        """Delete ``frame``: moved out of the camera's folder to an emptied tombstone of its
        sequence number, ``spool/.<camera>.<seq>.discarded``, of which only the newest is kept
        (frames skipped by the gate are recorded nowhere else)."""
        tombstone = self.root / f".{frame.camera_id}.{frame.seq:012d}{_TOMBSTONE}"
        try:
            os.replace(frame.path, tombstone)
        except FileNotFoundError:
            return
        os.truncate(tombstone, 0)
        tombstones = self._tombstones(frame.camera_id)
        newest = max(seq for seq, _ in tombstones)
        for seq, older in tombstones:
            if seq < newest:
                older.unlink(missing_ok=True)
