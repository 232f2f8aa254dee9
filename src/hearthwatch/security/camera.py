"""One running camera: its configuration, its frame intake (stream reader, folder watcher or
pushed frames), its motion gate and health, and the state the pipeline keeps for it (tracker,
windows, zone presence per track, the lane of frames admitted for detection, counters).

Threads. The intake methods run where frames arrive: :meth:`CameraRuntime.on_stream_frame` on
the stream reader's thread, :meth:`CameraRuntime.on_folder_file` on the folder watcher's,
:meth:`CameraRuntime.spool_pushed` on a worker thread; each frame is spooled (durable) before
it joins the lane, and frames of one camera are admitted one at a time (``_admit_lock``) so
sequence numbers and lane order agree. The motion gate and health monitor are used under
``_observe_lock``. The counters are thread-safe. The tracker, windows, zone presence and
``last_enriched`` are confined to the event loop (the pipeline's lane and tick).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from hearthwatch.runtime.imaging.decode import ImageError, check_encoded, decode_image, sniff_format
from hearthwatch.security.admission import DetectionAdmission
from hearthwatch.security.cameras import CameraConfig
from hearthwatch.security.errors import DetectionQueueFullError, PipelineClosedError
from hearthwatch.security.folder_ledger import LEDGER_NAME, FolderLedger
from hearthwatch.security.health import CameraHealth, HealthChange
from hearthwatch.security.motion import MotionGate, MotionVerdict, frame_size_problem
from hearthwatch.security.sources.config import FolderSourceConfig, PushSourceConfig
from hearthwatch.security.sources.folder import FileVerdict, FolderWatcher
from hearthwatch.security.sources.status import FolderStatus, SourceStatus
from hearthwatch.security.sources.stream import StreamReader
from hearthwatch.security.spool import Origin, Spool, SpooledFrame
from hearthwatch.security.tracker import Tracker, continuation_score
from hearthwatch.security.windows import WindowBook
from hearthwatch.security.zones import Zone, ZonePresence

log = logging.getLogger(__name__)

CameraOrigin = Literal["file", "api"]
COUNTERS = ("frames_in", "skipped_motion", "deduped", "dropped", "corrupt", "detected", "failed")
"""frames_in: every frame read or received; skipped_motion: no motion, the detector not run;
deduped: identical to the one before; dropped: a stream frame with motion for which the
detection queue had no room; corrupt: undecodable; detected: frames the detector ran on;
failed: frames whose detection failed (the detector's error, logged)."""
JPEG_QUALITY = 90
RATE_WINDOW_S = 10.0


class CameraCounters:
    """Per-camera frame counts. Thread-safe."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._values[name] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Rates:
    """Frames per second in and detected over the last :data:`RATE_WINDOW_S`, from counter
    snapshots the pipeline's tick takes. Event-loop-confined."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def sample(self, now: float, counts: dict[str, int]) -> None:
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()

    def per_second(self, name: str) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        return (last[name] - first[name]) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class LaneItem:
    """A frame admitted for detection: spooled, and its RGB pixels when still in memory."""

    frame: SpooledFrame
    image: np.ndarray | None
    gated: bool
    """The motion gate has passed it already (stream frames are gated before admission)."""


class Lane(asyncio.Queue[LaneItem]):
    """A camera's frames admitted for detection, in admission order. Event-loop-confined."""

    def earliest_capture(self) -> float:
        """The earliest capture time among the frames waiting (inf: none)."""
        return min((item.frame.captured_at for item in self._queue), default=math.inf)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PushAck:
    camera_id: str
    seq: int | None
    captured_at: float
    deduplicated: bool


@dataclass(frozen=True)
class _Pending:
    image_bgr: np.ndarray
    captured_at: float


class CameraRuntime:
    def __init__(
        self,
        config: CameraConfig,
        origin: CameraOrigin,
        *,
        spool: Spool,
        admission: DetectionAdmission,
        loop: asyncio.AbstractEventLoop,
        enqueue: Callable[[CameraRuntime, LaneItem], None],
        on_health: Callable[[CameraRuntime, HealthChange], None],
        seq_start: int,
        window_s: float,
        idle_s: float,
        offline_after_s: float,
        tamper_after_s: float,
        pending_frames: int,
        max_pixels: int,
        track_score: float,
        source_roots: Sequence[Path],
        stream_hosts: Sequence[str],
    ):
        self.config = config
        self.origin = origin
        self.counters = CameraCounters()
        self.rates = Rates()
        self.tracker = Tracker(
            config.id, high_score=track_score, low_score=continuation_score(track_score)
        )
        self.windows = WindowBook(config.id, window_s=window_s, idle_s=idle_s)
        self.zones = tuple(
            Zone(
                name,
                tuple(zone.polygon),
                objects=frozenset(zone.objects) if zone.objects is not None else None,
                inertia=zone.inertia,
            )
            for name, zone in config.zones.items()
        )
        self.presence: dict[str, ZonePresence] = {}
        self.last_enriched: dict[str, float] = {}
        self.last_described: dict[str, float] = {}
        """Per track, when its appearance was last described (the colour histogram)."""
        self.lane = Lane()
        self.in_process: float | None = None
        """The capture time of the frame its lane is processing, if any."""
        self.behind_s = 0.0
        """How far the last processed frame's capture time was behind the server's clock:
        windows close by the camera's time (frames from a backlog or with old timestamps are
        grouped as they were captured, not as they arrive)."""
        self.last_frame_at: float | None = None
        self._spool = spool
        self._admission = admission
        self._loop = loop
        self._enqueue = enqueue
        self._on_health = on_health
        self._max_pixels = max_pixels
        self._source_roots = source_roots
        self._stream_hosts = stream_hosts
        motion = config.motion
        self._gate = MotionGate(
            threshold=motion.threshold,
            contour_area=motion.contour_area,
            lightning_threshold=motion.lightning_threshold,
            masks=[[(float(x), float(y)) for x, y in mask] for mask in motion.masks],
        )
        self.health = CameraHealth(offline_after_s=offline_after_s, tamper_after_s=tamper_after_s)
        self._observe_lock = threading.Lock()
        self._observed_at = 0.0
        self._admit_lock = threading.Lock()
        self._seq = seq_start
        self._pending: deque[_Pending] = deque(maxlen=pending_frames)
        self._pending_lock = threading.Lock()
        self._last_pushed: bytes | None = None
        self._ledger: FolderLedger | None = None
        self._spool_error: str | None = None  # confined to the folder watcher's thread
        self._retired = False
        """Set once the source is stopped; checked under ``_admit_lock`` before spooling."""
        self.source: StreamReader | FolderWatcher | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def waiting_since(self) -> float:
        """The earliest capture time among its frames waiting or in process (inf: none)."""
        earliest = self.lane.earliest_capture()
        return min(earliest, self.in_process if self.in_process is not None else math.inf)

    # -- the source ---------------------------------------------------------------------------
    def start_source(self) -> None:
        """Start the camera's reader or watcher (a runtime's source starts once; not after
        :meth:`stop_source`)."""
        source = self.config.source
        if self._retired or not self.config.enabled or isinstance(source, PushSourceConfig):
            return
        if isinstance(source, FolderSourceConfig):
            with self._admit_lock:
                ledger = self._spool.root / self.id / LEDGER_NAME
                self._ledger = FolderLedger(ledger, source.path, self._seq)
            self.source = FolderWatcher(self.id, source, on_file=self.on_folder_file)
        else:
            self.source = StreamReader(
                self.id,
                source,
                detect_fps=self.config.detect_fps,
                on_frame=self.on_stream_frame,
                roots=self._source_roots,
                allowed_hosts=self._stream_hosts,
            )
        self.source.start()

    def stop_source(self) -> None:
        """Stop the source; from now on it spools nothing, though its thread outlives the stop
        (a read or write that does not return), so it never competes with a successor."""
        self._retired = True
        if self.source is not None:
            self.source.stop()
        # a spool write under way (a push, or a source thread that outlived its stop) ends
        # before the successor counts the spool; one that hangs is given 5 s
        if self._admit_lock.acquire(timeout=5.0):
            self._admit_lock.release()

    def source_status(self) -> SourceStatus | FolderStatus | None:
        return self.source.status() if self.source is not None else None

    @property
    def watches_for_offline(self) -> bool:
        """Only a stream is expected to deliver frames all the time."""
        return isinstance(self.source, StreamReader)

    # -- gate and health (any thread) ---------------------------------------------------------
    def _clock(self) -> float:
        """Now, never before the last reading (the health monitor's time only moves on);
        called under ``_observe_lock``."""
        self._observed_at = max(self._observed_at, time.time())
        return self._observed_at

    def observe(self, image: np.ndarray) -> MotionVerdict:
        """The motion gate's verdict on ``image``; a health change it reveals is reported."""
        with self._observe_lock:
            verdict = self._gate.observe(image)
            change = self.health.observe(verdict.small_grey, self._clock())
        if change is not None:
            self._on_health(self, change)
        return verdict

    def check_health(self) -> None:
        if not self.watches_for_offline:
            return
        with self._observe_lock:
            change = self.health.check(self._clock())
        if change is not None:
            self._on_health(self, change)

    def count_gated(self, verdict: MotionVerdict) -> bool:
        """Count a frame the gate stopped; True when it passed (motion, not a duplicate)."""
        if verdict.duplicate:
            self.counters.add("deduped")
            return False
        if not verdict.motion:
            self.counters.add("skipped_motion")
            return False
        return True

    # -- intake -------------------------------------------------------------------------------
    def _admit(self, origin: Origin, captured_at: float, data: bytes, ext: str) -> SpooledFrame:
        """Spool a frame under the next sequence number (the caller holds ``_admit_lock`` and a
        detection-queue place)."""
        frame = self._spool.put(self.id, self._seq + 1, captured_at, origin, data, ext)
        self._seq = frame.seq  # not before: a failed write takes no number
        return frame

    def _to_lane(self, item: LaneItem) -> None:
        self._loop.call_soon_threadsafe(self._enqueue, self, item)

    def on_stream_frame(self, image_bgr: np.ndarray, captured_at: float) -> None:
        """A sampled stream frame (reader thread): gated now; with motion it waits for a
        detection-queue place among the newest ``pending_frames``, the oldest dropped."""
        self.counters.add("frames_in")
        self.last_frame_at = time.time()
        if not self.count_gated(self.observe(image_bgr)):
            return
        with self._pending_lock:
            if len(self._pending) == self._pending.maxlen:
                self.counters.add("dropped")
            self._pending.append(_Pending(image_bgr, captured_at))
        self.admit_pending()

    @property
    def has_pending(self) -> bool:
        with self._pending_lock:
            return bool(self._pending)

    def admit_pending(self) -> None:
        """Admit waiting stream frames while the detection queue has room (any thread)."""
        with self._admit_lock:
            while not self._retired:
                with self._pending_lock:
                    if not self._pending or not self._admission.try_take():
                        return
                    pending = self._pending.popleft()
                try:
                    ok, jpeg = cv2.imencode(
                        ".jpg", pending.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
                    )
                    if not ok:
                        raise ValueError("the frame could not be encoded")
                    frame = self._admit("stream", pending.captured_at, jpeg.tobytes(), "jpg")
                except Exception:
                    self._admission.give_back()
                    self.counters.add("dropped")
                    log.exception("camera %s: a stream frame could not be spooled", self.id)
                    continue
                rgb = cv2.cvtColor(pending.image_bgr, cv2.COLOR_BGR2RGB)
                self._to_lane(LaneItem(frame, rgb, gated=True))

    def on_folder_file(
        self, path: Path, data: bytes, mtime: float
    ) -> FileVerdict | tuple[FileVerdict, str]:
        """A settled file of the watched folder (watcher thread): checked whole, then spooled,
        its identity in the folder ledger first; one spooled already and not moved away (before
        a restart, or handed on again after a touch) is only accepted (moved away now)."""
        ledger = self._ledger
        assert ledger is not None, "start_source makes the ledger before the watcher"
        if ledger.taken(path.name, data):
            log.info("camera %s: '%s' was spooled already; moved away", self.id, path.name)
            return FileVerdict.ACCEPTED
        try:
            ext = _image_extension(data)
            image = decode_image(data, self._max_pixels)
            _check_size(image.shape[0], image.shape[1])
        except ImageError as exc:
            self.counters.add("frames_in")
            self.counters.add("corrupt")
            return FileVerdict.CORRUPT, str(exc)  # the watcher logs it, once, with where it went
        if not self._admission.try_take():
            return FileVerdict.BUSY
        with self._admit_lock:
            if self._retired:  # replaced or removed: the file is left to its successor
                self._admission.give_back()
                return FileVerdict.BUSY
            try:
                ledger.taking(path.name, data, self._seq + 1)
                frame = self._admit("folder", mtime, data, ext)
            except OSError as exc:  # the disk, not the file: taken again at a later poll
                self._admission.give_back()
                ledger.forget(path.name)
                self._spool_failed(path.name, exc)
                return FileVerdict.BUSY
            except BaseException:
                self._admission.give_back()
                raise
            self._spool_error = None
            self.counters.add("frames_in")
            self.last_frame_at = time.time()
            self._to_lane(LaneItem(frame, image, gated=False))
        return FileVerdict.ACCEPTED

    def _spool_failed(self, name: str, exc: OSError) -> None:
        """Log a folder file that could not be spooled, once for each new reason."""
        why = f"'{name}' could not be spooled ({exc.strerror or exc}); it is tried again"
        if why != self._spool_error:
            self._spool_error = why
            log.warning("camera %s: %s", self.id, why)

    def spool_pushed(self, data: bytes, captured_at: float) -> PushAck:
        """A pushed frame (worker thread): refused unless it is a whole JPEG or PNG within the
        pixel limit, skipped when it repeats the last one byte for byte, else spooled (durable
        when this returns) and queued; a full detection queue refuses it."""
        ext = _image_extension(data)
        height, width = check_encoded(data, self._max_pixels).shape[:2]
        _check_size(height, width)
        digest = hashlib.blake2b(data, digest_size=16).digest()
        self.counters.add("frames_in")
        self.last_frame_at = time.time()
        with self._admit_lock:
            if self._retired:  # being replaced or deleted: the successor takes the next push
                raise PipelineClosedError()
            if digest == self._last_pushed:
                self.counters.add("deduped")
                return PushAck(self.id, None, captured_at, deduplicated=True)
            if not self._admission.try_take():
                self.counters.add("dropped")
                raise DetectionQueueFullError(self._admission.limit)
            try:
                frame = self._admit("push", captured_at, data, ext)
            except BaseException:
                self._admission.give_back()
                raise
            self._last_pushed = digest
            self._to_lane(LaneItem(frame, None, gated=False))
        return PushAck(self.id, frame.seq, frame.captured_at, deduplicated=False)

    def zone_presence(self, track_key: str) -> ZonePresence:
        presence = self.presence.get(track_key)
        if presence is None:
            presence = self.presence[track_key] = ZonePresence(self.zones)
        return presence

    def forget_tracks(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self.presence.pop(key, None)
            self.last_enriched.pop(key, None)
            self.last_described.pop(key, None)


def _check_size(height: int, width: int) -> None:
    problem = frame_size_problem(int(height), int(width))
    if problem is not None:
        raise ImageError("unusable_shape", problem)


def _image_extension(data: bytes) -> str:
    if not data:
        raise ImageError("empty", "it is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt == "jpeg":
        return "jpg"
    if fmt == "png":
        return "png"
    raise ImageError("unsupported_format", "a camera frame must be a JPEG or PNG image")
