"""The camera pipeline: cameras and their sources → motion gate → the served detector's shared
batches → tracker → zones → per-camera windows → analyser → events, with every admitted frame
spooled before it is acknowledged and every detection recorded once.

Flow of a frame. A camera's intake (:mod:`hearthwatch.security.camera`) spools it and puts it in
the camera's lane. One task per camera takes its lane in order: decode and gate (push and folder
frames; stream frames were gated before admission), detect (in-process, batched with every
other camera's frames and ``/detect``), track, place in zones and a window, and record the
frame, its detections, tracks and windows in one transaction; then the frame's file is kept for
media (it has detections) or deleted. A detector that is overloaded and a store that is busy or
unreachable are waited for (backing off), so no admitted frame is given up for them; a frame
that fails for good is kept under ``DATA_DIR/failed/``. Tracks due for enrichment are enriched
in the background (at most once per track per ``ENRICHMENT_INTERVAL_S``; a frame model's answer,
such as the threats it saw, is stored with every detection of the frame). A window that meets a
critical trigger gets an early, provisional event at once (:mod:`.early_alerts`). A tick closes
windows that are due, and a single analysis task turns each closed window into an event
(:mod:`.event_writer`: the analyser, then the risk rules, in the arm mode set by
:meth:`Pipeline.set_arm_mode`); one whose event cannot be written is tried again.

Windows close by the camera's clock: the capture time of its last processed frame plus the time
since, held back to the capture time of the earliest frame waiting in its lane or in process
(those may still join the open window; a window they could not join closes).

Restart. Open windows are resumed from the store, closed windows without an event are analysed,
and frames left in the spool are queued again, before any source starts, and processed without
the motion gate (a restarted gate calibrates on its first frames): a frame already recorded
(its sequence number is at or below the camera's last recorded one; a camera's lane is
processed in order) is only tidied, so nothing is counted twice.

Confinement. Sources are checked against ``SOURCE_ROOTS`` and ``STREAM_HOSTS`` (and kept out of
``DATA_DIR``) when a camera is created or updated, from the cameras file or the API, and again
for stored cameras at every start; no two cameras watch one folder. Creating, replacing and
deleting a camera are done one at a time (``_editing``; its source is checked before, outside
it, a host name may take long to resolve), and not once :meth:`Pipeline.stop` has begun.

:class:`Pipeline` is event-loop-confined; the store runs on one writer thread (so writes keep
the order they were issued in) and its reads on worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from hearthwatch.config import Settings
from hearthwatch.runtime.enrichment.service import EnrichmentService, InputDetection
from hearthwatch.runtime.errors import OverloadedError, ServingError
from hearthwatch.runtime.imaging.decode import ImageError, decode_image
from hearthwatch.runtime.serving.batcher import DeadlineExceededError
from hearthwatch.security.admission import DetectionAdmission
from hearthwatch.security.analysis import build_analyser
from hearthwatch.security.analysis.engines import ChatEngine
from hearthwatch.security.appearance import COLOUR_DESCRIPTOR, DEFAULT_THRESHOLDS, colour_histogram
from hearthwatch.security.camera import CameraOrigin, CameraRuntime, LaneItem, PushAck
from hearthwatch.security.cameras import CameraConfig, configured_cameras, validation_problems
from hearthwatch.security.detector_link import ServedDetector
from hearthwatch.security.early_alerts import EarlyAlerts
from hearthwatch.security.errors import (
    CameraConflictError,
    CameraDisabledError,
    InvalidCameraError,
    NotAPushCameraError,
    PipelineClosedError,
    UnknownCameraError,
)
from hearthwatch.security.event_writer import CameraFacts, EventWriter, RiskSettings
from hearthwatch.security.evidence import ARM_MODES, ArmMode
from hearthwatch.security.health import HealthChange
from hearthwatch.security.metrics import PipelineMetrics
from hearthwatch.security.observations import TrackedDetection
from hearthwatch.security.reid import APPEARANCE_MODEL, REID_MODEL, ReidMatcher, descriptor_model
from hearthwatch.security.sources.config import (
    FileSourceConfig,
    FolderSourceConfig,
    HttpSourceConfig,
    PushSourceConfig,
    RtspSourceConfig,
)
from hearthwatch.security.sources.confinement import ConfinementError, check_path, check_stream_url
from hearthwatch.security.sources.folder import DONE_DIR, FAILED_DIR
from hearthwatch.security.sources.status import SourceState, SourceStatus
from hearthwatch.security.spool import Spool, SpooledFrame
from hearthwatch.security.store.database import open_database
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.feedback import FeedbackStore
from hearthwatch.security.store.incidents import Descriptor, IncidentStore
from hearthwatch.security.store.records import (
    DetectionRecord,
    EventRecord,
    FrameRecord,
    WindowLinkRecord,
    WindowUpdate,
)
from hearthwatch.security.store.retention import apply_retention
from hearthwatch.security.store.system_state import SystemStateStore
from hearthwatch.security.windows import ClosedWindow, OpenWindowState
from hearthwatch.security.zones import zones_at

log = logging.getLogger(__name__)

T = TypeVar("T")
TICK_S = 0.5
RETENTION_EVERY_S = 3600.0
EDIT_WAIT_ON_STOP_S = 10.0
DETECT_BACKOFF_MIN_S = 0.1
DETECT_BACKOFF_MAX_S = 5.0
STORE_BACKOFF_MIN_S = 0.5
STORE_BACKOFF_MAX_S = 30.0
ANALYSIS_RETRY_S = 60.0
ENRICH_CONCURRENCY = 2
ARM_MODE_KEY = "arm_mode"
FORGET_TRACKS_AFTER_S = 600.0
HEALTH_LEVELS = {"offline": "medium", "tampered": "high"}
GIB = 1024**3


class _ShuttingDownError(Exception):
    """The detector stopped answering because the pipeline is stopping."""


@dataclass(frozen=True)
class CameraView:
    config: CameraConfig
    origin: CameraOrigin


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        detector: ServedDetector,
        enrichment: EnrichmentService | None,
        registry: CollectorRegistry,
        chat_engine: ChatEngine | None = None,
    ):
        self.settings = settings
        self.chat_engine = chat_engine
        self.detector = detector
        self.enrichment = enrichment
        self.data_dir = settings.data_dir
        self.spool = Spool(settings.data_dir)
        self.admission = DetectionAdmission(settings.detection_queue_max_size)
        self.cameras: dict[str, CameraRuntime] = {}
        self.metrics = PipelineMetrics(registry, self._readings)
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="events-store")
        self._store: EventStore | None = None
        self._writer: EventWriter | None = None
        self._state: SystemStateStore | None = None
        self.feedback: FeedbackStore | None = None
        self._early: EarlyAlerts | None = None
        self._reid: ReidMatcher | None = None
        self.incidents: IncidentStore | None = None
        self.arm_mode: ArmMode = "home"
        """Changed by :meth:`set_arm_mode`, read when a window is analysed (on the loop)."""
        self._analysis: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()
        self._analysing: set[str] = set()
        """Windows closed (or about to be) whose event is not written yet: retention leaves
        them alone. Changed on the loop; read by retention's thread (a membership test)."""
        """Closed windows to analyse: (window id, camera id, when closed: monotonic)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._enriching = asyncio.Semaphore(ENRICH_CONCURRENCY)
        self._closing = False
        self._last_retention = 0.0
        self._editing = asyncio.Lock()
        """Held across each whole create, replace or delete of a camera: its folder check, store
        write and runtime start or stop (its source is checked before, outside it)."""
        self._retention: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def set_arm_mode(self, mode: ArmMode) -> None:
        """Store the arm mode (it outlives a restart), then use it for the windows analysed
        from now on."""
        if mode not in ARM_MODES:
            raise ValueError(f"arm mode must be one of {', '.join(ARM_MODES)}")
        if self._state is None:
            raise PipelineClosedError()
        await self._write(self._state.put, ARM_MODE_KEY, mode, now=time.time())
        self.arm_mode = mode

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise PipelineClosedError()
        return self._store

    async def start(self) -> None:
        """Open and migrate the store, load the cameras (file, then API-created ones), start
        their sources, resume open windows, analyse closed ones and re-queue spooled frames."""
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        url = settings.database_url or f"sqlite:///{settings.data_dir / 'hearthwatch.db'}"
        self._store = await self._write(_opened_store, url)
        analyser = build_analyser(settings.analyser, settings.analyser_options, self.chat_engine)
        self.feedback = FeedbackStore(self.store.database)
        self._state = SystemStateStore(self.store.database)
        stored_mode = await self._write(self._state.get, ARM_MODE_KEY)
        if stored_mode in ARM_MODES:
            self.arm_mode = stored_mode
        risk = RiskSettings(
            settings.parsed_risk_rules(), lambda: self.arm_mode, settings.recent_events_minutes * 60
        )
        self.incidents = IncidentStore(self.store.database)
        if settings.reid_enabled:
            thresholds = dict(DEFAULT_THRESHOLDS)
            if settings.reid_threshold is not None:
                thresholds = dict.fromkeys(thresholds, settings.reid_threshold)
            self._reid = ReidMatcher(
                self.incidents,
                self._write,
                self._camera_name,
                horizon_s=settings.reid_horizon_minutes * 60,
                thresholds=thresholds,
            )
            await self._reid.load(time.time())
        self._writer = EventWriter(
            self.store,
            self._write,
            analyser,
            self.data_dir,
            risk,
            self.metrics.observe_analysis,
            self._reid,
        )
        self._early = EarlyAlerts(
            risk.rules,
            self.store,
            self._write,
            self.camera_facts,
            lambda: self.arm_mode,
            self.metrics.early_alerts.inc,
        )
        await asyncio.to_thread(self.spool.remove_partials)  # before anything is spooled
        for config, origin in await self._configured_cameras():
            await self._start_camera(config, origin, source=False)
        await self._resume()  # recovered frames go first in each lane, then the sources start
        for runtime in list(self.cameras.values()):
            await asyncio.to_thread(runtime.start_source)
        self._spawn(self._tick_loop())
        self._spawn(self._analysis_loop())

    async def stop(self) -> None:
        """Stop the sources, let each lane finish the frame it is on, and stop; what is still
        spooled is processed at the next start."""
        self._closing = True
        try:  # an edit under way ends first (a hung mount may hold it); later ones are refused
            await asyncio.wait_for(self._editing.acquire(), EDIT_WAIT_ON_STOP_S)
        except TimeoutError:
            log.warning("a camera edit has not ended in %.0f s; stopping", EDIT_WAIT_ON_STOP_S)
        else:
            self._editing.release()
        await asyncio.gather(
            *(asyncio.to_thread(r.stop_source) for r in list(self.cameras.values()))
        )
        tasks = [*self._lanes.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._retention is not None:  # its thread cannot be cancelled
            await asyncio.gather(self._retention, return_exceptions=True)
        if self._store is not None:
            await self._write(self._store.database.close)
        self._store_thread.shutdown(wait=True)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call on the writer thread, after every call issued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._store_thread, functools.partial(call, *args, **kwargs)
        )

    # -- cameras ------------------------------------------------------------------------------
    async def _configured_cameras(self) -> list[tuple[CameraConfig, CameraOrigin]]:
        """The cameras the config file and the cameras file define (stored as 'file' cameras;
        a difference from the stored copy is logged), then the API-created ones kept in the
        store."""
        cameras: list[tuple[CameraConfig, CameraOrigin]] = []
        settings = self.settings
        loaded = await asyncio.to_thread(
            configured_cameras, settings.cameras, settings.cameras_file
        )
        for note in loaded.notes:
            log.warning("cameras: %s", note)
        await asyncio.to_thread(
            check_folders_distinct,
            [await self._check_source(config) for config in loaded.cameras],
        )
        for config in loaded.cameras:
            stored = await asyncio.to_thread(self.store.get_camera, config.id)
            dumped = config.model_dump(mode="json")
            if stored is not None and dict(stored.config) != dumped:
                log.warning(
                    "camera %s differs from its stored copy (origin %s); the cameras file "
                    "wins", config.id, stored.origin,
                )  # fmt: skip
            await self._write(
                self.store.put_camera, config.id, config.name, "file", dumped, now=time.time()
            )
            cameras.append((config, "file"))
        from_file = {config.id for config, _ in cameras}
        for row in await asyncio.to_thread(self.store.list_cameras):
            if row.origin != "api" or row.id in from_file:
                continue
            try:
                config = CameraConfig.model_validate(dict(row.config))
            except ValidationError as exc:
                log.error("stored camera %s is not valid any more, not started: %s", row.id, exc)
                continue
            try:  # SOURCE_ROOTS or STREAM_HOSTS may have narrowed since it was created
                config = await self._check_source(config)
                await asyncio.to_thread(check_folders_distinct, [*(c for c, _ in cameras), config])
            except InvalidCameraError as exc:
                log.error("stored camera %s is not started: %s", row.id, exc)
                continue
            cameras.append((config, "api"))
        return cameras

    async def _check_source(self, config: CameraConfig) -> CameraConfig:
        return await asyncio.to_thread(check_source, config, self.settings)

    async def _start_camera(
        self, config: CameraConfig, origin: CameraOrigin, *, source: bool = True
    ) -> CameraRuntime:
        settings = self.settings
        seq = max(
            await asyncio.to_thread(self.store.last_seq, config.id),
            await asyncio.to_thread(self.spool.last_seq, config.id),
        )
        runtime = CameraRuntime(
            config,
            origin,
            spool=self.spool,
            admission=self.admission,
            loop=asyncio.get_running_loop(),
            enqueue=self._enqueue,
            on_health=self._on_health_threadsafe,
            seq_start=seq,
            window_s=settings.batch_window_seconds,
            idle_s=settings.batch_idle_timeout_seconds,
            offline_after_s=settings.camera_offline_after_s,
            tamper_after_s=settings.camera_tamper_after_s,
            pending_frames=settings.stream_pending_frames,
            max_pixels=settings.max_image_pixels,
            track_score=settings.detection_confidence_threshold,
            source_roots=settings.source_roots,
            stream_hosts=settings.stream_hosts,
        )
        self.cameras[config.id] = runtime
        self._lanes[config.id] = asyncio.create_task(self._run_lane(runtime))
        if source:
            await asyncio.to_thread(runtime.start_source)
        return runtime

    async def _stop_camera(self, camera_id: str) -> list[SpooledFrame]:
        """Stop the camera's source and lane and close its windows; answers its frames still
        spooled (those its lane had not finished), in order."""
        runtime = self.cameras.pop(camera_id)
        await asyncio.to_thread(runtime.stop_source)
        lane = self._lanes.pop(camera_id)
        lane.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lane
        while not runtime.lane.empty():
            runtime.lane.get_nowait()
            self.admission.give_back()
        camera_now = time.time() - runtime.behind_s
        ends = [w.opened_at + runtime.windows.window_s for w in runtime.windows.open_windows()]
        for closed in runtime.windows.due(max([camera_now, *ends])):  # every window closes
            await self._close_window(runtime, closed)
        return await asyncio.to_thread(self.spool.pending_of, camera_id)

    def camera(self, camera_id: str) -> CameraRuntime:
        runtime = self.cameras.get(camera_id)
        if runtime is None:
            raise UnknownCameraError(camera_id)
        return runtime

    def list_cameras(self) -> list[CameraView]:
        return [CameraView(r.config, r.origin) for r in self.cameras.values()]

    async def add_camera(self, fields: dict[str, Any]) -> CameraView:
        config = await self._check_source(_validated_camera(fields))
        async with self._editing:
            self._check_open()
            if config.id in self.cameras:
                raise CameraConflictError(f"camera '{config.id}' exists already")
            await self._check_folder_free(config)
            dumped = config.model_dump(mode="json")
            await self._write(
                self.store.put_camera, config.id, config.name, "api", dumped, now=time.time()
            )
            await self._start_camera(config, "api")
        return CameraView(config, "api")

    async def replace_camera(self, camera_id: str, fields: dict[str, Any]) -> CameraView:
        config = await self._check_source(_validated_camera({**fields, "id": camera_id}))
        async with self._editing:
            self._check_open()
            runtime = self._api_camera(camera_id)
            await self._check_folder_free(config)
            await self._write(
                self.store.put_camera,
                config.id,
                config.name,
                "api",
                config.model_dump(mode="json"),
                now=time.time(),
            )
            left = await self._stop_camera(runtime.id)
            replaced = await self._start_camera(config, "api", source=False)
            await self._requeue(replaced, left)
            await asyncio.to_thread(replaced.start_source)
        return CameraView(config, "api")

    async def remove_camera(self, camera_id: str) -> None:
        """Delete an API camera: a running one, or one kept in the store that did not start
        (its source refused at start-up), which can be deleted though nothing lists it."""
        async with self._editing:
            self._check_open()
            if camera_id in self.cameras:
                self._api_camera(camera_id)
                await self._stop_camera(camera_id)
            else:
                stored = await asyncio.to_thread(self.store.get_camera, camera_id)
                if stored is None or stored.origin != "api":
                    raise UnknownCameraError(camera_id)
            await asyncio.to_thread(self.spool.forget_camera, camera_id)  # what it sent last too
            await self._write(self.store.delete_camera, camera_id)

    async def _check_folder_free(self, config: CameraConfig) -> None:
        """Refuse ``config`` when another camera watches its folder (on a worker thread: the
        folders are looked at)."""
        others = [r.config for r in self.cameras.values() if r.id != config.id]
        await asyncio.to_thread(check_folders_distinct, [*others, config])

    def _check_open(self) -> None:
        if self._closing:
            raise PipelineClosedError()

    def _api_camera(self, camera_id: str) -> CameraRuntime:
        runtime = self.camera(camera_id)
        if runtime.origin == "file":
            raise CameraConflictError(
                f"camera '{camera_id}' is defined in the cameras file; edit the file and restart"
            )
        return runtime

    # -- intake -------------------------------------------------------------------------------
    async def push_frame(self, camera_id: str, data: bytes, captured_at: float | None) -> PushAck:
        """Spool a pushed frame (durable when this returns) and queue it for detection."""
        if self._closing:
            raise PipelineClosedError()
        runtime = self.camera(camera_id)
        if not isinstance(runtime.config.source, PushSourceConfig):
            raise NotAPushCameraError(camera_id, runtime.config.source.type)
        if not runtime.config.enabled:
            raise CameraDisabledError(camera_id)
        now = time.time()
        when = now if captured_at is None else min(captured_at, now)
        return await asyncio.to_thread(runtime.spool_pushed, data, when)

    def _enqueue(self, runtime: CameraRuntime, item: LaneItem) -> None:
        """Put a spooled frame in its camera's lane (on the loop); a camera removed meanwhile
        leaves the frame spooled for the next start."""
        if self.cameras.get(runtime.id) is not runtime:
            self.admission.give_back()
            return
        runtime.lane.put_nowait(item)

    # -- the lane: one frame at a time per camera ---------------------------------------------
    async def _run_lane(self, runtime: CameraRuntime) -> None:
        while True:
            item = await runtime.lane.get()
            runtime.in_process = item.frame.captured_at
            try:
                await self._process(runtime, item)
            except asyncio.CancelledError:
                raise
            except _ShuttingDownError:
                return  # this frame and those after it stay spooled: the next start, in order
            except Exception:
                runtime.counters.add("failed")
                kept = await asyncio.to_thread(self.spool.quarantine, item.frame)
                log.exception(
                    "camera %s: frame %d failed; kept at %s", runtime.id, item.frame.seq, kept
                )
            finally:
                runtime.in_process = None
                self.admission.give_back()
                self._admit_waiting()

    def _admit_waiting(self) -> None:
        for runtime in self.cameras.values():
            if runtime.has_pending:
                asyncio.get_running_loop().run_in_executor(None, runtime.admit_pending)

    async def _process(self, runtime: CameraRuntime, item: LaneItem) -> None:
        frame = item.frame
        image = item.image
        if image is None:
            try:
                image = await asyncio.to_thread(_read_frame, frame, self.settings.max_image_pixels)
            except (ImageError, OSError) as exc:
                runtime.counters.add("corrupt")
                log.warning(
                    "camera %s: spooled frame %d unreadable: %s", runtime.id, frame.seq, exc
                )
                await asyncio.to_thread(self.spool.discard, frame)
                return
        if not item.gated:
            verdict = await asyncio.to_thread(runtime.observe, image)
            if not runtime.count_gated(verdict):
                await asyncio.to_thread(self.spool.discard, frame)
                return
        found = await self._detect(image)
        runtime.counters.add("detected")
        height, width = image.shape[:2]
        objects = runtime.config.objects
        kept = [
            d for d in found if objects.accepts(d.label, d.score, d.box, (int(width), int(height)))
        ]
        tracked = runtime.tracker.update(kept, frame.captured_at)
        runtime.behind_s = time.time() - frame.captured_at
        records, windows, links = self._placed(runtime, tracked, frame, int(width), int(height))
        stored = self.spool.stored_path(frame) if records else None
        record = FrameRecord(
            runtime.id, frame.seq, frame.captured_at, int(width), int(height), frame.origin, stored
        )
        ids = await self._recorded(record, records, windows, links)
        await asyncio.to_thread(self.spool.keep if records else self.spool.discard, frame)
        window_of = {i: r.window_id for i, r in zip(ids, records, strict=True)}
        early = self._early
        if (
            records
            and early is not None
            and early.watches(
                runtime.id,
                [(r.label, r.zones) for r in records],
                frame.captured_at,
                runtime.config.timezone,
            )
        ):
            for window_id in set(window_of.values()):
                self._spawn(early.check(window_id, runtime.id))
        if ids and self.enrichment is not None:
            self._enrich_due(runtime, image, tracked, ids, window_of, frame.captured_at)
        if ids and self._reid is not None:
            self._describe_due(runtime, image, tracked, ids, frame.captured_at)

    async def _recorded(
        self,
        frame: FrameRecord,
        records: list[DetectionRecord],
        windows: list[WindowUpdate],
        links: list[WindowLinkRecord],
    ) -> list[int]:
        """The frame recorded; a store that is unreachable or busy (a locked SQLite file, a
        restarting PostgreSQL) is tried again, backing off, until it answers, so an admitted
        frame is never given up for it (the lane waits; back-pressure reaches the cameras)."""
        delay = STORE_BACKOFF_MIN_S
        while True:
            try:
                return await self._write(self.store.record_frame, frame, records, windows, links)
            except (OperationalError, InterfaceError, OSError) as exc:
                if self._closing:
                    raise _ShuttingDownError() from None
                log.warning("camera %s: the events store failed (%s); retrying", frame.camera_id,
                            type(exc).__name__)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_BACKOFF_MAX_S)

    async def _detect(self, image: np.ndarray) -> list[Any]:
        """The frame's detections; a detector overloaded, draining or past the deadline is
        tried again (backing off up to :data:`DETECT_BACKOFF_MAX_S`) until it answers, so the
        lane waits and back-pressure reaches the cameras, and no admitted frame is given up;
        while the pipeline stops, :class:`_ShuttingDownError` leaves the frame spooled."""
        delay = DETECT_BACKOFF_MIN_S
        while True:
            try:
                return (await self.detector.detect(image)).detections
            except (OverloadedError, DeadlineExceededError):
                if self._closing:
                    raise _ShuttingDownError() from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, DETECT_BACKOFF_MAX_S)

    def _placed(
        self,
        runtime: CameraRuntime,
        tracked: Sequence[TrackedDetection],
        frame: SpooledFrame,
        width: int,
        height: int,
    ) -> tuple[list[DetectionRecord], list[WindowUpdate], list[WindowLinkRecord]]:
        """Each tracked detection placed in its zones and its camera's window, as records."""
        records: list[DetectionRecord] = []
        links: list[WindowLinkRecord] = []
        for found in tracked:
            detection = found.detection
            inside = zones_at(detection.box, width, height, runtime.zones, detection.label)
            current, _ = runtime.zone_presence(found.track_key).update(inside)
            assignment = runtime.windows.add(found.track_key, frame.captured_at)
            links += [
                WindowLinkRecord(assignment.window_id, earlier, key)
                for earlier, key in assignment.links
            ]
            records.append(
                DetectionRecord(
                    track_key=found.track_key,
                    window_id=assignment.window_id,
                    label=detection.label,
                    score=detection.score,
                    box=detection.box,
                    zones=current,
                    stationary=found.stationary,
                )
            )
        windows = [
            WindowUpdate(
                state.window_id,
                runtime.id,
                state.opened_at,
                state.last_detection_at,
                state.opened_at + self.settings.batch_window_seconds,
            )
            for state in runtime.windows.open_windows()
            if records
        ]
        return records, windows, links

    # -- enrichment ---------------------------------------------------------------------------
    def _enrich_due(
        self,
        runtime: CameraRuntime,
        image: np.ndarray,
        tracked: Sequence[TrackedDetection],
        ids: Sequence[int],
        window_of: Mapping[int, str],
        captured_at: float,
    ) -> None:
        """Enrich, in the background, the tracks not enriched within the interval; skipped
        (tried again on a later frame) while the enrichment slots are busy. A threat found
        checks its window for an early alert."""
        now = time.monotonic()
        interval = self.settings.enrichment_interval_s
        due = [
            (found, detection_id)
            for found, detection_id in zip(tracked, ids, strict=True)
            if now - runtime.last_enriched.get(found.track_key, -math.inf) >= interval
        ]
        if not due or self._enriching.locked():
            return
        for found, _ in due:
            runtime.last_enriched[found.track_key] = now
        self._spawn(self._enrich(runtime.id, image, due, window_of, captured_at))

    async def _enrich(
        self,
        camera_id: str,
        image: np.ndarray,
        due: list[tuple[TrackedDetection, int]],
        window_of: Mapping[int, str],
        captured_at: float,
    ) -> None:
        assert self.enrichment is not None
        async with self._enriching:
            detections = [InputDetection(f.detection.label, f.detection.box) for f, _ in due]
            try:
                result = await self.enrichment.enrich(
                    image, detections, self.settings.enrich_timeout_ms / 1000
                )
            except ServingError as exc:
                log.warning("enrichment failed: %s", exc)
                return
            now = time.time()
            early = self._early
            threatened: set[str] = set()
            frame_wide = {name: {"frame": value} for name, value in result.frame.items()}
            for (found, detection_id), per_model in zip(due, result.detections, strict=True):
                # a frame model's answer (threats) is stored with every detection it saw
                for model, value in {**per_model, **frame_wide}.items():
                    answer = dict(value) if isinstance(value, dict) else {"value": value}
                    if early is not None and early.threatening(answer):
                        threatened.add(window_of[detection_id])
                    embedding = answer.pop("embedding", None)
                    if embedding is not None:
                        vector = np.asarray(embedding, np.float32)
                        await self._store_descriptor(
                            camera_id, found, detection_id, model, vector, captured_at, answer
                        )
                        continue
                    await self._write(
                        self.store.add_enrichment,
                        found.track_key,
                        detection_id,
                        model,
                        answer,
                        None,
                        created_at=now,
                    )
            if early is not None:
                for window_id in threatened:
                    self._spawn(early.check(window_id, camera_id))

    def _describe_due(
        self,
        runtime: CameraRuntime,
        image: np.ndarray,
        tracked: Sequence[TrackedDetection],
        ids: Sequence[int],
        captured_at: float,
    ) -> None:
        """The colour-histogram descriptor, in the background, of the tracks that get it (people
        while the re-ID model is unavailable, vehicles) and were not described within the
        enrichment interval."""
        reid_model = self.enrichment is not None and REID_MODEL in self.enrichment.models
        now = time.monotonic()
        due = [
            (found, detection_id)
            for found, detection_id in zip(tracked, ids, strict=True)
            if descriptor_model(found.detection.label, reid_model) == APPEARANCE_MODEL
            and now - runtime.last_described.get(found.track_key, -math.inf)
            >= self.settings.enrichment_interval_s
        ]
        for found, _ in due:
            runtime.last_described[found.track_key] = now
        if due:
            self._spawn(self._describe(runtime.id, image, due, captured_at))

    async def _describe(
        self,
        camera_id: str,
        image: np.ndarray,
        due: list[tuple[TrackedDetection, int]],
        captured_at: float,
    ) -> None:
        boxes = [found.detection.box for found, _ in due]
        try:
            vectors = await asyncio.to_thread(lambda: [colour_histogram(image, b) for b in boxes])
        except ValueError as exc:  # a box with no pixels in the frame
            log.warning("camera %s: no appearance descriptor: %s", camera_id, exc)
            return
        for (found, detection_id), vector in zip(due, vectors, strict=True):
            await self._store_descriptor(
                camera_id, found, detection_id, APPEARANCE_MODEL, vector, captured_at,
                {"descriptor": COLOUR_DESCRIPTOR},
            )  # fmt: skip

    async def _store_descriptor(
        self,
        camera_id: str,
        found: TrackedDetection,
        detection_id: int,
        model: str,
        vector: np.ndarray,
        captured_at: float,
        result: dict[str, Any],
    ) -> None:
        """An enrichment with an embedding, stored and indexed for re-identification (seen at
        its frame's capture time)."""
        enrichment_id = await self._write(
            self.store.add_enrichment, found.track_key, detection_id, model, result, vector,
            created_at=time.time(),
        )  # fmt: skip
        if self._reid is not None:
            await self._reid.add(
                Descriptor(enrichment_id, found.track_key, camera_id, found.detection.label,
                           model, vector, captured_at)
            )  # fmt: skip

    # -- windows, events, health ------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick(time.time())
            except Exception:
                log.exception("the camera pipeline's tick failed")

    async def _tick(self, now: float) -> None:
        for runtime in list(self.cameras.values()):
            # the camera's clock, held back to the earliest frame waiting or in process: those
            # may still join the open window, and windows they could not join close now
            for closed in runtime.windows.due(min(now - runtime.behind_s, runtime.waiting_since)):
                await self._close_window(runtime, closed)
            runtime.check_health()
            runtime.forget_tracks(runtime.tracker.forget_idle(now, FORGET_TRACKS_AFTER_S))
            runtime.rates.sample(now, runtime.counters.snapshot())
        if now - self._last_retention >= RETENTION_EVERY_S and self._retention is None:
            self._last_retention = now
            self._spawn(self._apply_retention(now))
            if self._reid is not None:
                self._reid.prune(now - self._reid.horizon_s)

    async def _apply_retention(self, now: float) -> None:
        """Retention on a worker thread, beside the writer thread: it removes unit by unit, each
        in a short transaction, so frames are recorded while it runs (:meth:`stop` waits for
        it before closing the store)."""
        retention = functools.partial(
            apply_retention,
            self.store,
            self.data_dir,
            now=now,
            max_age_days=self.settings.retention_days,
            max_bytes=int(self.settings.retention_max_gb * GIB),
            analysing=self._analysing.__contains__,
        )
        future = self._retention = asyncio.get_running_loop().run_in_executor(None, retention)
        future.add_done_callback(self._retention_done)
        try:
            report = await asyncio.shield(future)
        except Exception:
            log.exception("retention failed; it runs again in %.0f s", RETENTION_EVERY_S)
        else:
            log.info("retention: %s", report)

    def _retention_done(self, _: asyncio.Future[Any]) -> None:
        self._retention = None

    async def _close_window(self, runtime: CameraRuntime, closed: ClosedWindow) -> None:
        self._analysing.add(closed.window_id)  # before it is closed in the store
        try:
            await self._write(self.store.close_window, closed.window_id, closed.closed_at)
        except Exception:  # one window's failure must not keep the others open
            self._analysing.discard(closed.window_id)
            log.exception("camera %s: window %s could not be closed", runtime.id, closed.window_id)
            return
        self._analysis.put_nowait((closed.window_id, runtime.id, time.monotonic()))

    async def _analysis_loop(self) -> None:
        assert self._writer is not None
        while True:
            window_id, camera_id, closed = await self._analysis.get()
            try:
                await self._write_event(window_id, camera_id)
            except Exception:
                log.exception(
                    "window %s: no event could be written; trying again in %.0f s",
                    window_id, ANALYSIS_RETRY_S,
                )  # fmt: skip
                retry = (window_id, camera_id, closed)
                asyncio.get_running_loop().call_later(
                    ANALYSIS_RETRY_S, self._analysis.put_nowait, retry
                )
                continue
            self._analysing.discard(window_id)
            self.metrics.window_close_latency.observe(time.monotonic() - closed)

    async def camera_facts(self, camera_id: str) -> CameraFacts:
        """What an analyser is told of a camera: from its running config, else its stored one
        (a deleted camera's windows still get events), else its id in UTC."""
        runtime = self.cameras.get(camera_id)
        config: CameraConfig | None
        if runtime is not None:
            config = runtime.config
        else:
            stored = await asyncio.to_thread(self.store.get_camera, camera_id)
            try:
                config = CameraConfig.model_validate(dict(stored.config)) if stored else None
            except ValidationError:  # not valid any more: its window still gets its event
                config = None
        if config is None:
            return CameraFacts(camera_id, "", "UTC", 5.0)
        return CameraFacts(config.name, config.zone_description, config.timezone, config.detect_fps)

    async def _camera_name(self, camera_id: str) -> str:
        return (await self.camera_facts(camera_id)).name

    async def _write_event(self, window_id: str, camera_id: str) -> None:
        assert self._writer is not None
        facts = await self.camera_facts(camera_id)
        _, level = await self._writer.write(window_id, camera_id, facts)
        self.metrics.events.labels(level).inc()

    def _on_health_threadsafe(self, runtime: CameraRuntime, change: HealthChange) -> None:
        """A health change seen on any thread becomes an event on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_health, runtime, change)

    def _on_health(self, runtime: CameraRuntime, change: HealthChange) -> None:
        if self._closing:
            return
        level = HEALTH_LEVELS.get(change.state)
        if level is None:
            log.info("camera %s is %s: %s", runtime.id, change.state, change.detail)
            return
        log.warning("camera %s is %s: %s", runtime.id, change.state, change.detail)
        self.metrics.health_events.labels(runtime.id, change.state).inc()
        self.metrics.events.labels(level).inc()
        record = EventRecord(
            kind="health",
            camera_id=runtime.id,
            window_id=None,
            started_at=change.since,
            ended_at=change.since,
            score=0.0,
            level=level,  # type: ignore[arg-type]
            reasons=(),
            analyser="health",
            summary=f"{runtime.config.name} is {change.state}: {change.detail}",
            labels=(),
            zones=(),
            created_at=time.time(),
        )
        self._spawn(self._write(self.store.add_event, record))

    # -- restart ------------------------------------------------------------------------------
    async def _resume(self) -> None:
        store = self.store
        for row in await asyncio.to_thread(store.open_windows):
            runtime = self.cameras.get(row.camera_id)
            if runtime is None:
                await self._write(store.close_window, row.id, max(time.time(), row.opened_at))
                continue
            contents = await asyncio.to_thread(store.window_contents, row.id)
            keys = tuple(dict.fromkeys(d.track_key for d in contents.detections))
            runtime.windows.resume(
                [OpenWindowState(row.id, row.opened_at, row.last_detection_at, keys)]
            )
        for row in await asyncio.to_thread(store.unanalysed_windows):
            self._analysing.add(row.id)
            self._analysis.put_nowait((row.id, row.camera_id, time.monotonic()))
        for camera_id, frames in (await asyncio.to_thread(self.spool.pending)).items():
            runtime = self.cameras.get(camera_id)
            if runtime is None:
                log.warning(
                    "%d spooled frames of camera %s, which is not configured, are kept until "
                    "it is", len(frames), camera_id,
                )  # fmt: skip
                continue
            await self._requeue(runtime, frames)

    async def _requeue(self, runtime: CameraRuntime, frames: list[SpooledFrame]) -> None:
        """Put a camera's spooled frames back in its lane, in order; those recorded already
        (at or below its last recorded sequence number, read after every write issued before)
        are only tidied. A recovered frame skips the gate: a restarted gate calibrates on its
        first frames and would skip them, and each was accepted for detection already."""
        recorded = await self._write(self.store.last_seq, runtime.id)
        for frame in frames:
            if frame.seq <= recorded:
                kept = await self._write(self.store.stored_image_of, runtime.id, frame.seq)
                await asyncio.to_thread(self.spool.keep if kept else self.spool.discard, frame)
                continue
            self.admission.take()
            runtime.lane.put_nowait(LaneItem(frame, None, gated=True))

    # -- reading ------------------------------------------------------------------------------
    def _readings(self) -> tuple[list[Any], int]:
        return [_Reading(r) for r in list(self.cameras.values())], self.admission.depth

    def status(self, camera_id: str) -> dict[str, Any]:
        runtime = self.camera(camera_id)
        counts = runtime.counters.snapshot()
        source = runtime.source_status()
        gated = counts["detected"] + counts["skipped_motion"] + counts["deduped"]
        health = runtime.health.last_change
        reconnects = source.reconnects if isinstance(source, SourceStatus) else 0
        return {
            "camera": runtime.id,
            "name": runtime.config.name,
            "enabled": runtime.config.enabled,
            "source": {
                "type": runtime.config.source.type,
                "state": (
                    source.state.value
                    if source is not None
                    else "push"
                    if isinstance(runtime.config.source, PushSourceConfig)
                    else SourceState.STOPPED.value  # disabled: no source runs
                ),
                "reconnects": reconnects,
                "last_error": source.last_error if source is not None else None,
            },
            "health": {
                "state": runtime.health.state,
                "reason": health.reason if health is not None else None,
                "since": health.since if health is not None else None,
                "detail": health.detail if health is not None else None,
            },
            "fps_in": round(runtime.rates.per_second("frames_in"), 3),
            "fps_detected": round(runtime.rates.per_second("detected"), 3),
            "motion_share": round(counts["detected"] / gated, 4) if gated else 0.0,
            "frames": counts,
            "dropped": counts["dropped"],
            "reconnects": reconnects,
            "queued": runtime.lane.qsize(),
            "open_windows": len(runtime.windows.open_windows()),
            "last_frame_at": runtime.last_frame_at,
        }


@dataclass(frozen=True)
class _Reading:
    runtime: CameraRuntime

    @property
    def camera_id(self) -> str:
        return self.runtime.id

    @property
    def counts(self) -> dict[str, int]:
        return self.runtime.counters.snapshot()

    @property
    def health(self) -> str:
        return str(self.runtime.health.state)

    @property
    def open_windows(self) -> int:
        return len(self.runtime.windows.open_windows())


def check_source(config: CameraConfig, settings: Settings) -> CameraConfig:
    """Refuse a camera whose ``file``/``folder`` source lies outside ``SOURCE_ROOTS`` or whose
    stream host is not in ``STREAM_HOSTS`` (blocking: a host name is resolved); answers the
    camera with its ``file``/``folder`` path resolved (absolute, links followed: a relative one
    would name another place after a start from another directory)."""
    source = config.source
    try:
        if isinstance(source, FileSourceConfig | FolderSourceConfig):
            path = check_path(source.path, settings.source_roots)
            data_dir = settings.data_dir.resolve()
            if path == data_dir or path.is_relative_to(data_dir) or data_dir.is_relative_to(path):
                raise InvalidCameraError(
                    f"camera '{config.id}': its source may not read the data directory "
                    "(DATA_DIR), where frames are spooled"
                )
            # the place checked is the place watched: a link re-pointed later moves nothing
            return config.model_copy(update={"source": source.model_copy(update={"path": path})})
        if isinstance(source, RtspSourceConfig | HttpSourceConfig):
            check_stream_url(source.url, settings.stream_hosts)
    except ConfinementError as exc:
        raise InvalidCameraError(f"camera '{config.id}': {exc}") from None
    return config


def check_folders_distinct(configs: Sequence[CameraConfig]) -> None:
    """Refuse two cameras watching one folder (each would take, and detect, the other's
    files), or one watching another's ``done/`` or ``failed/`` (blocking: each folder is looked
    at). Folders are compared by their resolved paths and, where they exist, by device and
    inode (another spelling, a link made later, a case-insensitive file system, a bind mount)."""
    watched: dict[object, str] = {}
    for config in configs:
        source = config.source
        if not isinstance(source, FolderSourceConfig):
            continue
        folder = source.path.resolve()
        places = [(folder, True), (folder / DONE_DIR, False), (folder / FAILED_DIR, False)]
        keys = [(key, own) for place, own in places for key in _folder_keys(place)]
        for key, _ in keys:
            other = watched.get(key)
            if other is not None:
                raise InvalidCameraError(
                    f"camera '{config.id}': camera '{other}' watches the folder "
                    f"{str(source.path)!r} already (or it is where that camera moves its files)"
                )
        for key, own in keys:
            if own:
                watched[key] = config.id
            else:
                watched.setdefault(key, config.id)


def _folder_keys(path: Path) -> list[object]:
    """What names a folder: its resolved path, and its device and inode if it exists."""
    try:
        info = os.stat(path)
    except OSError:
        return [path]
    return [path, (info.st_dev, info.st_ino)]


def check_cameras_file(settings: Settings) -> None:
    """Validate the configured cameras (the config file's and ``CAMERAS_FILE``'s) before the
    server starts: a bad field, a source outside its confinement or a folder watched twice
    raises an error naming the camera and the field (blocking)."""
    if settings.pipeline_enabled:
        configs = configured_cameras(settings.cameras, settings.cameras_file).cameras
        check_folders_distinct([check_source(config, settings) for config in configs])


def _opened_store(url: str) -> EventStore:
    database = open_database(url)
    database.upgrade()
    return EventStore(database)


def _validated_camera(fields: dict[str, Any]) -> CameraConfig:
    try:
        return CameraConfig.model_validate(fields)
    except ValidationError as exc:
        raise InvalidCameraError("; ".join(validation_problems(exc, "camera"))) from None


def _read_frame(frame: SpooledFrame, max_pixels: int) -> np.ndarray:
    return decode_image(Path(frame.path).read_bytes(), max_pixels)
