"""A camera's upload folder (FTP, SMB) watched by polling, on one thread of its own: each image
file, once settled, is read and handed to the consumer, then moved under ``done/`` (or deleted)
when accepted, or moved under ``failed/`` when corrupt or refused.

What is taken: regular files directly in the folder named ``*.jpg``, ``*.jpeg`` or ``*.png``
(any case), not dotfiles, so not the partial uploads FTP and SMB clients write under other
names (``*.tmp``, ``*.part``, ``.pureftpd-upload.*``), and nothing in subdirectories (so not
``done/`` and ``failed/``). A file is settled once its size and modification time have stayed
the same for ``settle_s``. Settled files are handed on in order of modification time, then name;
a busy consumer stops the round, and the rest wait for the next poll, in the same order.

Refused before reading, and moved under ``failed/``: files over ``max_file_bytes``, links that
lead out of the folder (they are never followed) and anything not a regular file.

Threads: ``start``, ``stop`` and ``status`` may be called from any thread; ``on_file`` runs on
the watcher thread. Polling works on any file system, local or mounted, without inotify.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from hearthwatch.security.sources.config import FolderSourceConfig
from hearthwatch.security.sources.confinement import ConfinementError, check_path
from hearthwatch.security.sources.status import FolderStatus, SourceState
from hearthwatch.security.sources.threaded import ThreadedSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DONE_DIR = "done"
FAILED_DIR = "failed"
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_NAME_COLLISIONS = 10_000
"""How many numbered names (``front-1.jpg``, ``front-2.jpg``, ...) are tried when the name is
taken under ``done/`` or ``failed/``, before the time is used to make one."""


class FileVerdict(Enum):
    """What the consumer made of a file."""

    ACCEPTED = "accepted"
    """Taken: the file goes under ``done/`` or is deleted, as the source says."""
    CORRUPT = "corrupt"
    """Not an image it can use: the file goes under ``failed/``."""
    BUSY = "busy"
    """No room now: the file stays, and is handed on again at a later poll."""


FileCallback = Callable[[Path, bytes, float], FileVerdict | tuple[FileVerdict, str]]
"""``on_file(path, data, mtime)``: the file's path in the folder, its bytes and its
modification time (epoch seconds); the verdict, with why for ``CORRUPT`` if it says."""


@dataclass(frozen=True)
class _Seen:
    """A file's size and modification time as the last poll saw them, and since when
    (monotonic) they have been so."""

    key: tuple[int, int]
    since: float


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class _RefusedError(Exception):
    """A file refused before reading; the message says why."""


class FolderWatcher(ThreadedSource):
    """Watches one camera's upload folder; see the module docstring."""

    _noun = "watcher"
    _thread_prefix = "folder"
    _log = log

    def __init__(
        self,
        camera_id: str,
        config: FolderSourceConfig,
        *,
        on_file: FileCallback,
        poll_s: float = 0.5,
        max_file_bytes: int = MAX_FILE_BYTES,
    ):
        """Raises ``ValueError`` for a poll interval or size limit out of range."""
        if not (0.0 < poll_s < math.inf):
            raise ValueError(f"poll_s must be a positive number of seconds, not {poll_s}")
        if max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be positive, not {max_file_bytes}")
        super().__init__(camera_id)
        self._folder = config.path
        self._config = config
        self._on_file = on_file
        self._poll_s = poll_s
        self._max_file_bytes = max_file_bytes
        # confined to the watcher thread:
        self._seen: dict[str, _Seen] = {}
        self._stuck: dict[str, tuple[int, int]] = {}
        """Files handled (or failing) that could not be moved away, by name: (size, mtime_ns).
        Not handed on again, nor logged again, until they change."""
        # guarded by _lock (as are the state and the last error):
        self._files_taken = 0
        self._files_corrupt = 0
        self._files_refused = 0
        self._busy_retries = 0
        self._last_file_at: float | None = None

    def _still_running(self) -> str:
        # stop() waits for a call of on_file in progress too
        return "on_file has not returned; the watcher ends after it"

    def status(self) -> FolderStatus:
        with self._lock:
            return FolderStatus(
                state=self._state,
                files_taken=self._files_taken,
                files_corrupt=self._files_corrupt,
                files_refused=self._files_refused,
                busy_retries=self._busy_retries,
                last_file_at=self._last_file_at,
                last_error=self._last_error,
            )

    # the watcher thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as exc:  # the folder went away under a round: watch on
                log.exception("camera %s: a round of the folder failed", self.camera_id)
                self._seen.clear()
                with self._lock:
                    self._last_error = f"a round of the folder failed ({exc})"
                self._set_state(SourceState.RECONNECTING)
            if self._stop.wait(self._poll_s):
                break

    def _poll(self) -> None:
        try:
            with os.scandir(self._folder) as listing:
                entries = [
                    entry
                    for entry in listing
                    if not entry.name.startswith(".")
                    and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                ]
        except OSError as exc:
            self._seen.clear()
            self._record_folder_error(exc)
            return
        self._set_state(SourceState.STREAMING)
        now = time.monotonic()
        settled: list[tuple[int, str, os.stat_result]] = []
        seen: dict[str, _Seen] = {}
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since the listing
            key = (info.st_size, info.st_mtime_ns)
            before = self._seen.get(entry.name)
            seen[entry.name] = (
                before if before is not None and before.key == key else _Seen(key, now)
            )
            if self._stuck.get(entry.name) != key and now - seen[entry.name].since >= (
                self._config.settle_s
            ):
                settled.append((info.st_mtime_ns, entry.name, info))
        self._seen = seen
        self._stuck = {name: key for name, key in self._stuck.items() if name in seen}
        for _, name, info in sorted(settled, key=lambda item: (item[0], item[1])):
            if self._stop.is_set() or not self._hand_on(name, info):
                break

    def _hand_on(self, name: str, info: os.stat_result) -> bool:
        """Read the file and give it to the consumer; False if the consumer is busy."""
        path = self._folder / name
        try:
            data = self._read(path, info)
        except _RefusedError as exc:
            self._dispose(name, info, FAILED_DIR, f"'{name}' was refused: {exc}")
            with self._lock:  # each count comes once its file is out of the way
                self._files_refused += 1
            return True
        except FileNotFoundError:
            return True  # taken away meanwhile
        except OSError as exc:
            self._leave_stuck(name, info, f"cannot be read ({exc.strerror})")
            return True
        if data is None:
            self._seen.pop(name, None)  # it changed while read: let it settle again
            return True
        try:
            answer = self._on_file(path, data, info.st_mtime)
        except Exception:
            log.exception(
                "camera %s: on_file failed on %r; it counts as corrupt", self.camera_id, name
            )
            answer = FileVerdict.CORRUPT
        verdict, why = answer if isinstance(answer, tuple) else (answer, None)
        if verdict is FileVerdict.BUSY:
            with self._lock:
                self._busy_retries += 1
            return False
        if verdict is FileVerdict.ACCEPTED:
            if self._config.after == "delete":
                self._delete(name, info)
            else:
                self._dispose(name, info, DONE_DIR, None)
            with self._lock:  # counted once it is out of the way: the name is free again
                self._files_taken += 1
                self._last_file_at = time.time()
            return True
        self._dispose(name, info, FAILED_DIR, f"'{name}' is corrupt" + (f" ({why})" if why else ""))
        with self._lock:
            self._files_corrupt += 1
        return True

    def _read(self, path: Path, info: os.stat_result) -> bytes | None:
        """The file's bytes; None if it changed while read. Raises :class:`_RefusedError` for
        a file refused unread, ``OSError`` for one that cannot be read."""
        target = path
        if stat.S_ISLNK(info.st_mode):
            try:
                target = check_path(path, [self._folder])
            except ConfinementError:
                raise _RefusedError("it is a link not to be followed in the folder") from None
            info = os.stat(target, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise _RefusedError("it is not a regular file")
        if info.st_size > self._max_file_bytes:
            raise _RefusedError(f"it is larger than {self._max_file_bytes} bytes")
        # not blocking: a FIFO swapped in since the check must not hang the thread
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise _RefusedError("it is not a regular file")
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                return None  # another file was put under the name since it was listed
            data = file.read(self._max_file_bytes + 1)
        if len(data) > self._max_file_bytes:
            raise _RefusedError(f"it is larger than {self._max_file_bytes} bytes")
        return data if len(data) == info.st_size else None

    def _replaced(self, name: str, info: os.stat_result) -> bool:
        """Whether the name holds another file than the one handled (a camera that uploads
        ``snapshot.jpg`` again by renaming over it): that one is left to settle and be taken
        in turn. Checked just before the move; a replacement in the microseconds between the
        check and the move is not caught."""
        try:
            now = os.lstat(self._folder / name)
        except FileNotFoundError:
            return False
        except OSError as exc:  # the mount failing: try again once it changes
            self._leave_stuck(name, info, f"cannot be checked before the move ({exc.strerror})")
            return True
        if _identity(now) == _identity(info):
            return False
        self._seen.pop(name, None)
        log.info("camera %s: '%s' was replaced while it was handled", self.camera_id, name)
        return True

    def _dispose(self, name: str, info: os.stat_result, subdir: str, why: str | None) -> None:
        """Move the file under ``subdir``, logging ``why`` (a failure) if given."""
        if self._replaced(name, info):
            return
        try:
            destination = self._free_name(subdir, name)
            os.rename(self._folder / name, destination)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._leave_stuck(name, info, f"cannot be moved to {subdir}/ ({exc.strerror})")
            return
        self._seen.pop(name, None)
        if why is not None:
            message = f"{why}; moved to {subdir}/{destination.name}"
            with self._lock:
                self._last_error = message
            log.warning("camera %s: %s", self.camera_id, message)

    def _delete(self, name: str, info: os.stat_result) -> None:
        if self._replaced(name, info):
            return
        try:
            os.unlink(self._folder / name)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._leave_stuck(name, info, f"cannot be deleted ({exc.strerror})")
            return
        self._seen.pop(name, None)

    def _free_name(self, subdir: str, name: str) -> Path:
        """A path under ``subdir`` (made if missing; never through a link) not yet taken."""
        directory = self._folder / subdir
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(directory).st_mode):
                raise NotADirectoryError(0, "it is not a directory") from None
        stem, suffix = os.path.splitext(name)
        for n in range(MAX_NAME_COLLISIONS):
            candidate = directory / (name if n == 0 else f"{stem}-{n}{suffix}")
            if not os.path.lexists(candidate):
                return candidate
        return directory / f"{stem}-{time.time_ns()}{suffix}"

    def _leave_stuck(self, name: str, info: os.stat_result, what: str) -> None:
        """The file could not be read or moved away: say ``what``, and leave it alone until it
        changes."""
        message = f"'{name}' {what}"
        with self._lock:
            self._last_error = message
        log.warning("camera %s: %s", self.camera_id, message)
        self._stuck[name] = (info.st_size, info.st_mtime_ns)

    def _record_folder_error(self, exc: OSError) -> None:
        message = f"the folder {str(self._folder)!r} cannot be listed ({exc.strerror})"
        with self._lock:
            changed = self._last_error != message
            self._last_error = message
        if changed:
            log.warning("camera %s: %s", self.camera_id, message)
        self._set_state(SourceState.RECONNECTING)

    def _set_state(self, state: SourceState) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._state = state
