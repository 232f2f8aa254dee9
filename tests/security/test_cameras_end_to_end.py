"""End to end on a CPU: two cameras, one an RTSP stream from a real RTSP server on loopback and
one a watched folder, both showing a person (cut from a shipped photo) walking across a static
yard with sensor noise and one brightness step (an IR lamp switching). The motion gate lets only
the walk through to the detector, the tracker follows the person, windows close, and each
camera's window becomes an event whose reasons cite the detections it stored.

The static stretches and the brightness step cost no detector call, asserted frame by frame.
The folder camera's frames carry their index in their capture time. A stream's frames do not
(their capture time is the server's clock, and the video loops), so every frame carries its
index as a code of big black and white cells in its top left corner, which both cameras mask
from their motion gates; and a photo of a parked motorcycle on the wall, which the detector
finds in every frame, makes the server keep the image of every frame it ran the detector on.
For the RTSP camera, then: every frame the gate passed was detected (none dropped), every
detector call (the metric) is a recorded frame, each recorded frame's image was kept, and the
code in each kept image is a frame of the walk; for the folder camera, each kept image's code
is the index its capture time gives.
"""

from __future__ import annotations

import contextlib
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
from scenes import (
    Walk,
    index_code_mask,
    motorcycle,
    read_index_code,
    scene_frames,
    with_index_code,
    with_picture,
    write_video,
    yard,
)

pytestmark = pytest.mark.timeout(300)

FPS = 5
WIDTH, HEIGHT = 1920, 1080
COUNT = 75
WALK = Walk(start=(250, 1040), end=(1650, 1040), first_frame=30, last_frame=55, height=520)
STEP_AT = 15
STEP_GAIN = 0.6
FRAME_SPACING_S = 1 / FPS
MOTORCYCLE_AT = (1400, 20)
MOTORCYCLE_WIDTH = 500
"""The parked motorcycle's photo, 500 x 337 pixels, on the wall at the top right: above the
walker's head (y 520) and clear of the index code's corner."""
WALK_FRAMES = range(WALK.first_frame, WALK.last_frame + 2)
"""The frames the gate passes: the walk, and the frame after the walker leaves."""
MOTION = {"masks": [[list(point) for point in index_code_mask(WIDTH, HEIGHT)]]}
"""Both cameras' motion settings: the frame index's code is no motion."""


