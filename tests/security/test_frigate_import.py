"""import_frigate: each mapping rule on the sample configs in tests/data/frigate/ (written from
Frigate's documented schema: 0.14 legacy masks in pixels, 0.18 named masks with go2rtc,
{FRIGATE_*} placeholders), and each error case on small inline configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hearthwatch.security.cameras import CameraConfig, CameraConfigError
from hearthwatch.security.frigate import FrigateImport, import_frigate
from hearthwatch.security.sources.config import (
    FileSourceConfig,
    HttpSourceConfig,
    RtspSourceConfig,
)

DATA = Path(__file__).parent.parent / "data" / "frigate"
SECRETS = {"FRIGATE_RTSP_USER": "viewer", "FRIGATE_RTSP_PASSWORD": "hunter2"}
SQUARE = "0.1,0.1,0.9,0.1,0.9,0.9,0.1,0.9"


def sample(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def by_id(imported: FrigateImport) -> dict[str, CameraConfig]:
    return {camera.id: camera for camera in imported.cameras}


def minimal(**camera: Any) -> dict[str, Any]:
    """A one-camera Frigate config; ``camera`` replaces the camera's settings."""
    settings = {"ffmpeg": {"inputs": [{"path": "rtsp://192.168.1.30/s1", "roles": ["detect"]}]}}
    return {"cameras": {"porch": {**settings, **camera}}}


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(CameraConfigError) as caught:
        import_frigate(data, environ=environ or {})
    return str(caught.value)


def approx_polygon(polygon: tuple[tuple[float, float], ...]) -> list[Any]:
    return [pytest.approx(point) for point in polygon]


# -- the 0.14-style sample: legacy masks and pixel coordinates ---------------------------------


@pytest.fixture(scope="module")
def legacy() -> FrigateImport:
    return import_frigate(sample("frigate_0.14_legacy_masks.yml"), environ={})


def test_legacy_sources_come_from_the_detect_role(legacy: FrigateImport) -> None:
    cameras = by_id(legacy)
    assert list(cameras) == ["front_door", "driveway", "garage"]
    front = cameras["front_door"].source
    assert isinstance(front, RtspSourceConfig) and front.url.endswith("subtype=1")  # not record
    driveway = cameras["driveway"].source
    assert isinstance(driveway, RtspSourceConfig) and driveway.transport == "udp"  # the preset
    assert front.transport == "tcp"
    garage = cameras["garage"].source
    assert isinstance(garage, FileSourceConfig)
    assert garage.path == Path("/media/frigate/garage-test.mp4")


def test_legacy_pixel_masks_and_zones_become_relative(legacy: FrigateImport) -> None:
    front, driveway = by_id(legacy)["front_door"], by_id(legacy)["driveway"]
    # "0,0,640,0,640,60,0,60" of a 640x360 detect frame
    assert front.motion.masks == (((0.0, 0.0), (1.0, 0.0), (1.0, 60 / 360), (0.0, 60 / 360)),)
    # a list of legacy strings, 1280x720
    assert len(driveway.motion.masks) == 2
    assert approx_polygon(driveway.motion.masks[1]) == [
        (1100 / 1280, 620 / 720),
        (1.0, 620 / 720),
        (1.0, 1.0),
        (1100 / 1280, 1.0),
    ]
    assert front.zones["porch"].polygon == ((0.2, 1.0), (0.2, 0.5), (0.8, 0.5), (0.8, 1.0))
    assert front.zones["steps"].polygon[0] == (0.1, 0.9)  # relative already: kept
    assert front.zones["porch"].objects == ("person",) and front.zones["steps"].objects is None
    parking = driveway.zones["parking"]
    assert parking.objects == ("car",) and parking.inertia == 5  # a bare label


def test_global_defaults_merge_into_each_camera(legacy: FrigateImport) -> None:
    front, driveway, garage = legacy.cameras
    assert [c.motion.threshold for c in legacy.cameras] == [25, 25, 25]  # global motion
    assert (front.motion.contour_area, driveway.motion.contour_area) == (10, 30)  # camera wins
    assert [c.detect_fps for c in legacy.cameras] == [5, 10, 5]
    assert front.objects.track == ("person", "car")  # global
    assert driveway.objects.track == ("person", "car", "dog")  # a camera list replaces
    # person filter: camera min_area 2304 px, global max_area 100000 px, of 640x360 = 230400
    person = front.objects.filters["person"]
    assert person.min_area == pytest.approx(0.01)
    assert person.max_area == pytest.approx(100000 / 230400)
    assert isinstance(person.min_area, float)
    # no detect size: pixel areas stay pixels
    assert (
        garage.objects.filters["person"].min_area,
        garage.objects.filters["person"].max_area,
    ) == (
        5000,
        100000,
    )


