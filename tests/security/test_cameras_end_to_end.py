"""End to end on a CPU: two cameras, one an RTSP stream from a real RTSP server on loopback and
one a watched folder, both showing a person (cut from a shipped photo) walking across a static
yard with sensor noise and one brightness step (an IR lamp switching). The motion gate lets only
the walk through to the detector, the tracker follows the person, windows close, and each
camera's window becomes an event whose reasons cite the detections it stored.

The static stretches and the brightness step cost no detector call: asserted from the metrics
and, for the folder camera (whose frames carry their index in their capture time), frame by
frame from the database.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import yaml
from conftest import Server
from rtsp_server import RtspServer, rtsp_server, unavailable
from scenes import Walk, scene_frames, write_video, yard

pytestmark = pytest.mark.timeout(300)

FPS = 5
WIDTH, HEIGHT = 1920, 1080
COUNT = 75
WALK = Walk(start=(250, 1040), end=(1650, 1040), first_frame=30, last_frame=55, height=520)
STEP_AT = 15
STEP_GAIN = 0.6
FRAME_SPACING_S = 1 / FPS


def footage() -> list[np.ndarray]:
    frames = scene_frames(
        yard(WIDTH, HEIGHT),
        count=COUNT,
        noise_sigma=3.0,
        walk=WALK,
        brightness_steps={STEP_AT: STEP_GAIN},
        seed=3,
    )
    return [np.ascontiguousarray(f.image) for f in frames]


def drop_into_folder(folder: Path, frames: list[np.ndarray], first_at: float) -> None:
    """Each frame as a JPEG, written beside the folder and moved in whole (as an FTP upload
    finishes), its modification time its capture time."""
    staging = folder.parent / f".{folder.name}-staging"
    staging.mkdir(exist_ok=True)
    for index, image in enumerate(frames):
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        staged = staging / f"frame_{index:03d}.jpg"
        staged.write_bytes(jpeg.tobytes())
        when = first_at + index * FRAME_SPACING_S
        os.utime(staged, (when, when))
        os.replace(staged, folder / staged.name)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Path, float, RtspServer]]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cameras")
    frames = footage()
    video = write_video(root / "driveway.mp4", frames, FPS)
    garden = root / "media" / "garden"
    garden.mkdir(parents=True)
    with rtsp_server(video) as rtsp:
        cameras = {
            "cameras": {
                "driveway": {"source": {"type": "rtsp", "url": rtsp.url}, "detect_fps": FPS},
                "Back Garden": {
                    "source": {"type": "folder", "path": str(garden), "settle_s": 0.2},
                    "zones": {"path": {"polygon": [[0, 0.85], [1, 0.85], [1, 1], [0, 1]]}},
                },
            }
        }
        (root / "cameras.yml").write_text(yaml.safe_dump(cameras))
        server = Server(
            {
                "USE_GPU": "false",
                "LLM_ENABLED": "false",
                "DATA_DIR": str(root / "data"),
                "CAMERAS_FILE": str(root / "cameras.yml"),
                "SOURCE_ROOTS": f'["{root / "media"}"]',
                "STREAM_HOSTS": '["127.0.0.1"]',
                "BATCH_WINDOW_SECONDS": "60",
                "BATCH_IDLE_TIMEOUT_SECONDS": "3",
                "ENRICHMENT_INTERVAL_S": "600",
                "CAMERA_OFFLINE_AFTER_S": "3",
                "CAMERA_TAMPER_AFTER_S": "1",
            },
            root / "server.log",
        )
        try:
            server.wait_ready()
            first_at = time.time() - COUNT * FRAME_SPACING_S
            drop_into_folder(garden, frames, first_at)
            yield server, root, first_at, rtsp
        finally:
            server.stop()


def events_of(server: Server, camera: str, kind: str, deadline_s: float) -> list[dict]:
    """The camera's events of ``kind``, newest first, once there is one; fails past the
    deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        page = httpx.get(f"{server.url}/api/events", params={"camera": camera, "kind": kind}).json()
        if page["events"]:
            return page["events"]  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"no {kind} event for camera {camera} in {deadline_s:.0f} s")


def window_event(server: Server, camera: str, deadline_s: float = 90.0) -> dict:
    """The camera's first window (the walk), with everything it rests on."""
    first = events_of(server, camera, "window", deadline_s)[-1]
    return httpx.get(f"{server.url}/api/events/{first['id']}").json()  # type: ignore[no-any-return]


def check_event(server: Server, event: dict) -> None:
    """Reasons cite the event's own detections; a person was detected along the walk; a few
    tracks, one of them following most of it; each track enriched once per model; media
    decode."""
    ids = {d["id"] for d in event["detections"]}
    assert event["reasons"] and all(r["detection_ids"] for r in event["reasons"])
    assert all(set(r["detection_ids"]) <= ids for r in event["reasons"]), event["reasons"]
    assert event["level"] in ("low", "medium", "high", "critical") and event["score"] > 0
    people = [d for d in event["detections"] if d["label"] == "person"]
    assert len(people) >= 10, event["detections"]
    per_track: dict[str, int] = {}
    for detection in people:
        per_track[detection["track_id"]] = per_track.get(detection["track_id"], 0) + 1
    # one walker: tracks group the detections (the detector sometimes reports only a torso,
    # which can start a short track of its own), and one track follows most of the walk
    assert len(per_track) <= len(people) / 3, per_track
    assert max(per_track.values()) >= 0.4 * len(people), per_track
    assert all(d["box"][3] > HEIGHT * 0.7 for d in people), "feet near the path's height"
    per_track_model: dict[tuple[str, str], int] = {}
    for enrichment in event["enrichments"]:
        key = (enrichment["track_id"], enrichment["model"])
        per_track_model[key] = per_track_model.get(key, 0) + 1
    assert {"pose", "reid"} <= {model for _, model in per_track_model}, event["enrichments"]
    assert max(per_track_model.values()) == 1, "once per track per interval"
    snapshot = httpx.get(f"{server.url}/api/events/{event['id']}/snapshot.jpg")
    image = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (HEIGHT, WIDTH)
    clip = httpx.get(f"{server.url}/api/events/{event['id']}/clip.mp4")
    assert clip.status_code == 200
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{event['id']}.mp4"
    path.write_bytes(clip.content)
    try:
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) >= 10
    finally:
        path.unlink()


