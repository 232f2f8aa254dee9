"""Camera health: whether a camera is online, offline (no frames) or tampered with (covered,
or turned to another view), judged from the small grey frames the motion gate makes.

- ``offline`` (reason ``no_frames``): no frame for ``offline_after_s``, noticed by
  :meth:`CameraHealth.check`; a camera is offline until its first frame. The next frame brings
  it back.
- ``tampered``, reason ``covered``: the frame's grey standard deviation is below
  ``uniform_std`` (a black, blank or evenly covered image).
- ``tampered``, reason ``moved``: the frame's structure no longer matches the view learned
  for the camera. Structure is the blurred gradient magnitude of the frame; the match is its
  normalised cross-correlation with the learned view's (-1 to 1), a different view when at or
  below ``scene_change``. Cross-correlation ignores the gradients' scale and offset, so a
  lighting change (an IR lamp switching, dusk, exposure) that keeps the edges where they were
  is no change; a person crossing the view covers too little of it to matter. The learned view
  is the running mean of the matching frames' structure (equal weights over the first frames,
  then a time constant of :data:`VIEW_TIME_CONSTANT_S`), so it follows slow changes (shadows,
  a parked car) but never learns a view that does not match it.

A tampering condition is declared once it has lasted ``tamper_after_s`` without a break, and
cleared by the first frame without it (another condition keeps the camera tampered, and takes
over the reason once it has lasted ``tamper_after_s`` itself).

``now`` is the caller's clock in seconds (monotonic, never going back). A
:class:`CameraHealth` holds one camera's state: confined to the thread that feeds that camera.
A :class:`HealthChange` is immutable: safe to share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

HealthState = Literal["online", "offline", "tampered"]
HealthReason = Literal["no_frames", "covered", "moved"]
TamperReason = Literal["covered", "moved"]

VIEW_TIME_CONSTANT_S = 120.0
"""How slowly the learned view follows matching frames, once it has averaged its first
frames."""
MIN_FRAME_SIDE = 16
MAX_FRAME_PIXELS = 1_000_000
"""The small grey frames accepted: sides of at least 16 pixels, at most a million pixels."""

_STRUCTURE_BLUR_SIGMA = 1.0
"""Before the gradients: keeps sensor noise out of them."""
_TOLERANCE_BLUR_SIGMA = 1.5
"""After: a shake of a pixel or two is no change of view."""


@dataclass(frozen=True)
class HealthChange:
    """A camera's new health: ``reason`` is None when online; ``since`` is when the condition
    began (the last frame's time for ``no_frames``); ``detail`` says what was measured."""

    state: HealthState
    reason: HealthReason | None
    since: float
    detail: str


class CameraHealth:
    """One camera's health (see the module's docstring)."""

    def __init__(
        self,
        *,
        offline_after_s: float = 30.0,
        tamper_after_s: float = 10.0,
        uniform_std: float = 8.0,
        scene_change: float = 0.5,
    ) -> None:
        for name, value in (
            ("offline_after_s", offline_after_s),
            ("tamper_after_s", tamper_after_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, not {value}")
        if not (math.isfinite(uniform_std) and uniform_std >= 0):
            raise ValueError(f"uniform_std must be a finite grey level >= 0, not {uniform_std}")
        if not -1 <= scene_change < 1:
            raise ValueError(f"scene_change must be a correlation in [-1, 1), not {scene_change}")
        self._offline_after_s = offline_after_s
        self._tamper_after_s = tamper_after_s
        self._uniform_std = uniform_std
        self._scene_change = scene_change
        self._state: HealthState = "offline"
        self._reason: HealthReason | None = "no_frames"
        self._last_change: HealthChange | None = None
        self._now = -math.inf
        self._last_frame_at: float | None = None
        self._view: np.ndarray | None = None
        """The learned view's structure."""
        self._view_frames = 0
        self._condition: tuple[TamperReason, float] | None = None
        """The tampering the latest frame showed, and since when it has without a break."""

    @property
    def state(self) -> HealthState:
        """The camera's health now: ``offline`` until its first frame."""
        return self._state

    @property
    def last_change(self) -> HealthChange | None:
        """The latest change :meth:`observe` or :meth:`check` returned; None before any."""
        return self._last_change

    def observe(self, small_grey: np.ndarray, now: float) -> HealthChange | None:
        """Take one frame (grey uint8 (H, W)) seen at ``now``; the change of health it makes,
        if any. Raises TypeError or ValueError for any other array, and ValueError for a
        ``now`` before the last."""
        self._advance(now)
        _check_frame(small_grey)
        previous_frame_at, self._last_frame_at = self._last_frame_at, now
        elapsed = 0.0 if previous_frame_at is None else now - previous_frame_at
        found = self._tampering_in(small_grey, elapsed)
        if found is None:
            self._condition = None
            if self._state == "online":
                return None
            return self._change("online", None, now, _back_online(previous_frame_at, now))
        reason, detail = found
        if self._condition is None or self._condition[0] != reason:
            self._condition = (reason, now)
        since = self._condition[1]
        if now - since >= self._tamper_after_s:
            if (self._state, self._reason) == ("tampered", reason):
                return None
            return self._change("tampered", reason, since, detail)
        if self._state == "offline":  # frames again; the condition has not lasted yet
            return self._change("online", None, now, _back_online(previous_frame_at, now))
        return None

    def check(self, now: float) -> HealthChange | None:
        """The change of health at ``now`` without a new frame: offline once no frame has come
        for ``offline_after_s``."""
        self._advance(now)
        if self._state == "offline" or self._last_frame_at is None:
            return None
        silent = now - self._last_frame_at
        if silent < self._offline_after_s:
            return None
        self._condition = None
        return self._change(
            "offline", "no_frames", self._last_frame_at, f"no frame for {silent:.0f} s"
        )

    def _advance(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite time, not {now}")
        if now < self._now:
            raise ValueError(f"now went back from {self._now} to {now}")
        self._now = now

    def _tampering_in(
        self, small_grey: np.ndarray, elapsed: float
    ) -> tuple[TamperReason, str] | None:
        """The tampering this frame shows, with what was measured; learns the view from a frame
        that shows none."""
        _, std = cv2.meanStdDev(small_grey)
        spread = float(std[0, 0])
        if spread < self._uniform_std:
            return (
                "covered",
                f"grey deviation {spread:.1f} < {self._uniform_std:g}: black or uniform",
            )
        structure = _structure(small_grey)
        if self._view is None or self._view.shape != structure.shape:
            self._view, self._view_frames = structure, 1
            return None
        match = _correlation(structure, self._view)
        if match <= self._scene_change:
            return "moved", f"view match {match:.2f} <= {self._scene_change:g}"
        # the first frames weigh equally; later ones by the time since the frame before
        self._view_frames += 1
        weight = max(1 / self._view_frames, 1 - math.exp(-elapsed / VIEW_TIME_CONSTANT_S))
        cv2.accumulateWeighted(structure, self._view, weight)
        return None

    def _change(
        self, state: HealthState, reason: HealthReason | None, since: float, detail: str
    ) -> HealthChange:
        self._state, self._reason = state, reason
        self._last_change = HealthChange(state, reason, since, detail)
        return self._last_change


def _back_online(previous_frame_at: float | None, now: float) -> str:
    if previous_frame_at is None:
        return "first frame"
    return f"frames again after {now - previous_frame_at:.0f} s"


def _check_frame(small_grey: np.ndarray) -> None:
    if not isinstance(small_grey, np.ndarray):
        raise TypeError(f"a frame must be a numpy array, not {type(small_grey).__name__}")
    if small_grey.dtype != np.uint8 or small_grey.ndim != 2:
        raise ValueError(
            f"a frame must be grey uint8 (H, W), not {small_grey.dtype} shaped {small_grey.shape}"
        )
    rows, cols = small_grey.shape
    if min(rows, cols) < MIN_FRAME_SIDE or rows * cols > MAX_FRAME_PIXELS:
        raise ValueError(
            f"a {cols}x{rows} frame is outside the sizes accepted (sides >= {MIN_FRAME_SIDE},"
            f" at most {MAX_FRAME_PIXELS} pixels)"
        )


def _structure(small_grey: np.ndarray) -> np.ndarray:
    """The frame's blurred gradient magnitude (float32)."""
    smooth = cv2.GaussianBlur(small_grey.astype(np.float32), (0, 0), _STRUCTURE_BLUR_SIGMA)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), _TOLERANCE_BLUR_SIGMA)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped maps; 0 when either is flat."""
    a = a - float(a.mean())
    b = b - float(b.mean())
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 0 else 0.0