def test_legacy_names_enabled_and_detect_enabled(legacy: FrigateImport) -> None:
    garage = by_id(legacy)["garage"]
    assert (garage.id, garage.name, garage.enabled) == ("garage", "Garage", False)
    assert by_id(legacy)["front_door"].name == "front_door"
    assert "cameras.Garage: imported disabled: Frigate's detect.enabled is false" in (
        legacy.unsupported
    )
    enabled_only_in_detect = minimal(detect={"enabled": False})
    assert not import_frigate(enabled_only_in_detect, environ={}).cameras[0].enabled


def test_legacy_unsupported_parts_are_listed_with_paths(legacy: FrigateImport) -> None:
    notes = legacy.unsupported
    for expected in [
        "mqtt: not imported: MQTT is set in hearthwatch's own settings",
        "detectors: not imported: the detector is set in hearthwatch's own settings",
        "record: recording is not supported: hearthwatch keeps a clip per event",
        "snapshots: ",
        "birdseye: ",
        "ffmpeg.hwaccel_args: ",
        "motion.improve_contrast: ",
        "objects.filters.person.threshold: Frigate's threshold",
        "cameras.front_door.objects.filters.person.mask: object masks are not supported",
        "cameras.front_door.ffmpeg.inputs[1].roles.record: recording is not supported",
        "cameras.driveway.record: recording is not supported",
        "cameras.driveway.detect.stationary: ",
        "cameras.driveway.ffmpeg.input_args: ",
        "cameras.Garage.ffmpeg.inputs[0].input_args: ",
    ]:
        assert any(note.startswith(expected) for note in notes), expected
    assert len(notes) == len(set(notes))
    assert not any("password" in note or "door-pass" in note for note in notes)


# -- the 0.18-style sample: go2rtc, named masks ------------------------------------------------


@pytest.fixture(scope="module")
def modern() -> FrigateImport:
    return import_frigate(sample("frigate_0.18_go2rtc.yml"), environ={})


def test_go2rtc_restreams_resolve_to_their_first_rtsp_or_http_source(modern: FrigateImport) -> None:
    cameras = by_id(modern)
    assert list(cameras) == ["front_door", "back_yard", "shed"]  # doorbell: exec only
    front = cameras["front_door"].source
    assert isinstance(front, RtspSourceConfig)
    assert front.url == "rtsp://admin:go2rtc-pass@192.168.1.40:554/h264Preview_01_sub"  # no #…
    back = cameras["back_yard"].source  # its ffmpeg: source skipped, the http one taken
    assert isinstance(back, HttpSourceConfig) and "channel0_ext" in back.url
    shed = cameras["shed"].source
    assert (
        isinstance(shed, RtspSourceConfig) and shed.url == "rtsps://192.168.1.1:7441/abcdEFGH1234"
    )
    notes = modern.unsupported
    assert "go2rtc.streams.front_door_sub[0]: go2rtc options after '#' are not applied" in notes
    assert any(
        n.startswith("go2rtc.streams.back_yard[0]: ffmpeg source is not supported") for n in notes
    )
    assert "go2rtc.streams.shed[0]: rtspx: read as rtsps: (TLS not verified)" in notes
    assert any(
        n.startswith("go2rtc.streams.doorbell[0]: exec source is not supported") for n in notes
    )
    assert (
        "cameras.doorbell: not imported: go2rtc.streams.doorbell has no rtsp or http source"
        in notes
    )


def test_named_masks_merge_global_and_camera_and_skip_disabled(modern: FrigateImport) -> None:
    front, back = by_id(modern)["front_door"], by_id(modern)["back_yard"]
    timestamp = ((0.0, 0.0), (0.3, 0.0), (0.3, 0.06), (0.0, 0.06))
    tree = ((0.7, 0.0), (1.0, 0.0), (1.0, 0.4), (0.7, 0.4))
    assert front.motion.masks == (timestamp, tree)  # old_mask is disabled
    assert back.motion.masks == (timestamp,)
    assert "cameras.front_door.motion.mask.old_mask: not imported: disabled" in modern.unsupported
    assert (front.motion.threshold, back.motion.threshold) == (40, 30)
    assert front.motion.lightning_threshold == back.motion.lightning_threshold == 0.7


