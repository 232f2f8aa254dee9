"""Per-camera object tracking, ByteTrack-style: each detector run's detections are matched to the
camera's tracks by IoU against where each track is predicted to be.

Contract of :meth:`Tracker.update`, called once per detector run (the detector runs only on frames
with motion, so every count here is in updates, never in wall-clock time):

1. Every track's box is predicted one update ahead: constant velocity on the box's centre and size,
   the velocity learnt from matches (an alpha-beta filter) and damped on every missed update.
2. Detections scoring at least ``high_score`` are matched to tracks of the same label, maximising
   the total IoU in excess of ``match_iou`` (Hungarian algorithm); pairs below ``match_iou`` never
   match.
3. Detections scoring in ``[low_score, high_score)`` are matched the same way to the tracks still
   unmatched: they continue a track but never start one. Detections below ``low_score`` are ignored.
4. Unmatched high-score detections start new tracks; a track unmatched for ``max_missed``
   consecutive updates is dropped. :meth:`Tracker.forget_idle` drops tracks not matched for a
   wall-clock time, for cameras whose detector has stopped running.

A track is stationary once its matched box has stayed within ``stationary_iou`` of its anchor box
(its box when it last moved) for ``stationary_updates`` matched updates; moving out of that IoU
makes the new box the anchor and clears the flag.

Track keys are ``f"{camera_id}-{start epoch seconds}-{process tag}-{number}"``: the number is
unique in the process, and the process tag (random, drawn once per process) keeps keys apart
across restarts even when the wall clock repeats a second (a restart within the second, or a clock
restored from a saved time before NTP corrects it).

A :class:`Tracker` is confined to its camera's pipeline thread (not thread-safe); the key counter
it draws from is shared and locked.
"""

from __future__ import annotations

import itertools
import math
import numbers
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from hearthwatch.security.observations import Box, ObjectDetection, TrackedDetection

VELOCITY_GAIN = 0.5
"""How much of a match's surprise (measured minus predicted) goes into the track's velocity."""
MISSED_VELOCITY_DAMPING = 0.85
"""The velocity is multiplied by this on every update the track is missed."""
MIN_PREDICTED_SIZE = 1.0
"""A predicted box is never narrower or lower than this many pixels."""

_PROCESS_TAG = secrets.token_hex(3)
_track_numbers = itertools.count(1)
_track_numbers_lock = threading.Lock()

CONTINUATION_SCORE = 0.3


def continuation_score(threshold: float) -> float:
    """The ``low_score`` for a tracker whose ``high_score`` is ``threshold``: detections from
    it may continue a track (the second pass), only those at ``threshold`` start one."""
    return CONTINUATION_SCORE if threshold > CONTINUATION_SCORE else threshold / 2


class InvalidDetectionError(ValueError):
    """A detection (or box) that no detector should produce: the tracker refuses it whole."""


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_box(box: Box) -> Box:
    """``box`` as four floats, or :class:`InvalidDetectionError` unless finite with x1<x2, y1<y2."""
    try:
        values = tuple(box)
    except TypeError as exc:
        raise InvalidDetectionError(f"a box is four numbers x1, y1, x2, y2, not {box!r}") from exc
    if len(values) != 4 or not all(_is_number(v) for v in values):
        raise InvalidDetectionError(f"a box is four numbers x1, y1, x2, y2, not {box!r}")
    x1, y1, x2, y2 = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, x2 - x1, y2 - y1)):
        raise InvalidDetectionError(f"box {box!r} is not finite (or too large)")
    if not (x1 < x2 and y1 < y2):
        raise InvalidDetectionError(f"box {box!r} needs x1 < x2 and y1 < y2")
    return (x1, y1, x2, y2)


