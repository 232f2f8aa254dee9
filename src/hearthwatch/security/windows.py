"""Per-camera windows: a camera's tracked detections grouped into stretches of activity, each
analysed once it closes.

Rules (all times epoch seconds; ``captured_at`` is the frame's time, ``now`` the server's):

- A camera has at most one open window. :meth:`WindowBook.add` puts a detection into it when
  ``captured_at - opened_at < window_s`` and ``captured_at - last_detection_at < idle_s``;
  otherwise the open window is closed first and the detection opens a new one, which opens at its
  ``captured_at``. A detection therefore never lands in a closed window, and whether two
  detections share a window does not depend on when :meth:`WindowBook.due` is called.
- A late frame, captured before the open window's ``opened_at`` (a pushed frame with an old
  timestamp), joins the open window without moving its ``opened_at`` or ``last_detection_at``;
  with no window open it opens a new one. A closed window is never reopened.
- :meth:`WindowBook.due` closes the open window once ``now - opened_at >= window_s`` or
  ``now - last_detection_at >= idle_s``, and reports it together with any window
  :meth:`WindowBook.add` closed since the last call, each with ``closed_at = now``.
- When a track's first detection in a window comes from a track that also had detections in the
  window closed just before it, the assignment links the two windows by that track, once per pair
  and track. Links join consecutive windows only: a track absent for a whole window has gone
  unseen for at least ``min(window_s, idle_s)``, long enough for its tracker to have dropped it.
- :meth:`WindowBook.resume` restores the store's open windows after a restart: the newest
  continues under the same rules; any older one (only a crash between two writes leaves two) is
  reported closed by the next :meth:`WindowBook.due`. Links to windows closed before the restart
  are not made.

Window ids come from an injected factory; the default, :func:`default_window_id`, holds the camera
id, the epoch second and a random UUID, unique across restarts.

A :class:`WindowBook` is confined to its camera's pipeline thread (not thread-safe).
"""

from __future__ import annotations

import math
import numbers
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class WindowInputError(ValueError):
    """A time, track key or restored window state that the book cannot use."""


@dataclass(frozen=True)
class WindowAssignment:
    """Where :meth:`WindowBook.add` put a detection."""

    window_id: str
    opened: bool
    """This detection opened the window."""
    links: tuple[tuple[str, str], ...]
    """``(earlier window id, track key)`` links this detection created."""


@dataclass(frozen=True)
class ClosedWindow:
    window_id: str
    camera_id: str
    opened_at: float
    last_detection_at: float
    closed_at: float
    track_keys: tuple[str, ...]
    """In the order of each track's first detection in the window."""


@dataclass(frozen=True)
class OpenWindowState:
    """An open window as the store keeps it, and as :meth:`WindowBook.open_windows` shows it."""

    window_id: str
    opened_at: float
    last_detection_at: float
    track_keys: tuple[str, ...]


def default_window_id(camera_id: str) -> str:
    return f"{camera_id}-{int(time.time())}-{uuid.uuid4().hex}"


@dataclass
class _Window:
    window_id: str
    opened_at: float
    last_detection_at: float
    track_keys: dict[str, None] = field(default_factory=dict)
    """An ordered set."""


