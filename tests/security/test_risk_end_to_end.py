"""Risk analysis end to end. With the embedded engine (SmolLM2 through llama.cpp): frames pushed
to a camera → a window → an event scored by the LLM analyser through the server's own gateway,
every reason citing detections the window holds, the arm mode switched through the API and
kept across a restart, feedback given and exported as scenarios the benchmark loads. In
process, with an engine double: a broken answer is retried and the good one used; answers that
never work fall back to the rules, and the stored event says so."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from camera_servers import ServerStack, api_client, error_of
from conftest import llm_env
from pipeline_doubles import PersonDetector, moving_frame
from prometheus_client import CollectorRegistry
from scenes import Walk, scene_frames, yard

from hearthwatch.config import Settings
from hearthwatch.security.evidence import level_of
from hearthwatch.security.pipeline import Pipeline
from hearthwatch.security.risk_quality.scenarios import load_scenarios

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 720
STATIC, WALK_FRAMES = 12, 8
WALK = Walk(start=(340, 700), end=(930, 700), first_frame=STATIC,
            last_frame=STATIC + WALK_FRAMES - 1, height=350)  # fmt: skip


# -- in process, an engine double -----------------------------------------------------------


class ScriptedEngine:
    model = "scripted"

    def __init__(self, answers: Callable[[int], str]):
        self.answers = answers
        self.calls = 0

    async def chat(self, body: dict[str, Any]) -> str:
        self.calls += 1
        return self.answers(self.calls)


GOOD = json.dumps({
    "risk_score": 64, "level": "high", "summary": "Someone walked across the porch.",
    "reasons": [{"text": "a person crossed the porch", "evidence": ["t1", "d1"]}],
    "recommended_action": "Look at the clip.",
})  # fmt: skip


def event_of(answers: Callable[[int], str], tmp_path: Path) -> tuple[Any, ScriptedEngine]:
    settings = Settings(
        data_dir=tmp_path, use_gpu=False, llm_enabled=False, enrich_enabled=False,
        batch_window_seconds=60.0, batch_idle_timeout_seconds=0.5, analyser="llm",
        analyser_options={"retries": 2},
    )  # fmt: skip
    engine = ScriptedEngine(answers)

    async def run() -> Any:
        pipeline = Pipeline(
            settings,
            PersonDetector(),
            None,
            CollectorRegistry(),
            chat_engine=engine,  # type: ignore[arg-type]
        )
        await pipeline.start()
        try:
            await pipeline.add_camera({"id": "porch", "source": {"type": "push"}})
            for index in range(16):  # the motion gate learns the scene on the first 11
                await pipeline.push_frame("porch", moving_frame(index), None)
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 20
            while True:
                rows, _ = await asyncio.to_thread(pipeline.store.list_events, cameras=["porch"])
                if rows:
                    return await asyncio.to_thread(pipeline.store.get_event, rows[0].id)
                assert time.monotonic() < deadline, "no event"
                await asyncio.sleep(0.1)
        finally:
            await pipeline.stop()

    return asyncio.run(run()), engine


def test_a_broken_answer_is_retried_and_the_good_one_becomes_the_event(tmp_path: Path) -> None:
    detail, engine = event_of(lambda call: "{broken" if call == 1 else GOOD, tmp_path)
    event = detail.event
    assert engine.calls == 2
    assert (event.analyser, event.score, event.level) == ("llm", 64.0, "high")
    assert event.details["attempts"] == 2
    assert event.details["failures"] == ["the answer is not JSON"]
    assert event.recommended_action == "Look at the clip."
    held = {d.id for d in detail.window.detections}
    assert event.reasons and all(set(r.detection_ids) <= held for r in event.reasons)


def test_answers_that_never_work_fall_back_to_the_rules_and_the_event_says_so(
    tmp_path: Path,
) -> None:
    detail, engine = event_of(
        lambda call: GOOD.replace('"risk_score": 64', '"risk_score": 500'), tmp_path
    )
    event = detail.event
    assert engine.calls == 3
    assert event.analyser == "rules"
    assert event.details["fallback_from"] == "llm"
    assert event.details["failures"] == ["risk_score is outside 0–100"] * 3
    held = {d.id for d in detail.window.detections}
    assert event.reasons and all(set(r.detection_ids) <= held for r in event.reasons)


# -- the embedded engine, through a server ---------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerStack]:
    root = tmp_path_factory.mktemp("risk")
    env = {
        **llm_env(tmp_path_factory, sessions=1, queue=4, max_tokens=384, n_ctx=4096),
        "USE_GPU": "false",
        "ENRICH_ENABLED": "false",
        "WARMUP": "false",
        "MODELS_DIR": str(REPO / "models"),
        "DATA_DIR": str(root / "data"),
        "DETECTOR__TYPE": "hog",
        "PIPELINE_ENABLED": "true",
        "ANALYSER": "llm",
        "ANALYSER_OPTIONS": '{"retries": 1, "seed": 3}',
        "BATCH_WINDOW_SECONDS": "60",
        "BATCH_IDLE_TIMEOUT_SECONDS": "1",
        "DETECTION_QUEUE_MAX_SIZE": "200",
    }
    stack = ServerStack(root, env)
    try:
        stack.server.wait_ready()
        yield stack
    finally:
        stack.server.stop()


@pytest.fixture(scope="module")
def api(stack: ServerStack) -> Iterator[Callable[..., httpx.Response]]:
    yield from api_client(stack)


@pytest.fixture(scope="module")
def llm_event(api: Callable[..., httpx.Response]) -> dict[str, Any]:
    """The event of one walk past a push camera, analysed by the embedded LLM."""
    assert api("PUT", "/api/arm", json={"mode": "away"}).status_code == 200
    reply = api("POST", "/api/cameras", json={"id": "porch", "name": "Porch",
                                              "source": {"type": "push"}})  # fmt: skip
    assert reply.status_code == 201, reply.text
    frames = scene_frames(yard(WIDTH, HEIGHT), count=STATIC + WALK_FRAMES, noise_sigma=3.0,
                          walk=WALK, seed=11)  # fmt: skip
    for item in frames:
        ok, data = cv2.imencode(".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        reply = api("POST", "/api/cameras/porch/frames", content=data.tobytes())
        assert reply.status_code in (200, 202), reply.text
        time.sleep(0.1)
    deadline = time.monotonic() + 240
    while True:
        events = api("GET", "/api/events", params={"camera": "porch"}).json()["events"]
        if events:
            detail = api("GET", f"/api/events/{events[0]['id']}").json()
            assert isinstance(detail, dict)
            return detail
        assert time.monotonic() < deadline, "no event from the walk"
        time.sleep(0.5)


def test_frames_become_an_llm_event_whose_reasons_cite_the_window(
    llm_event: dict[str, Any],
) -> None:
    assert llm_event["analyser"] == "llm", llm_event["details"]
    assert llm_event["details"]["model"].lower().startswith("smollm2")
    assert llm_event["details"]["arm_mode"] == "away"
    assert 0 <= llm_event["score"] <= 100
    assert llm_event["level"] == level_of(llm_event["score"])
    held = {d["id"] for d in llm_event["detections"]}
    assert held and llm_event["reasons"]
    for reason in llm_event["reasons"]:
        assert reason["text"] and reason["detection_ids"]
        assert set(reason["detection_ids"]) <= held
    assert llm_event["summary"] and isinstance(llm_event["recommended_action"], str)


def test_the_arm_mode_is_checked_and_kept_across_a_restart(
    stack: ServerStack, api: Callable[..., httpx.Response], llm_event: dict[str, Any]
) -> None:
    assert "mode" in error_of(api("PUT", "/api/arm", json={"mode": "vacation"}), 400)
    assert "mode" in error_of(api("PUT", "/api/arm", json={"mode": "away", "x": 1}), 400)
    assert error_of(api("PUT", "/api/arm", content=b"{"), 400)
    assert api("PUT", "/api/arm", json={"mode": "night"}).json() == {"mode": "night"}
    stack.restart()
    assert api("GET", "/api/arm").json() == {"mode": "night"}


def test_feedback_is_stored_and_exported_as_scenarios_the_benchmark_loads(
    api: Callable[..., httpx.Response], llm_event: dict[str, Any], tmp_path: Path
) -> None:
    event_id = llm_event["id"]
    path = f"/api/events/{event_id}/feedback"
    assert "verdict" in error_of(api("POST", path, json={"verdict": "maybe"}), 400)
    assert error_of(api("POST", "/api/events/nope/feedback", json={"verdict": "confirmed"}), 404)
    first = api("POST", path, json={"verdict": "confirmed"})
    assert first.status_code == 201, first.text
    second = api("POST", path, json={"verdict": "false_alarm", "note": "the postman"})
    assert second.status_code == 201
    listed = api("GET", path).json()["feedback"]
    assert [f["verdict"] for f in listed] == ["confirmed", "false_alarm"]
    exported = api("GET", "/api/feedback/export").json()
    (scenario,) = exported["scenarios"]
    assert scenario["expected_level"] == "low" and scenario["benign"] is True
    assert scenario["window"]["arm_mode"] == "away"
    assert scenario["description"].endswith("the postman")
    target = tmp_path / "exported.json"
    target.write_text(json.dumps(exported))
    (loaded,) = load_scenarios(target)
    held = {d["id"] for d in llm_event["detections"]}
    assert {d.id for d in loaded.evidence.detections} == held
    assert loaded.required_ids <= held