def footage() -> list[np.ndarray]:
    """The yard with the parked motorcycle, the walk and the step; each frame with its index's
    code."""
    backdrop = with_picture(yard(WIDTH, HEIGHT), motorcycle(MOTORCYCLE_WIDTH), MOTORCYCLE_AT)
    frames = scene_frames(
        backdrop,
        count=COUNT,
        noise_sigma=3.0,
        walk=WALK,
        brightness_steps={STEP_AT: STEP_GAIN},
        seed=3,
    )
    return [with_index_code(f.image, f.index) for f in frames]


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
                "driveway": {
                    "source": {"type": "rtsp", "url": rtsp.url},
                    "detect_fps": FPS,
                    "motion": MOTION,
                },
                "Back Garden": {
                    "source": {"type": "folder", "path": str(garden), "settle_s": 0.2},
                    "motion": MOTION,
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
                # the folder's frames all arrive at once and fill the detection queue: the
                # stream's walk waits for room instead of losing frames to it
                "STREAM_PENDING_FRAMES": str(COUNT),
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


def recorded_frames(root: Path, camera: str) -> list[tuple[int, float, str | None]]:
    """The camera's frames in the database (seq, captured_at, image_path), in order: one per
    detector call."""
    database = f"file:{root / 'data' / 'hearthwatch.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
        query = "SELECT seq, captured_at, image_path FROM frames WHERE camera_id = ? ORDER BY seq"
        return db.execute(query, (camera,)).fetchall()


def kept_code(root: Path, image_path: str | None, deadline_s: float = 5.0) -> int | None:
    """The index code in a recorded frame's kept image (``image_path`` is relative to
    DATA_DIR; the image moves there just after its frame is recorded); None if unreadable."""
    assert image_path is not None, "a frame the detector ran on was not kept"
    path = root / "data" / image_path
    deadline = time.monotonic() + deadline_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"the kept image {path} is missing or undecodable"
    return read_index_code(image)


def frame_counts(server: Server, camera: str) -> dict[str, int]:
    """The camera's frame counters, read together (``/metrics`` reads them one by one)."""
    status = httpx.get(f"{server.url}/api/cameras/{camera}/status").json()
    return status["frames"]  # type: ignore[no-any-return]


def passed_gate(counts: dict[str, int]) -> int:
    """Stream frames the motion gate let through: every one in, less those it stopped."""
    return counts["frames_in"] - counts["skipped_motion"] - counts["deduped"]


def through(counts: dict[str, int]) -> int:
    """Stream frames done with: through the detector, dropped for want of room, or failed."""
    return counts["detected"] + counts["dropped"] + counts["failed"]


def settled_frames(
    server: Server, root: Path, camera: str, deadline_s: float = 30.0
) -> tuple[dict[str, int], float, list[tuple[int, float, str | None]]]:
    """The camera's frame counts, its detector calls by the metric, and its recorded frames,
    read at a moment when every frame the gate passed was done with and every detector call
    recorded (a stream's frames keep coming, a walk may be under way); past the deadline, the
    last reading, for the assertions to tell what is off."""
    deadline = time.monotonic() + deadline_s
    while True:
        metric = server.metric("hearthwatch_camera_frames_detected_total", camera=camera)
        before = frame_counts(server, camera)
        frames = recorded_frames(root, camera)
        after = frame_counts(server, camera)
        done = {passed_gate(before), passed_gate(after), through(before), through(after)}
        calls = {before["detected"], after["detected"], metric, len(frames)}
        if (len(done) == 1 and len(calls) == 1) or time.monotonic() > deadline:
            return after, metric, frames
        time.sleep(0.2)


@pytest.mark.detections
def test_the_folder_camera_detects_only_the_walk_and_stores_its_event(
    setup: tuple[Server, Path, float, RtspServer],
) -> None:
    server, root, first_at, _ = setup
    event = window_event(server, "back_garden")
    check_event(server, event)
    assert event["camera_name"] == "Back Garden"
    assert "path" in event["zones"]
    frames = recorded_frames(root, "back_garden")
    detected = sorted(round((t - first_at) / FRAME_SPACING_S) for _, t, _ in frames)
    assert detected, "the detector ran on no frame"
    # the walk, and the frame after the walker leaves; never the static stretch or the step
    assert set(detected) <= set(WALK_FRAMES), detected
    assert len(detected) >= WALK.last_frame - WALK.first_frame - 2
    assert server.metric("hearthwatch_camera_frames_detected_total", camera="back_garden") == len(
        detected
    )
    skipped = server.metric("hearthwatch_camera_frames_skipped_motion_total", camera="back_garden")
    assert skipped == COUNT - len(detected)
    # each frame's image was kept (the motorcycle is in every frame), its code the index its
    # capture time gives: the code the RTSP camera's check reads tells the truth
    codes = {
        round((t - first_at) / FRAME_SPACING_S): kept_code(root, path) for _, t, path in frames
    }
    assert all(index == code for index, code in codes.items()), codes


@pytest.mark.detections
def test_the_rtsp_camera_detects_the_walk_and_not_the_static_stretches(
    setup: tuple[Server, Path, float, RtspServer],
) -> None:
    server, root, _, _ = setup
    event = window_event(server, "driveway")
    check_event(server, event)
    counts, detected, frames = settled_frames(server, root, "driveway")
    assert counts["frames_in"] >= COUNT, "a whole loop of the video went through"
    # every frame the detector ran on was kept (the motorcycle is in every frame) and shows the
    # code of a walk frame: never one of the static stretches or of the step (the video loops,
    # so there are two steps a loop: to the lamp's gain, and back to full at the loop's start)
    codes = {seq: kept_code(root, path) for seq, _, path in frames}
    outside = {seq: code for seq, code in codes.items() if code not in WALK_FRAMES}
    assert not outside, (
        f"frames (seq: index) that are not the walk's reached the detector: {outside}"
    )
    assert len(set(codes.values())) >= WALK.last_frame - WALK.first_frame - 2, sorted(codes.items())
    # and those were all of them: every frame the gate passed went through the detector (none
    # dropped or failed), and every detector call is a recorded frame
    assert counts["dropped"] == counts["failed"] == 0, counts
    assert passed_gate(counts) == counts["detected"] == detected == len(frames), (counts, detected)
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
