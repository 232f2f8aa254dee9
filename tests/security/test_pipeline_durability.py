"""Kill tests of the camera pipeline's durability, on SQLite and on PostgreSQL: a real
``hearthwatch serve`` is killed with SIGKILL three times during one walk of a person past a push
camera, and restarted on the same data directory and database each time; and, in a second test,
killed once with a stream camera's admitted frames queued and a folder camera's taken files not
yet moved out of its folder (see that test's docstring).

The contract: a pushed frame is durable once acknowledged (202); across a ``kill -9`` at any
point and a restart, every detection of a durable frame ends up in exactly one window and one
event, open windows resume (a restart does not split a window), nothing is counted twice.

The footage is one continuous walk, capture times 0.1 s apart, so by the window rules
(``BATCH_IDLE_TIMEOUT_SECONDS`` 4, ``BATCH_WINDOW_SECONDS`` 120) every detection belongs to one
window: the test expects exactly one window and one event at the end. A server run's motion
gate skips the first 11 frames it judges (its first and 10 calibrating ones; frames recovered
from the spool skip the gate) and passes every later one (the walker moves in each), so which
acknowledged frames must be recorded is known exactly.

Kill points, in order (each restart a fresh server on the same ``DATA_DIR`` and database):

1. run A: 14 frames open the window, then frames are pushed from a thread faster than the
   detector takes them; killed once 8 or more wait in the spool, 0-50 ms into a push (which
   may leave a partial spool file, or a frame spooled and never acknowledged: allowed to be
   recorded, once). Then the state a kill leaves between a frame's commit and its spool
   tidying is recreated for the last recorded frame (its bytes put back in the spool, its kept
   file removed): the restart must tidy it, not detect it again.
2. run B: the recovered frames, more pushed ones (B's gate calibrates on them) and last a frame
   that takes over a second to decode (an 8K PNG) are processed; killed while the lane is on
   that one: the window is open and exactly one frame is in the spool.
3. run C: that frame, recovered alone, must join the open window (its capture time is 0.1 s
   after the window's last frame), though the pipeline's tick (every 0.5 s) runs while it is
   decoded; the window closes and the server is killed before its event is written.
4. run D analyses the closed window; the database is audited.

Asserted at each kill from the database and the spool directory: every acknowledged frame is
recorded, still spooled, or was skipped by the calibrating gate. After each restart, from the
database and the camera's counters: recovered frames are recorded, in the window that was open
at the kill; frames recorded before a kill are not detected again (each run's ``detected``
counter equals the frames it recorded). In the end: every detection is in exactly one event;
the recorded sequence numbers are exactly the acknowledged ones (plus a spooled unacknowledged
one) less the gated ones, each recorded under the capture time it was acknowledged with;
events' reasons cite their own window's detections; the spool is empty and the kept frame
files are exactly those the frame records point at.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml
from conftest import Server
from postgres_server import PostgresServer, started_or_skip
from scenes import Walk, scene_frames, write_video, yard
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from hearthwatch.security.store.database import open_database
from hearthwatch.security.store.events_store import EventStore

pytestmark = [pytest.mark.timeout(600), pytest.mark.detections]

CAMERA = "porch"
WIDTH, HEIGHT = 1920, 1080
SPACING_S = 0.1
"""Capture times of consecutive frames (the camera's clock); the walk never pauses."""
WALK_FRAMES = 55
WALK = Walk(
    start=(150, 1040), end=(1750, 1040), first_frame=0, last_frame=WALK_FRAMES - 1, height=520
)
"""A person walking across the yard in every frame, pushed in order: run A takes the first
ones, run B the next :data:`SECOND_PUSH` from where A was killed, then the slow frame."""
FIRST_PUSH = 36
"""Frames pushed to run A at most (it is killed before it has them all, usually)."""
SECOND_PUSH = 15
"""Frames pushed to run B (the first 11 calibrate B's gate)."""
GATE_CALIBRATION = 11
"""Frames a fresh motion gate skips: its first (it starts its background) and 10 calibrating."""
IDLE_S = 4.0
WINDOW_S = 120.0
QUEUED_AT_KILL = 8
PUSH_EVERY_S = 0.04
BIG = (7680, 4320)
"""The slow frame: an 8K PNG (about 1.5 s to decode here), so that the pipeline's 0.5 s tick
runs while it is the only frame in process after the restart."""
BIG_SCENE = 48
"""The walk's frame the slow one shows, enlarged: one where the default detector finds the
walker with a score that starts a track (0.83; some frames of the walk score under 0.5)."""
SPOOLED = re.compile(r"^(\d{12})-(\d+)\.(push|stream|folder)\.(jpg|png)$")


@dataclass(frozen=True)
class Frame:
    index: int
    data: bytes
    ext: str


@dataclass(frozen=True)
class Ack:
    seq: int
    captured_at: float
    index: int


@dataclass(frozen=True)
class Footage:
    walk: list[bytes]
    """The walk's frames as 1080p JPEGs."""
    big: bytes
    """Frame :data:`BIG_SCENE` of the walk enlarged to :data:`BIG`, as a PNG."""


@pytest.fixture(scope="module")
def footage() -> Footage:
    walk, big = [], b""
    for scene in scene_frames(yard(WIDTH, HEIGHT), count=WALK_FRAMES, walk=WALK, seed=5):
        ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        walk.append(buf.tobytes())
        if scene.index == BIG_SCENE:
            enlarged = cv2.resize(scene.image, BIG, interpolation=cv2.INTER_LINEAR)
            ok, buf = cv2.imencode(".png", enlarged, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            big = buf.tobytes()
    return Footage(walk, big)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with started_or_skip() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """``None``: the default SQLite file under DATA_DIR; else an empty PostgreSQL database."""
    if request.param == "sqlite":
        return None
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.new_database()


class Db:
    """Read-only views of the events database, by plain SQL (SQLite opened read-only)."""

    def __init__(self, url: str | None, data_dir: Path):
        self.url = url or f"sqlite:///{data_dir / 'hearthwatch.db'}"
        if url is None:
            ro = f"sqlite:///file:{data_dir / 'hearthwatch.db'}?mode=ro&uri=true"
            self.engine: Engine = create_engine(ro)
        else:
            self.engine = create_engine(url, pool_size=1)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), {"camera": CAMERA, **params}))

    def frames(self, camera: str = CAMERA) -> dict[int, Any]:
        """seq → (id, captured_at, image_path) of the camera's recorded frames."""
        rows = self.rows(
            "SELECT seq, id, captured_at, image_path FROM frames WHERE camera_id = :camera",
            camera=camera,
        )
        return {row.seq: row for row in rows}

    def detections(self) -> list[Any]:
        """(id, seq, window_id, track_id) of every detection of the camera."""
        return self.rows(
            "SELECT d.id, f.seq, d.window_id, d.track_id FROM detections d "
            "JOIN frames f ON f.id = d.frame_id WHERE d.camera_id = :camera ORDER BY d.id"
        )

    def windows(self) -> dict[str, str]:
        """window id → status."""
        rows = self.rows("SELECT id, status FROM windows WHERE camera_id = :camera")
        return {row.id: row.status for row in rows}

    def windows_of(self, *cameras: str) -> dict[str, str]:
        """window id → status, of every camera named."""
        rows = self.rows("SELECT id, camera_id, status FROM windows")
        return {row.id: row.status for row in rows if row.camera_id in cameras}

    def events(self) -> list[Any]:
        return self.rows(
            "SELECT id, window_id, kind, reasons FROM events WHERE camera_id = :camera"
        )

    def close(self) -> None:
        self.engine.dispose()


