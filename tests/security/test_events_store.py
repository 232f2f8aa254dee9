"""The events store and its retention, each test run on SQLite and on a real PostgreSQL server
(one per module, from tests/postgres_server.py; skipped where none starts, failing in CI).

The scenario most tests share: camera ``front`` records frames whose detections belong to
tracks and windows; windows close, analysers turn them into events, enrichments attach to
tracks. Then the risk side: an early alert replaced by the window's analysis and never
overwriting it, retention leaving early alerts alone, feedback, the arm mode, incidents joined
by track and class and going with their events."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from postgres_server import PostgresServer, started_or_skip

from hearthwatch.runtime.errors import ConflictError, InvalidInputError, NotFoundError
from hearthwatch.security.evidence import Reason
from hearthwatch.security.observations import ObjectDetection, TrackedDetection
from hearthwatch.security.store.database import open_database
from hearthwatch.security.store.errors import (
    BadCursorError,
    InvalidQueryError,
    InvalidRecordError,
    UnknownReferenceError,
    WindowStateError,
)
from hearthwatch.security.store.events_store import EventStore, encode_cursor
from hearthwatch.security.store.feedback import FeedbackStore
from hearthwatch.security.store.incidents import IncidentStore, Match
from hearthwatch.security.store.records import (
    DetectionRecord,
    EventRecord,
    FrameRecord,
    WindowLinkRecord,
    WindowUpdate,
)
from hearthwatch.security.store.retention import apply_retention
from hearthwatch.security.store.system_state import SystemStateStore

T0 = 1_718_000_000.0
DAY = 86_400.0
CAMERA = "front"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with started_or_skip() as server:
        yield server


@pytest.fixture(scope="module")
def migrated_postgres(postgres: PostgresServer) -> str:
    """The URL of a database migrated once for the module; each test empties it."""
    url = postgres.new_database()
    database = open_database(url)
    database.upgrade()
    database.close()
    return url


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once for the module; each test gets a copy."""
    path = tmp_path_factory.mktemp("migrated") / "events.db"
    database = open_database(f"sqlite:///{path}")
    database.upgrade()
    database.close()
    assert not path.with_name("events.db-wal").exists()  # all of it is in the one file
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), tmp_path / "db/events.db")
        url = f"sqlite:///{tmp_path}/db/events.db"
    else:
        url = request.getfixturevalue("migrated_postgres")
        request.getfixturevalue("postgres").empty_tables(url)
    database = open_database(url)
    database.upgrade()  # at head already: nothing to do
    yield EventStore(database)
    database.close()


def frame(
    seq: int, at: float | None = None, camera: str = CAMERA, image: bool = True
) -> FrameRecord:
    path = f"frames/{camera}/{seq}.jpg" if image else None
    at = T0 + seq if at is None else at
    return FrameRecord(camera, seq, at, 640, 480, "stream", path)


def seen(
    track: str,
    window: str,
    score: float = 0.8,
    zones: tuple[str, ...] = (),
    *,
    label: str = "person",
    stationary: bool = False,
) -> DetectionRecord:
    return DetectionRecord(track, window, label, score, (10.0, 20.0, 50.0, 90.0), zones, stationary)


def window(
    window_id: str, opened: float, last: float | None = None, camera: str = CAMERA
) -> WindowUpdate:
    last = opened if last is None else last
    return WindowUpdate(window_id, camera, opened, last, last + 30.0)


def event_of(window_id: str | None, at: float, **kw: object) -> EventRecord:
    fields: dict[str, object] = {
        "kind": "window" if window_id else "health",
        "camera_id": CAMERA,
        "window_id": window_id,
        "started_at": at,
        "ended_at": at + 10.0,
        "score": 50.0,
        "level": "medium",
        "reasons": (),
        "analyser": "rules",
        "summary": "someone at the door",
        "labels": ("person",),
        "zones": ("porch",),
        "created_at": at + 20.0,
        "snapshot_path": None,
        "clip_path": None,
    }
    fields.update(kw)
    return EventRecord(**fields)  # type: ignore[arg-type]


def closed_window(store: EventStore, window_id: str, seq: int, tracks: Sequence[str]) -> list[int]:
    """Records one frame (``seq``) with a detection per track in a new window, closes it."""
    at = T0 + seq
    ids = store.record_frame(
        frame(seq), [seen(t, window_id) for t in tracks], [window(window_id, at)]
    )
    store.close_window(window_id, at + 30.0)
    return ids


# cameras


def test_cameras_are_upserted_listed_and_deleted(store: EventStore) -> None:
    store.put_camera("front", "Front door", "file", {"source": {"type": "push"}}, now=T0)
    store.put_camera("back", "Garden", "api", {"zones": [{"name": "lawn"}]}, now=T0 + 1)
    store.put_camera("front", "Porch", "api", {"source": {"type": "rtsp"}}, now=T0 + 5)
    front = store.get_camera("front")
    assert front is not None
    assert (front.name, front.origin, front.created_at, front.updated_at) == (
        "Porch",
        "api",
        T0,
        T0 + 5,
    )
    assert front.config == {"source": {"type": "rtsp"}}
    assert [c.id for c in store.list_cameras()] == ["back", "front"]
    assert store.delete_camera("front") is True
    assert store.delete_camera("front") is False
    assert store.get_camera("front") is None
    assert store.get_camera("x" * 10_000) is None


