"""``/api/cameras`` and ``/api/events`` against a real ``hearthwatch serve``: cameras created,
listed, got, replaced and deleted; 404, 409 and 400 answers that say what was wrong; stream
passwords never shown; frames pushed, deduplicated and refused; events filtered and paged; an
API camera kept across a restart while the cameras file stays the truth for its own cameras;
and the routes gone (404, JSON) with ``PIPELINE_ENABLED=false``.

One server serves the whole module (the restart test, last, replaces it with a server on the
same data directory); a second one, started at the same time, runs without the pipeline.
Events come from push cameras fed 1080p frames of a person walking across a yard (the default
detector finds that figure), their windows closing after one idle second.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml
from camera_servers import ServerStack, api_client, error_of
from conftest import Server, encode, jpeg, scene
from scenes import Walk, scene_frames, yard

from hearthwatch.processes import free_port

pytestmark = [pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
GATE_URL = "rtsp://user:secret@127.0.0.1/x"
"""A cameras-file camera's stream; nothing listens there."""
WIDTH, HEIGHT = 1920, 1080
STATIC, WALK_FRAMES = 12, 8
"""Frames before the walk (the motion gate calibrates on its first 11) and of the walk."""
WALK = Walk(
    start=(500, 1040),
    end=(1400, 1040),
    first_frame=STATIC,
    last_frame=STATIC + WALK_FRAMES - 1,
    height=520,
)
FRAME_SPACING_S = 0.2
SEEDS = itertools.count(1000)
"""Seeds of frames that must differ from every frame pushed before them."""


# -- the servers ----------------------------------------------------------------------------


def cameras_file(**cameras: dict[str, Any]) -> str:
    return yaml.safe_dump({"cameras": cameras})


FILE_CAMERAS: dict[str, dict[str, Any]] = {
    "yard": {"name": "Yard", "source": {"type": "push"}},
    "gate": {"source": {"type": "rtsp", "url": GATE_URL}},
}


class Stack(ServerStack):
    """The module's server (replaced by :meth:`restart`), its data and cameras file."""

    def __init__(self, root: Path) -> None:
        self.cameras_path = root / "cameras.yml"
        self.cameras_path.write_text(cameras_file(**FILE_CAMERAS))
        (root / "media").mkdir()
        env = {
            "USE_GPU": "false",
            "LLM_ENABLED": "false",
            "ENRICH_ENABLED": "false",
            "WARMUP": "false",
            "MODELS_DIR": str(REPO / "models"),
            "DATA_DIR": str(root / "data"),
            "CAMERAS_FILE": str(self.cameras_path),
            "SOURCE_ROOTS": f'["{root / "media"}"]',
            "STREAM_HOSTS": '["127.0.0.1"]',
            "BATCH_WINDOW_SECONDS": "60",
            "BATCH_IDLE_TIMEOUT_SECONDS": "1",
            "CAMERA_TAMPER_AFTER_S": "1",
            "DETECTION_QUEUE_MAX_SIZE": "200",
        }
        super().__init__(root, env)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Server]]:
    root = tmp_path_factory.mktemp("cameras-api")
    stack = Stack(root)
    # started together: the two start-ups overlap
    disabled = Server(
        {
            "USE_GPU": "false",
            "LLM_ENABLED": "false",
            "ENRICH_ENABLED": "false",
            "WARMUP": "false",
            "DETECTOR__TYPE": "hog",
            "PIPELINE_ENABLED": "false",
            "DATA_DIR": str(root / "disabled-data"),
        },
        root / "disabled.log",
    )
    try:
        stack.server.wait_ready()
        disabled.wait_ready()
        yield stack, disabled
    finally:
        disabled.stop()
        stack.server.stop()


@pytest.fixture(scope="module")
def stack(servers: tuple[Stack, Server]) -> Stack:
    return servers[0]


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Callable[..., httpx.Response]]:
    yield from api_client(stack)


# -- helpers --------------------------------------------------------------------------------


