"""What the sources that run on a thread of their own (a stream reader, a folder watcher) share:
the thread, started once; the stop event that ends it; and the lock that guards the state (and
the counters each adds).

Threads: ``start`` and ``stop`` may be called from any thread; ``_run`` is the source's thread.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

from hearthwatch.security.sources.status import SourceState


class ThreadedSource(ABC):
    """One camera's source on a thread of its own. A subclass names itself (``_noun``, the
    thread's ``_thread_prefix``), logs to its module's ``_log``, and implements ``_run`` (which
    ends once ``_stop`` is set) and ``_still_running`` (the warning when ``stop`` gives up
    waiting)."""

    _noun: ClassVar[str]
    """What the source is called in messages: ``reader``, ``watcher``."""
    _thread_prefix: ClassVar[str]
    """The thread's name before the camera id: ``stream``, ``folder``."""
    _log: ClassVar[logging.Logger]

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # guarded by _lock:
        self._state = SourceState.STOPPED
        self._last_error: str | None = None

    def start(self) -> None:
        """Start the source's thread; a source starts once."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(
                    f"the {self._noun} of camera {self.camera_id!r} was started already"
                )
            self._state = SourceState.CONNECTING
            self._thread = threading.Thread(
                target=self._run, name=f"{self._thread_prefix}-{self.camera_id}", daemon=True
            )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the source and wait up to ``timeout_s`` for its thread to end (a thread still
        busy then is logged, and ends by itself); its state is ``stopped`` from then on."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                self._log.warning("camera %s: %s", self.camera_id, self._still_running())
        with self._lock:
            self._state = SourceState.STOPPED

    @abstractmethod
    def _run(self) -> None: ...

    @abstractmethod
    def _still_running(self) -> str:
        """Why the thread has not ended when ``stop`` stops waiting for it."""