class Pusher(threading.Thread):
    """Pushes frames in order: the first ``hold_after`` at once, the others, once ``go`` is
    set, one every :data:`PUSH_EVERY_S` (so that frames are still arriving when the kill
    comes); stops at the first transport error (the server killed), remembering the frame
    whose push got no answer. ``sending`` is set as each push starts."""

    def __init__(self, url: str, frames: list[Frame], first_at: float, hold_after: int):
        super().__init__(daemon=True)
        self.url, self.frames, self.first_at = url, frames, first_at
        self.hold_after = hold_after
        self.acks: list[Ack] = []
        self.unanswered: Frame | None = None
        self.error: BaseException | None = None
        self.go = threading.Event()
        self.sending = threading.Event()

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=60) as client:
                resumed = 0.0
                for number, frame in enumerate(self.frames):
                    if number == self.hold_after:
                        assert self.go.wait(300), "never told to go on"
                        resumed = time.monotonic()
                    if number > self.hold_after:
                        due = resumed + (number - self.hold_after) * PUSH_EVERY_S
                        time.sleep(max(0.0, due - time.monotonic()))
                    self.sending.set()
                    try:
                        self.acks.append(push(client, frame, self.first_at))
                    except httpx.TransportError:
                        self.unanswered = frame
                        return
        except BaseException as exc:  # reported by the test thread
            self.error = exc


