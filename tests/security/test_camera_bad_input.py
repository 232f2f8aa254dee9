"""Bad input to the camera pipeline, against real ``hearthwatch serve`` processes: cameras files
that must stop start-up with a clear error (and never a traceback or a password); a Frigate
config whose unsupported parts are logged by name; corrupt files in a folder camera's directory;
a stream nothing answers; frames pushed faster than the detector; sources outside
``SOURCE_ROOTS`` and ``STREAM_HOSTS``, link-local and metadata hosts among them; and an API
camera whose folder the roots no longer hold after a restart.

One server serves the module (a Frigate config as its cameras file, a detection queue of one
frame); the failing start-ups run beside its start-up, each a process of its own.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from camera_servers import ServerStack, api_client, error_of
from conftest import encode, jpeg, scene

from hearthwatch.processes import die_with_parent, free_port
from hearthwatch.tuning.server_process import HEARTHWATCH_SERVE

pytestmark = [pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
FRIGATE = REPO / "tests" / "data" / "frigate" / "frigate_0.18_go2rtc.yml"
PASSWORD = "hunter2"
BASE_ENV = {
    "USE_GPU": "false",
    "LLM_ENABLED": "false",
    "ENRICH_ENABLED": "false",
    "WARMUP": "false",
    "DETECTOR__TYPE": "hog",
}
STREAM_HOSTS = ["127.0.0.1", "192.168.0.0/16", "169.254.0.0/16", "fe80::/10"]
"""Loopback for the unreachable stream, the Frigate config's cameras, and broad networks
around the link-local addresses, which must stay refused unless listed exactly."""


# -- start-ups that must fail ---------------------------------------------------------------

BAD_CAMERAS_FILES: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (cameras file, extra settings as JSON, what the error must name)
    "bad fields": (
        yaml.safe_dump(
            {
                "cameras": {
                    "porch": {"source": {"type": "push"}, "detect_fps": 0},
                    "garden": {
                        "source": {"type": "push"},
                        "zones": {"lawn": {"polygon": [[0, 0], [2, 0], [1, 1]]}},
                    },
                    "gate": {
                        "source": {
                            "type": "rtsp",
                            "transport": "pigeon",
                            "url": f"rtsp://admin:{PASSWORD}@192.168.1.9/live",
                        }
                    },
                }
            }
        ),
        [],
        [
            "cameras.porch.detect_fps",
            "cameras.garden.zones.lawn.polygon",
            "cameras.gate.source",
            "transport",
        ],
    ),
    "metadata host under a broad network": (
        yaml.safe_dump(
            {
                "cameras": {
                    "porch": {
                        "source": {
                            "type": "rtsp",
                            "url": f"rtsp://admin:{PASSWORD}@169.254.169.254/live",
                        }
                    }
                }
            }
        ),
        ['["0.0.0.0/0", "169.254.0.0/16"]'],
        ["porch", "169.254.169.254"],
    ),
}


def start_failing(root: Path, name: str) -> subprocess.Popen[bytes]:
    text, hosts, _ = BAD_CAMERAS_FILES[name]
    folder = root / name.replace(" ", "-")
    folder.mkdir()
    (folder / "cameras.yml").write_text(text)
    env = {
        **os.environ,
        **BASE_ENV,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "DATA_DIR": str(folder / "data"),
        "CAMERAS_FILE": str(folder / "cameras.yml"),
        "SOURCE_ROOTS": f'["{folder / "media"}"]',
        **({"STREAM_HOSTS": hosts[0]} if hosts else {}),
    }
    with (folder / "output.log").open("wb") as log:
        return subprocess.Popen(
            list(HEARTHWATCH_SERVE),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )


# -- the module's server ----------------------------------------------------------------------


class Stack(ServerStack):
    """The module's server (replaced by :meth:`restart`) and its two source roots."""

    def __init__(self, root: Path) -> None:
        self.media = root / "media"
        self.old = root / "old-media"
        for folder in (self.media, self.old):
            folder.mkdir()
        env = {
            **BASE_ENV,
            "DATA_DIR": str(root / "data"),
            "CAMERAS_FILE": str(FRIGATE),
            "SOURCE_ROOTS": f'["{self.media}", "{self.old}"]',
            "STREAM_HOSTS": json.dumps(STREAM_HOSTS),
            "DETECTION_QUEUE_MAX_SIZE": "1",
        }
        super().__init__(root, env)


