"""CameraConfig and its parts, slugify, and load_cameras_file (hearthwatch's own form; the
Frigate importer has tests/security/test_frigate_import.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hearthwatch.security.cameras import (
    DEFAULT_TRACKED_LABELS,
    MAX_FILE_BYTES,
    MAX_SLUG_LENGTH,
    CameraConfig,
    CameraConfigError,
    ObjectFilter,
    ObjectsConfig,
    is_slug,
    load_cameras_file,
    slugify,
    validation_problems,
)
from hearthwatch.security.sources.config import FileSourceConfig, RtspSourceConfig

FRIGATE_DATA = Path(__file__).parent.parent / "data" / "frigate"
RTSP = {"type": "rtsp", "url": "rtsp://viewer:hunter2@192.168.1.30:554/stream1"}
SQUARE = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]


def camera(**fields: Any) -> CameraConfig:
    return CameraConfig.model_validate({"id": "front_door", "source": RTSP, **fields})


def problems_of(**fields: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        camera(**fields)
    return validation_problems(caught.value, "cameras.front_door")


def write(tmp_path: Path, text: str, name: str = "cameras.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- slugify --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("front_door", "front_door"),
        ("Front Door", "front_door"),
        ("  Back   yard / gate!! ", "back_yard_gate"),
        ("Entrée Côté Jardin", "entree_cote_jardin"),
        ("__Garage__", "garage"),
        ("cam-2", "cam-2"),
    ],
)
def test_slugify_makes_lower_case_ascii_ids(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_slugify_never_returns_an_empty_or_invalid_slug() -> None:
    for name in ("前门", "", "!!!", "___"):
        slug = slugify(name)
        assert is_slug(slug), (name, slug)
        assert re.fullmatch(r"id_[0-9a-f]{8}", slug)
        assert slugify(name) == slug  # deterministic
    assert slugify("前门") != slugify("后门")


def test_slugify_cuts_long_names_and_keeps_them_distinct() -> None:
    first, second = slugify("a" * 100 + "1"), slugify("a" * 100 + "2")
    assert len(first) <= MAX_SLUG_LENGTH and is_slug(first)
    assert first != second


# -- CameraConfig ---------------------------------------------------------------------------


def test_defaults_of_a_minimal_camera() -> None:
    config = camera()
    assert config.name == "front_door"
    assert isinstance(config.source, RtspSourceConfig) and config.source.transport == "tcp"
    assert (config.detect_fps, config.enabled, config.timezone) == (5.0, True, "UTC")
    assert (config.motion.threshold, config.motion.contour_area) == (30, 10)
    assert config.motion.lightning_threshold == 0.8 and config.motion.masks == ()
    assert config.objects.track == DEFAULT_TRACKED_LABELS and "person" in config.objects.track
    assert config.zones == {}


def test_a_full_camera_is_kept_as_given() -> None:
    config = camera(
        name="Front door",
        zone_description="Porch and the path to the street.\nPrivate property.",
        source={"type": "file", "path": "/videos/porch.mp4", "loop": True},
        detect_fps=2.5,
        timezone="Europe/Berlin",
        motion={"threshold": 40, "contour_area": 20, "lightning_threshold": 0.6, "masks": [SQUARE]},
        zones={"porch": {"polygon": SQUARE, "objects": ["person"], "inertia": 4}},
        objects={"track": ["person", "car", "person"], "filters": {"car": {"min_score": 0.6}}},
    )
    assert config.name == "Front door" and config.detect_fps == 2.5
    assert isinstance(config.source, FileSourceConfig) and config.source.loop
    assert config.motion.masks[0][1] == (0.9, 0.1)
    assert config.zones["porch"].objects == ("person",) and config.zones["porch"].inertia == 4
    assert config.objects.track == ("person", "car")  # duplicates dropped, order kept
    assert config.objects.filters["car"].min_score == 0.6


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"id": "Front Door"}, "cameras.front_door.id: must be 1–64 lower-case"),
        ({"id": "a" * 65}, "cameras.front_door.id: must be 1–64 lower-case"),
        ({"detect_fps": 0}, "cameras.front_door.detect_fps: Input should be greater than 0"),
        ({"detect_fps": 31}, "cameras.front_door.detect_fps: Input should be less than or equal"),
        ({"detect_fps": float("nan")}, "cameras.front_door.detect_fps: Input should be a finite"),
        ({"timezone": "Mars/Olympus_Mons"}, "cameras.front_door.timezone: unknown time zone"),
        ({"timezone": "../../etc/passwd"}, "cameras.front_door.timezone: must be an IANA"),
        ({"zone_description": "x" * 2001}, "cameras.front_door.zone_description: String should"),
        ({"zone_description": "bell\x07"}, "cameras.front_door.zone_description: holds control"),
        ({"name": "a\x00b"}, "cameras.front_door.name: must be 1–200 characters"),
        ({"motion": {"threshold": 0}}, "cameras.front_door.motion.threshold: Input should be"),
        ({"motion": {"threshold": 256}}, "cameras.front_door.motion.threshold: Input should be"),
        ({"motion": {"lightning_threshold": 1.5}}, "motion.lightning_threshold: Input should be"),
        ({"motion": {"masks": [SQUARE[:2]]}}, "cameras.front_door.motion.masks[0]: Tuple should"),
        ({"motion": {"masks": [[[0, 0], [1.2, 0], [1, 1]]]}}, "motion.masks[0][1][0]: Input"),
        ({"motion": {"masks": [[[0, 0], [float("inf"), 0], [1, 1]]]}}, "masks[0][1][0]: Input"),
        ({"zones": {"Porch": {"polygon": SQUARE}}}, "cameras.front_door.zones.Porch: the key must"),
        ({"zones": {"porch": {"polygon": SQUARE, "objects": []}}}, "zones.porch.objects: Value"),
        ({"zones": {"porch": {"polygon": SQUARE, "inertia": 0}}}, "zones.porch.inertia: Input"),
        ({"zones": {"porch": {"polygon": SQUARE, "objects": ["bus"]}}}, "'bus' not in objects"),
        (
            {"objects": {"track": []}},
            "cameras.front_door.objects.track: Tuple should have at least",
        ),
        ({"objects": {"track": [" person"]}}, "objects.track[0]: a label is 1–64 characters"),
        ({"objects": {"filters": {"car": {"min_score": 1.5}}}}, "filters.car.min_score: Input"),
        ({"objects": {"filters": {"car": {"min_area": 5000.0}}}}, "min_area: a decimal area is"),
        ({"objects": {"filters": {"car": {"max_area": True}}}}, "max_area: must be pixels"),
        ({"objects": {"filters": {"car": {"min_area": -1}}}}, "min_area: must not be negative"),
        ({"objects": {"filters": {"car": {"min_ratio": 2, "max_ratio": 1}}}}, "min_ratio is above"),
        ({"objects": {"filters": {"car": {"min_area": 9, "max_area": 5}}}}, "min_area is above"),
        ({"detect_width": 640}, "cameras.front_door.detect_width: Extra inputs are not permitted"),
        ({"source": {"type": "rtsp", "url": "http://cam/x"}}, "source.rtsp.url: the URL's scheme"),
    ],
)
def test_a_bad_field_is_refused_naming_its_path(fields: dict[str, Any], expected: str) -> None:
    problems = problems_of(**fields)
    assert any(expected in problem for problem in problems), problems


def test_validation_problems_never_quote_a_url_back() -> None:
    problems = problems_of(source={"type": "rtsp", "url": "rtsp://viewer:hunter2@cam/x y"})
    assert problems and not any("hunter2" in problem for problem in problems)


# -- object filters ---------------------------------------------------------------------------

FRAME = (1000, 500)  # width, height: 500 000 pixels


@pytest.mark.parametrize(
    ("settings", "score", "box", "accepted"),
    [
        ({}, 0.5, (0, 0, 10, 10), True),
        ({}, 0.49, (0, 0, 10, 10), False),
        ({"min_area": 100}, 0.9, (0, 0, 10, 10), True),
        ({"min_area": 101}, 0.9, (0, 0, 10, 10), False),
        ({"max_area": 99}, 0.9, (0, 0, 10, 10), False),
        ({"min_area": 0.01}, 0.9, (0, 0, 100, 50), True),  # 5000 px = 1% of the frame
        ({"min_area": 0.011}, 0.9, (0, 0, 100, 50), False),
        ({"max_area": 0.009}, 0.9, (0, 0, 100, 50), False),
        ({"min_ratio": 0.5}, 0.9, (0, 0, 10, 30), False),  # a tall box: ratio 1/3
        ({"max_ratio": 2.0}, 0.9, (0, 0, 30, 10), False),  # a wide box: ratio 3
        ({"min_ratio": 0.3, "max_ratio": 3.0}, 0.9, (0, 0, 10, 30), True),
        ({}, 0.9, (10, 10, 10, 40), False),  # no width
        ({}, 0.9, (10, 40, 20, 10), False),  # upside down
        ({}, float("nan"), (0, 0, 10, 10), False),
        ({}, 0.9, (0, 0, float("inf"), 10), False),
    ],
)
def test_object_filter_accepts(
    settings: dict[str, Any], score: float, box: tuple[float, ...], accepted: bool
) -> None:
    object_filter = ObjectFilter.model_validate(settings)
    assert object_filter.accepts(score, box, FRAME) is accepted  # type: ignore[arg-type]


def test_objects_config_keeps_only_tracked_labels_that_pass_their_filter() -> None:
    objects = ObjectsConfig.model_validate(
        {"track": ["person", "car"], "filters": {"car": {"min_score": 0.8}}}
    )
    box = (0.0, 0.0, 50.0, 50.0)
    assert objects.accepts("person", 0.55, box, FRAME)  # the default filter: min_score 0.5
    assert not objects.accepts("person", 0.45, box, FRAME)
    assert not objects.accepts("car", 0.7, box, FRAME)
    assert objects.accepts("car", 0.85, box, FRAME)
    assert not objects.accepts("dog", 0.99, box, FRAME)  # not tracked


# -- load_cameras_file --------------------------------------------------------------------------


def test_loads_a_mapping_of_cameras_slugging_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
cameras:
  front_door:
    source: {type: rtsp, url: "rtsp://viewer:hunter2@192.168.1.30/stream1"}
    detect_fps: 4
  Back Yard:
    source: {type: push}
  Entrée:
    name: Entrance hall
    source: {type: folder, path: /srv/ftp/entrance}
""",
    )
    loaded = load_cameras_file(path)
    assert [c.id for c in loaded.cameras] == ["front_door", "back_yard", "entree"]
    assert [c.name for c in loaded.cameras] == ["front_door", "Back Yard", "Entrance hall"]
    assert loaded.cameras[0].detect_fps == 4 and loaded.notes == []


