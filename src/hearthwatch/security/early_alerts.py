"""Early alerts: a window that meets a critical trigger (the threat rule, or a user's risk rule
whose floor is critical, such as a person in an armed zone at night) gets a provisional
critical event at once, while it is still open; the window's analysed event replaces it (same
id) when the window closes.

A window is checked when a frame adds detections of a class some critical rule watches on its
camera, or when an enrichment model reports a threat on one of its tracks; each window is
alerted at most once. Checks run as background tasks: a frame never waits for one.
:class:`EarlyAlerts` is event-loop-confined; store calls go through the pipeline's store
executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from hearthwatch.security.analysis.risk_rules import FLOOR_OF, RiskRules, critical_matches
from hearthwatch.security.event_writer import CameraFacts
from hearthwatch.security.evidence import ArmMode, Reason
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.records import EventRecord

log = logging.getLogger(__name__)

ANALYSER = "early alert"
MAX_REMEMBERED = 10_000
"""Windows remembered as alerted (or found not to be, for a threat) before the oldest go."""


class EarlyAlerts:
    def __init__(
        self,
        rules: RiskRules,
        store: EventStore,
        store_call: Callable[..., Awaitable[Any]],
        facts: Callable[[str], Awaitable[CameraFacts]],
        arm_mode: Callable[[], ArmMode],
        on_alert: Callable[[], None],
    ):
        self._rules = rules
        self._critical = [rule for rule in rules.rules if rule.at_least == "critical"]
        self._store = store
        self._call = store_call
        self._facts = facts
        self._arm_mode = arm_mode
        self._on_alert = on_alert
        self._alerted: dict[str, None] = {}  # insertion-ordered set

    def watches(self, camera_id: str, labels: Iterable[str]) -> bool:
        """Whether a critical user rule may match detections of ``labels`` on the camera in
        the current arm mode (the cheap test before a store read)."""
        mode = self._arm_mode()
        seen = set(labels)
        return any(
            (not rule.cameras or camera_id in rule.cameras)
            and (not rule.arm_modes or mode in rule.arm_modes)
            and (not rule.labels or rule.labels & seen)
            for rule in self._critical
        )

    def threatening(self, result: Mapping[str, Any]) -> bool:
        """Whether an enrichment result reports a threat the threat rule counts."""
        if self._rules.threat_floor != "critical":
            return False
        frame = result.get("frame")
        threats = frame.get("threats") if isinstance(frame, Mapping) else None
        return isinstance(threats, list) and any(
            isinstance(t, Mapping)
            and isinstance(t.get("score"), int | float)
            and t["score"] >= self._rules.threat_min_score
            for t in threats
        )

    async def check(self, window_id: str, camera_id: str) -> str | None:
        """Raise the window's early alert if it meets a critical trigger now; its event id,
        or None. Failures are logged, never raised (the window still gets its event)."""
        if window_id in self._alerted:
            return None
        try:
            return await self._check(window_id, camera_id)
        except Exception:
            log.exception("window %s: the early alert check failed", window_id)
            return None

    async def _check(self, window_id: str, camera_id: str) -> str | None:
        contents = await self._call(self._store.window_contents, window_id)
        if contents.window.status != "open" or window_id in self._alerted:
            return None  # closed meanwhile: its analysis comes at once
        facts = await self._facts(camera_id)
        evidence = contents.evidence(
            camera_name=facts.name,
            zone_description=facts.zone_description,
            timezone=facts.timezone,
            so_far=True,
        )
        evidence = replace(evidence, arm_mode=self._arm_mode())
        matches = critical_matches(evidence, self._rules)
        if not matches:
            return None
        self._remember(window_id)
        record = EventRecord(
            kind="window",
            camera_id=camera_id,
            window_id=window_id,
            started_at=evidence.opened_at,
            ended_at=max(evidence.closed_at, evidence.opened_at),
            score=FLOOR_OF["critical"],
            level="critical",
            reasons=tuple(Reason(m.text, m.detection_ids) for m in matches),
            analyser=ANALYSER,
            summary=f"Early alert on {facts.name}: {matches[0].text}",
            labels=tuple(sorted({t.label for t in evidence.tracks})),
            zones=tuple(sorted({z for t in evidence.tracks for z in t.zones_entered})),
            created_at=time.time(),
            provisional=True,
            details={"rules_applied": [m.name for m in matches], "arm_mode": evidence.arm_mode},
        )
        event_id: str = await self._call(self._store.add_event, record)
        self._on_alert()
        log.warning("camera %s: early alert %s (%s)", camera_id, event_id, matches[0].text)
        return event_id

    def _remember(self, window_id: str) -> None:
        self._alerted[window_id] = None
        while len(self._alerted) > MAX_REMEMBERED:
            del self._alerted[next(iter(self._alerted))]
