"""Early alerts: a window that meets a critical trigger (the threat rule, or a user's risk rule
whose floor is critical, such as a person in an armed zone at night) gets a provisional
critical event at once, while it is still open; the window's analysed event replaces it (same
id) when the window closes.

A window is checked when a frame adds detections that a critical rule watches (camera, class,
zone, local hours, arm mode), or when an enrichment model reports a threat on one of its tracks;
each window is alerted at most once. Checks run as background tasks: a frame never waits for one.
:class:`EarlyAlerts` is event-loop-confined; store calls go through the pipeline's store
executor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hearthwatch.security.analysis.risk_rules import FLOOR_OF, RiskRules, critical_matches
from hearthwatch.security.analysis.window_view import within_hours
from hearthwatch.security.event_writer import CameraFacts, window_event
from hearthwatch.security.evidence import Analysis, ArmMode, Reason
from hearthwatch.security.store.events_store import EventStore

log = logging.getLogger(__name__)

ANALYSER = "early alert"
MAX_REMEMBERED = 10_000
"""Windows remembered as alerted before the oldest are forgotten."""


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
        self._checking: set[str] = set()

    def watches(
        self,
        camera_id: str,
        detections: Iterable[tuple[str, Iterable[str]]],
        captured_at: float,
        timezone: str,
    ) -> bool:
        """Whether a critical user rule matches a frame's detections (label, zones) on the
        camera, at its capture time (the camera's local time) in the current arm mode: the
        cheap test before the window is read."""
        mode = self._arm_mode()
        found = [(label, set(zones)) for label, zones in detections]
        try:
            local = datetime.fromtimestamp(captured_at, ZoneInfo(timezone)).time()
        except (KeyError, ValueError, OSError, OverflowError):
            return False
        return any(
            (not rule.cameras or camera_id in rule.cameras)
            and (not rule.arm_modes or mode in rule.arm_modes)
            and (rule.starts is None or rule.ends is None
                 or within_hours(local, rule.starts, rule.ends))
            and any(
                (not rule.labels or label in rule.labels) and (not rule.zones or rule.zones & zones)
                for label, zones in found
            )
            for rule in self._critical
        )  # fmt: skip

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
        if window_id in self._alerted or window_id in self._checking:
            return None
        self._checking.add(window_id)
        try:
            return await self._check(window_id, camera_id)
        except Exception:
            log.exception("window %s: the early alert check failed", window_id)
            return None
        finally:
            self._checking.discard(window_id)

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
        early = Analysis(
            score=FLOOR_OF["critical"],
            level="critical",
            reasons=tuple(Reason(m.text, m.detection_ids) for m in matches),
            analyser=ANALYSER,
            summary=f"Early alert on {facts.name}: {matches[0].text}",
            details={"rules_applied": [m.name for m in matches]},
        )
        record = window_event(evidence, early, provisional=True)
        event_id: str = await self._call(self._store.add_event, record)
        self._on_alert()
        log.warning("camera %s: early alert %s (%s)", camera_id, event_id, matches[0].text)
        return event_id

    def _remember(self, window_id: str) -> None:
        self._alerted[window_id] = None
        while len(self._alerted) > MAX_REMEMBERED:
            del self._alerted[next(iter(self._alerted))]
