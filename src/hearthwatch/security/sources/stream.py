"""A camera's stream (``rtsp``, ``http``) or video file (``file``) decoded through PyAV on one
thread of its own, sampled at the detection rate and handed on as BGR images.

The reader opens the source, decodes every frame, keeps those due at ``detect_fps`` by their
presentation time, and calls ``on_frame(image, captured_at)`` with each kept one. When the
source fails, or a stream ends, it reconnects after an exponential back-off with jitter; a file
ends ``finished`` (or starts over, with ``loop``). Before each (re)connect it checks the source
against the media roots and allowed hosts again, so a name that comes to resolve elsewhere is
refused at the next connect. An ``http`` source follows no redirect and opens no playlist
(:data:`HTTP_CONTAINERS`). Not closed: FFmpeg follows an RTSP server's redirect (3xx) and has
no option against it, so the allow-list trusts the RTSP servers it names not to send the
reader elsewhere.

Threads: ``start``, ``stop`` and ``status`` may be called from any thread; ``on_frame`` runs on
the reader thread (one per reader), so it should hand the image on rather than work on it.

Stopping: ``stop()`` ends a back-off wait, a realtime pause and reading between frames at once.
PyAV 18 can end a blocked open or read only by its timeouts (its interrupt callback compares
the time against them; nothing else can trigger it), so a source that has gone silent holds
the thread until ``open_timeout_s`` or ``read_timeout_s`` has passed: ``stop(timeout_s)`` waits
at most ``timeout_s`` for the thread, which ends by itself when that timeout fires.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from hearthwatch.security.sources.config import (
    FileSourceConfig,
    HttpSourceConfig,
    StreamSourceConfig,
    redacted_url,
)
from hearthwatch.security.sources.confinement import (
    ConfinementError,
    check_path,
    check_stream_url,
)
from hearthwatch.security.sources.status import SourceState, SourceStatus
from hearthwatch.security.sources.threaded import ThreadedSource

log = logging.getLogger(__name__)

FrameCallback = Callable[[np.ndarray, float], None]
"""``on_frame(image, captured_at)``: a BGR ``uint8`` image of shape (height, width, 3) and the
epoch seconds at which it was captured."""

MAX_FRAME_PIXELS = 7680 * 4320
"""The largest frame (8K UHD) decoded into an image by default; larger ones fail the source."""
MAX_DETECT_FPS = 120.0
MAX_BAD_PACKETS = 100
"""Packets in a row that may fail to decode before the source counts as failed (a single bad
packet from a camera only costs its frames)."""
MAX_PACING_GAP_S = 10.0
"""A realtime file whose timestamps jump further ahead than this is re-anchored there, not
waited for."""
CALLBACK_LOG_INTERVAL_S = 60.0
"""A failing ``on_frame`` is logged with its traceback at most once per this interval."""


@dataclass(frozen=True)
class _Play:
    """How one open of the source went: frames decoded, and why it ended if it failed."""

    frames: int
    error: str | None


class _PtsSampler:
    """Keeps frames due at a fixed rate by presentation time: anchored, so it does not drift
    (a 25 fps stream sampled at 5 fps keeps every 5th frame), and restarting at a frame whose
    time went backwards or jumped ahead by more than one interval."""

    def __init__(self, fps: float):
        self._interval = 1.0 / fps
        self._slack = self._interval * 0.01  # float error in the sums of intervals
        self._due: float | None = None
        self._last = -math.inf

    def take(self, t: float) -> bool:
        due, last = self._due, self._last
        self._last = t
        if due is None or t < last or t >= due + self._interval:
            self._due = t + self._interval
            return True
        if t >= due - self._slack:
            self._due = due + self._interval
            return True
        return False


HTTP_CONTAINERS = "mjpeg,mpjpeg,flv,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,h264,hevc"
"""The demuxers an ``http`` source may use: single-stream containers, no playlists (HLS, DASH
and concat would fetch segments from hosts the allow-list never saw)."""


class StreamReader(ThreadedSource):
    """Reads one camera's stream or file on a thread of its own; see the module docstring."""

    _noun = "reader"
    _thread_prefix = "stream"
    _log = log

    def __init__(
        self,
        camera_id: str,
        config: StreamSourceConfig,
        *,
        detect_fps: float,
        on_frame: FrameCallback,
        roots: Sequence[Path],
        allowed_hosts: Sequence[str],
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
    ):
        """``roots`` confine a ``file`` source's path and ``allowed_hosts`` a stream's URL
        (see :mod:`~hearthwatch.security.sources.confinement`); raises ``ValueError`` for a
        rate, back-off or timeout out of range."""
        if not (0.0 < detect_fps <= MAX_DETECT_FPS):
            raise ValueError(f"detect_fps must be in (0, {MAX_DETECT_FPS:g}], not {detect_fps}")
        if not (0.0 < backoff_min_s <= backoff_max_s) or not math.isfinite(backoff_max_s):
            raise ValueError(
                "the back-off must satisfy 0 < backoff_min_s <= backoff_max_s, not "
                f"{backoff_min_s}, {backoff_max_s}"
            )
        for name, value in (("open_timeout_s", open_timeout_s), ("read_timeout_s", read_timeout_s)):
            if not (0.0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        if max_frame_pixels <= 0:
            raise ValueError(f"max_frame_pixels must be positive, not {max_frame_pixels}")
        super().__init__(camera_id)
        self._config = config
        self._detect_fps = detect_fps
        self._on_frame = on_frame
        self._roots = tuple(roots)
        self._allowed_hosts = tuple(allowed_hosts)
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_frame_pixels = max_frame_pixels
        self._callback_logged_at = -math.inf
        # guarded by _lock (as are the state and the last error):
        self._reconnects = 0
        self._frames_read = 0
        self._frames_sampled = 0
        self._last_frame_at: float | None = None
        self._backoff_s = 0.0

    def _still_running(self) -> str:
        ends_within = max(self._open_timeout_s, self._read_timeout_s)
        return f"the reader is blocked in a read; it ends within {ends_within:.0f} s"

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(
                state=self._state,
                reconnects=self._reconnects,
                frames_read=self._frames_read,
                frames_sampled=self._frames_sampled,
                last_frame_at=self._last_frame_at,
                last_error=self._last_error,
                backoff_s=self._backoff_s,
            )

    # the reader thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                play = self._play()
            except Exception:  # a bug, or a failure PyAV raises in no documented form
                log.exception("camera %s: reading the source failed", self.camera_id)
                play = _Play(0, "reading failed unexpectedly (see the server log)")
            if self._stop.is_set():
                break
            if play.error is None and isinstance(self._config, FileSourceConfig):
                if not self._config.loop:
                    self._set(state=SourceState.FINISHED)
                    log.info("camera %s: the file played to its end", self.camera_id)
                    return
                if play.frames:
                    continue
                error = "the file holds no video frames"
            else:
                error = play.error or "the stream ended"
            failures = 1 if play.frames else failures + 1
            delay = self._backoff(failures)
            self._set(state=SourceState.RECONNECTING, last_error=error, backoff_s=delay)
            log.warning("camera %s: %s; reconnecting in %.1f s", self.camera_id, error, delay)
            if self._stop.wait(delay):
                break
            with self._lock:
                self._reconnects += 1
        self._set(state=SourceState.STOPPED)

    def _backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row: doubling from the minimum, with
        jitter (between half and all of it, so it grows until it reaches the maximum), within
        the bounds."""
        ceiling = min(self._backoff_max_s, self._backoff_min_s * 2.0 ** min(failures - 1, 60))
        return max(self._backoff_min_s, ceiling * random.uniform(0.5, 1.0))

    def _play(self) -> _Play:
        """Open the source once and read it until it ends, fails or the reader stops."""
        frames = 0
        try:
            target, options = self._target()
        except ConfinementError as exc:
            return _Play(0, f"refused: {exc}")
        opening = time.monotonic()
        try:
            container = av.open(
                target, options=options, timeout=(self._open_timeout_s, self._read_timeout_s)
            )
        except (av.error.FFmpegError, OSError) as exc:
            # a timeout interrupts FFmpeg, which may then report the truncated reply instead
            if time.monotonic() - opening >= self._open_timeout_s:
                return _Play(0, f"could not open the source within {self._open_timeout_s:g} s")
            return _Play(0, f"could not open the source: {self._reason(exc)}")
        sampler = _PtsSampler(self._detect_fps)
        pacer = None
        if isinstance(self._config, FileSourceConfig):
            with self._lock:
                not_before = self._last_frame_at
            pacer = _Pacer(
                self._stop,
                realtime=self._config.realtime,
                step_s=1.0 / self._detect_fps,
                not_before=not_before,
            )
        try:
            with container:
                if not container.streams.video:
                    return _Play(0, "the source has no video stream")
                stream = container.streams.video[0]
                last: tuple[float, float] | None = None  # the last frame's time, monotonic
                bad_packets = 0
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        break
                    try:
                        decoded = packet.decode()
                    except av.error.InvalidDataError:
                        bad_packets += 1
                        if bad_packets > MAX_BAD_PACKETS:
                            return _Play(frames, "the stream's data cannot be decoded")
                        continue
                    bad_packets = 0
                    for frame in decoded:
                        frames += 1
                        self._count_decoded()
                        now = time.monotonic()
                        t = frame.time
                        if t is None:  # untimed (a stream's first frames): time it by the clock
                            t = 0.0 if last is None else last[0] + (now - last[1])
                        last = (t, now)
                        if sampler.take(t) and not self._hand_on(frame, t, pacer):
                            return _Play(frames, None)
        except _OversizedFrameError as exc:
            return _Play(frames, str(exc))
        except av.error.ExitError:
            return _Play(frames, f"no data for {self._read_timeout_s:g} s")
        except (av.error.FFmpegError, OSError) as exc:
            return _Play(frames, f"reading failed: {self._reason(exc)}")
        return _Play(frames, None)

    def _target(self) -> tuple[str, dict[str, str]]:
        """What to open and the FFmpeg options to open it with, once confinement allows it."""
        config = self._config
        if isinstance(config, FileSourceConfig):
            path = check_path(config.path, self._roots)
            return str(path), {"protocol_whitelist": "file"}
        check_stream_url(config.url, self._allowed_hosts)
        timeout_us = str(round(self._read_timeout_s * 1_000_000))
        if isinstance(config, HttpSourceConfig):
            # a redirect, or a playlist (HLS, DASH) naming segments elsewhere, could lead
            # anywhere: the allowed host must serve the stream itself, in a container
            return config.url, {
                "timeout": timeout_us,
                "max_redirects": "0",
                "protocol_whitelist": "http,https,tcp,tls,crypto",
                "format_whitelist": HTTP_CONTAINERS,
            }
        return config.url, {
            "rtsp_transport": config.transport,
            "timeout": timeout_us,
            "allowed_media_types": "video",
        }

    def _count_decoded(self) -> None:
        with self._lock:
            self._frames_read += 1
            if self._state is not SourceState.STREAMING and not self._stop.is_set():
                self._state = SourceState.STREAMING
                self._backoff_s = 0.0

    def _hand_on(self, frame: av.VideoFrame, t: float, pacer: _Pacer | None) -> bool:
        """Convert ``frame`` and call ``on_frame`` (a file's frame when its time is due);
        False if the reader stopped meanwhile."""
        if frame.width * frame.height > self._max_frame_pixels:
            raise _OversizedFrameError(
                f"a frame of {frame.width}x{frame.height} is larger than the limit of "
                f"{self._max_frame_pixels} pixels"
            )
        captured_at = time.time() if pacer is None else pacer.due(t)
        if captured_at is None:
            return False
        image = frame.to_ndarray(format="bgr24")
        with self._lock:
            self._frames_sampled += 1
            self._last_frame_at = captured_at
        try:
            self._on_frame(image, captured_at)
        except Exception:
            now = time.monotonic()
            if now - self._callback_logged_at >= CALLBACK_LOG_INTERVAL_S:
                self._callback_logged_at = now
                log.exception("camera %s: on_frame failed; the reader goes on", self.camera_id)
        return True

    def _reason(self, exc: BaseException) -> str:
        """The error's own words, without the URL (and so without its password)."""
        text = str(getattr(exc, "strerror", None) or type(exc).__name__)
        if isinstance(self._config, FileSourceConfig):
            return text
        return text.replace(self._config.url, redacted_url(self._config.url))

    def _set(
        self,
        *,
        state: SourceState,
        last_error: str | None = None,
        backoff_s: float | None = None,
    ) -> None:
        with self._lock:
            if self._stop.is_set() and state is not SourceState.STOPPED:
                return
            self._state = state
            if last_error is not None:
                self._last_error = last_error
            if backoff_s is not None:
                self._backoff_s = backoff_s


class _OversizedFrameError(Exception):
    """A frame larger than the reader's pixel limit."""


class _Pacer:
    """Maps a file's presentation times onto the clock: waits for each frame's moment when
    ``realtime``, and tells the epoch time each frame stands for (the file's own timeline,
    starting when its first frame is handed on, never before a frame handed on earlier).
    Confined to the reader thread, one per open of the file."""

    def __init__(
        self, stop: threading.Event, *, realtime: bool, step_s: float, not_before: float | None
    ):
        self._stop = stop
        self._realtime = realtime
        self._step_s = step_s
        self._last_epoch = not_before
        self._anchor: tuple[float, float, float] | None = None  # pts, monotonic, epoch

    def due(self, t: float) -> float | None:
        """Wait until frame time ``t`` is due (at once unless realtime); the epoch time it
        stands for, or None if the reader stopped."""
        now = time.monotonic()
        anchor = self._anchor
        lead = 0.0 if anchor is None else (t - anchor[0]) - (now - anchor[1])
        if anchor is None or t < anchor[0] or (self._realtime and lead > MAX_PACING_GAP_S):
            epoch = time.time()
            if self._last_epoch is not None:
                epoch = max(epoch, self._last_epoch + self._step_s)
            anchor = self._anchor = (t, now, epoch)
        elif self._realtime and lead > 0 and self._stop.wait(lead):
            return None
        if self._stop.is_set():
            return None
        self._last_epoch = anchor[2] + (t - anchor[0])
        return self._last_epoch