def test_modern_zones_names_time_zone_and_filters(modern: FrigateImport) -> None:
    cameras = by_id(modern)
    front = cameras["front_door"]
    assert front.name == "Front Door"  # friendly_name
    assert front.zones["porch"].friendly_name == "Front porch"
    street = front.zones["street"]  # a list of "x,y" points; objects [] means every label
    assert street.polygon == ((0.0, 0.3), (1.0, 0.3), (1.0, 0.5), (0.0, 0.5))
    assert street.objects is None and street.friendly_name is None
    shed_door = cameras["shed"].zones["shed_door"]  # key "Shed Door" slugged, kept as the name
    assert shed_door.friendly_name == "Shed Door"
    assert {camera.timezone for camera in cameras.values()} == {"Europe/Berlin"}
    assert cameras["back_yard"].objects.filters["dog"].min_ratio == 0.5
    assert cameras["back_yard"].objects.filters["dog"].max_ratio == 2.5
    assert cameras["back_yard"].objects.filters["car"].min_score == 0.6  # global filter
    assert cameras["back_yard"].objects.filters["car"].min_area == 0.01  # a fraction, kept
    assert front.objects.track == ("person", "car", "dog", "cat")


def test_modern_unsupported_parts_are_listed(modern: FrigateImport) -> None:
    for expected in [
        "model: ",
        "go2rtc: hearthwatch runs no restreamer",
        "review: ",
        "genai: ",
        "semantic_search: ",
        "face_recognition: ",
        "lpr: ",
        "telemetry: ",
        "ui.time_format: ",
        "cameras.front_door.review: ",
        "cameras.front_door.onvif: ",
        "cameras.front_door.ffmpeg.output_args: ",
        "cameras.front_door.ffmpeg.inputs[1].roles.audio: audio detection is not supported",
        "cameras.front_door.zones.porch.loitering_time: ",
        "cameras.front_door.zones.street.distances: ",
        "cameras.front_door.zones.street.speed_threshold: ",
    ]:
        assert any(note.startswith(expected) for note in modern.unsupported), expected
    assert not any("go2rtc-pass" in note or "onvif-pass" in note for note in modern.unsupported)


# -- {FRIGATE_*} placeholders --------------------------------------------------------------------


def test_placeholders_are_filled_from_frigate_variables() -> None:
    environ = {**SECRETS, "FRIGATE_NVR_HOST": "10.0.0.1", "HOME": "/root"}
    imported = import_frigate(sample("frigate_env_placeholders.yml"), environ=environ)
    cameras = by_id(imported)
    gate, garden, kitchen = cameras["gate"], cameras["garden"], cameras["kitchen_window"]
    # environment_vars in the file win over the process environment, as in Frigate
    assert isinstance(gate.source, RtspSourceConfig)
    assert gate.source.url == "rtsp://viewer:hunter2@192.168.1.60:554/Streaming/Channels/102"
    assert isinstance(garden.source, RtspSourceConfig)  # through go2rtc, placeholders too
    assert garden.source.url == "rtsp://viewer:hunter2@192.168.1.60:554/Streaming/Channels/201"
    assert isinstance(kitchen.source, HttpSourceConfig) and "viewer:hunter2@" in kitchen.source.url
    assert gate.detect_fps == 4
    assert (
        "environment_vars.TZ: not applied: only FRIGATE_ variables are used, for placeholders"
        in (imported.unsupported)
    )
    assert not any("hunter2" in note for note in imported.unsupported)


def test_only_frigate_variables_are_substituted() -> None:
    data = minimal()
    data["cameras"]["porch"]["ffmpeg"]["inputs"][0]["path"] = "rtsp://{FRIGATE_PASS}@cam/{HOME}"
    message = problems(data, environ={"PASS": "hunter2", "HOME": "/root"})
    assert "cameras.porch.ffmpeg.inputs[0].path: placeholder {FRIGATE_PASS}" in message
    assert "FRIGATE_PASS is not set" in message
    imported = import_frigate(data, environ={"FRIGATE_PASS": "u:hunter2"})
    source = imported.cameras[0].source
    assert isinstance(source, RtspSourceConfig) and source.url == "rtsp://u:hunter2@cam/{HOME}"


