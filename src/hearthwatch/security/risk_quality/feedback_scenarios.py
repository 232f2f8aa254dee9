"""The events people gave feedback on, exported as labelled scenarios for the risk benchmark
(:mod:`.feedback_export` makes each one). An event whose window retention has removed is left
out, and so is one the benchmark's loader would refuse (a window that opened in the hour a
clock change repeats has no unambiguous local time), with a log line. Runs on the pipeline's
loop; store reads and the scenarios' making go to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hearthwatch.security.errors import PipelineClosedError
from hearthwatch.security.event_writer import CameraFacts
from hearthwatch.security.evidence import ARM_MODES
from hearthwatch.security.risk_quality.feedback_export import labelled_scenario, scenario_file
from hearthwatch.security.risk_quality.scenarios import scenario_from
from hearthwatch.security.store.feedback import FeedbackRow
from hearthwatch.security.store.records import EventDetail

if TYPE_CHECKING:
    from hearthwatch.security.pipeline import Pipeline

log = logging.getLogger(__name__)


async def exported_scenarios(pipeline: Pipeline, limit: int) -> dict[str, Any]:
    """The latest ``limit`` events with feedback (each by its latest verdict) as a scenario
    file."""
    if pipeline.feedback is None:
        raise PipelineClosedError()
    verdicts = await asyncio.to_thread(pipeline.feedback.latest_verdicts)
    scenarios = []
    for event_id, verdict in list(verdicts.items())[-limit:]:
        detail = await asyncio.to_thread(pipeline.store.get_event, event_id)
        if detail is None or detail.window is None or detail.window.window.closed_at is None:
            continue
        facts = await pipeline.camera_facts(detail.event.camera_id)
        scenario = await asyncio.to_thread(_scenario, detail, verdict, facts)
        if scenario is not None:
            scenarios.append(scenario)
    return scenario_file(scenarios)


def _scenario(
    detail: EventDetail, verdict: FeedbackRow, facts: CameraFacts
) -> dict[str, Any] | None:
    """The event's scenario, or None (logged) when the benchmark's loader would refuse it."""
    assert detail.window is not None
    evidence = detail.window.evidence(
        camera_name=facts.name, zone_description=facts.zone_description, timezone=facts.timezone
    )
    mode = (detail.event.details or {}).get("arm_mode")
    if mode in ARM_MODES:
        evidence = replace(evidence, arm_mode=mode)
    scenario = labelled_scenario(
        evidence,
        event_id=detail.event.id,
        verdict=verdict.verdict,
        event_level=detail.event.level,
        cited_ids=[i for r in detail.event.reasons for i in r.detection_ids],
        note=verdict.note,
    )
    try:
        scenario_from(scenario)
    except ValueError as exc:
        log.warning("event %s not exported: %s", detail.event.id, exc)
        return None
    return scenario