@pytest.mark.parametrize(
    ("camera_id", "config", "message"),
    [
        ("Front Door", {}, "camera_id"),
        ("../etc", {}, "camera_id"),
        ("front", {"gain": float("nan")}, "JSON values"),
        ("front", {"blob": object()}, "JSON values"),
        ("front", {"big": "x" * 300_000}, "larger than"),
    ],
)
def test_a_malformed_camera_is_refused(
    store: EventStore, camera_id: str, config: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        store.put_camera(camera_id, "A camera", "api", config, now=T0)
    assert store.list_cameras() == []


# frames, tracks, windows


def test_record_frame_writes_detections_tracks_and_windows(store: EventStore) -> None:
    first = store.record_frame(
        frame(1),
        [seen("front-t1", "w1", 0.6, ("drive",)), seen("front-t2", "w1", 0.9, label="car")],
        [window("w1", T0 + 1)],
    )
    second = store.record_frame(
        frame(2),
        [seen("front-t1", "w1", 0.95, ("porch", "drive"), stationary=True)],
        [window("w1", T0 + 1, T0 + 2)],
    )
    third = store.record_frame(
        frame(3), [seen("front-t1", "w1", 0.7)], [window("w1", T0 + 1, T0 + 3)]
    )
    assert len(set(first + second + third)) == 4
    assert first[0] < first[1]
    contents = store.window_contents("w1")
    assert [d.id for d in contents.detections] == first + second + third
    assert [d.captured_at for d in contents.detections] == [T0 + 1, T0 + 1, T0 + 2, T0 + 3]
    assert contents.detections[1].label == "car" and contents.detections[1].zones == ()
    assert contents.detections[2].box == (10.0, 20.0, 50.0, 90.0)
    tracks = {t.key: t for t in contents.tracks}
    person = tracks["front-t1"]
    assert (person.first_seen, person.last_seen) == (T0 + 1, T0 + 3)
    assert person.best_detection_id == second[0]
    assert person.zones_entered == ("drive", "porch")
    assert person.stationary is False
    assert tracks["front-t2"].best_detection_id == first[1]
    seqs = (1, 1, 2, 3)
    assert contents.frame_paths == {
        d.frame_id: f"frames/front/{seq}.jpg"
        for seq, d in zip(seqs, contents.detections, strict=True)
    }
    (w1,) = store.open_windows()
    assert (w1.opened_at, w1.last_detection_at, w1.closes_by, w1.status) == (
        T0 + 1,
        T0 + 3,
        T0 + 33,
        "open",
    )
    assert store.last_seq(CAMERA) == 3
    assert store.last_seq("back") == 0


def test_a_frame_recorded_again_writes_nothing_and_answers_the_first_ids(store: EventStore) -> None:
    ids = store.record_frame(
        frame(7), [seen("front-t1", "w1", 0.5), seen("front-t2", "w1", 0.4)], [window("w1", T0 + 7)]
    )
    again = store.record_frame(
        frame(7, at=T0 + 100),
        [seen("front-t1", "w1", 0.99, ("gate",))],
        [window("w1", T0 + 7, T0 + 100)],
    )
    assert again == ids
    contents = store.window_contents("w1")
    assert [d.id for d in contents.detections] == ids
    assert contents.window.last_detection_at == T0 + 7
    person = next(t for t in contents.tracks if t.key == "front-t1")
    assert (person.last_seen, person.zones_entered, person.best_detection_id) == (
        T0 + 7,
        (),
        ids[0],
    )


def test_frames_recorded_from_several_threads_are_each_counted_once(store: EventStore) -> None:
    store.record_frame(frame(1), [seen("front-t1", "w1", 0.1)], [window("w1", T0 + 1)])
    errors: list[BaseException] = []

    def record() -> None:
        try:
            for seq in range(2, 12):
                store.record_frame(
                    frame(seq),
                    [seen("front-t1", "w1", 0.5 + seq / 100)],
                    [window("w1", T0 + 1, T0 + seq)],
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    contents = store.window_contents("w1")
    assert len(contents.detections) == 11
    (track,) = contents.tracks
    assert track.last_seen == T0 + 11
    assert track.best_detection_id == contents.detections[-1].id
    assert contents.window.last_detection_at == T0 + 11


def test_a_failed_frame_writes_nothing(store: EventStore) -> None:
    store.record_frame(frame(1), [seen("front-t1", "w1")], [window("w1", T0 + 1)])
    with pytest.raises(UnknownReferenceError, match="no window w9"):
        store.record_frame(frame(2), [seen("front-t1", "w1"), seen("front-t2", "w9")])
    with pytest.raises(UnknownReferenceError, match="no stored track front-t7"):
        store.record_frame(
            frame(2),
            [seen("front-t1", "w1")],
            links=[WindowLinkRecord("w1", "w2", "front-t7")],
            windows=[window("w1", T0 + 1, T0 + 2), window("w2", T0 + 2)],
        )
    assert store.last_seq(CAMERA) == 1
    assert [w.id for w in store.open_windows()] == ["w1"]
    assert len(store.window_contents("w1").detections) == 1
    assert store.window_contents("w1").window.last_detection_at == T0 + 1


def test_detections_in_a_closed_or_foreign_window_are_refused(store: EventStore) -> None:
    closed_window(store, "w1", 1, ["front-t1"])
    store.record_frame(
        frame(1, camera="back"), [seen("back-t1", "wb")], [window("wb", T0, camera="back")]
    )
    with pytest.raises(WindowStateError, match="window w1 is closed"):
        store.record_frame(frame(2), [seen("front-t1", "w1")])
    with pytest.raises(WindowStateError):
        store.record_frame(frame(2), [seen("front-t1", "w1")], [window("w1", T0 + 1, T0 + 2)])
    with pytest.raises(InvalidRecordError, match="another camera"):
        store.record_frame(frame(2), [seen("front-t1", "wb")])
    with pytest.raises(InvalidRecordError, match="another camera"):
        store.record_frame(frame(2), [], [window("w5", T0, camera="back")])
    with pytest.raises(InvalidRecordError, match="track of another camera"):
        store.record_frame(frame(2), [seen("back-t1", "w2")], [window("w2", T0 + 2)])
    assert store.last_seq(CAMERA) == 1
    assert isinstance(WindowStateError("x"), ConflictError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FrameRecord(CAMERA, 0, T0, 640, 480, "stream"), "seq"),
        (lambda: FrameRecord(CAMERA, 1, T0 * 1000, 640, 480, "stream"), "captured_at"),
        (lambda: FrameRecord(CAMERA, 1, T0, 640, 480, "webcam"), "origin"),  # type: ignore[arg-type]
        (lambda: FrameRecord(CAMERA, 1, T0, 640, 480, "stream", "../../etc/passwd"), "image_path"),
        (lambda: FrameRecord(CAMERA, 1, T0, 640, 480, "stream", "/etc/passwd"), "image_path"),
        (lambda: FrameRecord(CAMERA, 1, T0, 640, 480, "stream", "a/./b.jpg"), "image_path"),
        (lambda: DetectionRecord("t", "w", "person", 1.5, (0, 0, 1, 1)), "score"),
        (lambda: DetectionRecord("t", "w", "person", 0.5, (0, 0, float("nan"), 1)), "box"),
        (lambda: DetectionRecord("t", "w", "person", 0.5, (5, 0, 1, 1)), "x1 <= x2"),
        (lambda: DetectionRecord("t", "w", "", 0.5, (0, 0, 1, 1)), "label"),
        (lambda: DetectionRecord("t k", "w", "person", 0.5, (0, 0, 1, 1)), "track_key"),
        (lambda: DetectionRecord("t", "w", "person", 0.5, (0, 0, 1, 1), ["porch"]), "zones"),  # type: ignore[arg-type]
        (lambda: WindowUpdate("w", CAMERA, T0, T0 - 1, T0 + 30), "opened_at <= last"),
        (lambda: WindowLinkRecord("w", "w", "t"), "itself"),
        (lambda: event_of(None, T0, kind="window"), "names its window"),
        (lambda: event_of("w1", T0, score=101.0), "score"),
        (lambda: event_of("w1", T0, level="severe"), "level"),
        (lambda: event_of("w1", T0, ended_at=T0 - 1), "before started_at"),
        (lambda: event_of("w1", T0, reasons=(Reason("x", (0,)),)), "detection id"),
        (lambda: event_of("w1", T0, clip_path="clips/../../x.mp4"), "clip_path"),
    ],
)
def test_malformed_records_are_refused_when_built(build: object, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message) as raised:
        build()  # type: ignore[operator]
    assert isinstance(raised.value, InvalidInputError)