@pytest.fixture(scope="module")
def started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, dict[str, tuple[int | None, str]]]]:
    root = tmp_path_factory.mktemp("bad-input")
    failing = {name: start_failing(root, name) for name in BAD_CAMERAS_FILES}
    stack = Stack(root)
    try:
        stack.server.wait_ready()
        outcomes: dict[str, tuple[int | None, str]] = {}
        for name, process in failing.items():
            try:
                code: int | None = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
            log = root / name.replace(" ", "-") / "output.log"
            outcomes[name] = (code, log.read_text(errors="replace"))
        yield stack, outcomes
    finally:
        for process in failing.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        stack.server.stop()


@pytest.fixture(scope="module")
def stack(started: tuple[Stack, dict[str, tuple[int | None, str]]]) -> Stack:
    return started[0]


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Callable[..., httpx.Response]]:
    yield from api_client(stack)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f} s: {what}"
        time.sleep(0.2)


def status_of(api: Callable[..., httpx.Response], camera_id: str) -> dict[str, Any]:
    reply = api("GET", f"/api/cameras/{camera_id}/status")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


# -- start-up ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAD_CAMERAS_FILES))
def test_a_bad_cameras_file_stops_start_up_with_a_clear_error(
    started: tuple[Stack, dict[str, tuple[int | None, str]]], name: str
) -> None:
    code, output = started[1][name]
    assert code is not None, f"the server did not stop: {output[-2000:]}"
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "Application startup complete" not in output and "Uvicorn running" not in output
    for word in BAD_CAMERAS_FILES[name][2]:
        assert word in output, f"{word!r} missing from {output}"
    assert PASSWORD not in output, output
    assert len(output.strip().splitlines()) <= 10, output