def validate_detection(detection: ObjectDetection) -> Box:
    """The detection's box as :func:`validate_box` returns it, or :class:`InvalidDetectionError`
    unless the label is a non-empty string, the score is in [0, 1] and the box is valid."""
    if not isinstance(detection.label, str) or not detection.label:
        raise InvalidDetectionError(f"label {detection.label!r} is not a non-empty string")
    score = detection.score
    if not _is_number(score) or not 0.0 <= score <= 1.0:  # NaN fails too
        raise InvalidDetectionError(f"score {score!r} is not in [0, 1]")
    return validate_box(detection.box)


def _finite_time(name: str, value: float) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrackSnapshot:
    """One live track as :meth:`Tracker.active_tracks` shows it."""

    track_key: str
    label: str
    box: Box
    """Its last matched box, or where it is predicted to be after missed updates."""
    started_at: float
    last_seen: float
    """``now`` of the last update that matched it."""
    missed: int
    """Consecutive updates it has been missed."""
    stationary: bool


class _Track:
    """Mutable state of one track; its box is held as centre x, centre y, width, height."""

    def __init__(self, key: str, detection: ObjectDetection, box: Box, now: float) -> None:
        self.key = key
        self.label = detection.label
        self.started_at = now
        self.last_seen = now
        self.state = _state_of(box)
        self.velocity = np.zeros(4)
        self.missed = 0
        self.anchor = box
        self.still_updates = 0
        self.stationary = False

    def predicted(self) -> np.ndarray:
        state = self.state + self.velocity
        state[2:] = np.maximum(state[2:], MIN_PREDICTED_SIZE)
        return state

    def matched(self, box: Box, predicted: np.ndarray, now: float, tracker: Tracker) -> None:
        measured = _state_of(box)
        self.velocity = self.velocity + VELOCITY_GAIN * (measured - predicted)
        self.state = measured
        self.missed = 0
        self.last_seen = now
        if _iou(box, self.anchor) >= tracker.stationary_iou:
            self.still_updates += 1
            self.stationary = self.still_updates >= tracker.stationary_updates
        else:
            self.anchor = box
            self.still_updates = 0
            self.stationary = False

    def missed_once(self, predicted: np.ndarray) -> None:
        self.state = predicted
        self.velocity = self.velocity * MISSED_VELOCITY_DAMPING
        self.missed += 1

    def snapshot(self) -> TrackSnapshot:
        return TrackSnapshot(
            track_key=self.key,
            label=self.label,
            box=_box_of(self.state),
            started_at=self.started_at,
            last_seen=self.last_seen,
            missed=self.missed,
            stationary=self.stationary,
        )