def test_escaped_braces_and_malformed_placeholders() -> None:
    data = minimal()
    data["cameras"]["porch"]["ffmpeg"]["inputs"][0]["path"] = "/clips/{{FRIGATE_X}}.mp4"
    source = import_frigate(data, environ={}).cameras[0].source
    assert isinstance(source, FileSourceConfig) and source.path == Path("/clips/{FRIGATE_X}.mp4")
    data["cameras"]["porch"]["ffmpeg"]["inputs"][0]["path"] = "rtsp://u:{FRIGATE_PASS@cam/1"
    message = problems(data, environ={"FRIGATE_PASS": "hunter2"})
    assert "cameras.porch.ffmpeg.inputs[0].path: a {FRIGATE_…} placeholder is malformed" in message
    assert "hunter2" not in message


# -- other mapping rules ------------------------------------------------------------------------


def test_without_objects_track_frigate_tracks_only_people() -> None:
    camera = import_frigate(minimal(), environ={}).cameras[0]
    assert camera.objects.track == ("person",)
    assert (camera.detect_fps, camera.timezone, camera.enabled) == (5.0, "UTC", True)


def test_a_lone_input_is_the_detect_input_whatever_its_roles() -> None:
    data = minimal(ffmpeg={"inputs": [{"path": "rtsp://cam/1", "roles": ["record"]}]})
    imported = import_frigate(data, environ={})
    assert len(imported.cameras) == 1
    note = "cameras.porch.ffmpeg.inputs[0].roles.record: recording is not supported"
    assert any(n.startswith(note) for n in imported.unsupported)


def test_a_lone_input_needs_no_roles_and_udp_follows_its_input_args() -> None:
    data = minimal(
        ffmpeg={"inputs": [{"path": "rtsp://cam/1", "input_args": ["-rtsp_transport", "udp"]}]}
    )
    source = import_frigate(data, environ={}).cameras[0].source
    assert isinstance(source, RtspSourceConfig) and source.transport == "udp"
    data["cameras"]["porch"]["ffmpeg"]["inputs"][0]["input_args"] = "-rtsp_transport tcp"
    source = import_frigate(data, environ={}).cameras[0].source
    assert isinstance(source, RtspSourceConfig) and source.transport == "tcp"


def test_zone_objects_may_be_comma_separated() -> None:
    data = minimal(
        objects={"track": ["person", "car"]},
        zones={"drive": {"coordinates": SQUARE, "objects": "person, car"}},
    )
    assert import_frigate(data, environ={}).cameras[0].zones["drive"].objects == ("person", "car")


def test_a_stream_hearthwatch_cannot_read_leaves_the_camera_out() -> None:
    data = minimal(ffmpeg={"inputs": [{"path": "rtmp://cam/live", "roles": ["detect"]}]})
    data["cameras"]["gate"] = minimal()["cameras"]["porch"]
    imported = import_frigate(data, environ={})
    assert [camera.id for camera in imported.cameras] == ["gate"]
    assert any(
        n.startswith("cameras.porch: not imported: its detect input") for n in imported.unsupported
    )


def test_camera_values_win_a_deep_merge_and_globals_stay_untouched() -> None:
    data = minimal(objects={"track": ["car"], "filters": {"car": {"min_score": 0.7}}})
    data["objects"] = {
        "track": ["person", "car"],
        "filters": {"car": {"min_score": 0.4, "max_ratio": 3.0}},
    }
    before = copy.deepcopy(data)
    objects = import_frigate(data, environ={}).cameras[0].objects
    assert objects.track == ("car",)
    assert (objects.filters["car"].min_score, objects.filters["car"].max_ratio) == (0.7, 3.0)
    assert data == before


def test_mask_forms_single_string_list_and_dict_with_list_coordinates() -> None:
    two = [SQUARE, "0,0,0.5,0,0.5,0.5"]
    for mask, count in [(SQUARE, 1), (two, 2), ({"m": {"coordinates": two}}, 2), ({"m": None}, 0)]:
        camera = import_frigate(minimal(motion={"mask": mask}), environ={}).cameras[0]
        assert len(camera.motion.masks) == count, mask


def test_a_camera_mask_replaces_the_global_mask_of_the_same_name() -> None:
    data = minimal(motion={"mask": "0,0,0.5,0,0.5,0.5"})
    data["motion"] = {"mask": [SQUARE, "0.6,0.6,1,0.6,1,1"]}
    masks = import_frigate(data, environ={}).cameras[0].motion.masks
    assert masks == (((0.0, 0.0), (0.5, 0.0), (0.5, 0.5)), ((0.6, 0.6), (1.0, 0.6), (1.0, 1.0)))


