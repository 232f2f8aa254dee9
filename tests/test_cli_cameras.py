"""``hearthwatch cameras`` and ``hearthwatch events`` against a real server with a push camera.

One server for the module (the camera pipeline on, no LLM, no enrichment, windows closing one
second after their last detection). A person walking across a drawn yard (``scenes.py``,
1080p) is pushed to the camera's ``/frames`` route twice, and the windows become two events
the commands list, show and tail; ``tail`` then sees a third walk as it is written, and an event
written straight into the server's store long after it started (as a long window's is). The Frigate
importer runs on the shipped Frigate configs: the file it writes loads back to the same cameras,
every unsupported part is named on stderr, no password reaches the screen, and ``--apply``
creates on the server the cameras whose streams it allows, reporting the others' refusals.
Errors are one line on stderr with exit status 1 (2 for usage).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
import yaml
from conftest import Server
from scenes import Walk, scene_frames, yard

from hearthwatch.cli import main
from hearthwatch.security.cameras import load_cameras_file
from hearthwatch.security.frigate import import_frigate
from hearthwatch.security.store.database import open_database
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.records import EventRecord

pytestmark = pytest.mark.timeout(300)

FRIGATE = Path(__file__).parent / "data" / "frigate"
FRIGATE_ENV = {"FRIGATE_RTSP_USER": "gate-user", "FRIGATE_RTSP_PASSWORD": "env-secret-7"}
PASSWORDS = ("door-pass", "go2rtc-pass", "flv-pass", "onvif-pass", "mqtt-secret", "env-secret-7")
ALLOWED_STREAM_HOST = "192.168.1.31"
"""The one stream host the server allows: the 0.14 config's driveway camera."""

STILL = 12
"""Frames of the empty yard first: the motion gate calibrates on the first ten."""
WALK = Walk(
    start=(400, 1040), end=(1400, 1040), first_frame=STILL, last_frame=STILL + 8, height=520
)
COUNT = STILL + 10
CLI = (sys.executable, "-m", "hearthwatch.cli")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-cameras")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Server]:
    cameras = {"cameras": {"front": {"name": "Front door", "source": {"type": "push"}}}}
    (root / "cameras.yml").write_text(yaml.safe_dump(cameras))
    env = {
        "USE_GPU": "false",
        "PIPELINE_ENABLED": "true",
        "DATA_DIR": str(root / "data"),
        "CAMERAS_FILE": str(root / "cameras.yml"),
        "LLM_ENABLED": "false",
        "ENRICH_ENABLED": "false",
        "BATCH_IDLE_TIMEOUT_SECONDS": "1",
        "STREAM_HOSTS": json.dumps([ALLOWED_STREAM_HOST]),
    }
    server = Server(env, root / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store(root: Path, server: Server) -> Iterator[EventStore]:
    """The server's own events store (its SQLite file, shared with it), to write events as the
    pipeline would."""
    database = open_database(f"sqlite:///{root / 'data' / 'hearthwatch.db'}")
    try:
        yield EventStore(database)
    finally:
        database.close()


def push_walk(server: Server, seed: int) -> None:
    """The walk's frames pushed to ``front``, 0.2 s apart, the last captured now."""
    frames = scene_frames(yard(1920, 1080), count=COUNT, walk=WALK, seed=seed)
    first_at = time.time() - COUNT * 0.2
    for frame in frames:
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        reply = httpx.post(
            f"{server.url}/api/cameras/front/frames",
            content=jpeg.tobytes(),
            params={"captured_at": first_at + frame.index * 0.2},
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert reply.status_code == 202, reply.text


def window_events(server: Server) -> list[dict[str, Any]]:
    params = {"camera": "front", "kind": "window"}
    return httpx.get(f"{server.url}/api/events", params=params).json()["events"]


def settle(server: Server, known: int, deadline_s: float = 120.0) -> list[dict[str, Any]]:
    """The camera's window events once more than ``known`` are there and the pushes are over:
    every frame judged, no window open, the events the same on two looks a second apart. A walk
    may make more than one window (a gap between detections longer than the idle timeout)."""
    deadline, last = time.monotonic() + deadline_s, None
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/cameras/front/status").json()
        counts = status["frames"]
        judged = sum(n for name, n in counts.items() if name != "frames_in")
        if judged >= counts["frames_in"] and not status["queued"] and not status["open_windows"]:
            events = window_events(server)
            ids = [e["id"] for e in events]
            if len(ids) > known and ids == last:
                return events
            last = ids
        time.sleep(1.0)
    raise AssertionError(f"no more than {known} events of the walks in {deadline_s:.0f} s")


@pytest.fixture(scope="module")
def events(server: Server) -> list[dict[str, Any]]:
    """Two walks, their window events (newest first)."""
    push_walk(server, seed=3)
    first = settle(server, 0)
    push_walk(server, seed=4)
    return settle(server, len(first))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str, *expected: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hearthwatch: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], err


# -- cameras list / status ---------------------------------------------------------------------


def test_cameras_list_shows_each_camera_with_its_source_and_origin(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "cameras", "list", "--url", server.url)
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "SOURCE", "ENABLED", "ORIGIN"]
    assert ["front", "Front", "door", "push", "yes", "file"] in [row.split() for row in rows]
    status, out, _ = run(capsys, "cameras", "list", "--url", server.url, "--json")
    front = next(c for c in json.loads(out) if c["id"] == "front")
    assert front["name"] == "Front door" and front["origin"] == "file"
    assert front["source"] == {"type": "push"}