@pytest.mark.detections
def test_the_folder_camera_detects_only_the_walk_and_stores_its_event(
    setup: tuple[Server, Path, float],
) -> None:
    server, root, first_at, _ = setup
    event = window_event(server, "back_garden")
    check_event(server, event)
    assert event["camera_name"] == "Back Garden"
    assert "path" in event["zones"]
    with sqlite3.connect(f"file:{root / 'data' / 'hearthwatch.db'}?mode=ro", uri=True) as db:
        times = [t for (t,) in db.execute("SELECT captured_at FROM frames WHERE camera_id = ?",
                                          ("back_garden",))]  # fmt: skip
    detected = sorted(round((t - first_at) / FRAME_SPACING_S) for t in times)
    assert detected, "the detector ran on no frame"
    # the walk, and the frame after the walker leaves; never the static stretch or the step
    assert set(detected) <= set(range(WALK.first_frame, WALK.last_frame + 2)), detected
    assert len(detected) >= WALK.last_frame - WALK.first_frame - 2
    assert server.metric("hearthwatch_camera_frames_detected_total", camera="back_garden") == len(
        detected
    )
    skipped = server.metric("hearthwatch_camera_frames_skipped_motion_total", camera="back_garden")
    assert skipped == COUNT - len(detected)


@pytest.mark.detections
def test_the_rtsp_camera_detects_the_walk_and_not_the_static_stretches(
    setup: tuple[Server, Path, float],
) -> None:
    server, _, _, _ = setup
    event = window_event(server, "driveway")
    check_event(server, event)
    frames_in = server.metric("hearthwatch_camera_frames_in_total", camera="driveway")
    detected = server.metric("hearthwatch_camera_frames_detected_total", camera="driveway")
    skipped = server.metric("hearthwatch_camera_frames_skipped_motion_total", camera="driveway")
    assert frames_in >= COUNT, "a whole loop of the video went through"
    walk_share = (WALK.last_frame - WALK.first_frame + 2) / COUNT
    assert 0 < detected <= frames_in * walk_share * 1.25 + 2, (detected, frames_in)
    assert skipped >= frames_in * (1 - walk_share) * 0.8, (skipped, frames_in)
    status = httpx.get(f"{server.url}/api/cameras/driveway/status").json()
    assert status["source"]["state"] == "streaming"
    assert status["health"]["state"] == "online"


def health_event(server: Server, camera: str, deadline_s: float = 30.0) -> dict:
    return events_of(server, camera, "health", deadline_s)[0]


def test_a_covered_folder_camera_is_flagged_tampered(
    setup: tuple[Server, Path, float, RtspServer],
) -> None:
    """Black frames for longer than CAMERA_TAMPER_AFTER_S (1 s) after the yard: tampered."""
    server, root, _, _ = setup
    window_event(server, "back_garden")  # the walk has been processed: the gate knows the yard
    garden = root / "media" / "garden"
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    black[:, :, :] = 4
    for index in range(6):
        frame = black.copy()
        frame[index, index] = 9  # not byte-identical: each is a new frame
        drop_into_folder_named(garden, frame, f"covered_{index}.jpg")
        time.sleep(0.5)
    event = health_event(server, "back_garden")
    assert event["level"] == "high" and "tampered" in event["summary"], event
    status = httpx.get(f"{server.url}/api/cameras/back_garden/status").json()
    assert status["health"] == {**status["health"], "state": "tampered", "reason": "covered"}
    assert server.metric("hearthwatch_camera_health", camera="back_garden", state="tampered") == 1


def test_a_stream_that_stops_is_offline_and_reconnects(
    setup: tuple[Server, Path, float, RtspServer],
) -> None:
    server, _, _, rtsp = setup
    window_event(server, "driveway")
    rtsp.stop()
    event = health_event(server, "driveway")
    assert event["level"] == "medium" and "offline" in event["summary"], event
    status = httpx.get(f"{server.url}/api/cameras/driveway/status").json()
    assert status["health"]["state"] == "offline" and status["health"]["reason"] == "no_frames"
    assert status["source"]["state"] == "reconnecting"
    rtsp.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/cameras/driveway/status").json()
        if status["health"]["state"] == "online" and status["source"]["state"] == "streaming":
            break
        time.sleep(0.5)
    assert status["health"]["state"] == "online", status
    assert status["source"]["reconnects"] >= 1
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def drop_into_folder_named(folder: Path, image: np.ndarray, name: str) -> None:
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    staged = folder.parent / f".{name}"
    staged.write_bytes(jpeg.tobytes())
    os.replace(staged, folder / name)