def test_a_detection_record_is_built_from_the_trackers_output() -> None:
    tracked = TrackedDetection(
        ObjectDetection("car", 0.7, (1.0, 2.0, 3.0, 4.0)), "front-9", True, False
    )
    record = DetectionRecord.of(tracked, "w3", ("drive",))
    assert record == DetectionRecord(
        "front-9", "w3", "car", 0.7, (1.0, 2.0, 3.0, 4.0), ("drive",), True
    )


# windows and evidence


def test_closing_a_window_is_idempotent(store: EventStore) -> None:
    store.record_frame(frame(1), [seen("front-t1", "w1")], [window("w1", T0 + 1)])
    store.record_frame(frame(2), [seen("front-t2", "w2")], [window("w2", T0 + 2)])
    store.close_window("w1", T0 + 40)
    store.close_window("w1", T0 + 90)
    assert [w.id for w in store.open_windows()] == ["w2"]
    (closed,) = store.unanalysed_windows()
    assert (closed.id, closed.status, closed.closed_at) == ("w1", "closed", T0 + 40)
    with pytest.raises(UnknownReferenceError):
        store.close_window("w7", T0)
    with pytest.raises(InvalidRecordError, match="before"):
        store.close_window("w2", T0)


def test_window_evidence_gathers_tracks_detections_links_and_frames(store: EventStore) -> None:
    store.put_camera(CAMERA, "Front door", "file", {}, now=T0)
    a = store.record_frame(
        frame(1), [seen("front-t1", "w1", 0.6, ("drive",))], [window("w1", T0 + 1)]
    )
    b = store.record_frame(
        frame(2, image=False),
        [seen("front-t1", "w1", 0.8), seen("front-t2", "w1", label="dog")],
        [window("w1", T0 + 1, T0 + 2)],
    )
    store.close_window("w1", T0 + 32)
    c = store.record_frame(
        frame(40),
        [seen("front-t1", "w2", 0.7, ("porch",))],
        [window("w2", T0 + 40)],
        [WindowLinkRecord("w2", "w1", "front-t1")],
    )
    d = store.record_frame(
        frame(41),
        [seen("front-t1", "w2")],
        [window("w2", T0 + 40, T0 + 41)],
        [WindowLinkRecord("w1", "w2", "front-t1"), WindowLinkRecord("w2", "w1", "front-t1")],
    )  # the link again, both ways: still one link
    store.add_enrichment("front-t1", a[0], "face", {"faces": 0}, None, created_at=T0 + 3)
    store.add_enrichment("front-t1", b[0], "face", {"faces": 1}, None, created_at=T0 + 4)
    store.add_enrichment("front-t2", b[1], "pet", {"kind": "dog"}, None, created_at=T0 + 5)
    with pytest.raises(WindowStateError, match="still open"):
        store.window_evidence("w2", camera_name="Front door", zone_description="", timezone="UTC")
    store.close_window("w2", T0 + 80)

    first = store.window_evidence(
        "w1", camera_name="Front door", zone_description="porch: steps", timezone="Europe/Berlin"
    )
    assert (first.window_id, first.camera_id, first.camera_name) == ("w1", CAMERA, "Front door")
    assert (first.zone_description, first.timezone) == ("porch: steps", "Europe/Berlin")
    assert (first.opened_at, first.closed_at) == (T0 + 1, T0 + 32)
    assert first.linked_window_ids == ("w2",)
    assert [d.id for d in first.detections] == a + b
    assert {t.key: dict(t.enrichments) for t in first.tracks} == {
        "front-t1": {"face": {"faces": 1}},
        "front-t2": {"pet": {"kind": "dog"}},
    }
    person = next(t for t in first.tracks if t.key == "front-t1")
    assert person.zones_entered == ("drive", "porch")  # the whole track, both windows
    assert person.best_detection_id == b[0]
    assert first.frame_paths == {first.detections[0].frame_id: "frames/front/1.jpg"}

    second = store.window_evidence(
        "w2", camera_name="Front door", zone_description="", timezone="UTC"
    )
    assert second.linked_window_ids == ("w1",)
    assert [d.id for d in second.detections] == c + d
    assert [t.key for t in second.tracks] == ["front-t1"]
    with pytest.raises(UnknownReferenceError):
        store.window_evidence("w9", camera_name="x", zone_description="", timezone="UTC")