def test_cameras_status_reports_frames_health_and_rates(
    server: Server, events: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "cameras", "status", "front", "--url", server.url)
    assert status == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["CAMERA", "SOURCE", "HEALTH"]
    assert row.split()[:3] == ["front", "push", "online"]
    assert row.endswith("ago")  # the last frame's age
    status, out, _ = run(capsys, "cameras", "status", "--url", server.url, "--json")
    (front,) = [s for s in json.loads(out) if s["camera"] == "front"]
    assert front["frames"]["frames_in"] >= 2 * COUNT and front["frames"]["detected"] > 0
    assert {"fps_in", "fps_detected", "motion_share", "dropped", "reconnects"} <= set(front)


# -- events ------------------------------------------------------------------------------------


def event_ids(out: str) -> list[str]:
    """The ids of an event table's rows (the third column, after the date and time)."""
    return [line.split()[2] for line in out.splitlines()[1:]]


def test_events_list_filters_and_pages_with_the_cursor(
    server: Server, events: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    listed = window_events(server)
    ids = [e["id"] for e in listed]
    assert len(ids) >= 2
    base = ("events", "list", "--url", server.url, "--camera", "front", "--kind", "window")
    status, out, _ = run(capsys, *base, "--label", "person", "--min-score", "1", "--since", "1h")
    assert status == 0 and event_ids(out) == ids
    assert out.splitlines()[0].split() == ["STARTED", "ID", "CAMERA", "KIND", "LEVEL", "SCORE",
                                           "LABELS", "SUMMARY"]  # fmt: skip
    # one event per request: page after page, by the cursor
    status, out, err = run(capsys, *base, "--page-size", "1")
    assert status == 0 and event_ids(out) == ids and not err
    status, out, err = run(capsys, *base, "--limit", "1")
    assert event_ids(out) == ids[:1] and "--limit" in err  # says there are more
    levels = {e["level"] for e in listed}
    others = [lv for lv in ("low", "medium", "high", "critical") if lv not in levels]
    status, out, _ = run(capsys, *base, "--level", ",".join(others))
    assert status == 0 and out.strip() == "no events"
    status, out, _ = run(capsys, *base, "--level", ",".join(sorted(levels)), "--json")
    assert [e["id"] for e in json.loads(out)] == ids
    status, out, _ = run(capsys, *base, "--label", "dog")
    assert out.strip() == "no events"
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    status, out, _ = run(capsys, *base, "--since", future)
    assert out.strip() == "no events"


def test_events_show_prints_the_reasons_with_the_detections_they_cite(
    server: Server, events: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    event_id = events[0]["id"]
    detail = httpx.get(f"{server.url}/api/events/{event_id}").json()
    status, out, _ = run(capsys, "events", "show", event_id, "--url", server.url)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"event    {event_id} (window)"
    assert lines[1] == "camera   front (Front door)"
    reasons = lines.index(f"reasons ({len(detail['reasons'])})")
    for offset, reason in enumerate(detail["reasons"], 1):
        cited = ", ".join(f"#{i}" for i in reason["detection_ids"])
        assert lines[reasons + offset] == f"  - {reason['text']}  [detections {cited}]"
    assert f"tracks ({len(detail['tracks'])})" in lines
    assert f"detections ({len(detail['detections'])})" in lines
    detection_lines = [line for line in lines if line.startswith("  #")]
    assert [line.split()[0] for line in detection_lines] == [
        f"#{d['id']}" for d in detail["detections"]
    ]
    cited_ids = {i for r in detail["reasons"] for i in r["detection_ids"]}
    assert cited_ids and cited_ids <= {d["id"] for d in detail["detections"]}
    assert all(" person " in line for line in detection_lines)
    for track in detail["tracks"]:
        assert any(line.startswith(f"  {track['id']}  person") for line in lines)
    assert f"snapshot {server.url}/api/events/{event_id}/snapshot.jpg" in lines
    status, out, _ = run(capsys, "events", "show", event_id, "--url", server.url, "--json")
    assert json.loads(out) == detail


def start_tail(server: Server, *options: str) -> subprocess.Popen[str]:
    """``hearthwatch events tail`` in its own process, once it watches (its stderr says so)."""
    tail = subprocess.Popen(
        [*CLI, "events", "tail", "--url", server.url, "--interval", "0.3", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stderr is not None
    first = tail.stderr.readline()
    assert first.startswith("watching events"), first + tail.stderr.read()
    return tail


def test_events_tail_prints_a_new_event_once_and_stops_after_count(
    server: Server, events: list[dict[str, Any]]
) -> None:
    known = {e["id"] for e in events}
    tail = start_tail(server, "--camera", "front", "--kind", "window", "--count", "1",
                      "--stop-after", "150")  # fmt: skip
    try:
        push_walk(server, seed=5)
        out, err = tail.communicate(timeout=160)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    (line,) = out.splitlines()  # the events there before it started are not printed
    event_id = line.split()[2]
    assert event_id not in known
    assert event_id in {e["id"] for e in settle(server, len(known))}
    assert line.split()[3:5] == ["front", "window"]


def test_events_tail_since_prints_what_is_there_oldest_first(
    server: Server, events: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("events", "tail", "--url", server.url, "--camera", "front", "--kind", "window")
    count = str(len(events))
    status, out, err = run(capsys, *base, "--since", "1h", "--count", count, "--json")
    assert status == 0 and "watching events since" in err
    printed = [json.loads(line)["id"] for line in out.splitlines()]
    assert printed == [e["id"] for e in sorted(events, key=lambda e: (e["started_at"], e["id"]))]
    # no new event in time: --stop-after ends it; with --count unmet, status 1
    status, out, err = run(capsys, *base, "--count", "1", "--stop-after", "1", "--interval", "0.2")
    assert status == 1 and out == ""
    one_line_error(err.split("\n", 1)[1], "0 of 1 events in 1 s")


def health_event(camera: str, started_at: float) -> EventRecord:
    """A health event of ``camera`` (it needs no window), stored now."""
    return EventRecord(
        kind="health",
        camera_id=camera,
        window_id=None,
        started_at=started_at,
        ended_at=started_at,
        score=0.0,
        level="low",
        reasons=(),
        analyser="health",
        summary=f"{camera} stalled",
        labels=(),
        zones=(),
        created_at=time.time(),
    )


def test_events_tail_prints_an_event_stored_after_later_started_ones(
    server: Server, store: EventStore
) -> None:
    """An event is stored when its window closes, or when it is analysed after a restart: long
    after it started. Tail follows events by when they were stored, so such an event is printed
    even when events that started hours after it were printed before it was stored; and one
    stored like that before tail started is not printed."""
    camera, now = "late-writer", time.time()
    store.add_event(health_event(camera, now - 30))
    store.add_event(health_event(camera, now - 3600))  # there already, stored after the first
    tail = start_tail(server, "--camera", camera, "--count", "2", "--stop-after", "30", "--json")
    assert tail.stdout is not None
    try:
        first = store.add_event(health_event(camera, now - 60))
        line = tail.stdout.readline()
        assert line and json.loads(line)["id"] == first, line + tail.stderr.read()
        late = store.add_event(health_event(camera, now - 7200))  # two hours before the first
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [late]


def test_events_tail_ends_quietly_on_ctrl_c(server: Server) -> None:
    tail = start_tail(server)
    tail.send_signal(signal.SIGINT)
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0 and "Traceback" not in err, err


# -- cameras import ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", sorted(FRIGATE.glob("*.yml")), ids=lambda p: p.stem)
def test_import_writes_a_cameras_file_that_loads_back_to_the_same_cameras(
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in FRIGATE_ENV.items():
        monkeypatch.setenv(name, value)
    out_file = tmp_path / "cameras.yml"
    status, out, err = run(capsys, "cameras", "import", str(config), "--out", str(out_file))
    assert status == 0, err
    expected = import_frigate(yaml.safe_load(config.read_text()), environ=FRIGATE_ENV)
    loaded = load_cameras_file(out_file)
    assert loaded.cameras == expected.cameras and loaded.notes == []
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600  # it holds the passwords
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["ID", "NAME", "SOURCE"]
    assert [row.split()[0] for row in rows[1 : 1 + len(expected.cameras)]] == [
        c.id for c in expected.cameras
    ]
    assert rows[-1].startswith(f"wrote {len(expected.cameras)} camera(s) to {out_file}")
    assert expected.unsupported  # every shipped config has something Frigate-only
    assert f"not imported ({len(expected.unsupported)}):" in err
    for note in expected.unsupported:
        assert f"  {note}\n" in err
    for password in PASSWORDS:
        assert password not in out + err
    written = out_file.read_text()
    for camera in expected.cameras:  # the file keeps them as they are
        url = getattr(camera.source, "url", None)
        assert url is None or url in written


def test_import_shows_urls_without_their_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = FRIGATE / "frigate_0.18_go2rtc.yml"
    status, out, _ = run(capsys, "cameras", "import", str(config), "--out", str(tmp_path / "c.yml"))
    assert status == 0
    assert "rtsp://admin:***@192.168.1.40:554/h264Preview_01_sub" in out
    assert "user=admin&password=***" in out  # a password in the query too


def test_import_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out_file = FRIGATE / "frigate_0.14_legacy_masks.yml", tmp_path / "cameras.yml"
    out_file.write_text("mine\n")
    status, out, err = run(capsys, "cameras", "import", str(config), "--out", str(out_file))
    assert status == 1 and out == ""
    one_line_error(err, str(out_file), "--force")
    assert out_file.read_text() == "mine\n"
    status, _, _ = run(capsys, "cameras", "import", str(config), "--out", str(out_file), "--force")
    assert status == 0 and len(load_cameras_file(out_file).cameras) == 3


def test_import_reports_a_file_it_cannot_import_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "cameras.yml"
    args = ("cameras", "import", "--out", str(out_file))
    status, _, err = run(capsys, *args, str(tmp_path / "absent.yml"))
    assert status == 1
    one_line_error(err, "absent.yml: no such file")
    for name in FRIGATE_ENV:
        monkeypatch.delenv(name, raising=False)
    status, _, err = run(capsys, *args, str(FRIGATE / "frigate_env_placeholders.yml"))
    assert status == 1
    assert "environment variable FRIGATE_RTSP_USER is not set" in err and "Traceback" not in err
    own = tmp_path / "own.yml"
    own.write_text(yaml.safe_dump({"cameras": {"front": {"source": {"type": "push"}}}}))
    status, _, err = run(capsys, *args, str(own))
    assert status == 1
    one_line_error(err, "not a Frigate config")
    broken = tmp_path / "broken.yml"
    broken.write_text("cameras:\n  a:\n    ffmpeg: {inputs: [rtsp://u:hidden-pw@h/x\n")
    status, _, err = run(capsys, *args, str(broken))
    assert status == 1
    one_line_error(err, "invalid YAML")
    assert "hidden-pw" not in err
    assert not out_file.exists()


def test_import_apply_creates_the_cameras_the_server_allows(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out_file = FRIGATE / "frigate_0.14_legacy_masks.yml", tmp_path / "cameras.yml"
    argv = ("cameras", "import", str(config), "--out", str(out_file), "--apply", "--url",
            server.url)  # fmt: skip
    try:
        status, out, err = run(capsys, *argv)
        assert status == 1, err  # some were refused
        lines = out.splitlines()
        assert "driveway: created" in lines
        (front,) = [line for line in lines if line.startswith("front_door: refused: 400 ")]
        assert "outside the allowed hosts" in front
        assert any(line.startswith("garage: refused: 400 ") for line in lines)
        assert lines[-1].endswith(": 1 created, 0 already there, 2 refused")
        for password in PASSWORDS:
            assert password not in out + err
        assert load_cameras_file(out_file).cameras  # written before applying
        cameras = httpx.get(f"{server.url}/api/cameras").json()["cameras"]
        assert {c["id"]: c["origin"] for c in cameras}.get("driveway") == "api"

        status, out, _ = run(capsys, *argv, "--force")
        assert "driveway: already exists (camera 'driveway' exists already)" in out.splitlines()
        assert out.splitlines()[-1].endswith(": 0 created, 1 already there, 2 refused")
    finally:
        httpx.delete(f"{server.url}/api/cameras/driveway", timeout=60)


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_one_line_and_exit_1(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "cameras", "list", "--url", "http://127.0.0.1:9")
    assert status == 1
    one_line_error(err, "cannot reach the server at http://127.0.0.1:9")
    status, _, err = run(capsys, "events", "tail", "--url", "http://127.0.0.1:9")
    assert status == 1
    one_line_error(err, "cannot reach the server")
    status, _, err = run(capsys, "events", "show", "no-such-event", "--url", server.url)
    assert status == 1
    one_line_error(err, "GET /api/events/no-such-event: 404 unknown event 'no-such-event'")
    status, _, err = run(capsys, "cameras", "status", "nowhere", "--url", server.url)
    assert status == 1
    one_line_error(err, "404 unknown camera 'nowhere'")
    status, _, err = run(capsys, "events", "list", "--level", "dire", "--url", server.url)
    assert status == 1
    one_line_error(err, "GET /api/events: 400 level: unknown dire")


@pytest.mark.parametrize(
    "argv",
    [
        ["events", "list", "--since", "yesterday"],
        ["events", "tail", "--interval", "0"],
        ["events", "show"],
        ["cameras"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_since_takes_durations_and_iso_times() -> None:
    from hearthwatch.cli_cameras import since_time

    assert since_time("10m", now=1000.0) == 400.0
    assert since_time("1h30m", now=10_000.0) == 10_000.0 - 5400
    assert since_time("2024-06-01T08:00:00+00:00") == 1717228800.0


def test_importing_the_cli_imports_neither_httpx_nor_the_pipeline() -> None:
    probe = (
        "import sys, hearthwatch.cli; "
        "print([m for m in sys.modules if m == 'httpx' or m.startswith('hearthwatch.security')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"