def test_a_frigate_config_starts_and_logs_each_unsupported_part_once(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    log = (stack.root / "server-1.log").read_text()
    for path in [
        "mqtt",
        "detectors",
        "model",
        "go2rtc",
        "record",
        "review",
        "genai",
        "semantic_search",
        "face_recognition",
        "lpr",
        "ui.time_format",
        "telemetry",
        "cameras.front_door.review",
        "cameras.front_door.onvif",
        "cameras.front_door.ffmpeg.output_args",
        "cameras.front_door.ffmpeg.inputs[1].roles.audio",
        "cameras.front_door.zones.porch.loitering_time",
        "cameras.front_door.zones.street.speed_threshold",
        "go2rtc.streams.doorbell[0]",
        "cameras.doorbell",
    ]:
        lines = [line for line in log.splitlines() if f"{FRIGATE}: {path}: " in line]
        assert len(lines) == 1, f"{path}: {lines or log[-3000:]}"
        assert "WARNING" in lines[0]
    cameras = {c["id"]: c for c in api("GET", "/api/cameras").json()["cameras"]}
    assert {"front_door", "back_yard", "shed"} <= set(cameras)
    assert "doorbell" not in cameras
    assert all(cameras[c]["origin"] == "file" for c in ("front_door", "back_yard", "shed"))
    assert cameras["front_door"]["name"] == "Front Door"
    assert "go2rtc-pass" not in str(cameras)
    assert "go2rtc-pass" not in log and "flv-pass" not in log


# -- a folder camera's corrupt files ----------------------------------------------------------

CORRUPT_FILES: dict[str, tuple[bytes, str]] = {
    # name: (content, what its log line must say)
    "cut.jpg": (jpeg(seed=1)[:5000], "truncated"),
    "noise.jpg": (bytes((i * 7919) % 251 for i in range(20_000)), "JPEG or PNG"),
    "empty.jpg": (b"", "empty"),
    "tiny.jpg": (jpeg(width=160, height=90, seed=2), "100 rows"),
    "notes.png": (b"shopping list: eggs, milk\n" * 40, "JPEG or PNG"),
}
GOOD_FILES = {"good-1.jpg": jpeg(seed=3), "good-2.png": encode(scene(seed=4), ".png")}


@pytest.fixture(scope="module")
def folder_camera(stack: Stack, api: Callable[..., httpx.Response]) -> Path:
    """The folder camera ``upload``, once it has handled every file dropped into it."""
    folder = stack.media / "upload"
    folder.mkdir()
    staging = stack.media / ".staging"
    staging.mkdir()
    for name, data in [*((n, c) for n, (c, _) in CORRUPT_FILES.items()), *GOOD_FILES.items()]:
        (staging / name).write_bytes(data)
        os.replace(staging / name, folder / name)
    body = {"id": "upload", "source": {"type": "folder", "path": str(folder), "settle_s": 0.2}}
    reply = api("POST", "/api/cameras", json=body)
    assert reply.status_code == 201, reply.text

    def handled() -> bool:
        left = [p for p in folder.iterdir() if p.is_file()]
        frames = status_of(api, "upload")["frames"]
        return not left and frames["skipped_motion"] + frames["detected"] >= len(GOOD_FILES)

    wait_for(handled, "every file handled")
    time.sleep(1.0)  # a few more polls: nothing is logged again
    return folder


def test_corrupt_files_are_moved_to_failed_and_counted_and_good_ones_processed(
    stack: Stack, api: Callable[..., httpx.Response], folder_camera: Path
) -> None:
    failed = {p.name for p in (folder_camera / "failed").iterdir()}
    done = {p.name for p in (folder_camera / "done").iterdir()}
    assert failed == set(CORRUPT_FILES)
    assert done == set(GOOD_FILES)
    server = stack.server
    assert server.metric("hearthwatch_camera_frames_corrupt_total", camera="upload") == len(
        CORRUPT_FILES
    )
    frames = status_of(api, "upload")["frames"]
    assert frames["corrupt"] == len(CORRUPT_FILES)
    assert frames["frames_in"] == len(CORRUPT_FILES) + len(GOOD_FILES)
    assert frames["skipped_motion"] + frames["detected"] == len(GOOD_FILES)
    assert frames["failed"] == 0


def test_each_corrupt_file_is_logged_once(stack: Stack, folder_camera: Path) -> None:
    lines = stack.server.log_path.read_text().splitlines()
    for name in CORRUPT_FILES:
        naming = [line for line in lines if name in line]
        assert len(naming) == 1, f"{name}: {naming}"


@pytest.mark.parametrize("name", list(CORRUPT_FILES))
def test_the_log_says_why_each_file_was_refused(
    stack: Stack, folder_camera: Path, name: str
) -> None:
    lines = [line for line in stack.server.log_path.read_text().splitlines() if name in line]
    assert lines, f"{name} is not in the log"
    assert any(CORRUPT_FILES[name][1] in line.replace(name, "") for line in lines), lines


# -- a stream nothing answers -------------------------------------------------------------------


def test_an_unreachable_stream_reconnects_and_the_rest_keeps_working(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    port = free_port()  # nothing listens there
    url = f"rtsp://cam:{PASSWORD}@127.0.0.1:{port}/live"
    body = {"id": "nowhere", "source": {"type": "rtsp", "url": url}}
    reply = api("POST", "/api/cameras", json=body)
    assert reply.status_code == 201, reply.text
    reply = api("POST", "/api/cameras", json={"id": "neighbour", "source": {"type": "push"}})
    assert reply.status_code == 201, reply.text

    first = wait_for(
        lambda: (s := status_of(api, "nowhere"))["source"]["reconnects"] >= 1 and s,
        "a first reconnect",
    )
    assert first["source"]["state"] == "reconnecting"
    assert first["source"]["last_error"] and PASSWORD not in str(first)
    assert first["reconnects"] == first["source"]["reconnects"]
    later = wait_for(
        lambda: (
            (s := status_of(api, "nowhere"))["source"]["reconnects"] > first["source"]["reconnects"]
            and s
        ),
        "reconnects growing",
    )
    assert later["source"]["state"] in ("reconnecting", "connecting")
    assert api("GET", "/v2/health/ready").status_code == 200
    # another camera is not held up
    pushed = api("POST", "/api/cameras/neighbour/frames", content=jpeg(seed=21))
    assert pushed.status_code == 202, pushed.text
    wait_for(
        lambda: status_of(api, "neighbour")["frames"]["skipped_motion"] >= 1,
        "the neighbour's frame processed",
    )
    assert status_of(api, "neighbour")["health"]["state"] == "online"
    assert PASSWORD not in api("GET", "/api/cameras").text
    assert PASSWORD not in stack.server.log_path.read_text()


# -- back-pressure ------------------------------------------------------------------------------


def test_frames_pushed_faster_than_the_detector_are_refused_503_and_counted(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    reply = api("POST", "/api/cameras", json={"id": "flood", "source": {"type": "push"}})
    assert reply.status_code == 201, reply.text
    frames = [jpeg(seed=100 + i) for i in range(48)]
    answers: list[httpx.Response] = []
    with httpx.Client(timeout=60) as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
        for start in range(0, len(frames), 16):
            batch = frames[start : start + 16]
            answers += pool.map(
                lambda data: client.post(f"{stack.url}/api/cameras/flood/frames", content=data),
                batch,
            )
            if any(a.status_code == 503 for a in answers):
                break
    codes = [a.status_code for a in answers]
    assert set(codes) <= {202, 503}, [a.text for a in answers if a.status_code not in (202, 503)]
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "a queue of one frame never filled"
    assert 202 in codes
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert "queue" in error_of(answer, 503)
    server = stack.server
    assert server.metric("hearthwatch_camera_frames_dropped_total", camera="flood") == len(refused)
    status = status_of(api, "flood")
    assert status["dropped"] == len(refused) == status["frames"]["dropped"]
    assert status["frames"]["frames_in"] == len(answers)
    # the queue drains and frames are taken again
    wait_for(lambda: server.metric("hearthwatch_detection_queue_depth") == 0, "the queue drained")
    again = api("POST", "/api/cameras/flood/frames", content=jpeg(seed=999))
    assert again.status_code == 202, again.text


# -- confinement -----------------------------------------------------------------------------


def confined_bodies(stack: Stack) -> dict[str, dict[str, Any]]:
    media, outside = stack.media, stack.root / "outside"
    outside.mkdir(exist_ok=True)
    link = media / "link-out"
    if not link.is_symlink():
        link.symlink_to(outside, target_is_directory=True)

    def stream(url: str, kind: str = "rtsp") -> dict[str, Any]:
        return {"type": kind, "url": url}

    return {
        "folder /etc": {"type": "folder", "path": "/etc"},
        "folder beside the roots": {"type": "folder", "path": str(outside)},
        "folder through ..": {"type": "folder", "path": f"{media}/../outside"},
        "folder through a link": {"type": "folder", "path": str(link)},
        "folder with a NUL": {"type": "folder", "path": f"{media}/a\x00b"},
        "file /etc/passwd": {"type": "file", "path": "/etc/passwd"},
        "file relative": {"type": "file", "path": "../../../../etc/hostname"},
        "a private host not listed": stream(f"rtsp://admin:{PASSWORD}@10.1.2.3/live"),
        "a public host": stream(f"http://admin:{PASSWORD}@8.8.8.8/video.mjpg", "http"),
        "ipv6 loopback not listed": stream(f"rtsp://admin:{PASSWORD}@[::1]:554/live"),
        "metadata": stream(f"http://admin:{PASSWORD}@169.254.169.254/latest/meta-data/", "http"),
        "link-local": stream(f"rtsp://admin:{PASSWORD}@169.254.10.20/live"),
        "ipv6 link-local": stream(f"rtsp://admin:{PASSWORD}@[fe80::1]/live"),
        "mapped metadata": stream(f"rtsp://admin:{PASSWORD}@[::ffff:169.254.169.254]/live"),
        "decimal metadata": stream(f"rtsp://admin:{PASSWORD}@2852039166/live"),
        "hex metadata": stream(f"rtsp://admin:{PASSWORD}@0xa9.0xfe.0xa9.0xfe/live"),
        "metadata with a trailing dot": stream(f"rtsp://admin:{PASSWORD}@169.254.169.254./live"),
        "this host": stream(f"rtsp://admin:{PASSWORD}@0.0.0.0/live"),
        "metadata by name": stream(
            f"http://admin:{PASSWORD}@metadata.google.internal/computeMetadata/v1/", "http"
        ),
        "two at signs": stream(f"rtsp://admin:{PASSWORD}@192.168.1.9@169.254.169.254/live"),
    }


CONFINED = [
    "folder /etc",
    "folder beside the roots",
    "folder through ..",
    "folder through a link",
    "folder with a NUL",
    "file /etc/passwd",
    "file relative",
    "a private host not listed",
    "a public host",
    "ipv6 loopback not listed",
    "metadata",
    "link-local",
    "ipv6 link-local",
    "mapped metadata",
    "decimal metadata",
    "hex metadata",
    "metadata with a trailing dot",
    "this host",
    "metadata by name",
    "two at signs",
]


@pytest.mark.parametrize("case", CONFINED)
def test_a_source_outside_the_roots_or_allowed_hosts_is_refused_400(
    stack: Stack, api: Callable[..., httpx.Response], case: str
) -> None:
    source = confined_bodies(stack)[case]
    camera_id = "confined-" + str(CONFINED.index(case))
    message = error_of(api("POST", "/api/cameras", json={"id": camera_id, "source": source}), 400)
    assert PASSWORD not in message, message
    error_of(api("GET", f"/api/cameras/{camera_id}"), 404)
    if source["type"] in ("rtsp", "http"):
        assert "admin:***@" in message or "host" in message, message


def test_link_local_addresses_are_refused_though_their_network_is_allowed(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    for case in ("metadata", "link-local", "ipv6 link-local"):
        source = confined_bodies(stack)[case]
        message = error_of(api("POST", "/api/cameras", json={"id": "ll", "source": source}), 400)
        assert "link-local" in message, message


def test_a_replacement_outside_the_roots_is_400_and_keeps_the_camera(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    folder = stack.media / "kept"
    folder.mkdir()
    body = {"id": "kept", "source": {"type": "folder", "path": str(folder)}}
    assert api("POST", "/api/cameras", json=body).status_code == 201
    before = api("GET", "/api/cameras/kept").json()
    for source in (
        {"type": "folder", "path": "/etc"},
        {"type": "rtsp", "url": f"rtsp://admin:{PASSWORD}@169.254.169.254/x"},
    ):
        message = error_of(api("PUT", "/api/cameras/kept", json={"source": source}), 400)
        assert PASSWORD not in message
    assert api("GET", "/api/cameras/kept").json() == before
    assert status_of(api, "kept")["source"]["type"] == "folder"


# -- last: a restart with narrower roots --------------------------------------------------------


def test_an_api_folder_camera_outside_narrowed_roots_reads_nothing_after_a_restart(
    stack: Stack, api: Callable[..., httpx.Response]
) -> None:
    """Roots are checked when a camera is created; one kept in the database must be checked
    again when the server starts under other roots."""
    folder = stack.old / "drop"
    folder.mkdir()
    body = {"id": "old-drop", "source": {"type": "folder", "path": str(folder), "settle_s": 0.1}}
    assert api("POST", "/api/cameras", json=body).status_code == 201
    stack.restart(SOURCE_ROOTS=f'["{stack.media}"]')
    frame = folder / "frame.jpg"
    frame.write_bytes(jpeg(seed=31))
    time.sleep(3.0)  # many polls of a watcher, were one running
    assert frame.exists(), "a file outside SOURCE_ROOTS was taken"
    assert not (folder / "done").exists() and not (folder / "failed").exists()
    reply = api("GET", "/api/cameras/old-drop/status")
    if reply.status_code == 200:
        assert reply.json()["source"]["state"] != "streaming", reply.json()
    else:
        error_of(reply, 404)
    assert "old-drop" in stack.server.log_path.read_text()