class Tracker:
    """The tracks of one camera; see the module docstring for the rules."""

    def __init__(
        self,
        camera_id: str,
        *,
        high_score: float = 0.5,
        low_score: float = 0.1,
        match_iou: float = 0.3,
        max_missed: int = 10,
        stationary_iou: float = 0.9,
        stationary_updates: int = 10,
        id_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(camera_id, str) or not camera_id:
            raise ValueError("camera_id must be a non-empty string")
        if not 0.0 <= low_score < high_score <= 1.0:
            raise ValueError(
                f"need 0 <= low_score < high_score <= 1, not {low_score}, {high_score}"
            )
        if not 0.0 < match_iou <= 1.0:
            raise ValueError(f"match_iou must be in (0, 1], not {match_iou}")
        if not 0.0 < stationary_iou <= 1.0:
            raise ValueError(f"stationary_iou must be in (0, 1], not {stationary_iou}")
        if max_missed < 1 or stationary_updates < 1:
            raise ValueError("max_missed and stationary_updates must be at least 1")
        self.camera_id = camera_id
        self.high_score = high_score
        self.low_score = low_score
        self.match_iou = match_iou
        self.max_missed = max_missed
        self.stationary_iou = stationary_iou
        self.stationary_updates = stationary_updates
        self._id_clock = id_clock
        self._tracks: list[_Track] = []

    def update(self, detections: Sequence[ObjectDetection], now: float) -> list[TrackedDetection]:
        """Match one detector run's detections; returns, in input order, every detection that
        joined or started a track (low-score detections that matched nothing are left out).

        Raises :class:`InvalidDetectionError` (and changes nothing) if any detection is invalid.
        """
        now = _finite_time("now", now)
        boxes = [validate_detection(detection) for detection in detections]
        predicted = [track.predicted() for track in self._tracks]

        high = [i for i, d in enumerate(detections) if d.score >= self.high_score]
        low = [i for i, d in enumerate(detections) if self.low_score <= d.score < self.high_score]
        unmatched_tracks = list(range(len(self._tracks)))
        matches: dict[int, int] = {}  # detection index -> track index
        for stage in (high, low):
            pairs = self._associate(stage, unmatched_tracks, detections, boxes, predicted)
            matches.update(pairs)
            matched_now = set(pairs.values())
            unmatched_tracks = [t for t in unmatched_tracks if t not in matched_now]

        results: dict[int, TrackedDetection] = {}
        for det_index, track_index in matches.items():
            track = self._tracks[track_index]
            track.matched(boxes[det_index], predicted[track_index], now, self)
            results[det_index] = TrackedDetection(
                detections[det_index], track.key, track.stationary, new_track=False
            )
        for track_index in unmatched_tracks:
            self._tracks[track_index].missed_once(predicted[track_index])
        self._tracks = [t for t in self._tracks if t.missed < self.max_missed]
        for det_index in high:
            if det_index not in matches:
                track = _Track(self._new_key(), detections[det_index], boxes[det_index], now)
                self._tracks.append(track)
                results[det_index] = TrackedDetection(
                    detections[det_index], track.key, stationary=False, new_track=True
                )
        return [results[i] for i in sorted(results)]

    def forget_idle(self, now: float, idle_s: float) -> tuple[str, ...]:
        """Drop the tracks whose last match is ``idle_s`` or more before ``now``; returns their
        keys."""
        now = _finite_time("now", now)
        if not _finite_time("idle_s", idle_s) > 0:
            raise ValueError(f"idle_s must be positive, not {idle_s}")
        idle = tuple(t.key for t in self._tracks if now - t.last_seen >= idle_s)
        self._tracks = [t for t in self._tracks if now - t.last_seen < idle_s]
        return idle

    def active_tracks(self) -> tuple[TrackSnapshot, ...]:
        """The live tracks, oldest first."""
        return tuple(track.snapshot() for track in self._tracks)

    def _associate(
        self,
        det_indices: list[int],
        track_indices: list[int],
        detections: Sequence[ObjectDetection],
        boxes: list[Box],
        predicted: list[np.ndarray],
    ) -> dict[int, int]:
        """Detection index -> track index for the optimal same-label matches at ``match_iou``."""
        if not det_indices or not track_indices:
            return {}
        ious = _iou_matrix(
            np.array([_box_of(predicted[t]) for t in track_indices]),
            np.array([boxes[d] for d in det_indices]),
        )
        same_label = np.array(
            [
                [self._tracks[t].label == detections[d].label for d in det_indices]
                for t in track_indices
            ]
        )
        allowed = same_label & (ious >= self.match_iou)
        # Maximising the summed excess over match_iou matches a pair exactly when doing so is
        # worth more than leaving both unmatched (ByteTrack's cost limit).
        gain = np.where(allowed, ious - self.match_iou, 0.0)
        rows, cols = linear_sum_assignment(gain, maximize=True)
        return {
            det_indices[c]: track_indices[r]
            for r, c in zip(rows, cols, strict=True)
            if allowed[r, c]
        }

    def _new_key(self) -> str:
        with _track_numbers_lock:
            number = next(_track_numbers)
        return f"{self.camera_id}-{int(self._id_clock())}-{_PROCESS_TAG}-{number}"


def _state_of(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def _box_of(state: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in state)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n×4) with every box in ``b`` (m×4), as an n×m array."""
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union: np.ndarray = area_a[:, None] + area_b[None, :] - inter
    return inter / union


def _iou(a: Box, b: Box) -> float:
    return float(_iou_matrix(np.array([a]), np.array([b]))[0, 0])
