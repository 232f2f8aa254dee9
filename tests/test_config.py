from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hearthwatch.config import ConfigError, load_settings


def test_defaults_come_from_the_model(tmp_path: Path) -> None:
    loaded = load_settings(environ={"MODELS_DIR": str(tmp_path)})
    assert loaded.settings.detection_confidence_threshold == 0.5
    assert loaded.settings.detector.type == "hog"  # no packaged weights in tmp_path
    assert loaded.settings.host == "127.0.0.1"  # the network gets in only when asked
    assert loaded.settings.body_read_timeout_s == 30.0
    assert loaded.settings.shutdown_grace_s == 10.0
    rows = {r.name: r for r in loaded.describe()}
    assert rows["port"].source == "default"
    assert rows["body_read_timeout_s"].env_var == "BODY_READ_TIMEOUT_S"
    assert rows["shutdown_grace_s"].env_var == "SHUTDOWN_GRACE_S"
    assert rows["detection_confidence_threshold"].env_var == "DETECTION_CONFIDENCE_THRESHOLD"


def test_file_then_environment_override_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "hw.yml"
    path.write_text("max_batch_size: 16\nport: 9000\ndetector:\n  type: hog\n  max_side: 640\n")
    loaded = load_settings(path, environ={"PORT": "9100", "DETECTOR__SCALE": "1.1"})
    s = loaded.settings
    assert (s.max_batch_size, s.port) == (16, 9100)
    assert s.detector.type == "hog" and s.detector.max_side == 640 and s.detector.scale == 1.1
    rows = {r.name: r.source for r in loaded.describe()}
    assert rows["max_batch_size"] == f"file:{path}"
    assert rows["port"] == "env:PORT"
    assert rows["detector.max_side"] == f"file:{path}"
    assert rows["detector.scale"] == "env:DETECTOR__SCALE"
    assert rows["max_queue_size"] == "default"


def test_config_file_from_environment_variable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "hw.yml"
    path.write_text("use_gpu: false\n")
    loaded = load_settings(environ={"HEARTHWATCH_CONFIG": str(path)})
    assert loaded.settings.use_gpu is False


def test_detector_keys_without_a_type_apply_to_the_default_source(tmp_path: Path) -> None:
    loaded = load_settings(environ={"DETECTOR__MAX_SIDE": "1920", "MODELS_DIR": str(tmp_path)})
    assert loaded.settings.detector.type == "hog"
    assert loaded.settings.detector.max_side == 1920


def test_the_packaged_yolo_is_the_default_detector_once_installed(tmp_path: Path) -> None:
    folder = tmp_path / "detector"
    folder.mkdir()
    for name in ("yolov3-tiny.cfg", "yolov3-tiny.weights"):
        (folder / name).write_text("")
    # one of its three files missing: still HOG
    assert load_settings(environ={"MODELS_DIR": str(tmp_path)}).settings.detector.type == "hog"
    (folder / "coco.names").write_text("person\n")
    env = {"MODELS_DIR": str(tmp_path), "DETECTOR__INPUT_SIZES": "[320]"}
    detector = load_settings(environ=env).settings.detector
    assert detector.type == "darknet"
    assert detector.weights == folder / "yolov3-tiny.weights"  # under MODELS_DIR
    assert detector.input_sizes == [320]
    with pytest.raises(ConfigError, match="multiples of 32"):
        load_settings(environ={**env, "DETECTOR__INPUT_SIZES": "[300]"})
    # HOG's keys without a type now meet YOLO: the error says which detector and why
    with pytest.raises(ConfigError, match=r"max_side .* default detector, darknet here \(the "
                       "packaged YOLOv3-tiny is installed"):  # fmt: skip
        load_settings(environ={"MODELS_DIR": str(tmp_path), "DETECTOR__MAX_SIDE": "1920"})
    # naming the type keeps MODELS_DIR's files; a relative file named is under MODELS_DIR too
    named = {"MODELS_DIR": str(tmp_path), "DETECTOR__TYPE": "darknet"}
    assert load_settings(environ=named).settings.detector.weights == folder / "yolov3-tiny.weights"
    mine = {**named, "DETECTOR__WEIGHTS": "detector/mine.weights"}
    detector = load_settings(environ=mine).settings.detector
    assert detector.weights == folder / "mine.weights"  # the user's, not the packaged one
    assert detector.cfg == folder / "yolov3-tiny.cfg"


def test_the_hog_fallback_is_a_warning_only_when_yolo_is_missing(tmp_path: Path) -> None:
    from hearthwatch.app.services import hog_fallback_warning

    bare = load_settings(environ={"MODELS_DIR": str(tmp_path)}).settings
    assert "`hearthwatch models install`" in str(hog_fallback_warning(bare))
    folder = tmp_path / "detector"
    folder.mkdir()
    for name in ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"):
        (folder / name).write_text("")
    chosen = load_settings(environ={"MODELS_DIR": str(tmp_path), "DETECTOR__TYPE": "hog"})
    assert hog_fallback_warning(chosen.settings) is None  # HOG by choice: nothing to say


