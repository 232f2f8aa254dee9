"""The events people gave feedback on, exported as labelled scenarios for the risk benchmark
(:mod:`.feedback_export` makes each one). An event whose window retention has removed is left
out. Runs on the pipeline's loop; store reads go to worker threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hearthwatch.security.errors import PipelineClosedError
from hearthwatch.security.evidence import ARM_MODES
from hearthwatch.security.risk_quality.feedback_export import labelled_scenario, scenario_file

if TYPE_CHECKING:
    from hearthwatch.security.pipeline import Pipeline


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
        evidence = detail.window.evidence(
            camera_name=facts.name, zone_description=facts.zone_description, timezone=facts.timezone
        )
        mode = (detail.event.details or {}).get("arm_mode")
        if mode in ARM_MODES:
            evidence = replace(evidence, arm_mode=mode)
        scenarios.append(
            labelled_scenario(
                evidence,
                event_id=event_id,
                verdict=verdict.verdict,
                event_level=detail.event.level,
                cited_ids=[i for r in detail.event.reasons for i in r.detection_ids],
                note=verdict.note,
            )
        )
    return scenario_file(scenarios)