# events


def test_a_window_event_is_stored_once_and_marks_the_window_analysed(store: EventStore) -> None:
    ids = closed_window(store, "w1", 1, ["front-t1", "front-t2"])
    first = store.add_event(event_of("w1", T0 + 1.25, reasons=(Reason("a person", (ids[0],)),)))
    assert re.fullmatch(r"1718000001\.250000-[a-z0-9]{6}", first)
    second = store.add_event(event_of("w1", T0 + 5, level="critical", summary="other"))
    assert second == first
    assert store.unanalysed_windows() == []
    (row,), _ = store.list_events()
    assert (row.id, row.level, row.summary, row.window_id) == (
        first,
        "medium",
        "someone at the door",
        "w1",
    )
    assert row.reasons == (Reason("a person", (ids[0],)),)
    assert store.window_contents("w1").window.status == "analysed"


def test_an_event_is_refused_for_an_open_window_or_foreign_citations(store: EventStore) -> None:
    store.record_frame(frame(1), [seen("front-t1", "w1")], [window("w1", T0 + 1)])
    with pytest.raises(WindowStateError, match="still open"):
        store.add_event(event_of("w1", T0 + 1))
    other = closed_window(store, "w2", 5, ["front-t2"])
    store.close_window("w1", T0 + 31)
    with pytest.raises(InvalidRecordError, match=f"not in the window: {other[0]}"):
        store.add_event(event_of("w1", T0 + 1, reasons=(Reason("x", (other[0],)),)))
    with pytest.raises(InvalidRecordError, match="another camera"):
        store.add_event(event_of("w1", T0 + 1, camera_id="back"))
    with pytest.raises(UnknownReferenceError):
        store.add_event(event_of("w7", T0 + 1))
    assert store.list_events() == ([], None)
    assert [w.id for w in store.unanalysed_windows()] == ["w1", "w2"]


def test_health_events_always_insert(store: EventStore) -> None:
    a = store.add_event(event_of(None, T0, level="low", labels=(), zones=()))
    b = store.add_event(event_of(None, T0, level="low", labels=(), zones=()))
    assert a != b
    detail = store.get_event(a)
    assert detail is not None
    assert (detail.event.kind, detail.window, detail.enrichments) == ("health", None, ())