def test_yolo_keys_without_a_type_say_yolo_is_not_installed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not installed under .*hearthwatch models install"):
        load_settings(environ={"MODELS_DIR": str(tmp_path), "DETECTOR__INPUT_SIZES": "[416]"})


def test_environment_switches_source_type_and_parses_json_lists() -> None:
    env = {
        "DETECTOR__TYPE": "torchvision",
        "DETECTOR__RANDOM_INIT": "true",
        "DETECTOR__CLASS_NAMES": '["a", "b"]',
    }
    s = load_settings(environ=env).settings
    assert s.detector.type == "torchvision"
    assert s.detector.class_names == ["a", "b"]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MAX_BATCH_SIZE": "0"}, "max_batch_size"),
        ({"DETECTION_CONFIDENCE_THRESHOLD": "1.5"}, "detection_confidence_threshold"),
        ({"USE_GPU": "perhaps"}, "use_gpu"),
        ({"BODY_READ_TIMEOUT_S": "0"}, "body_read_timeout_s"),
        ({"SHUTDOWN_GRACE_S": "-1"}, "shutdown_grace_s"),
        ({"DETECTOR__TYPE": "yolo9000"}, "detector"),
        ({"DETECTOR__TYPE": "torchvision"}, "random_init"),
        (
            {
                "DETECTOR__TYPE": "torchvision",
                "DETECTOR__RANDOM_INIT": "1",
                "DETECTOR__ARCHITECTURE": "nope",
            },
            "unknown torchvision architecture",
        ),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(environ=env)


def test_bad_files_are_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yml", environ={})
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("max_batch: 3\n")
    with pytest.raises(ConfigError, match="max_batch"):
        load_settings(unknown, environ={})
    broken = tmp_path / "broken.yml"
    broken.write_text("port: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})


def test_config_command_prints_values_and_sources() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hearthwatch.cli", "config"],
        env={"PATH": "", "MAX_QUEUE_SIZE": "77"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("max_queue_size"))
    assert "77" in line and "env:MAX_QUEUE_SIZE" in line
    bad = subprocess.run(
        [sys.executable, "-m", "hearthwatch.cli", "config"],
        env={"PATH": "", "MAX_QUEUE_SIZE": "-1"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "max_queue_size" in bad.stderr


def test_importing_the_config_does_not_import_torch() -> None:
    probe = "import sys, hearthwatch.config; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_a_tuned_file_in_the_working_directory_applies_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = tmp_path / "hearthwatch-tuned.yml"
    stray.write_text(yaml.safe_dump({"models": {"detector": {"max_batch_size": 32}}}))
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(environ={})
    assert loaded.settings.max_batch_size == 8
    assert {r.name: r.source for r in loaded.describe()}["max_batch_size"] == "default"
    named = load_settings(environ={"TUNED_CONFIG_FILE": str(stray)})
    assert named.settings.max_batch_size == 32
    assert {r.name: r.source for r in named.describe()}["max_batch_size"] == f"tuned:{stray}"
    with pytest.raises(ConfigError, match="missing.yml does not exist"):
        load_settings(environ={"TUNED_CONFIG_FILE": str(tmp_path / "missing.yml")})


def test_a_batch_minimum_above_the_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_queue_delay_ms"):
        load_settings(environ={"MIN_QUEUE_DELAY_MS": "20", "MAX_QUEUE_DELAY_MS": "5"})
    settings = load_settings(environ={"MIN_QUEUE_DELAY_MS": "2", "MAX_QUEUE_DELAY_MS": "5"})
    assert settings.settings.min_queue_delay_ms == 2


def test_the_config_command_validates_the_detector_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from hearthwatch.config import load_settings\n"
        "settings = load_settings(environ={'DETECTOR__TYPE': 'hf_rtdetr', "
        "'DETECTOR__RANDOM_INIT': 'true'}).settings\n"
        "assert settings.detector.type == 'hf_rtdetr'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_described_settings_hide_every_password_in_a_url() -> None:
    loaded = load_settings(
        environ={
            "DATABASE_URL": "postgresql+psycopg://hw:s3cret@db.lan/hearthwatch",
            "CAMERAS": '{"gate": {"source": {"type": "rtsp", "url": "rtsp://admin:pw@10.0.0.2/x"}}}',
        }
    )
    shown = {row.name: row.value for row in loaded.describe()}
    assert shown["database_url"] == "postgresql+psycopg://hw:***@db.lan/hearthwatch"
    assert shown["cameras"]["gate"]["source"]["url"] == "rtsp://admin:***@10.0.0.2/x"
    assert loaded.settings.database_url == "postgresql+psycopg://hw:s3cret@db.lan/hearthwatch"