def test_a_camera_can_disable_a_global_named_mask() -> None:
    data = minimal(motion={"mask": {"timestamp": {"enabled": False}}})
    data["motion"] = {"mask": {"timestamp": {"coordinates": SQUARE}}}
    renamed = minimal(motion={"mask": {"timestamp": {"friendly_name": "Clock"}}})
    data["cameras"]["gate"] = renamed["cameras"]["porch"]
    porch, gate = import_frigate(data, environ={}).cameras
    assert porch.motion.masks == () and len(gate.motion.masks) == 1  # entries merge by name


def test_duplicate_zone_ids_after_slugging_are_an_error() -> None:
    data = minimal(
        zones={"front yard": {"coordinates": SQUARE}, "Front Yard": {"coordinates": SQUARE}}
    )
    message = problems(data)
    assert (
        "cameras.porch.zones.Front Yard: its id 'front_yard' is also the id of zone front yard"
        in (message)
    )


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ffmpeg": {"inputs": []}}, "cameras.porch.ffmpeg.inputs: must list at least one input"),
        ({"ffmpeg": {}}, "cameras.porch.ffmpeg.inputs: must list at least one input"),
        (
            {
                "ffmpeg": {
                    "inputs": [
                        {"path": "rtsp://cam/1", "roles": ["record"]},
                        {"path": "rtsp://cam/2", "roles": ["audio"]},
                    ]
                }
            },
            "cameras.porch.ffmpeg.inputs: no input has the detect role",
        ),
        (
            {
                "ffmpeg": {
                    "inputs": [
                        {"path": "rtsp://cam/1", "roles": ["detect"]},
                        {"path": "rtsp://cam/2", "roles": ["detect", "record"]},
                    ]
                }
            },
            "the detect role is given to both inputs[0] and inputs[1]",
        ),
        (
            {"ffmpeg": {"inputs": [{"path": "rtsp://cam/1", "roles": ["detect", "snapshot"]}]}},
            "cameras.porch.ffmpeg.inputs[0].roles: unknown role 'snapshot'",
        ),
        (
            {"ffmpeg": {"inputs": [{"path": 7, "roles": ["detect"]}]}},
            "cameras.porch.ffmpeg.inputs[0].path: must be a non-empty string",
        ),
        (
            {"ffmpeg": {"inputs": [{"path": "rtsp://127.0.0.1:8554/porch", "roles": ["detect"]}]}},
            "cameras.porch.ffmpeg.inputs[0].path: reads go2rtc stream 'porch' of Frigate's "
            "restream, but go2rtc.streams has no such stream",
        ),
        ({"motion": {"mask": "0,0,640,0,640,60"}}, "cameras.porch.motion.mask: pixel coordinates"),
        (
            {"detect": {"width": 640, "height": 360}, "motion": {"mask": ["0,0,700,0,700,60"]}},
            "cameras.porch.motion.mask[0]: point 700,0 lies outside the 640x360 detect frame",
        ),
        (
            {"motion": {"mask": {"street": {"coordinates": "0,0,1,0,1"}}}},
            "cameras.porch.motion.mask.street.coordinates: an odd count of numbers",
        ),
        (
            {"motion": {"mask": {"street": {"coordinates": 5}}}},
            "cameras.porch.motion.mask.street.coordinates: must be a string",
        ),
        ({"motion": {"mask": "0,0,a,b,1,1"}}, "cameras.porch.motion.mask: must be numbers"),
        ({"motion": {"mask": "0,0,nan,0,1,1"}}, "coordinates must be finite and not negative"),
        ({"motion": {"mask": "0,0,1,-0.5,1,1"}}, "coordinates must be finite and not negative"),
        ({"zones": {"z": {"coordinates": "0,0,1,1"}}}, "zones.z.coordinates: a polygon needs"),
        ({"zones": {"z": {"objects": ["person"]}}}, "cameras.porch.zones.z.coordinates: required"),
        ({"zones": {"z": {"coordinates": [0.1, 0.2]}}}, "zones.z.coordinates: must be a string"),
        ({"zones": {"z": {"coordinates": SQUARE, "inertia": 0}}}, "zones.z.inertia: Input should"),
        (
            {"zones": {"z": {"coordinates": SQUARE, "objects": ["car"]}}},
            "'car' not in objects.track",
        ),
        ({"detect": {"width": 640}}, "cameras.porch.detect.height: must be a positive number"),
        ({"detect": {"fps": 0}}, "cameras.porch.detect.fps: Input should be greater than 0"),
        ({"motion": {"threshold": 300}}, "cameras.porch.motion.threshold: Input should be less"),
        ({"motion": "yes"}, "cameras.porch.motion: must be a mapping"),
        ({"objects": {"filters": {"car": {"min_area": 1.5}}}}, "filters.car.min_area: a decimal"),
        (
            {"objects": {"filters": {"car": 3}}},
            "cameras.porch.objects.filters.car: must be a mapping",
        ),
        ({"enabled": "perhaps"}, "cameras.porch.enabled: Input should be a valid boolean"),
        ({"friendly_name": "x" * 300}, "cameras.porch.friendly_name: must be 1–200 characters"),
    ],
)
def test_malformed_mapped_data_is_an_error_naming_the_path(
    change: dict[str, Any], expected: str
) -> None:
    assert expected in problems(minimal(**change))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "cameras: must be a mapping of at least one camera"),
        ({"cameras": []}, "cameras: must be a mapping of at least one camera"),
        ({"cameras": {"porch": None}}, "cameras.porch: must be a mapping"),
        ({"cameras": {3: {}}}, "cameras: key '3' must be a name"),
        ({**minimal(), "ui": {"timezone": "Mars/Base"}}, "ui.timezone: unknown time zone"),
        ({**minimal(), "go2rtc": {"streams": ["a"]}}, "go2rtc.streams: must be a mapping"),
        ({**minimal(), "environment_vars": {"FRIGATE_X": []}}, "environment_vars.FRIGATE_X: must"),
    ],
)
def test_malformed_top_level_data_is_an_error(data: dict[str, Any], expected: str) -> None:
    assert expected in problems(data)