def captured_at(first_at: float, index: int) -> float:
    return first_at + index * SPACING_S


def push(client: httpx.Client, frame: Frame, first_at: float) -> Ack:
    when = captured_at(first_at, frame.index)
    response = client.post(
        f"/api/cameras/{CAMERA}/frames",
        params={"captured_at": when},
        content=frame.data,
        headers={"content-type": f"image/{'png' if frame.ext == 'png' else 'jpeg'}"},
    )
    assert response.status_code == 202, (frame.index, response.status_code, response.text)
    body = response.json()
    assert body["seq"] is not None and abs(body["captured_at"] - when) < 1e-5, body
    return Ack(body["seq"], body["captured_at"], frame.index)


def spooled(data_dir: Path, camera: str = CAMERA) -> dict[int, Path]:
    """seq → file of the camera's spooled frames (partial writes left out)."""
    folder = data_dir / "spool" / camera
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = SPOOLED.match(path.name)
        if match is not None:
            found[int(match[1])] = path
    return found


def poll(condition: Callable[[], Any], timeout_s: float, poll_s: float = 0.02) -> Any:
    """The first true value of ``condition`` within ``timeout_s``, else its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll_s)


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.02
) -> Any:
    value = poll(condition, timeout_s, poll_s)
    assert value, f"timed out after {timeout_s:.0f} s waiting for {what}"
    return value


def counts(server: Server, camera: str = CAMERA) -> dict[str, int]:
    status = httpx.get(f"{server.url}/api/cameras/{camera}/status", timeout=10).json()
    return dict(status["frames"])


def kill(server: Server) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(30) == -signal.SIGKILL
    server.stop()  # closes its log


def reasons_of(raw: Any) -> list[dict[str, Any]]:
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def test_kill_9_loses_and_repeats_nothing(
    database_url: str | None, footage: Footage, tmp_path: Path
) -> None:
    started = time.monotonic()
    data_dir = tmp_path / "data"
    # capture times well in the past, so the server never clamps them to its clock
    first_at = time.time() - 120.0
    cameras = {CAMERA: {"source": {"type": "push"}}}
    with servers(tmp_path, database_url, cameras) as (start, db):
        run(start, db, data_dir, footage, first_at)
    print(f"kill test on {database_url or 'sqlite'}: {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def servers(
    tmp_path: Path, database_url: str | None, cameras: dict[str, Any], **settings: str
) -> Iterator[tuple[Callable[[str], Server], Db]]:
    """A way to start servers one after another on one data directory (``tmp_path/data``) and
    database, with ``cameras``, and a view of the database; every server stopped at the end."""
    data_dir = tmp_path / "data"
    cameras_file = tmp_path / "cameras.yml"
    cameras_file.write_text(yaml.safe_dump({"cameras": cameras}))
    env = {
        "USE_GPU": "false",
        "LLM_ENABLED": "false",
        "ENRICH_ENABLED": "false",
        "DATA_DIR": str(data_dir),
        "CAMERAS_FILE": str(cameras_file),
        "BATCH_WINDOW_SECONDS": str(WINDOW_S),
        "BATCH_IDLE_TIMEOUT_SECONDS": str(IDLE_S),
        "DETECTION_QUEUE_MAX_SIZE": "64",
        "MAX_BATCH_SIZE": "1",  # one frame at a time: a shorter warm-up
        **settings,
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    started: list[Server] = []

    def start(name: str) -> Server:
        server = Server(env, tmp_path / f"server-{name}.log")
        started.append(server)
        server.wait_ready(timeout_s=180)
        return server

    db = Db(database_url, data_dir)
    try:
        yield start, db
    finally:
        db.close()
        for server in started:
            server.stop()


def run(
    start: Callable[[str], Server],
    db: Db,
    data_dir: Path,
    footage: Footage,
    first_at: float,
) -> None:
    by_seq: dict[int, Ack] = {}
    began = time.monotonic()

    def note(line: str) -> None:
        print(f"[{time.monotonic() - began:5.1f} s] {line}")

    def acked(acks: list[Ack]) -> None:
        for ack in acks:
            assert ack.seq not in by_seq, f"seq {ack.seq} acknowledged twice"
            by_seq[ack.seq] = ack
        order = [a.seq for a in sorted(by_seq.values(), key=lambda a: a.index)]
        assert order == sorted(order), "sequence numbers follow the pushes, across restarts"

    # -- run A: killed with the window open and frames queued ----------------------------------
    server = start("a")
    walk = [Frame(index, data, "jpg") for index, data in enumerate(footage.walk)]
    # the frames the gate calibrates on and three to open the window; once it is open, more,
    # faster than the detector takes them
    pusher = Pusher(server.url, walk[:FIRST_PUSH], first_at, hold_after=GATE_CALIBRATION + 3)
    pusher.start()
    opening = pusher.hold_after - GATE_CALIBRATION
    wait_for(
        lambda: db.windows() or pusher.error or len(db.frames()) == opening,
        120,
        "run A to process the frames after its gate's calibration",
    )
    assert pusher.error is None, pusher.error
    assert db.windows(), f"the detector found the walker in none of {opening} frames"
    pusher.go.set()

    def queued() -> bool:
        # a margin over QUEUED_AT_KILL: the detector goes on until the kill
        last = max(db.frames(), default=0)
        return len([seq for seq in spooled(data_dir) if seq > last]) >= QUEUED_AT_KILL + 2

    wait_for(lambda: queued() or pusher.error, 120, "frames queued behind the open window")
    # and a push in flight, if any is left (one starts every PUSH_EVERY_S): killed 0-50 ms into
    # it (while the server receives, checks, spools or answers it)
    pusher.sending.clear()
    delay = random.uniform(0, 0.05)
    if pusher.is_alive() and pusher.sending.wait(0.5):
        time.sleep(delay)
    kill(server)
    pusher.join(60)
    assert not pusher.is_alive() and pusher.error is None, pusher.error
    acked(pusher.acks)
    gated_a = {ack.seq for ack in pusher.acks[:GATE_CALIBRATION]}
    recorded_1, spooled_1, windows_1 = db.frames(), spooled(data_dir), db.windows()
    partial = [p.name for p in (data_dir / "spool" / CAMERA).glob(".*.partial")]
    assert len(windows_1) == 1 and list(windows_1.values()) == ["open"], windows_1
    (window,) = windows_1
    assert {d.window_id for d in db.detections()} == {window}
    queued_1 = sorted(seq for seq in spooled_1 if seq > max(recorded_1))
    assert len(queued_1) >= QUEUED_AT_KILL, (queued_1, sorted(recorded_1))
    # durable at the kill: each acknowledged frame recorded, spooled, or skipped by the gate
    assert not gated_a & (set(recorded_1) | set(spooled_1)), "the gate skipped A's first 11"
    assert set(by_seq) - gated_a <= set(recorded_1) | set(spooled_1)
    unacked_1 = (set(spooled_1) | set(recorded_1)) - set(by_seq)
    assert unacked_1 <= {max(by_seq) + 1}, unacked_1
    if unacked_1:  # the push in flight at the kill: spooled, never answered
        assert pusher.unanswered is not None
        by_seq[max(by_seq) + 1] = Ack(
            max(by_seq) + 1,
            captured_at(first_at, pusher.unanswered.index),
            pusher.unanswered.index,
        )
    note(
        f"kill 1: {len(recorded_1)} frames recorded, {len(queued_1)} queued, push in flight: "
        f"{pusher.unanswered is not None} ({delay * 1000:.0f} ms in; spooled unacknowledged: "
        f"{sorted(unacked_1)}; partial spool files: {partial})"
    )

    # the state a kill leaves between a frame's commit and its spool tidying, for the last
    # recorded frame: its bytes back in the spool, the file it was kept as gone
    tidied = max(recorded_1)
    if tidied not in spooled_1:
        ack = by_seq[tidied]
        micros = round(ack.captured_at * 1_000_000)
        name = f"{tidied:012d}-{micros}.push.jpg"
        staged = data_dir / "spool" / CAMERA / f".{name}.partial"
        staged.write_bytes(walk[ack.index].data)
        os.replace(staged, staged.with_name(name))
        (data_dir / "frames" / CAMERA / f"{tidied:012d}.jpg").unlink(missing_ok=True)

    # -- run B: recovers, takes more frames, killed with one slow frame in process -------------
    # the walk goes on from the frame after the last one run A was sent
    next_index = max(a.index for a in by_seq.values()) + 1
    if pusher.unanswered is not None:
        next_index = pusher.unanswered.index + 1
    after_b = next_index + SECOND_PUSH
    assert after_b < WALK_FRAMES
    server = start("b")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        acks_b = [push(client, frame, first_at) for frame in walk[next_index:after_b]]
        big = push(client, Frame(after_b, footage.big, "png"), first_at)
    acked(acks_b)
    gated_b = {ack.seq for ack in acks_b[:GATE_CALIBRATION]}
    # the lane goes in order: once B's last frame is recorded, every frame before it has been
    # processed (and its spool file goes a moment after its commit), and the lane is on the
    # slow frame for a second or more
    wait_for(lambda: acks_b[-1].seq in db.frames(), 120, "run B to record its last frame")
    left = poll(lambda: set(spooled(data_dir)) == {big.seq}, 10, poll_s=0.005)
    assert left, f"frames spooled at kill 1 never processed: {sorted(spooled(data_dir))}"
    counts_b = counts(server)
    kill(server)
    acked([big])
    recorded_2, spooled_2 = db.frames(), spooled(data_dir)
    assert set(spooled_2) == {big.seq}, (spooled_2, big)
    assert big.seq not in recorded_2, "the slow frame was recorded before the kill"
    assert db.windows() == {window: "open"}, "the window is resumed, not closed or replaced"
    recorded_by_b = set(recorded_2) - set(recorded_1)
    # every frame spooled at kill 1 is recorded now; B skipped only its gate's first frames
    assert set(spooled_1) <= set(recorded_2), sorted(set(spooled_1) - set(recorded_2))
    assert set(by_seq) - set(recorded_2) == gated_a | gated_b | {big.seq}
    # B ran the detector on the frames it recorded and no other: not again on the one recorded
    # before the kill (whose spool file it found), nor on any gated one
    assert counts_b["detected"] == len(recorded_by_b), (counts_b, sorted(recorded_by_b))
    assert counts_b["skipped_motion"] == GATE_CALIBRATION, counts_b
    assert counts_b["frames_in"] == SECOND_PUSH + 1 and counts_b["failed"] == 0, counts_b
    assert {d.window_id for d in db.detections()} == {window}, "one window across the restart"
    stored = recorded_2[tidied].image_path
    if stored is not None:
        assert (data_dir / stored).is_file(), f"frame {tidied}'s kept file is back in place"
    note(f"kill 2: {len(recorded_by_b)} frames recorded by run B, frame {big.seq} spooled")

    # -- run C: the one recovered frame joins the open window; killed before its event --------
    server = start("c")
    wait_for(lambda: big.seq in db.frames(), 60, "run C to record the recovered frame")
    counts_c = counts(server)
    in_big = [d for d in db.detections() if d.seq == big.seq]
    assert in_big, "the detector found the walker in the 8K frame (else kill 2 tests nothing)"
    assert {d.window_id for d in in_big} == {window}, (
        f"the frame recovered at restart landed in {sorted({d.window_id for d in in_big})}, "
        f"not in the window {window} that was open at the kill and that its capture time "
        f"(0.1 s after the window's last detection) belongs to"
    )
    assert counts_c["detected"] == 1 and counts_c["frames_in"] == 0, counts_c
    wait_for(lambda: db.windows().get(window) != "open", 60, "the window to close", poll_s=0.005)
    kill(server)
    assert db.windows() == {window: "closed"}, db.windows()
    assert not [e for e in db.events() if e.window_id == window], (
        "the window's event was written before the kill; kill point 3 was not reached"
    )
    note("kill 3: window closed, no event yet")

    # -- run D: analyses the closed window; the audit -------------------------------------------
    server = start("d")
    wait_for(
        lambda: set(db.windows().values()) == {"analysed"} and not spooled(data_dir),
        60,
        "run D to analyse every window",
        poll_s=0.1,
    )
    counts_d = counts(server)
    assert counts_d["detected"] == 0 and counts_d["frames_in"] == 0, counts_d
    audit(db, data_dir, by_seq, gated_a | gated_b, window)
    note("run D: audited")


def audit(db: Db, data_dir: Path, by_seq: dict[int, Ack], gated: set[int], window: str) -> None:
    frames = db.frames()
    # exactly the acknowledged (or spooled unacknowledged) frames the gate passed, each once,
    # each the frame acknowledged under its seq
    assert set(frames) == set(by_seq) - gated, (
        sorted(set(by_seq) - gated - set(frames)),
        sorted(set(frames) - (set(by_seq) - gated)),
    )
    for seq, row in frames.items():
        assert abs(row.captured_at - by_seq[seq].captured_at) < 1e-5, (seq, row.captured_at)
    duplicates = db.rows(
        "SELECT seq FROM frames WHERE camera_id = :camera GROUP BY seq HAVING COUNT(*) > 1"
    )
    assert not duplicates, duplicates

    detections = db.detections()
    assert len(detections) >= len(frames) // 3, "the walker was found in most frames"
    assert {d.window_id for d in detections} == {window}, "one walk, one window, kills or not"
    assert db.windows() == {window: "analysed"}
    events = [e for e in db.events() if e.kind == "window"]
    assert [e.window_id for e in events] == [window], events
    (event,) = events
    ids = {d.id for d in detections}
    cited = {i for reason in reasons_of(event.reasons) for i in reason["detection_ids"]}
    assert cited and cited <= ids, (sorted(cited - ids), reasons_of(event.reasons))

    store = EventStore(open_database(db.url))
    try:
        assert store.detections_without_event() == []
        covered = store.detection_ids_by_event()
        flat = [i for detection_ids in covered.values() for i in detection_ids]
        assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat)), "each in one event"
        assert list(covered) == [event.id]
    finally:
        store.database.close()

    # the spool is empty; the kept frame files are exactly those the records point at
    assert not spooled(data_dir) and not list((data_dir / "spool" / CAMERA).iterdir())
    pointed = {row.image_path for row in frames.values() if row.image_path is not None}
    with_detections = {d.seq for d in detections}
    assert {seq for seq, row in frames.items() if row.image_path} == with_detections
    kept = {
        str(path.relative_to(data_dir))
        for path in (data_dir / "frames").rglob("*")
        if path.is_file()
    }
    assert kept == pointed, (sorted(kept - pointed), sorted(pointed - kept))


DRIVE, YARD = "drive", "yard"
VIDEO_FPS = 10
FOLDER_FILES = 20


def test_kill_9_loses_and_repeats_no_stream_or_folder_frame(
    database_url: str | None, footage: Footage, tmp_path: Path
) -> None:
    """A ``file`` stream camera read faster than the detector (so its admitted frames wait in
    the spool) and a folder camera whose taken files cannot be moved under ``done/`` (a plain
    file stands there: each file stays in the folder after it is spooled, the state a kill
    between spooling and moving leaves). Killed with stream frames queued; restarted with
    ``done/`` possible and the video gone. Every stream frame spooled at the kill is recorded,
    once; no folder file is taken again; every detection is in exactly one window and one
    event."""
    media = tmp_path / "media"
    folder = media / YARD
    folder.mkdir(parents=True)
    walk = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in footage.walk]
    video = write_video(media / "drive.mp4", walk + walk[::-1], VIDEO_FPS)  # there and back
    first_at = time.time() - 120.0
    files: dict[str, tuple[bytes, float]] = {}
    for index, data in enumerate(footage.walk[:FOLDER_FILES]):
        path, when = folder / f"yard_{index:03d}.jpg", captured_at(first_at, index)
        path.write_bytes(data)
        os.utime(path, (when, when))
        files[path.name] = (data, when)
    (folder / "done").write_text("not a directory")
    cameras = {
        DRIVE: {
            "source": {"type": "file", "path": str(video), "realtime": False},
            "detect_fps": VIDEO_FPS,
        },
        YARD: {"source": {"type": "folder", "path": str(folder), "settle_s": 0.2}},
    }
    settings = {"SOURCE_ROOTS": json.dumps([str(media)]), "DETECTION_QUEUE_MAX_SIZE": "160"}
    with servers(tmp_path, database_url, cameras, **settings) as (start, db):
        data_dir = tmp_path / "data"

        def queued(camera: str) -> set[int]:
            last = max(db.frames(camera), default=0)
            return {seq for seq in spooled(data_dir, camera) if seq > last}

        # -- run A: killed with stream frames queued, every folder file taken and stuck --------
        server = start("a")
        wait_for(
            lambda: (
                len(queued(DRIVE)) >= QUEUED_AT_KILL + 2  # the detector goes on until the kill
                and FOLDER_FILES in set(spooled(data_dir, YARD)) | set(db.frames(YARD))
            ),
            120,
            "stream frames queued and every folder file taken",
        )
        kill(server)
        recorded = {camera: set(db.frames(camera)) for camera in (DRIVE, YARD)}
        spooled_1 = {camera: set(spooled(data_dir, camera)) for camera in (DRIVE, YARD)}
        queued_drive = spooled_1[DRIVE] - recorded[DRIVE]
        assert len(queued_drive) >= QUEUED_AT_KILL, sorted(queued_drive)
        assert sorted(p.name for p in folder.glob("*.jpg")) == sorted(files), "stuck in place"
        # the folder's files were spooled in order (seq n is file n - 1); its gate skipped the
        # first 11 it judged and passed the rest (the walker moves in each)
        durable_yard = recorded[YARD] | spooled_1[YARD]
        assert set(range(GATE_CALIBRATION + 1, FOLDER_FILES + 1)) <= durable_yard
        assert durable_yard <= set(range(1, FOLDER_FILES + 1)), sorted(durable_yard)
        assert not recorded[YARD] & set(range(1, GATE_CALIBRATION + 1))
        print(
            f"kill: drive {len(recorded[DRIVE])} recorded, {len(queued_drive)} queued; yard "
            f"{len(recorded[YARD])} recorded, {len(spooled_1[YARD] - recorded[YARD])} queued"
        )

        # -- run B: the video gone, done/ possible: recovers the spool, takes nothing again ----
        (folder / "done").unlink()
        video.unlink()
        server = start("b")
        wait_for(
            lambda: (
                not list(folder.glob("*.jpg"))
                and not spooled(data_dir, DRIVE)
                and not spooled(data_dir, YARD)
                and set(db.windows_of(DRIVE, YARD).values()) <= {"analysed"}  # none: nothing found
            ),
            90,
            "run B to process the spool and analyse every window",
            poll_s=0.1,
        )
        counts_drive, counts_yard = counts(server, DRIVE), counts(server, YARD)

        # no folder file taken again: all moved under done/ unchanged, none spooled or detected
        assert {p.name: p.read_bytes() for p in (folder / "done").iterdir()} == {
            name: data for name, (data, _) in files.items()
        }
        assert counts_yard["frames_in"] == 0, counts_yard
        yard_frames = db.frames(YARD)
        assert set(yard_frames) == durable_yard, sorted(set(yard_frames) ^ durable_yard)
        assert counts_yard["detected"] == len(durable_yard - recorded[YARD]), counts_yard
        for seq, row in yard_frames.items():  # each the file taken under its seq
            assert abs(row.captured_at - files[f"yard_{seq - 1:03d}.jpg"][1]) < 1e-5, seq
        # every stream frame spooled at the kill recorded, and detected once: in run B, only those
        drive_frames = db.frames(DRIVE)
        assert spooled_1[DRIVE] <= set(drive_frames), sorted(spooled_1[DRIVE] - set(drive_frames))
        assert set(drive_frames) == recorded[DRIVE] | spooled_1[DRIVE]
        assert counts_drive["detected"] == len(queued_drive) and counts_drive["frames_in"] == 0

        detections = db.rows("SELECT id, window_id FROM detections")
        assert detections and all(d.window_id is not None for d in detections)
        store = EventStore(open_database(db.url))
        try:
            assert store.detections_without_event() == []
            covered = [i for ids in store.detection_ids_by_event().values() for i in ids]
            assert sorted(covered) == sorted(d.id for d in detections), "each in exactly one event"
        finally:
            store.database.close()
