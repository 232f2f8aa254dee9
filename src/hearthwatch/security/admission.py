"""The bounded detection queue's admission: how many frames are admitted for detection and not
yet done, across all cameras, against ``DETECTION_QUEUE_MAX_SIZE``.

A frame takes a place with :meth:`DetectionAdmission.try_take` before it is spooled and gives
it back with :meth:`DetectionAdmission.give_back` once its detections are stored (or it was
skipped); frames found in the spool at start-up are admitted with :meth:`DetectionAdmission.take`
whatever the limit, since they were accepted before. Thread-safe: readers, folder watchers and
the event loop all take places.
"""

from __future__ import annotations

import threading


class DetectionAdmission:
    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the detection queue needs room for at least one frame")
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        with self._lock:
            return self._taken

    def try_take(self) -> bool:
        with self._lock:
            if self._taken >= self.limit:
                return False
            self._taken += 1
            return True

    def take(self) -> None:
        with self._lock:
            self._taken += 1

    def give_back(self) -> None:
        with self._lock:
            if self._taken == 0:
                raise RuntimeError("a detection-queue place was given back twice")
            self._taken -= 1
