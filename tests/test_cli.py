from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import Server, jpeg
from starlette.types import Message, Receive, Scope, Send

from hearthwatch.api.app import RequestDrain
from hearthwatch.cli import main


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