def test_every_detection_is_in_exactly_one_window_and_one_event(store: EventStore) -> None:
    recorded: list[int] = []
    recorded += store.record_frame(
        frame(1), [seen("front-t1", "w1"), seen("front-t2", "w1")], [window("w1", T0 + 1)]
    )
    recorded += store.record_frame(
        frame(2), [seen("front-t1", "w1")], [window("w1", T0 + 1, T0 + 2)]
    )
    store.close_window("w1", T0 + 32)
    recorded += store.record_frame(
        frame(3),
        [seen("front-t1", "w2")],
        [window("w2", T0 + 3)],
        [WindowLinkRecord("w1", "w2", "front-t1")],
    )
    one = store.add_event(event_of("w1", T0 + 1))
    assert store.detections_without_event() == recorded[3:]
    store.close_window("w2", T0 + 40)
    two = store.add_event(event_of("w2", T0 + 3))
    covered = store.detection_ids_by_event()
    assert covered == {one: recorded[:3], two: recorded[3:]}
    assert store.detections_without_event() == []
    every = [i for ids in covered.values() for i in ids]
    assert sorted(every) == sorted(recorded) and len(every) == len(set(every))


def add_events(store: EventStore) -> dict[str, str]:
    """Six events over two cameras: three window events (one per window) and three health
    events, two of which start at the same moment."""
    ids = {}
    for n, (labels, level, score) in enumerate(
        [
            (("person",), "high", 80.0),
            (("person_vehicle", "car"), "low", 20.0),
            (("dog",), "medium", 30.0),
        ]
    ):
        closed_window(store, f"w{n}", n + 1, [f"front-t{n}"])
        ids[f"w{n}"] = store.add_event(
            event_of(f"w{n}", T0 + n * 100, labels=labels, level=level, score=score)
        )
    for name, at, camera in (
        ("h1", T0 + 150, "back"),
        ("h2", T0 + 150, "back"),
        ("h3", T0 + 400, CAMERA),
    ):
        ids[name] = store.add_event(
            event_of(None, at, camera_id=camera, level="critical", score=100.0, labels=())
        )
    return ids


def test_list_events_filters(store: EventStore) -> None:
    ids = add_events(store)

    def listed(**filters: object) -> set[str]:
        rows, cursor = store.list_events(**filters)  # type: ignore[arg-type]
        assert cursor is None
        return {next(k for k, v in ids.items() if v == row.id) for row in rows}

    assert listed() == set(ids)
    assert listed(cameras=["back"]) == {"h1", "h2"}
    assert listed(cameras=["back", CAMERA]) == set(ids)
    assert listed(levels=["high", "medium"]) == {"w0", "w2"}
    assert listed(min_score=20.0, max_score=80.0) == {"w0", "w1", "w2"}
    assert listed(min_score=20.5, max_score=79.5) == {"w2"}
    assert listed(after=T0 + 100, before=T0 + 400) == {"w1", "w2", "h1", "h2"}
    assert listed(label="person") == {"w0"}
    assert listed(label="car") == {"w1"}
    assert listed(label="cat") == set()
    assert listed(kind="health", cameras=[CAMERA]) == {"h3"}
    assert store.count_events_by_level() == {
        "low": 1,
        "medium": 1,
        "high": 1,
        "critical": 3,
    }


def test_list_events_pages_newest_first_without_gaps_or_repeats(store: EventStore) -> None:
    ids = add_events(store)
    pages, cursor = [], None
    while True:
        rows, cursor = store.list_events(limit=2, cursor=cursor)
        pages.append([row.id for row in rows])
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 2]
    listed = [i for page in pages for i in page]
    tied = sorted([ids["h1"], ids["h2"]], reverse=True)
    assert listed == [ids["h3"], ids["w2"], *tied, ids["w1"], ids["w0"]]
    rows, cursor = store.list_events(limit=6)
    assert [row.id for row in rows] == listed and cursor is None
    rows, _ = store.list_events(
        limit=2, levels=["critical"], cursor=encode_cursor(T0 + 150, tied[0])
    )
    assert [row.id for row in rows] == [tied[1]]


@pytest.mark.parametrize(
    "cursor",
    ["", "not a cursor!", "e30", "WzEsMiwzXQ", "WyJ4IiwiYSJd", "WzEuMCwiYSBiIl0", "A" * 600],
)
def test_a_malformed_cursor_is_refused(store: EventStore, cursor: str) -> None:
    # e30 = {}, WzEsMiwzXQ = [1,2,3], WyJ4IiwiYSJd = ["x","a"], WzEuMCwiYSBiIl0 = [1.0,"a b"]
    with pytest.raises(BadCursorError, match="not one this server handed out") as raised:
        store.list_events(cursor=cursor)
    assert isinstance(raised.value, InvalidInputError)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": True}, "limit"),
        ({"levels": ["severe"]}, "levels"),
        ({"levels": "high"}, "levels must be a list"),
        ({"cameras": ["Front Door"]}, "camera_id"),
        ({"cameras": []}, "cameras"),
        ({"min_score": 90.0, "max_score": 10.0}, "above"),
        ({"min_score": float("nan")}, "min_score"),
        ({"after": -5.0}, "after"),
        ({"label": "x" * 65}, "label"),
        ({"kind": "motion"}, "kind"),
    ],
)
def test_a_malformed_query_is_refused(
    store: EventStore, filters: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        store.list_events(**filters)  # type: ignore[arg-type]


def test_get_event_answers_the_event_with_its_window_and_enrichments(store: EventStore) -> None:
    store.put_camera(CAMERA, "Front door", "file", {}, now=T0)
    ids = closed_window(store, "w1", 1, ["front-t1", "front-t2"])
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    face = store.add_enrichment("front-t1", ids[0], "face", {"faces": 1}, vector, created_at=T0 + 2)
    store.add_enrichment("front-t2", ids[1], "colour", {"colour": "red"}, None, created_at=T0 + 3)
    event_id = store.add_event(event_of("w1", T0 + 1, snapshot_path="snapshots/1.jpg"))
    detail = store.get_event(event_id)
    assert detail is not None
    assert detail.camera_name == "Front door"
    assert detail.event.snapshot_path == "snapshots/1.jpg"
    assert detail.window is not None and [d.id for d in detail.window.detections] == ids
    first, second = detail.enrichments
    assert (first.id, first.track_key, first.detection_id, first.model) == (
        face,
        "front-t1",
        ids[0],
        "face",
    )
    assert first.embedding is not None and first.embedding.dtype == np.float32
    assert first.embedding.tobytes() == vector.tobytes()
    assert not first.embedding.flags.writeable
    assert (second.result, second.embedding) == ({"colour": "red"}, None)
    assert store.get_event("1718000000.000000-zzzzzz") is None
    assert store.get_event("x" * 5000) is None


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        (np.zeros(4, dtype=np.float64), "float32"),
        (np.zeros((2, 2), dtype=np.float32), "1-D"),
        (np.array([1.0, np.inf], dtype=np.float32), "NaN or infinite"),
        (np.zeros(0, dtype=np.float32), "1 to 65536"),
        ([0.5, 0.5], "float32"),
    ],
)
def test_a_malformed_embedding_is_refused(
    store: EventStore, embedding: object, message: str
) -> None:
    ids = closed_window(store, "w1", 1, ["front-t1"])
    with pytest.raises(InvalidRecordError, match=message):
        store.add_enrichment("front-t1", ids[0], "reid", {}, embedding, created_at=T0)  # type: ignore[arg-type]