def test_loads_a_list_of_cameras(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
cameras:
  - id: porch
    source: {type: push}
  - name: Side Gate
    source: {type: push}
""",
    )
    cameras = load_cameras_file(path).cameras
    assert [(c.id, c.name) for c in cameras] == [("porch", "porch"), ("side_gate", "Side Gate")]


def test_duplicate_ids_after_slugging_name_both_cameras(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cameras:\n  front_door: {source: {type: push}}\n  Front Door: {source: {type: push}}\n",
    )
    with pytest.raises(CameraConfigError) as caught:
        load_cameras_file(path)
    message = str(caught.value)
    assert "cameras.Front Door" in message and "cameras.front_door" in message
    assert "'front_door'" in message


def test_every_bad_camera_is_reported_with_file_camera_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
cameras:
  porch:
    source: {type: rtsp, url: "ftp://viewer:hunter2@cam/1"}
  gate:
    source: {type: push}
    detect_fps: 0
""",
    )
    with pytest.raises(CameraConfigError) as caught:
        load_cameras_file(path)
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: cameras.porch.source.rtsp.url: the URL's scheme")
    assert problems[1] == f"{path}: cameras.gate.detect_fps: Input should be greater than 0"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cameras:\n  porch:\n    id: gate\n    source: {type: push}\n",
            "cameras.porch.id: the key",
        ),
        ("cameras:\n  - source: {type: push}\n", "cameras[0]: give the camera an id or a name"),
        ("cameras: 3\n", "cameras: must be a mapping of cameras or a list"),
        ("cameras:\n", "cameras: must be a mapping of cameras or a list"),
        ("cameras: {}\nmqtt: {}\n", "mqtt: not a setting of a cameras file"),
        ("- porch\n", "expected a mapping with a top-level 'cameras'"),
        ("cameras:\n  porch: [1]\n", "cameras.porch: must be a mapping"),
        ("cameras:\n  porch: {source: {type: push}}\n  porch: {source: {type: push}}\n", "twice"),
    ],
)
def test_a_malformed_file_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CameraConfigError, match=re.escape(expected)):
        load_cameras_file(write(tmp_path, text))


