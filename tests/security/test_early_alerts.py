"""Early alerts through the pipeline: a person where a user's critical rule watches (armed
mode), or a threat an enrichment model reports, raises a provisional critical event while the
window is still open; the window's analysed event then replaces it under the same id. A
window that meets no trigger gets no early event. The detector and the enrichment models are
doubles answering fixed results (the real ones are exercised elsewhere): what is tested is
when the alert is raised and what becomes of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pipeline_doubles import PersonDetector, moving_frame
from prometheus_client import CollectorRegistry

from hearthwatch.config import Settings
from hearthwatch.runtime.enrichment.service import EnrichmentResult, InputDetection
from hearthwatch.security.pipeline import Pipeline

ARMED_PORCH = {
    "name": "porch while away",
    "at_least": "critical",
    "cameras": ["porch"],
    "labels": ["person"],
    "arm_modes": ["away"],
}


class ThreatModel:
    """The enrichment service with one frame model, answering a knife in every frame."""

    def __init__(self, score: float) -> None:
        self.score = score

    async def enrich(
        self, image: np.ndarray, detections: Sequence[InputDetection], timeout_s: float
    ) -> EnrichmentResult:
        knife = {"threats": [{"label": "knife", "score": self.score, "box": [1, 2, 3, 4]}]}
        return EnrichmentResult(detections=[{} for _ in detections], frame={"threat": knife})


def run(
    tmp_path: Path, *, arm: str, rules: list[dict[str, Any]], enrichment: Any = None
) -> dict[str, Any]:
    """Frames pushed, 10 a second, until an event shows (or 25 frames: the window stays open
    throughout); then the window's end. The first event seen while pushing (None: none) and
    the events after."""
    settings = Settings(
        data_dir=tmp_path, use_gpu=False, llm_enabled=False, enrich_enabled=False,
        batch_window_seconds=60.0, batch_idle_timeout_seconds=1.5,
        risk_rules={"rules": rules}, enrichment_interval_s=0.1,
    )  # fmt: skip

    async def go() -> dict[str, Any]:
        pipeline = Pipeline(settings, PersonDetector(), enrichment, CollectorRegistry())  # type: ignore[arg-type]
        await pipeline.start()
        try:
            await pipeline.set_arm_mode(arm)  # type: ignore[arg-type]
            await pipeline.add_camera({"id": "porch", "source": {"type": "push"}})
            early = None
            for index in range(25):
                await pipeline.push_frame("porch", moving_frame(index), None)
                await asyncio.sleep(0.1)
                rows, _ = await asyncio.to_thread(pipeline.store.list_events, cameras=["porch"])
                if rows and early is None:
                    opened = await asyncio.to_thread(pipeline.store.open_windows)
                    early = {"row": rows[0], "open": [w.id for w in opened]}
                    break
            deadline = time.monotonic() + 20
            while True:  # the window closes 1.5 s after its last detection
                rows, _ = await asyncio.to_thread(pipeline.store.list_events, cameras=["porch"])
                if rows and not rows[0].provisional:
                    return {"early": early, "final": rows, "alerts": _count(pipeline)}
                assert time.monotonic() < deadline, "the window got no analysed event"
                await asyncio.sleep(0.1)
        finally:
            await pipeline.stop()

    return asyncio.run(go())


def _count(pipeline: Pipeline) -> float:
    return pipeline.metrics.early_alerts._value.get()  # type: ignore[attr-defined,no-any-return]


def test_a_person_where_an_armed_rule_watches_raises_an_early_alert_then_the_analysis(
    tmp_path: Path,
) -> None:
    seen = run(tmp_path, arm="away", rules=[ARMED_PORCH])
    early = seen["early"]
    assert early is not None, "no early alert while the window was open"
    row = early["row"]
    assert row.window_id in early["open"]  # raised before the window closed
    assert (row.provisional, row.level, row.score, row.analyser) == (
        True, "critical", 85.0, "early alert"
    )  # fmt: skip
    assert row.reasons[0].text.startswith("Rule 'porch while away'")
    assert row.details["rules_applied"] == ["porch while away"]
    (final,) = seen["final"]
    assert final.id == row.id and final.window_id == row.window_id  # replaced, same id
    assert (final.provisional, final.analyser, final.level) == (False, "rules", "critical")
    assert any(r.text.startswith("Rule 'porch while away'") for r in final.reasons)
    assert seen["alerts"] == 1


def test_no_trigger_no_early_event(tmp_path: Path) -> None:
    seen = run(tmp_path, arm="home", rules=[ARMED_PORCH])  # the rule watches "away" only
    assert seen["early"] is None  # nothing while the window was open
    (final,) = seen["final"]
    assert final.analyser == "rules" and final.level != "critical"
    assert seen["alerts"] == 0


def test_a_threat_reported_by_a_frame_model_raises_an_early_alert(tmp_path: Path) -> None:
    seen = run(tmp_path, arm="home", rules=[], enrichment=ThreatModel(0.9))
    row = seen["early"]["row"]
    assert row.provisional and row.window_id in seen["early"]["open"]
    assert row.reasons[0].text == "Rule: a threat was detected (knife): at least critical."
    (final,) = seen["final"]
    assert final.id == row.id and final.level == "critical" and not final.provisional
    assert any("knife" in r.text for r in final.reasons)  # the rules read the stored threat


def test_a_threat_below_the_rules_minimum_raises_nothing(tmp_path: Path) -> None:
    seen = run(tmp_path, arm="home", rules=[], enrichment=ThreatModel(0.2))
    assert seen["early"] is None and seen["alerts"] == 0
    (final,) = seen["final"]
    assert final.level != "critical"