def test_an_enrichment_names_a_detection_of_its_track(store: EventStore) -> None:
    ids = closed_window(store, "w1", 1, ["front-t1", "front-t2"])
    with pytest.raises(InvalidRecordError, match="not of track front-t1"):
        store.add_enrichment("front-t1", ids[1], "face", {}, None, created_at=T0)
    with pytest.raises(UnknownReferenceError, match="no detection 999999") as raised:
        store.add_enrichment("front-t1", 999_999, "face", {}, None, created_at=T0)
    assert isinstance(raised.value, NotFoundError)
    with pytest.raises(InvalidRecordError, match="JSON values"):
        store.add_enrichment("front-t1", ids[0], "face", {"x": float("inf")}, None, created_at=T0)


# retention


def write_file(root: Path, relative: str, size: int) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def analysed_window(
    store: EventStore, root: Path, n: int, at: float, tracks: Sequence[str]
) -> tuple[str, list[int]]:
    """Window ``w{n}`` with one frame (seq n, 1000-byte image) at ``at``, closed and analysed
    into an event with a 100-byte snapshot."""
    write_file(root, f"frames/front/{n}.jpg", 1000)
    write_file(root, f"snapshots/{n}.jpg", 100)
    ids = store.record_frame(
        frame(n, at=at), [seen(t, f"w{n}") for t in tracks], [window(f"w{n}", at)]
    )
    store.close_window(f"w{n}", at + 30)
    return store.add_event(event_of(f"w{n}", at, snapshot_path=f"snapshots/{n}.jpg")), ids