def test_merge_keys_may_be_overridden_without_counting_as_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cameras:\n  porch: &p {source: {type: push}, detect_fps: 2}\n"
        "  gate:\n    <<: *p\n    detect_fps: 3\n",
    )
    assert [c.detect_fps for c in load_cameras_file(path).cameras] == [2, 3]


def test_invalid_yaml_names_the_line_and_never_quotes_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cameras:\n  porch:\n    source: {type: rtsp, url: rtsp://viewer:hunter2@cam/1\n",
    )
    with pytest.raises(CameraConfigError) as caught:
        load_cameras_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid YAML at line ") and "hunter2" not in message


def test_unreadable_undecodable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(CameraConfigError, match="cannot be read"):
        load_cameras_file(tmp_path / "missing.yml")
    with pytest.raises(CameraConfigError, match="cannot be read"):
        load_cameras_file(tmp_path)  # a directory
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes("cameras:\n  entrée: {}\n".encode("latin-1"))
    with pytest.raises(CameraConfigError, match="not UTF-8"):
        load_cameras_file(latin1)
    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(CameraConfigError, match="larger than"):
        load_cameras_file(big)


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = write(tmp_path, "\n".join(lines) + "\ncameras: *a7\n")
    with pytest.raises(CameraConfigError, match="holds more than"):
        load_cameras_file(path)


