from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Server, jpeg

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
