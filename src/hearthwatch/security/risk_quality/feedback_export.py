"""People's feedback as labelled scenarios for the risk benchmark, in the format
:func:`~.scenarios.load_scenarios` reads (that of ``bench/risk_scenarios.json``).

:func:`labelled_scenario` turns one event's window, with the verdict a person gave it, into a
scenario: a false alarm is expected ``low`` and benign, with the best detection of its
longest-seen track required; a confirmed event keeps its level, and the detections its reasons
cited (those still in the window, at most :data:`MAX_REQUIRED`) are required. Which half a
scenario falls in is fixed by its event id (a hash), so repeated exports agree. Times become
offsets from the window's opening in the camera's local time; every track's span is that of its
detections in the window. The context an analysis was given besides the window (recent events,
re-identification matches) is not stored, so it is not exported. Pure functions: thread-safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from hearthwatch.security.evidence import DetectionEvidence, Level, WindowEvidence

MAX_REQUIRED: Final = 4
FORMAT_VERSION: Final = 1


def labelled_scenario(
    evidence: WindowEvidence,
    *,
    event_id: str,
    verdict: str,
    event_level: Level,
    cited_ids: Iterable[int],
    note: str = "",
) -> dict[str, Any]:
    """The scenario of ``evidence`` labelled by a person's ``verdict`` (see the module
    docstring)."""
    opened = min([evidence.opened_at, *(d.captured_at for d in evidence.detections)])
    zone = ZoneInfo(evidence.timezone)
    by_track: dict[str, list[DetectionEvidence]] = {}
    for detection in evidence.detections:
        by_track.setdefault(detection.track_key, []).append(detection)
    tracks = {track.key: track for track in evidence.tracks}
    keys = {key: f"t{n}" for n, key in enumerate(by_track, start=1)}
    track_data = [
        _track(keys[key], detections, tracks.get(key), opened)
        for key, detections in by_track.items()
    ]
    known = {d.id for d in evidence.detections}
    false_alarm = verdict == "false_alarm"
    if false_alarm:
        longest = max(track_data, key=lambda t: (t["end_s"] - t["start_s"], t["best_detection"]))
        required = [longest["best_detection"]]
    else:
        required = [i for i in dict.fromkeys(cited_ids) if i in known][:MAX_REQUIRED]
        required = required or [t["best_detection"] for t in track_data][:MAX_REQUIRED]
    last = max(d.captured_at for d in evidence.detections)
    duration = max(evidence.closed_at, last) - opened
    description = f"Event {event_id} marked {verdict.replace('_', ' ')} by a person"
    return {
        "id": _scenario_id(event_id),
        "split": "holdout" if hashlib.blake2b(event_id.encode()).digest()[0] % 2 else "tune",
        "description": description + (f": {note}" if note.strip() else "."),
        "expected_level": "low" if false_alarm else event_level,
        "required_ids": required,
        "injection": False,
        "benign": false_alarm or event_level in ("low", "medium"),
        "window": {
            "camera_name": _named(evidence.camera_name, evidence.camera_id),
            "zone_description": evidence.zone_description,
            "timezone": evidence.timezone,
            "local_start": datetime.fromtimestamp(opened, zone).replace(tzinfo=None).isoformat(),
            "duration_s": round(max(duration, 0.001), 3),
            "arm_mode": evidence.arm_mode,
            "tracks": track_data,
        },
    }


def scenario_file(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "scenarios": scenarios}


def _track(
    key: str, detections: list[DetectionEvidence], track: Any, opened: float
) -> dict[str, Any]:
    detections = sorted(detections, key=lambda d: (d.captured_at, d.id))
    ids = {d.id for d in detections}
    best = track.best_detection_id if track is not None else None
    if best not in ids:
        best = max(detections, key=lambda d: (d.score, -d.id)).id
    zones = list(track.zones_entered) if track is not None else []
    zones += [z for d in detections for z in d.zones if z not in zones]
    return {
        "key": key,
        "label": track.label if track is not None else detections[0].label,
        "start_s": round(detections[0].captured_at - opened, 3),
        "end_s": round(detections[-1].captured_at - opened, 3),
        "zones_entered": zones,
        "stationary": bool(track.stationary) if track is not None else False,
        "best_detection": best,
        "enrichments": dict(track.enrichments) if track is not None else {},
        "detections": [
            {
                "id": d.id,
                "at_s": round(d.captured_at - opened, 3),
                "score": round(min(1.0, max(0.0, d.score)), 4),
                "box": _box(d.box),
                "zones": list(d.zones),
            }
            for d in detections
        ],
    }


def _named(name: str, camera_id: str) -> str:
    """The camera's name, with its id when the name has no ASCII letter or digit (the
    scenario's camera id is a slug of its name)."""
    return name if re.search(r"[A-Za-z0-9]", name) else f"{name} ({camera_id})"


def _box(box: tuple[float, float, float, float]) -> list[float]:
    """The box within the frame's positive quadrant, at least a pixel wide and high."""
    x1, y1, x2, y2 = (max(0.0, float(v)) for v in box)
    return [x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0)]


def _scenario_id(event_id: str) -> str:
    return "feedback_" + re.sub(r"[^a-z0-9]+", "_", event_id.lower()).strip("_")