def test_retention_removes_what_is_older_than_the_age_limit(
    store: EventStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    now = T0 + 30 * DAY
    old, old_ids = analysed_window(store, data, 1, T0, ["front-t1", "front-t2"])
    store.add_enrichment("front-t1", old_ids[0], "reid", {}, np.ones(4, np.float32), created_at=T0)
    new, _ = analysed_window(store, data, 2, now - DAY, ["front-t3"])
    write_file(data, "frames/front/3.jpg", 1000)
    store.record_frame(frame(3, at=T0))  # an old frame without detections
    write_file(data, "frames/front/4.jpg", 1000)  # an old frame of a window still open
    store.record_frame(frame(4, at=T0), [seen("front-t4", "w4")], [window("w4", T0)])

    report = apply_retention(store, data, now=now, max_age_days=7, max_bytes=10**9)

    assert (report.events_deleted, report.windows_deleted, report.detections_deleted) == (1, 1, 2)
    assert (report.frames_deleted, report.tracks_deleted, report.enrichments_deleted) == (2, 2, 1)
    assert (report.files_deleted, report.bytes_freed, report.bytes_kept) == (3, 2100, 2100)
    assert report.refused_paths == ()
    assert store.get_event(old) is None and store.get_event(new) is not None
    assert not (data / "frames/front/1.jpg").exists() and not (data / "snapshots/1.jpg").exists()
    assert not (data / "frames/front/3.jpg").exists()
    assert (data / "frames/front/2.jpg").exists() and (data / "frames/front/4.jpg").exists()
    assert [w.id for w in store.open_windows()] == ["w4"]
    assert len(store.window_contents("w4").detections) == 1
    again = apply_retention(store, data, now=now, max_age_days=7, max_bytes=10**9)
    assert (again.events_deleted, again.files_deleted, again.bytes_kept) == (0, 0, 2100)


def test_retention_removes_the_oldest_until_the_files_fit(
    store: EventStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    events = [analysed_window(store, data, n, T0 + n * 60, [f"front-t{n}"])[0] for n in range(1, 6)]
    report = apply_retention(store, data, now=T0 + 600, max_age_days=365, max_bytes=2 * 1100 + 50)
    assert report.events_deleted == 3
    assert (report.bytes_freed, report.bytes_kept) == (3 * 1100, 2 * 1100)
    rows, _ = store.list_events()
    assert [row.id for row in rows] == events[:2:-1]
    assert sorted(p.name for p in (data / "snapshots").iterdir()) == ["4.jpg", "5.jpg"]


def test_retention_keeps_a_track_that_lives_on_in_a_later_window(
    store: EventStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    old, ids = analysed_window(store, data, 1, T0, ["front-t1"])
    store.add_enrichment(
        "front-t1", ids[0], "face", {"faces": 1}, np.ones(3, np.float32), created_at=T0
    )
    later = store.record_frame(
        frame(2, at=T0 + 20 * DAY),
        [seen("front-t1", "w2", 0.3)],
        [window("w2", T0 + 20 * DAY)],
        [WindowLinkRecord("w1", "w2", "front-t1")],
    )
    report = apply_retention(store, data, now=T0 + 21 * DAY, max_age_days=7, max_bytes=10**9)
    assert (report.events_deleted, report.tracks_deleted, report.enrichments_deleted) == (1, 0, 0)
    contents = store.window_contents("w2")
    assert contents.linked_window_ids == ()
    (track,) = contents.tracks
    assert track.best_detection_id == later[0]
    assert track.enrichments == {"face": {"faces": 1}}
    store.close_window("w2", T0 + 21 * DAY)
    detail = store.get_event(store.add_event(event_of("w2", T0 + 20 * DAY)))
    assert detail is not None
    (enrichment,) = detail.enrichments
    assert enrichment.detection_id is None and enrichment.embedding is not None


def test_retention_removes_unanalysed_windows_but_never_open_ones(
    store: EventStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    closed_window(store, "w1", 1, ["front-t1"])
    store.record_frame(frame(2), [seen("front-t2", "w2")], [window("w2", T0 + 2)])
    report = apply_retention(store, data, now=T0 + 100 * DAY, max_age_days=1, max_bytes=0)
    assert (report.windows_deleted, report.detections_deleted, report.frames_deleted) == (1, 1, 1)
    assert store.unanalysed_windows() == []
    assert [w.id for w in store.open_windows()] == ["w2"]
    assert store.last_seq(CAMERA) == 2


def test_retention_leaves_a_window_under_analysis_alone(store: EventStore, tmp_path: Path) -> None:
    """Old footage (a folder's files keep their own times) closes windows that are old by
    every clock: while the pipeline analyses one, neither age nor size removes it."""
    closed_window(store, "w1", 1, ["front-t1"])
    closed_window(store, "w2", 2, ["front-t2"])
    later = T0 + 100 * DAY
    report = apply_retention(
        store, tmp_path, now=later, max_age_days=1, max_bytes=0, analysing={"w1"}.__contains__
    )
    assert report.windows_deleted == 1
    assert [w.id for w in store.unanalysed_windows()] == ["w1"]
    report = apply_retention(store, tmp_path, now=later, max_age_days=1, max_bytes=0)
    assert report.windows_deleted == 1 and store.unanalysed_windows() == []


def test_retention_never_deletes_outside_the_data_directory(
    store: EventStore, tmp_path: Path
) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    precious = write_file(outside, "precious.jpg", 500)
    (data / "snapshots").mkdir(parents=True)
    (data / "snapshots/escape.jpg").symlink_to(precious)
    store.add_event(event_of(None, T0, snapshot_path="snapshots/escape.jpg"))
    report = apply_retention(store, data, now=T0 + 100 * DAY, max_age_days=1, max_bytes=0)
    assert report.events_deleted == 1
    assert report.refused_paths == ("snapshots/escape.jpg",)
    assert (report.files_deleted, report.bytes_freed) == (0, 0)
    assert precious.read_bytes() == b"x" * 500


@pytest.mark.parametrize(
    "limits",
    [
        {"max_age_days": -1.0},
        {"max_bytes": -1},
        {"max_age_days": float("nan")},
        {"now": float("inf")},
    ],
)
def test_retention_refuses_malformed_limits(
    store: EventStore, tmp_path: Path, limits: dict[str, float]
) -> None:
    arguments: dict[str, float] = {"now": T0, "max_age_days": 7.0, "max_bytes": 0, **limits}
    store.add_event(event_of(None, T0 - 30 * DAY))
    with pytest.raises(InvalidRecordError, match=next(iter(limits))):
        apply_retention(store, tmp_path, **arguments)  # type: ignore[arg-type]
    assert len(store.list_events()[0]) == 1


# risk analysis: early alerts, feedback, the arm mode, incidents


def open_window(store: EventStore, window_id: str, seq: int, track: str) -> list[int]:
    at = T0 + seq
    ids: list[int] = store.record_frame(
        frame(seq), [seen(track, window_id)], [window(window_id, at)]
    )
    return ids


def test_an_early_alert_is_replaced_by_the_analysis_and_never_overwrites_it(
    store: EventStore,
) -> None:
    (detection,) = open_window(store, "w1", 1, "front-t1")
    alert = event_of("w1", T0 + 1, provisional=True, level="critical", score=85.0,
                     analyser="early alert", reasons=(Reason("rule", (detection,)),))  # fmt: skip
    early = store.add_event(alert)
    assert store.add_event(alert) == early  # once per window
    store.close_window("w1", T0 + 40)
    analysed = event_of("w1", T0 + 1, level="high", score=70.0, analyser="llm")
    assert store.add_event(analysed) == early  # the same id
    late = event_of("w1", T0 + 1, provisional=True, level="low", score=1.0)
    assert store.add_event(late) == early  # a late alert changes nothing
    detail = store.get_event(early)
    assert detail is not None
    row = detail.event
    assert (row.provisional, row.level, row.score, row.analyser) == (False, "high", 70.0, "llm")
    assert [w.id for w in store.unanalysed_windows()] == []


def test_retention_leaves_early_alerts_and_their_windows_alone(
    store: EventStore, tmp_path: Path
) -> None:
    open_window(store, "w-open", 1, "front-t1")
    store.add_event(event_of("w-open", T0 + 1, provisional=True, level="critical", score=85.0))
    closed_window(store, "w-old", 2, ["front-t2"])
    store.add_event(event_of("w-old", T0 + 2))
    report = apply_retention(store, tmp_path, now=T0 + 40 * DAY, max_age_days=30, max_bytes=2**40)
    assert report.events_deleted == 1
    assert [w.id for w in store.open_windows()] == ["w-open"]
    (left,) = store.list_events()[0]
    assert left.window_id == "w-open" and left.provisional


def test_feedback_is_kept_per_event_and_goes_with_it(store: EventStore, tmp_path: Path) -> None:
    closed_window(store, "w1", 1, ["front-t1"])
    event_id = store.add_event(event_of("w1", T0 + 1))
    health = store.add_event(event_of(None, T0 + 2))
    feedback = FeedbackStore(store.database)
    feedback.add(event_id, "confirmed", "", created_at=T0 + 50)
    feedback.add(event_id, "false_alarm", "the cat", created_at=T0 + 60)
    assert [f.verdict for f in feedback.list(event_id=event_id)] == ["confirmed", "false_alarm"]
    assert feedback.latest_verdicts()[event_id].note == "the cat"
    with pytest.raises(UnknownReferenceError):
        feedback.add("nope", "confirmed", "", created_at=T0)
    with pytest.raises(UnknownReferenceError):
        feedback.list(event_id="nope")
    with pytest.raises(ValueError, match="window events"):
        feedback.add(health, "confirmed", "", created_at=T0)
    apply_retention(store, tmp_path, now=T0 + 40 * DAY, max_age_days=30, max_bytes=2**40)
    assert feedback.list() == []


def test_the_arm_mode_is_stored_and_replaced(store: EventStore) -> None:
    state = SystemStateStore(store.database)
    assert state.get("arm_mode") is None
    state.put("arm_mode", "away", now=T0)
    state.put("arm_mode", "night", now=T0 + 1)
    assert state.get("arm_mode") == "night"


def _described(store: EventStore, window_id: str, seq: int, track: str, camera: str) -> str:
    """A closed window of one track with an embedding, and its event."""
    at = T0 + seq
    (detection,) = store.record_frame(
        frame(seq, camera=camera), [seen(track, window_id)], [window(window_id, at, camera=camera)]
    )
    store.add_enrichment(track, detection, "reid", {}, np.ones(4, np.float32), created_at=at)
    store.close_window(window_id, at + 30)
    event_id: str = store.add_event(event_of(window_id, at, camera_id=camera))
    return event_id


def test_incidents_join_by_track_and_class_and_go_with_their_events(
    store: EventStore, tmp_path: Path
) -> None:
    incidents = IncidentStore(store.database)
    front = _described(store, "w1", 1, "front-t1", CAMERA)
    back = _described(store, "w2", 2, "back-t2", "back")
    side = _described(store, "w3", 3, "side-t3", "side")
    assert {d.track_id for d in incidents.descriptors(since=T0)} == {
        "front-t1", "back-t2", "side-t3"
    }  # fmt: skip
    assert incidents.events_of_tracks(["front-t1"]) == {"front-t1": (front, T0 + 1)}
    # one window, two of its tracks matching two events in no incident: two incidents
    first = incidents.link(side, "side-t3", [Match(front, "front-t1", 0.9)], label="person",
                           descriptor="reid", now=T0 + 100)  # fmt: skip
    second = incidents.link(side, "side-t9", [Match(back, "back-t2", 0.8)], label="car",
                            descriptor="reid", now=T0 + 101)  # fmt: skip
    assert first != second
    # a person matching the front track joins the person incident, never the car one
    again = incidents.link(back, "back-t2", [Match(front, "front-t1", 0.85)], label="person",
                           descriptor="reid", now=T0 + 102)  # fmt: skip
    assert again == first
    listed = {row.id: row for row in incidents.list()}
    assert [e.event_id for e in listed[first].events] == [front, back, side]
    assert listed[second].label == "car"
    assert [e.similarity for e in listed[first].events][0] is None
    # retention removes the front and back events: incidents of fewer than two events go
    apply_retention(store, tmp_path, now=T0 + 2.5 + 30 * DAY, max_age_days=30, max_bytes=2**40)
    assert [row.id for row in incidents.list()] == []