def test_a_frigate_config_is_imported_with_its_notes(tmp_path: Path) -> None:
    loaded = load_cameras_file(
        FRIGATE_DATA / "frigate_env_placeholders.yml",
        environ={"FRIGATE_RTSP_USER": "viewer", "FRIGATE_RTSP_PASSWORD": "hunter2"},
    )
    assert [c.id for c in loaded.cameras] == ["gate", "garden", "kitchen_window"]
    assert "cameras.gate.onvif: ONVIF control and PTZ autotracking are not supported" in (
        loaded.notes
    )
    with pytest.raises(CameraConfigError) as caught:
        load_cameras_file(FRIGATE_DATA / "frigate_env_placeholders.yml", environ={})
    assert str(caught.value).startswith(str(FRIGATE_DATA / "frigate_env_placeholders.yml"))
    assert "FRIGATE_RTSP_USER is not set" in str(caught.value)


def test_the_config_file_defines_cameras_too_and_an_id_in_both_is_an_error(tmp_path: Path) -> None:
    from hearthwatch.security.cameras import configured_cameras

    cameras_file = tmp_path / "cameras.yml"
    cameras_file.write_text("cameras:\n  porch:\n    source: {type: push}\n")
    defined = {"Back Door": {"source": {"type": "push"}, "detect_fps": 2}}
    loaded = configured_cameras(defined, cameras_file)
    assert [(c.id, c.name, c.detect_fps) for c in loaded.cameras] == [
        ("back_door", "Back Door", 2.0),
        ("porch", "porch", 5.0),
    ]
    with pytest.raises(CameraConfigError, match="'porch' is defined in the config file and in"):
        configured_cameras({"porch": {"source": {"type": "push"}}}, cameras_file)
    with pytest.raises(CameraConfigError, match=r"config file: cameras\.x\.detect_fps"):
        configured_cameras({"x": {"source": {"type": "push"}, "detect_fps": 0}}, None)
