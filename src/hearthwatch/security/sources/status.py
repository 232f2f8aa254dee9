"""What a camera source reports about itself: its state and counters, as one snapshot.

:class:`SourceStatus` (a stream reader's) and :class:`FolderStatus` (a folder watcher's) are
frozen snapshots, taken under the source's lock: safe to share between threads. Their error
text is short, carries no stream password and no library internals, and may be shown to users.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SourceState(StrEnum):
    """Where a source is in its life."""

    CONNECTING = "connecting"
    """Started, opening for the first time; nothing has failed yet."""
    STREAMING = "streaming"
    """Frames (or files) are flowing."""
    RECONNECTING = "reconnecting"
    """It failed or dropped; waiting out a back-off or trying again."""
    STOPPED = "stopped"
    """``stop()`` was called (or it was never started)."""
    FINISHED = "finished"
    """A file played once, to its end."""


@dataclass(frozen=True)
class SourceStatus:
    """A stream reader's state and counters at one moment."""

    state: SourceState
    reconnects: int
    """Attempts to open the source again after it failed or dropped."""
    frames_read: int
    """Frames decoded."""
    frames_sampled: int
    """Frames handed on (at the detection rate)."""
    last_frame_at: float | None
    """Epoch seconds of the last frame handed on; None before the first."""
    last_error: str | None
    """Why the source last failed; None if it never has."""
    backoff_s: float
    """The wait before the current (or last) attempt to reconnect; 0 while frames flow."""


@dataclass(frozen=True)
class FolderStatus:
    """A folder watcher's state and counters at one moment."""

    state: SourceState
    files_taken: int
    """Files the consumer accepted."""
    files_corrupt: int
    """Files the consumer called corrupt, moved under ``failed/``."""
    files_refused: int
    """Files refused before reading (too large, or a link leading out of the folder), moved
    under ``failed/``."""
    busy_retries: int
    """Times the consumer was busy and a file was left for a later poll."""
    last_file_at: float | None
    """Epoch seconds at which the last file was accepted; None before the first."""
    last_error: str | None
    """What last went wrong with the folder or a file in it; None if nothing has."""