def push_camera(camera_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": camera_id, "source": {"type": "push"}, **fields}


def create(api: Callable[..., httpx.Response], body: dict[str, Any]) -> dict[str, Any]:
    reply = api("POST", "/api/cameras", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def camera_ids(api: Callable[..., httpx.Response]) -> list[str]:
    reply = api("GET", "/api/cameras")
    assert reply.status_code == 200, reply.text
    return [c["id"] for c in reply.json()["cameras"]]


def small_jpeg_of_rows(rows: int) -> bytes:
    return jpeg(width=max(64, rows), height=rows, seed=rows)


# -- PIPELINE_ENABLED=false -----------------------------------------------------------------


def test_without_the_pipeline_the_camera_routes_are_404_json_and_the_rest_works(
    servers: tuple[Stack, Server],
) -> None:
    _, disabled = servers
    with httpx.Client(base_url=disabled.url, timeout=60) as client:
        for method, path in [
            ("GET", "/api/cameras"),
            ("POST", "/api/cameras"),
            ("GET", "/api/cameras/yard"),
            ("GET", "/api/cameras/yard/status"),
            ("POST", "/api/cameras/yard/frames"),
            ("GET", "/api/events"),
            ("GET", "/api/events/x"),
        ]:
            error_of(client.request(method, path, content=b"{}"), 404)
        assert client.get("/v2/health/ready").status_code == 200
        detected = client.post("/detect", content=jpeg(), headers={"Content-Type": "image/jpeg"})
        assert detected.status_code == 200, detected.text
        assert "detections" in detected.json()
        assert client.get("/metrics").status_code == 200


# -- create, list, get, replace, delete -----------------------------------------------------


def test_a_push_camera_is_created_listed_got_replaced_and_deleted(
    api: Callable[..., httpx.Response],
) -> None:
    body = push_camera(
        "porch-1",
        name="Porch",
        detect_fps=2,
        zones={"steps": {"polygon": [[0, 0.5], [1, 0.5], [1, 1]]}},
    )
    created = create(api, body)
    assert created["id"] == "porch-1" and created["name"] == "Porch"
    assert created["origin"] == "api"
    assert created["source"] == {"type": "push"}
    assert created["detect_fps"] == 2.0
    assert created["zones"]["steps"]["polygon"] == [[0, 0.5], [1, 0.5], [1, 1]]

    listed = {c["id"]: c for c in api("GET", "/api/cameras").json()["cameras"]}
    assert listed["porch-1"] == created
    assert listed["yard"]["origin"] == "file" and listed["gate"]["origin"] == "file"
    got = api("GET", "/api/cameras/porch-1")
    assert got.status_code == 200 and got.json() == created

    status = api("GET", "/api/cameras/porch-1/status")
    assert status.status_code == 200, status.text
    assert status.json()["camera"] == "porch-1"
    assert status.json()["source"]["type"] == "push"

    # a replacement, not a merge: the zone goes, the rate changes
    replaced = api(
        "PUT", "/api/cameras/porch-1", json={"name": "Front porch", "source": {"type": "push"}}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "Front porch"
    assert replaced.json()["zones"] == {} and replaced.json()["detect_fps"] == 5.0
    assert replaced.json()["origin"] == "api"
    assert api("GET", "/api/cameras/porch-1").json() == replaced.json()
    # the id may be repeated in the body
    again = api("PUT", "/api/cameras/porch-1", json=push_camera("porch-1", name="Porch 2"))
    assert again.status_code == 200 and again.json()["name"] == "Porch 2"
    assert camera_ids(api).count("porch-1") == 1

    deleted = api("DELETE", "/api/cameras/porch-1")
    assert deleted.status_code == 204 and deleted.content == b""
    assert "porch-1" not in camera_ids(api)
    for method, path in [
        ("GET", "/api/cameras/porch-1"),
        ("GET", "/api/cameras/porch-1/status"),
        ("DELETE", "/api/cameras/porch-1"),
    ]:
        assert "porch-1" in error_of(api(method, path), 404)
    # the id is free again
    assert create(api, push_camera("porch-1"))["name"] == "porch-1"
    assert api("DELETE", "/api/cameras/porch-1").status_code == 204


def test_a_camera_with_frames_in_flight_can_be_deleted_and_created_again(
    api: Callable[..., httpx.Response],
) -> None:
    create(api, push_camera("busy-1"))
    seqs = []
    for seed in range(4):
        reply = api("POST", "/api/cameras/busy-1/frames", content=jpeg(seed=seed))
        assert reply.status_code == 202, reply.text
        seqs.append(reply.json()["seq"])
    assert api("DELETE", "/api/cameras/busy-1").status_code == 204
    create(api, push_camera("busy-1"))
    reply = api("POST", "/api/cameras/busy-1/frames", content=jpeg(seed=99))
    assert reply.status_code == 202, reply.text
    assert api("DELETE", "/api/cameras/busy-1").status_code == 204


UNKNOWN_ROUTES = [
    ("GET", "/api/cameras/{id}"),
    ("PUT", "/api/cameras/{id}"),
    ("DELETE", "/api/cameras/{id}"),
    ("GET", "/api/cameras/{id}/status"),
    ("POST", "/api/cameras/{id}/frames"),
]


@pytest.mark.parametrize(("method", "path"), UNKNOWN_ROUTES)
def test_an_unknown_camera_is_404_on_every_route(
    api: Callable[..., httpx.Response], method: str, path: str
) -> None:
    if method == "PUT":
        kwargs: dict[str, Any] = {"json": push_camera("no-such-camera")}
    elif path.endswith("/frames"):
        kwargs = {"content": jpeg()}
    else:
        kwargs = {}
    message = error_of(api(method, path.format(id="no-such-camera"), **kwargs), 404)
    assert "no-such-camera" in message
    assert "no-such-camera" not in camera_ids(api)


def test_a_duplicate_id_is_409_and_changes_nothing(api: Callable[..., httpx.Response]) -> None:
    create(api, push_camera("dup-1", name="First"))
    message = error_of(api("POST", "/api/cameras", json=push_camera("dup-1", name="Second")), 409)
    assert "dup-1" in message
    assert api("GET", "/api/cameras/dup-1").json()["name"] == "First"
    # a cameras-file camera's id is taken too
    message = error_of(api("POST", "/api/cameras", json=push_camera("yard", name="Mine")), 409)
    assert "yard" in message
    yard = api("GET", "/api/cameras/yard").json()
    assert yard["name"] == "Yard" and yard["origin"] == "file"
    assert camera_ids(api).count("yard") == 1 and camera_ids(api).count("dup-1") == 1


@pytest.mark.parametrize("camera_id", ["yard", "gate"])
def test_cameras_file_cameras_cannot_be_replaced_or_deleted_through_the_api(
    api: Callable[..., httpx.Response], camera_id: str
) -> None:
    before = api("GET", f"/api/cameras/{camera_id}").json()
    message = error_of(
        api("PUT", f"/api/cameras/{camera_id}", json={"source": {"type": "push"}}), 409
    )
    assert "cameras file" in message and camera_id in message
    message = error_of(api("DELETE", f"/api/cameras/{camera_id}"), 409)
    assert "cameras file" in message
    assert api("GET", f"/api/cameras/{camera_id}").json() == before


BAD_BODIES = {
    "detect_fps zero": ({"detect_fps": 0}, "detect_fps"),
    "detect_fps too high": ({"detect_fps": 31}, "detect_fps"),
    "detect_fps text": ({"detect_fps": "fast"}, "detect_fps"),
    "unknown source type": ({"source": {"type": "ftp"}}, "source"),
    "no source": ({"source": None}, "source"),
    "source not an object": ({"source": "rtsp://user:secret@127.0.0.1/x"}, "source"),
    "non-slug id": ({"id": "Front Door"}, "id"),
    "upper-case id": ({"id": "FRONT"}, "id"),
    "empty id": ({"id": ""}, "id"),
    "long id": ({"id": "a" * 65}, "id"),
    "id not a string": ({"id": 7}, "id"),
    "no id": ({"id": None}, "id"),
    "zone polygon out of range": (
        {"zones": {"lawn": {"polygon": [[0, 0], [1.5, 0], [1, 1]]}}},
        "zones.lawn.polygon",
    ),
    "zone polygon negative": (
        {"zones": {"lawn": {"polygon": [[0, -0.1], [1, 0], [1, 1]]}}},
        "zones.lawn.polygon",
    ),
    "zone polygon of two points": (
        {"zones": {"lawn": {"polygon": [[0, 0], [1, 1]]}}},
        "zones.lawn.polygon",
    ),
    "zone key not a slug": (
        {"zones": {"Front Lawn": {"polygon": [[0, 0], [1, 0], [1, 1]]}}},
        "zones",
    ),
    "zone object not tracked": (
        {"zones": {"lawn": {"polygon": [[0, 0], [1, 0], [1, 1]], "objects": ["bird"]}}},
        "zones.lawn.objects",
    ),
    "mask out of range": ({"motion": {"masks": [[[0, 0], [2, 0], [1, 1]]]}}, "motion.masks"),
    "motion threshold zero": ({"motion": {"threshold": 0}}, "motion.threshold"),
    "no tracked objects": ({"objects": {"track": []}}, "objects.track"),
    "unknown field": ({"colour": "red"}, "colour"),
    "unknown time zone": ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    "time zone path": ({"timezone": "../../etc/passwd"}, "timezone"),
    "name with a control character": ({"name": "Porch\u0007"}, "name"),
    "enabled not a boolean": ({"enabled": "maybe"}, "enabled"),
    "rtsp url of another scheme": (
        {"source": {"type": "rtsp", "url": "http://user:secret@127.0.0.1/x"}},
        "source.url",
    ),
    "rtsp url with a space": (
        {"source": {"type": "rtsp", "url": "rtsp://user:secret@127.0.0.1/a b"}},
        "source.url",
    ),
    "rtsp url with a bad port": (
        {"source": {"type": "rtsp", "url": "rtsp://user:secret@127.0.0.1:99999/x"}},
        "source.url",
    ),
    "rtsp transport": (
        {"source": {"type": "rtsp", "url": GATE_URL, "transport": "pigeon"}},
        "source.transport",
    ),
    "folder settle_s negative": (
        {"source": {"type": "folder", "path": "media/x", "settle_s": -1}},
        "source.settle_s",
    ),
}


@pytest.mark.parametrize(("change", "field"), BAD_BODIES.values(), ids=list(BAD_BODIES))
def test_a_bad_camera_body_is_400_naming_the_field(
    api: Callable[..., httpx.Response], change: dict[str, Any], field: str
) -> None:
    body = {**push_camera("bad-1"), **change}
    message = error_of(api("POST", "/api/cameras", json=body), 400)
    if field.startswith("source."):  # pydantic puts the type in between: source.rtsp.url
        assert all(part in message for part in field.split(".")), message
    else:
        assert field in message, message
    assert "secret" not in message and "pydantic" not in message, message
    assert "bad-1" not in camera_ids(api)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        BAD_BODIES["detect_fps zero"],
        BAD_BODIES["zone polygon out of range"],
        BAD_BODIES["unknown source type"],
        BAD_BODIES["unknown field"],
    ],
)
def test_a_bad_replacement_is_400_and_keeps_the_camera(
    api: Callable[..., httpx.Response], change: dict[str, Any], field: str
) -> None:
    if "keep-1" not in camera_ids(api):
        create(api, push_camera("keep-1", name="Keep"))
    before = api("GET", "/api/cameras/keep-1").json()
    body = {**push_camera("keep-1"), **change}
    message = error_of(api("PUT", "/api/cameras/keep-1", json=body), 400)
    assert field in message, message
    assert api("GET", "/api/cameras/keep-1").json() == before


NOT_OBJECTS = {
    "array": b"[]",
    "string": b'"porch"',
    "number": b"1",
    "null": b"null",
    "true": b"true",
    "array of a camera": b'[{"id": "x", "source": {"type": "push"}}]',
}
NOT_JSON = {
    "empty": b"",
    "text": b"id=porch",
    "cut": b'{"id": "porch", "source": {"type": ',
    "not utf-8": b'{"id": "\xff\xfe"}',
    "nan": b'{"id": "porch", "source": {"type": "push"}, "detect_fps": NaN}',
    "deep": b"[" * 5000 + b"]" * 5000,
    "lone surrogate": b'{"id": "porch", "name": "\\ud800", "source": {"type": "push"}}',
}


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(
    "raw", [*NOT_OBJECTS.values(), *NOT_JSON.values()], ids=[*NOT_OBJECTS, *NOT_JSON]
)
def test_a_body_that_is_not_a_json_object_is_400(
    api: Callable[..., httpx.Response], method: str, raw: bytes
) -> None:
    if "keep-2" not in camera_ids(api):
        create(api, push_camera("keep-2"))
    path = "/api/cameras" if method == "POST" else "/api/cameras/keep-2"
    reply = api(method, path, content=raw, headers={"Content-Type": "application/json"})
    message = error_of(reply, 400)
    if raw in NOT_OBJECTS.values():
        assert "JSON object" in message, message
    else:
        assert any(w in message for w in ("JSON", "nested", "surrogate")), message
    assert api("GET", "/api/cameras/keep-2").json()["source"] == {"type": "push"}


def test_an_oversized_camera_body_is_413(api: Callable[..., httpx.Response]) -> None:
    body = push_camera("huge-1", zone_description="x" * (300 * 1024))
    error_of(api("POST", "/api/cameras", json=body), 413)
    assert "huge-1" not in camera_ids(api)


def test_put_cannot_change_a_cameras_id(api: Callable[..., httpx.Response]) -> None:
    create(api, push_camera("fixed-1"))
    message = error_of(api("PUT", "/api/cameras/fixed-1", json=push_camera("fixed-2")), 400)
    assert "id" in message
    ids = camera_ids(api)
    assert "fixed-1" in ids and "fixed-2" not in ids


NON_SLUGS = ["Front%20Door", "FRONT", "a.b", "a" * 65, "caf%C3%A9", "a%00b", "a%2Fb", "%20"]


@pytest.mark.parametrize("camera_id", NON_SLUGS)
@pytest.mark.parametrize(("method", "path"), UNKNOWN_ROUTES)
def test_an_id_that_is_not_a_slug_is_400_in_every_path(
    api: Callable[..., httpx.Response], method: str, path: str, camera_id: str
) -> None:
    kwargs: dict[str, Any] = {}
    if method == "PUT":
        kwargs = {"json": {"source": {"type": "push"}}}
    elif path.endswith("/frames"):
        kwargs = {"content": jpeg()}
    reply = api(method, path.format(id=camera_id), **kwargs)
    if reply.status_code == 404 and camera_id == "a%2Fb":
        error_of(reply, 404)  # a slash in the id: no such route, answered in JSON
        return
    message = error_of(reply, 400)
    assert "camera_id" in message, message


# -- stream passwords ------------------------------------------------------------------------


def test_a_stream_password_never_appears_in_any_answer_or_the_log(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    seen: list[str] = []

    def answer(reply: httpx.Response) -> httpx.Response:
        seen.append(reply.text)
        return reply

    # the cameras file's camera
    gate = answer(api("GET", "/api/cameras/gate")).json()
    assert gate["source"]["url"] == "rtsp://user:***@127.0.0.1/x"
    listed = {c["id"]: c for c in answer(api("GET", "/api/cameras")).json()["cameras"]}
    assert listed["gate"]["source"]["url"] == "rtsp://user:***@127.0.0.1/x"
    answer(api("GET", "/api/cameras/gate/status"))
    answer(api("PUT", "/api/cameras/gate", json={"source": {"type": "rtsp", "url": GATE_URL}}))

    # one created through the API, on a port where nothing listens
    port = free_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/live"
    rtsp = {"type": "rtsp", "url": url}
    created = answer(api("POST", "/api/cameras", json={"id": "pw-1", "source": rtsp}))
    assert created.status_code == 201, created.text
    assert created.json()["source"]["url"] == f"rtsp://admin:***@127.0.0.1:{port}/live"
    answer(api("GET", "/api/cameras/pw-1"))
    answer(api("GET", "/api/cameras"))
    answer(api("POST", "/api/cameras", json={"id": "pw-1", "source": rtsp}))
    quoted = "rtsp://admin:p%40ss%3Aw0rd@127.0.0.1/live"
    replaced = answer(
        api("PUT", "/api/cameras/pw-1", json={"source": {"type": "rtsp", "url": quoted}})
    )
    assert replaced.status_code == 200, replaced.text
    assert "***" in replaced.json()["source"]["url"]
    answer(api("PUT", "/api/cameras/pw-1", json={"source": rtsp}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = answer(api("GET", "/api/cameras/pw-1/status")).json()
        if status["source"]["last_error"]:
            break
        time.sleep(0.3)
    assert status["source"]["last_error"], status
    # refused ones: a host outside STREAM_HOSTS, a bad field beside the URL, a frame pushed
    outside = {"type": "rtsp", "url": "rtsp://admin:hunter2@10.9.8.7/live"}
    refused = answer(api("POST", "/api/cameras", json={"id": "pw-2", "source": outside}))
    assert error_of(refused, 400)
    assert "admin:***@10.9.8.7" in refused.json()["error"]
    bad_rate = {"id": "pw-3", "detect_fps": -1, "source": rtsp}
    error_of(answer(api("POST", "/api/cameras", json=bad_rate)), 400)
    error_of(answer(api("POST", "/api/cameras/pw-1/frames", content=jpeg())), 409)
    answer(api("GET", "/api/events", params={"limit": 500}))
    answer(api("GET", "/metrics"))

    for text in seen:
        for secret in ("secret", "hunter2", "p%40ss", "p@ss", "w0rd"):
            assert secret not in text, text
    assert api("DELETE", "/api/cameras/pw-1").status_code == 204
    log = stack.logs()
    for secret in ("user:secret", "hunter2", "p%40ss", "w0rd"):
        assert secret not in log, f"{secret} is in the server log"


def test_a_password_in_a_stream_urls_query_is_hidden_too(
    api: Callable[..., httpx.Response],
) -> None:
    """Reolink's FLV and many CGI streams carry the password in the query string."""
    port = free_port()
    url = (
        f"http://127.0.0.1:{port}/flv?port=1935&app=bcs&stream=channel0_ext.bcs"
        "&user=admin&password=flv-pass"
    )
    body = {"id": "query-pw", "source": {"type": "http", "url": url}}
    created = api("POST", "/api/cameras", json=body)
    try:
        assert created.status_code == 201, created.text
        for reply in (
            created,
            api("GET", "/api/cameras/query-pw"),
            api("GET", "/api/cameras"),
            api("GET", "/api/cameras/query-pw/status"),
        ):
            assert "flv-pass" not in reply.text, reply.text
    finally:
        api("DELETE", "/api/cameras/query-pw")


def test_a_disabled_stream_cameras_status_does_not_call_it_a_push_source(
    api: Callable[..., httpx.Response],
) -> None:
    body = {"id": "off-1", "enabled": False, "source": {"type": "rtsp", "url": GATE_URL}}
    create(api, body)
    try:
        status = api("GET", "/api/cameras/off-1/status").json()
        assert status["enabled"] is False
        assert status["source"]["type"] == "rtsp"
        message = error_of(api("POST", "/api/cameras/off-1/frames", content=jpeg()), 409)
        assert "push" in message
        assert status["source"]["state"] == "stopped", status["source"]
    finally:
        assert api("DELETE", "/api/cameras/off-1").status_code == 204


# -- pushed frames ---------------------------------------------------------------------------


def test_pushed_frames_are_acknowledged_with_their_seq_and_repeats_deduplicated(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    create(api, push_camera("doorbell"))
    a, b = jpeg(seed=1), jpeg(seed=2)
    png = encode(scene(seed=3), ".png")

    def push(data: bytes, **params: Any) -> httpx.Response:
        return api("POST", "/api/cameras/doorbell/frames", content=data, params=params)

    first = push(a)
    assert first.status_code == 202, first.text
    ack = first.json()
    assert ack["camera"] == "doorbell" and ack["deduplicated"] is False
    assert isinstance(ack["seq"], int) and ack["seq"] >= 1
    assert abs(ack["captured_at"] - time.time()) < 30
    repeat = push(a)
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["deduplicated"] is True and repeat.json()["seq"] is None
    assert stack.server.metric("hearthwatch_camera_frames_deduped_total", camera="doorbell") == 1
    second = push(b)
    assert second.status_code == 202 and second.json()["seq"] == ack["seq"] + 1
    third = push(png)
    assert third.status_code == 202 and third.json()["seq"] == ack["seq"] + 2
    # not the frame just before: not a repeat
    fourth = push(a)
    assert fourth.status_code == 202 and fourth.json()["seq"] == ack["seq"] + 3
    # a capture time is kept; one ahead of the server's clock is taken as now
    earlier = time.time() - 100
    dated = push(jpeg(seed=5), captured_at=earlier)
    assert dated.status_code == 202 and math.isclose(
        dated.json()["captured_at"], earlier, abs_tol=1e-3
    )
    ahead = push(jpeg(seed=6), captured_at=time.time() + 3600)
    assert ahead.status_code == 202 and ahead.json()["captured_at"] <= time.time()
    status = api("GET", "/api/cameras/doorbell/status").json()
    assert status["frames"]["deduped"] == 1
    assert status["frames"]["frames_in"] == 7
    assert stack.server.metric("hearthwatch_camera_frames_in_total", camera="doorbell") == 7


def _truncated_jpeg() -> bytes:
    data = jpeg(seed=8)
    return data[: len(data) // 2]


def _claims_huge_size() -> bytes:
    """A JPEG whose header says 60000 x 60000."""
    data = bytearray(jpeg(seed=9))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)


BAD_FRAMES = {
    "empty": (b"", 400, "empty"),
    "text": (b"hello, this is not an image", 400, "JPEG or PNG"),
    "truncated jpeg": (_truncated_jpeg(), 400, "truncated"),
    "99 rows": (small_jpeg_of_rows(99), 400, "100 rows"),
    "1x1 png": (encode(np.zeros((1, 1, 3), np.uint8), ".png"), 400, "100 rows"),
    "bmp": (encode(scene(), ".bmp"), 400, "JPEG or PNG"),
    "jpeg header then noise": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, 400, ""),
    "png signature then noise": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, 400, ""),
    "too wide": (jpeg(width=1200, height=100), 400, "1:8"),
    "header claims 60000x60000": (_claims_huge_size(), 413, "pixels"),
}


@pytest.mark.parametrize(("data", "status", "words"), BAD_FRAMES.values(), ids=list(BAD_FRAMES))
def test_a_bad_pushed_frame_is_refused_naming_the_problem(
    api: Callable[..., httpx.Response], data: bytes, status: int, words: str
) -> None:
    if "bad-frames" not in camera_ids(api):
        create(api, push_camera("bad-frames"))
    before = api("GET", "/api/cameras/bad-frames/status").json()["frames"]
    message = error_of(api("POST", "/api/cameras/bad-frames/frames", content=data), status)
    assert words.lower() in message.lower(), message
    after = api("GET", "/api/cameras/bad-frames/status").json()["frames"]
    assert after["frames_in"] == before["frames_in"], "a refused frame is not taken in"
    good = api("POST", "/api/cameras/bad-frames/frames", content=jpeg(seed=next(SEEDS)))
    assert good.status_code == 202, good.text


def test_frames_cannot_be_pushed_to_a_stream_or_disabled_camera(
    api: Callable[..., httpx.Response],
) -> None:
    message = error_of(api("POST", "/api/cameras/gate/frames", content=jpeg()), 409)
    assert "gate" in message and "push" in message
    create(api, push_camera("sleeping", enabled=False))
    message = error_of(api("POST", "/api/cameras/sleeping/frames", content=jpeg()), 409)
    assert "disabled" in message
    assert api("DELETE", "/api/cameras/sleeping").status_code == 204


@pytest.mark.parametrize(
    "captured_at", ["-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e300", "1e20", "abc", "0x10", ""]
)
def test_a_bad_captured_at_is_400(api: Callable[..., httpx.Response], captured_at: str) -> None:
    if "clock" not in camera_ids(api):
        create(api, push_camera("clock"))
    reply = api(
        "POST",
        "/api/cameras/clock/frames",
        content=jpeg(seed=11),
        params={"captured_at": captured_at},
    )
    message = error_of(reply, 400)
    assert "captured_at" in message, message


# -- events ----------------------------------------------------------------------------------


def encoded_footage() -> list[bytes]:
    frames = scene_frames(
        yard(WIDTH, HEIGHT), count=STATIC + WALK_FRAMES, noise_sigma=3.0, walk=WALK, seed=3
    )
    out = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        out.append(data.tobytes())
    return out


def covered_frames() -> list[bytes]:
    """A covered lens: nearly uniform dark frames, no two alike byte for byte."""
    return [encode(np.full((480, 640, 3), 18 + (i % 2) * 3, np.uint8)) for i in range(2)]


@pytest.fixture(scope="module")
def events(stack: Stack, api: Callable[..., httpx.Response]) -> list[dict[str, Any]]:
    """Every event of three walks (two on ``front``, an hour and 59 minutes ago; one on
    ``back`` between them) and a covered camera (``lens``), newest first."""
    footage = encoded_footage()
    base = time.time() - 3600
    # the cameras' clocks read noon at the walks, whatever the time of the run: the events'
    # levels (which the level filters need to differ) do not depend on day or night
    offset = 12 - time.gmtime(base).tm_hour
    zone = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
    for camera_id in ("front", "back", "lens"):
        create(api, push_camera(camera_id, timezone=zone))

    def push(camera_id: str, data: bytes, captured_at: float | None = None) -> None:
        params = {} if captured_at is None else {"captured_at": captured_at}
        deadline = time.monotonic() + 60
        while True:
            reply = api("POST", f"/api/cameras/{camera_id}/frames", content=data, params=params)
            if reply.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply.status_code in (200, 202), reply.text

    def cover_the_lens() -> None:
        covered = covered_frames()
        for i in range(8):  # over 2.8 s of the server's clock: tampered after 1 s
            push("lens", covered[i % 2])
            time.sleep(0.4)

    lens = threading.Thread(target=cover_the_lens)
    lens.start()
    walks = [
        ("front", base, footage),
        ("back", base + 30, footage),
        ("front", base + 60, footage[STATIC:]),
    ]
    for camera_id, start, frames in walks:
        for index, data in enumerate(frames):
            push(camera_id, data, start + index * FRAME_SPACING_S)
    lens.join()
    deadline = time.monotonic() + 150
    while True:
        listed = api("GET", "/api/events", params={"limit": 500}).json()["events"]
        statuses = [api("GET", f"/api/cameras/{c}/status").json() for c in ("front", "back")]
        windows = [e for e in listed if e["kind"] == "window"]
        health = [e for e in listed if e["kind"] == "health" and e["camera"] == "lens"]
        settled = all(s["queued"] == 0 and s["open_windows"] == 0 for s in statuses)
        if settled and health and len({e["camera"] for e in windows}) == 2 and len(windows) >= 3:
            time.sleep(1.5)  # an analysis under way ends
            return api("GET", "/api/events", params={"limit": 500}).json()["events"]
        assert time.monotonic() < deadline, (listed, statuses)
        time.sleep(0.5)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


def listed(api: Callable[..., httpx.Response], **params: Any) -> list[dict[str, Any]]:
    reply = api("GET", "/api/events", params={"limit": 500, **params})
    assert reply.status_code == 200, reply.text
    assert reply.json()["next_cursor"] is None
    return reply.json()["events"]


def test_events_are_listed_newest_first_with_what_they_rest_on(
    api: Callable[..., httpx.Response], events: list[dict[str, Any]]
) -> None:
    starts = [e["started_at"] for e in events]
    assert starts == sorted(starts, reverse=True)
    assert len(set(ids(events))) == len(events)
    windows = [e for e in events if e["kind"] == "window"]
    assert {e["camera"] for e in windows} >= {"front", "back"}
    assert all("person" in e["labels"] for e in windows), windows
    assert all(e["has_snapshot"] and e["reasons"] for e in windows), windows
    health = [e for e in events if e["kind"] == "health"]
    assert health and all(e["camera"] == "lens" for e in health)
    assert all(not e["has_snapshot"] and not e["has_clip"] for e in health)
    assert {e["analyser"] for e in health} == {"health"}
    assert {e["analyser"] for e in windows} == {"rules"}
    assert all(e["details"]["arm_mode"] == "home" for e in windows)


FILTERS: dict[
    str,
    tuple[
        Callable[[list[dict[str, Any]]], dict[str, Any]],
        Callable[[dict[str, Any], dict[str, Any]], bool],
    ],
] = {
    "camera": (lambda _: {"camera": "front"}, lambda e, p: e["camera"] == "front"),
    "cameras": (lambda _: {"camera": "back,lens"}, lambda e, p: e["camera"] in ("back", "lens")),
    "camera unknown": (lambda _: {"camera": "nobody"}, lambda e, p: False),
    "level": (lambda evs: {"level": evs[-1]["level"]}, lambda e, p: e["level"] == p["level"]),
    "levels": (
        lambda evs: {"level": f"low,{evs[-1]['level']}"},
        lambda e, p: e["level"] in p["level"].split(","),
    ),
    "min_score": (
        lambda evs: {"min_score": max(e["score"] for e in evs)},
        lambda e, p: e["score"] >= p["min_score"],
    ),
    "max_score": (
        lambda evs: {"max_score": min(e["score"] for e in evs)},
        lambda e, p: e["score"] <= p["max_score"],
    ),
    "after": (
        lambda evs: {"after": sorted(e["started_at"] for e in evs)[1]},
        lambda e, p: e["started_at"] >= p["after"],
    ),
    "before": (
        lambda evs: {"before": sorted(e["started_at"] for e in evs)[1]},
        lambda e, p: e["started_at"] < p["before"],
    ),
    "after and before": (
        lambda evs: {
            "after": sorted(e["started_at"] for e in evs)[0],
            "before": sorted(e["started_at"] for e in evs)[-1],
        },
        lambda e, p: p["after"] <= e["started_at"] < p["before"],
    ),
    "stored_after": (
        lambda evs: {"stored_after": sorted(e["created_at"] for e in evs)[1]},
        lambda e, p: e["created_at"] > p["stored_after"],
    ),
    "stored_after and before": (
        lambda evs: {
            "stored_after": sorted(e["created_at"] for e in evs)[0],
            "before": sorted(e["started_at"] for e in evs)[-1],
        },
        lambda e, p: e["created_at"] > p["stored_after"] and e["started_at"] < p["before"],
    ),
    "label": (lambda _: {"label": "person"}, lambda e, p: "person" in e["labels"]),
    "label unseen": (lambda _: {"label": "giraffe"}, lambda e, p: False),
    "kind window": (lambda _: {"kind": "window"}, lambda e, p: e["kind"] == "window"),
    "kind health": (lambda _: {"kind": "health"}, lambda e, p: e["kind"] == "health"),
    "together": (
        lambda _: {"camera": "front,back", "kind": "window", "label": "person"},
        lambda e, p: (
            e["camera"] in ("front", "back") and e["kind"] == "window" and "person" in e["labels"]
        ),
    ),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_event_filter_answers_exactly_the_events_it_describes(
    api: Callable[..., httpx.Response], events: list[dict[str, Any]], name: str
) -> None:
    make_params, keeps = FILTERS[name]
    params = make_params(events)
    expected = [e for e in events if keeps(e, params)]
    assert ids(listed(api, **params)) == ids(expected), params
    if name not in ("camera unknown", "label unseen"):
        assert expected, f"the filter {params} should keep some of {events}"
    if name not in ("min_score", "max_score") or len({e["score"] for e in events}) > 1:
        assert len(expected) < len(events), params


@pytest.mark.parametrize(
    "params", [{}, {"camera": "front,back"}, {"kind": "window"}, {"stored_after": 1.0}]
)
@pytest.mark.parametrize("limit", [1, 2])
def test_cursor_pages_hold_every_event_once(
    api: Callable[..., httpx.Response],
    events: list[dict[str, Any]],
    limit: int,
    params: dict[str, Any],
) -> None:
    everything = ids(listed(api, **params))
    assert len(everything) >= 2
    paged: list[str] = []
    cursor = None
    for _ in range(len(everything) + 2):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        reply = api("GET", "/api/events", params=query)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        assert 1 <= len(page["events"]) <= limit
        paged += ids(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None, "the last page has no cursor"
    assert paged == everything
    assert len(set(paged)) == len(paged)


BAD_EVENT_QUERIES = {
    "cursor garbage": {"cursor": "garbage!"},
    "cursor not base64 json": {"cursor": "bm90IGpzb24"},
    "cursor of the wrong shape": {"cursor": "WzEsMiwzXQ"},  # [1,2,3]
    "cursor with a nan": {"cursor": "W05hTiwiYSJd"},  # [NaN,"a"]
    "cursor too long": {"cursor": "A" * 600},
    "limit 0": {"limit": 0},
    "limit 501": {"limit": 501},
    "limit negative": {"limit": -1},
    "limit text": {"limit": "ten"},
    "limit fractional": {"limit": 2.5},
    "level unknown": {"level": "extreme"},
    "camera not a slug": {"camera": "Front Door"},
    "min_score negative": {"min_score": -1},
    "max_score over 100": {"max_score": 101},
    "min above max": {"min_score": 80, "max_score": 20},
    "min_score nan": {"min_score": "nan"},
    "after negative": {"after": -5},
    "after nan": {"after": "nan"},
    "before infinite": {"before": "inf"},
    "before text": {"before": "yesterday"},
    "stored_after negative": {"stored_after": -5},
    "stored_after nan": {"stored_after": "nan"},
    "stored_after infinite": {"stored_after": "inf"},
    "stored_after past the epoch limit": {"stored_after": 1e300},
    "stored_after text": {"stored_after": "recently"},
    "kind unknown": {"kind": "motion"},
    "label too long": {"label": "x" * 65},
}


@pytest.mark.parametrize("params", BAD_EVENT_QUERIES.values(), ids=list(BAD_EVENT_QUERIES))
def test_a_bad_event_query_is_400(
    api: Callable[..., httpx.Response], params: dict[str, Any]
) -> None:
    message = error_of(api("GET", "/api/events", params=params), 400)
    assert any(name in message for name in params), message


def test_stored_after_answers_the_events_written_since_however_long_before_they_started(
    api: Callable[..., httpx.Response], events: list[dict[str, Any]]
) -> None:
    """The walks' frames were captured an hour ago, their events written now: ``after`` (on the
    start) passes them over where ``stored_after`` (on the writing) answers them."""
    walks = [e for e in events if e["kind"] == "window"]
    assert walks and all(e["created_at"] - e["started_at"] > 3000 for e in walks), walks
    floor = min(e["created_at"] for e in walks) - 1.0
    assert ids(listed(api, kind="window", after=floor)) == []
    assert ids(listed(api, kind="window", stored_after=floor)) == ids(walks)
    newest = max(e["created_at"] for e in events)
    assert not set(ids(listed(api, stored_after=newest))) & set(ids(events))


def test_an_event_is_got_by_id_and_unknown_ones_are_404(
    api: Callable[..., httpx.Response], events: list[dict[str, Any]]
) -> None:
    for event in events:
        reply = api("GET", f"/api/events/{event['id']}")
        assert reply.status_code == 200, reply.text
        detail = reply.json()
        assert {k: detail[k] for k in event} == event
        if event["kind"] == "window":
            detection_ids = {d["id"] for d in detail["detections"]}
            assert detection_ids and all(
                set(r["detection_ids"]) <= detection_ids for r in event["reasons"]
            )
            snapshot = api("GET", f"/api/events/{event['id']}/snapshot.jpg")
            assert snapshot.status_code == 200
            image = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape[:2] == (HEIGHT, WIDTH)
    for unknown in ("no-such-event", "front-1-" + "0" * 32):
        for suffix in ("", "/snapshot.jpg", "/clip.mp4"):
            assert unknown in error_of(api("GET", f"/api/events/{unknown}{suffix}"), 404)
    error_of(api("GET", "/api/events/" + "x" * 65), 400)


def test_snapshot_and_clip_are_404_for_an_event_without_them(
    api: Callable[..., httpx.Response], events: list[dict[str, Any]]
) -> None:
    without = [e for e in events if not e["has_snapshot"] and not e["has_clip"]]
    assert without
    for suffix, what in (("/snapshot.jpg", "snapshot"), ("/clip.mp4", "clip")):
        message = error_of(api("GET", f"/api/events/{without[0]['id']}{suffix}"), 404)
        assert what in message


# -- a restart (last: it replaces the module's server) ---------------------------------------


def test_api_cameras_survive_a_restart_and_the_cameras_file_stays_the_truth_for_its_own(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    kept = create(
        api,
        push_camera(
            "kept-1",
            name="Kept",
            timezone="Europe/Berlin",
            detect_fps=3,
            zones={
                "path": {"polygon": [[0, 0.8], [1, 0.8], [1, 1], [0, 1]], "objects": ["person"]}
            },
        ),
    )
    create(api, push_camera("claimed", name="Made through the API"))
    last_seq = 0
    for seed in range(3):  # the gate calibrates on these: none is recorded
        reply = api("POST", "/api/cameras/kept-1/frames", content=jpeg(seed=40 + seed))
        assert reply.status_code == 202, reply.text
        last_seq = reply.json()["seq"]
    time.sleep(1.0)
    events_before = set(ids(listed(api)))
    # the file renames one of its cameras, drops another and claims an API camera's id
    stack.cameras_path.write_text(
        cameras_file(
            yard={"name": "Back Yard", "source": {"type": "push"}},
            claimed={"name": "From the file", "source": {"type": "push"}},
        )
    )
    stack.restart()

    assert api("GET", "/api/cameras/kept-1").json() == kept
    cameras = {c["id"]: c for c in api("GET", "/api/cameras").json()["cameras"]}
    assert cameras["kept-1"]["origin"] == "api"
    assert cameras["yard"]["name"] == "Back Yard" and cameras["yard"]["origin"] == "file"
    assert cameras["claimed"]["name"] == "From the file"
    assert cameras["claimed"]["origin"] == "file"
    assert "gate" not in cameras, "a camera gone from the file is gone"
    error_of(api("GET", "/api/cameras/gate"), 404)
    assert "cameras file" in error_of(api("DELETE", "/api/cameras/claimed"), 409)
    log = stack.server.log_path.read_text()
    assert any("WARNING" in line and "claimed" in line for line in log.splitlines()), log
    assert events_before <= set(ids(listed(api))), "events are kept"
    # the API camera works as before, its frames numbered on from before the restart
    reply = api("POST", "/api/cameras/kept-1/frames", content=jpeg(seed=50))
    assert reply.status_code == 202, reply.text
    seq_after = reply.json()["seq"]
    # and it can still be replaced and deleted
    assert api("PUT", "/api/cameras/kept-1", json={"source": {"type": "push"}}).status_code == 200
    assert api("DELETE", "/api/cameras/kept-1").status_code == 204
    assert seq_after > last_seq, "a sequence number once acknowledged is never handed out again"
