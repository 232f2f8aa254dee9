"""A closed window becomes an event: its evidence read from the store (with the arm mode, the
events of the minutes before it and its tracks' re-identification matches on other cameras),
analysed, the citations checked, the risk rules applied, the snapshot (best frame, boxes drawn)
and clip (the window's kept frames) written under the data directory, and the event stored with
them, once per window (replacing its early alert, if it had one), then linked into the
incidents of its matches (a failure there is logged: the event stands).

An analyser that fails or cites detections it was not given is replaced, for that window, by
the rule analyser, and the event says so (its ``analyser`` field, ``details.fallback_from`` and
a log line): a window never stays without an event because of its analyser. Media that cannot
be written leaves the event without it.

:class:`EventWriter` is event-loop-confined; store calls go through the caller's store
executor, media encoding to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from hearthwatch.security.analysis import build_analyser
from hearthwatch.security.analysis.base import Analyser, check_citations
from hearthwatch.security.analysis.risk_rules import RiskRules, apply_rules
from hearthwatch.security.evidence import Analysis, ArmMode, Level, WindowEvidence
from hearthwatch.security.media import MediaError, best_snapshot, write_clip
from hearthwatch.security.reid import ReidMatcher
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.records import EventRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]
FALLBACK_ANALYSER = "rules"


@dataclass(frozen=True)
class CameraFacts:
    """What the analyser is told about the window's camera."""

    name: str
    zone_description: str
    timezone: str
    detect_fps: float


@dataclass(frozen=True)
class RiskSettings:
    """What the writer applies to every window besides its analyser."""

    rules: RiskRules
    arm_mode: Callable[[], ArmMode]
    """The arm mode now (read when the window is analysed)."""
    recent_s: float = 1800.0
    """How far back the events the analyser is told about reach."""


def window_event(
    evidence: WindowEvidence,
    analysis: Analysis,
    *,
    provisional: bool = False,
    snapshot_path: str | None = None,
    clip_path: str | None = None,
) -> EventRecord:
    """The event of a window's analysis, as stored (the arm mode it was analysed in among its
    details)."""
    return EventRecord(
        kind="window",
        camera_id=evidence.camera_id,
        window_id=evidence.window_id,
        started_at=evidence.opened_at,
        ended_at=max(evidence.closed_at, evidence.opened_at),
        score=analysis.score,
        level=analysis.level,
        reasons=analysis.reasons,
        analyser=analysis.analyser,
        summary=analysis.summary,
        labels=tuple(sorted({t.label for t in evidence.tracks})),
        zones=tuple(sorted({z for t in evidence.tracks for z in t.zones_entered})),
        created_at=time.time(),
        snapshot_path=snapshot_path,
        clip_path=clip_path,
        provisional=provisional,
        recommended_action=analysis.recommended_action,
        details={**analysis.details, "arm_mode": evidence.arm_mode},
    )


class EventWriter:
    def __init__(
        self,
        store: EventStore,
        store_call: StoreCall,
        analyser: Analyser,
        data_dir: Path,
        risk: RiskSettings,
        observe: Callable[[Analysis], None] = lambda analysis: None,
        reid: ReidMatcher | None = None,
    ):
        self._store = store
        self._call = store_call
        self._analyser = analyser
        self._fallback = (
            analyser if analyser.name == FALLBACK_ANALYSER else build_analyser(FALLBACK_ANALYSER)
        )
        self._data_dir = data_dir
        self._risk = risk
        self._observe = observe
        self._reid = reid

    async def write(self, window_id: str, camera_id: str, facts: CameraFacts) -> tuple[str, Level]:
        """Analyse the closed window and store its event; the event's id (the existing one
        when the window has an event already) and the level analysed."""
        evidence: WindowEvidence = await self._call(
            self._store.window_evidence,
            window_id,
            camera_name=facts.name,
            zone_description=facts.zone_description,
            timezone=facts.timezone,
        )
        recent = await self._call(
            self._store.recent_events,
            camera_id,
            since=evidence.opened_at - self._risk.recent_s,
            until=evidence.opened_at,
        )
        found = await self._reid.matches(evidence) if self._reid is not None else []
        evidence = replace(
            evidence,
            arm_mode=self._risk.arm_mode(),
            recent_events=tuple(recent),
            reid_matches=tuple(item.evidence for item in found),
        )
        analysis = apply_rules(await self._analyse(evidence), evidence, self._risk.rules)
        self._observe(analysis)
        snapshot_path, clip_path = await asyncio.to_thread(self._media, evidence, facts)
        record = window_event(
            evidence,
            analysis,
            snapshot_path=snapshot_path,
            clip_path=clip_path,
        )
        event_id: str = await self._call(self._store.add_event, record)
        if found and self._reid is not None:
            try:
                await self._reid.link(event_id, found, time.time())
            except Exception:  # the event stands; only its incident is missing
                log.exception("event %s: its re-identification matches were not linked", event_id)
        return event_id, analysis.level

    async def _analyse(self, evidence: WindowEvidence) -> Analysis:
        try:
            analysis = await self._analyser.analyse(evidence)
            check_citations(analysis, evidence)
            return analysis
        except Exception as exc:
            if self._analyser is self._fallback:
                raise
            log.warning(
                "window %s: the %s analyser failed (%s); the rule analyser answers instead",
                evidence.window_id, self._analyser.name, exc,
            )  # fmt: skip
            failure = f"{type(exc).__name__}: {exc}"[:500]
        ruled = await self._fallback.analyse(evidence)
        return replace(
            ruled,
            details={**ruled.details, "fallback_from": self._analyser.name, "failures": [failure]},
        )

    def _media(self, evidence: WindowEvidence, facts: CameraFacts) -> tuple[str | None, str | None]:
        """The snapshot and clip of the window, relative to the data directory (None for one
        that could not be made)."""
        base = f"events/{evidence.camera_id}/{evidence.window_id}"
        snapshot: str | None = f"{base}/snapshot.jpg"
        try:
            if best_snapshot(evidence, self._data_dir, path=snapshot) is None:
                snapshot = None
        except (MediaError, OSError) as exc:
            log.warning("window %s: no snapshot: %s", evidence.window_id, exc)
            snapshot = None
        clip: str | None = f"{base}/clip.mp4"
        frames = [evidence.frame_paths[i] for i in sorted(evidence.frame_paths)]
        try:
            made = frames and write_clip(
                f"{base}/clip.mp4", frames, data_dir=self._data_dir, fps=facts.detect_fps
            )
            if not made:
                clip = None
        except (MediaError, OSError) as exc:
            log.warning("window %s: no clip: %s", evidence.window_id, exc)
            clip = None
        return snapshot, clip