class WindowBook:
    """The windows of one camera; see the module docstring for the rules."""

    def __init__(
        self,
        camera_id: str,
        *,
        window_s: float = 90.0,
        idle_s: float = 30.0,
        new_id: Callable[[str], str] = default_window_id,
    ) -> None:
        if not isinstance(camera_id, str) or not camera_id:
            raise WindowInputError("camera_id must be a non-empty string")
        for name, value in (("window_s", window_s), ("idle_s", idle_s)):
            if not _finite(name, value) > 0:
                raise WindowInputError(f"{name} must be positive, not {value}")
        self.camera_id = camera_id
        self.window_s = float(window_s)
        self.idle_s = float(idle_s)
        self._new_id = new_id
        self._open: _Window | None = None
        self._closed_unreported: list[_Window] = []
        self._last_closed: tuple[str, frozenset[str]] | None = None

    def add(self, track_key: str, captured_at: float) -> WindowAssignment:
        """Put one detection of ``track_key``, from a frame captured at ``captured_at``, into the
        camera's open window, closing it first and opening another where the rules say."""
        if not isinstance(track_key, str) or not track_key:
            raise WindowInputError("track_key must be a non-empty string")
        captured_at = _finite("captured_at", captured_at)
        window = self._open
        if window is not None and (
            captured_at - window.opened_at >= self.window_s
            or captured_at - window.last_detection_at >= self.idle_s
        ):
            self._close(window)
            window = None
        opened = window is None
        if window is None:
            window = _Window(self._new_id(self.camera_id), captured_at, captured_at)
            self._open = window
        window.last_detection_at = max(window.last_detection_at, captured_at)
        links: tuple[tuple[str, str], ...] = ()
        if track_key not in window.track_keys:
            window.track_keys[track_key] = None
            if self._last_closed is not None and track_key in self._last_closed[1]:
                links = ((self._last_closed[0], track_key),)
        return WindowAssignment(window.window_id, opened, links)

    def due(self, now: float) -> list[ClosedWindow]:
        """Close the open window if its time is up at ``now``; returns every window closed since
        the last call, oldest first, each closed at ``now``."""
        now = _finite("now", now)
        window = self._open
        if window is not None and (
            now - window.opened_at >= self.window_s or now - window.last_detection_at >= self.idle_s
        ):
            self._close(window)
        closed = [
            ClosedWindow(
                window_id=w.window_id,
                camera_id=self.camera_id,
                opened_at=w.opened_at,
                last_detection_at=w.last_detection_at,
                closed_at=now,
                track_keys=tuple(w.track_keys),
            )
            for w in self._closed_unreported
        ]
        self._closed_unreported = []
        return closed

    def resume(self, windows: Sequence[OpenWindowState]) -> None:
        """Restore the store's open windows of this camera after a restart; only before any other
        call."""
        if self._open is not None or self._closed_unreported or self._last_closed is not None:
            raise RuntimeError("resume comes before any detection")
        ids = [state.window_id for state in windows]
        if len(set(ids)) != len(ids):
            raise WindowInputError(f"window ids repeat: {ids}")
        restored = sorted((_restored(state) for state in windows), key=lambda w: w.opened_at)
        for window in restored[:-1]:
            self._close(window)
        if restored:
            self._open = restored[-1]

    def open_windows(self) -> tuple[OpenWindowState, ...]:
        """The camera's open window, if any (windows closed but not yet reported are not open)."""
        if self._open is None:
            return ()
        w = self._open
        return (
            OpenWindowState(w.window_id, w.opened_at, w.last_detection_at, tuple(w.track_keys)),
        )

    def _close(self, window: _Window) -> None:
        self._closed_unreported.append(window)
        self._last_closed = (window.window_id, frozenset(window.track_keys))
        if self._open is window:
            self._open = None


def _restored(state: OpenWindowState) -> _Window:
    if not isinstance(state.window_id, str) or not state.window_id:
        raise WindowInputError(f"window id {state.window_id!r} is not a non-empty string")
    opened_at = _finite("opened_at", state.opened_at)
    last_detection_at = _finite("last_detection_at", state.last_detection_at)
    if last_detection_at < opened_at:
        raise WindowInputError(f"window {state.window_id}: last detection before it opened")
    if not all(isinstance(key, str) and key for key in state.track_keys):
        raise WindowInputError(f"window {state.window_id}: track keys are non-empty strings")
    return _Window(state.window_id, opened_at, last_detection_at, dict.fromkeys(state.track_keys))


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise WindowInputError(f"{name} must be a finite number of seconds, not {value!r}")
    return float(value)