def test_go2rtc_sources_before_and_after_the_chosen_one_are_listed() -> None:
    data = minimal(
        ffmpeg={"inputs": [{"path": "rtsp://127.0.0.1:8554/porch", "roles": ["detect"]}]}
    )
    data["go2rtc"] = {
        "streams": {
            "porch": [
                "ffmpeg:rtsp://{FRIGATE_UNSET}@cam/1#video=h264",  # unused: no error
                "{FRIGATE_PORCH_URL}",
                "rtsp://cam/backup",
            ]
        }
    }
    imported = import_frigate(data, environ={"FRIGATE_PORCH_URL": "rtsp://u:hunter2@cam/2"})
    source = imported.cameras[0].source
    assert isinstance(source, RtspSourceConfig) and source.url == "rtsp://u:hunter2@cam/2"
    assert imported.unsupported[1:] == [
        "go2rtc.streams.porch[0]: ffmpeg source is not supported: hearthwatch reads rtsp and "
        "http streams directly",
        "go2rtc.streams.porch[2]: not used: a stream's first rtsp or http source is",
    ]


def test_a_malformed_go2rtc_stream_is_an_error_naming_it() -> None:
    data = minimal(
        ffmpeg={"inputs": [{"path": "rtsp://localhost:8554/porch", "roles": ["detect"]}]}
    )
    data["go2rtc"] = {"streams": {"porch": {"url": "rtsp://cam/1"}}}
    assert "go2rtc.streams.porch: must be a URL or a list of URLs" in problems(data)
    data["go2rtc"] = {"streams": {"porch": ["rtsp://cam/1 with spaces"]}}
    assert "go2rtc.streams.porch[0]: the URL holds whitespace" in problems(data)


def test_duplicate_camera_ids_after_slugging_name_both_and_all_errors_are_reported() -> None:
    data = minimal()
    cameras = data["cameras"]
    cameras["Porch"] = copy.deepcopy(cameras["porch"])
    cameras["gate"] = {**copy.deepcopy(cameras["porch"]), "detect": {"fps": 99}}
    with pytest.raises(CameraConfigError) as caught:
        import_frigate(data, environ={})
    assert caught.value.problems == (
        "cameras.Porch: its id 'porch' is also the id of cameras.porch",
        "cameras.gate.detect.fps: Input should be less than or equal to 30",
    )


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(CameraConfigError, match="must be a mapping"):
        import_frigate(["cameras"], environ={})  # type: ignore[arg-type]


def test_imported_cameras_survive_a_json_round_trip(
    legacy: FrigateImport, modern: FrigateImport
) -> None:
    """What the pipeline stores (``model_dump(mode="json")``) validates back to the same."""
    for camera in [*legacy.cameras, *modern.cameras]:
        dumped = camera.model_dump(mode="json")
        assert CameraConfig.model_validate(dumped) == camera
        assert CameraConfig.model_validate(dumped).model_dump(mode="json") == dumped
