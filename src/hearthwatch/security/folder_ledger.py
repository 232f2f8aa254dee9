"""Which of a folder camera's files were taken (spooled) but not yet moved out of its folder,
so that a file is never detected twice when the process dies between spooling it and moving
it under ``done/`` (or deleting it), nor when it cannot be moved at all.

Taking a file is three steps: :meth:`FolderLedger.taking` writes the file's identity (its name,
size and BLAKE2b digest) and the sequence number it is about to be spooled under to the
ledger, durably; then the frame is spooled; then the watcher moves the file away. After a
restart, the entries whose sequence number is at or below the camera's highest spooled or
recorded one (``seq_start``) are files that were spooled: :meth:`FolderLedger.taken` answers
True for such a file if it is still there unchanged, and the watcher moves it away without
taking it again (as it does for a file handed on again because it was touched while handled).
An entry above ``seq_start`` was never spooled (the process died between the two writes): its
file is taken anew. A write that fails is forgotten (:meth:`FolderLedger.forget`), so the file
is taken at a later poll.

The ledger is ``<spool>/<camera>/.folder-ledger.json``. It keeps the entries of files still in
the folder (those not moved yet, or that could not be moved) and the one being taken; the rest
are dropped at each write (loading it touches only the ledger, never the watched folder, which
may be a mount not there yet). A ledger of another folder (the camera's path changed) is
ignored. A byte-identical file uploaded again under the name of the last file taken, after that
one was moved and before the next is taken (a restart between or not), counts as taken: it is
the same picture.

Confined to the camera's folder-watcher thread (the runtime calls it under its admission lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from hearthwatch.security.spool import write_durably

log = logging.getLogger(__name__)

LEDGER_NAME = ".folder-ledger.json"


@dataclass(frozen=True)
class TakenFile:
    name: str
    size: int
    digest: str
    seq: int


def file_identity(name: str, data: bytes) -> tuple[str, int, str]:
    """A file's identity: its name, size and BLAKE2b digest (hex)."""
    return name, len(data), hashlib.blake2b(data, digest_size=16).hexdigest()


class FolderLedger:
    def __init__(self, path: Path, folder: Path, seq_start: int):
        """Load the ledger at ``path`` for ``folder``; ``seq_start`` is the camera's highest
        spooled or recorded sequence number."""
        self._path = path
        self._folder = folder
        self._taken = {entry.name: entry for entry in self._load() if entry.seq <= seq_start}

    def _load(self) -> list[TakenFile]:
        try:
            saved = json.loads(self._path.read_text())
            if saved["folder"] != str(self._folder):
                return []
            return [TakenFile(**entry) for entry in saved["taken"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "the folder ledger %s cannot be read (%s); it starts empty", self._path, exc
            )
            return []

    def taken(self, name: str, data: bytes) -> bool:
        """True when this file (name and bytes) was spooled already and is still listed: it
        was not moved away before a restart, or it is handed on again after a touch."""
        entry = self._taken.get(name)
        return entry is not None and (entry.name, entry.size, entry.digest) == file_identity(
            name, data
        )

    def forget(self, name: str) -> None:
        """The file recorded by :meth:`taking` was not spooled after all (the write failed):
        dropped, and from the ledger on disk if it can be written (else its number, above any
        spooled one until another frame is, still tells it was not spooled)."""
        if self._taken.pop(name, None) is not None:
            with contextlib.suppress(OSError):
                self._save()

    def _save(self) -> None:
        saved = {"folder": str(self._folder), "taken": [asdict(e) for e in self._taken.values()]}
        write_durably(self._path, json.dumps(saved).encode())

    def taking(self, name: str, data: bytes, seq: int) -> None:
        """Record, durably, that the file is about to be spooled under ``seq``."""
        identity = file_identity(name, data)
        self._taken = {
            kept: entry
            for kept, entry in self._taken.items()
            if kept != name and os.path.lexists(self._folder / kept)
        }
        self._taken[name] = TakenFile(*identity, seq)
        self._save()
