"""The events database: opening it (URLs, SQLite's settings, a killed writer), its migrations
(data kept across an upgrade, the models agreeing with the newest revision, repeated and
concurrent upgrades, downgrades), on SQLite and on a real PostgreSQL server where it matters."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from postgres_server import PostgresServer, started_or_skip
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from hearthwatch.security.store.database import Database, open_database
from hearthwatch.security.store.errors import DatabaseUrlError
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.records import EventRecord
from hearthwatch.security.store.schema import Base

T0 = 1_718_000_000.0
HEAD = "0005"
"""The newest migration."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with started_or_skip() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def database(url: str) -> Iterator[Database]:
    opened = open_database(url)
    yield opened
    opened.close()


ROWS_OF_0001 = [
    "INSERT INTO cameras (id, name, origin, config, created_at, updated_at) "
    """VALUES ('front', 'Front door', 'file', '{"fps": 5}', 1, 2)""",
    "INSERT INTO frames (camera_id, seq, captured_at, width, height, origin, image_path) "
    "VALUES ('front', 1, 1718000001, 640, 480, 'stream', 'frames/front/1.jpg')",
    "INSERT INTO tracks (id, camera_id, label, first_seen, last_seen, best_detection_id, "
    "best_score, zones_entered, stationary) VALUES ('front-t1', 'front', 'person', 1718000001, "
    """1718000001, 1, 0.9, '["porch"]', false)""",
    "INSERT INTO windows (id, camera_id, opened_at, last_detection_at, closes_by, closed_at, "
    "status) VALUES ('w1', 'front', 1718000001, 1718000001, 1718000031, 1718000031, 'analysed')",
    "INSERT INTO detections (frame_id, camera_id, track_id, window_id, label, score, x1, y1, "
    "x2, y2, zones, captured_at) VALUES (1, 'front', 'front-t1', 'w1', 'person', 0.9, 1, 2, "
    """3, 4, '["porch"]', 1718000001)""",
    "INSERT INTO enrichments (track_id, detection_id, model, result, created_at) "
    """VALUES ('front-t1', 1, 'face', '{"faces": 1}', 1718000002)""",
    "INSERT INTO events (id, kind, camera_id, window_id, started_at, ended_at, score, level, "
    "reasons, analyser, labels, zones, snapshot_path, clip_path, created_at) VALUES "
    "('1718000001.000000-abc123', 'window', 'front', 'w1', 1718000001, 1718000031, 70, 'high', "
    """'[{"text": "a person on the porch", "detection_ids": [1]}]', 'rules', '["person"]', """
    """'["porch"]', 'snapshots/1.jpg', NULL, 1718000040)""",
]
"""A window's worth of rows in the schema of revision 0001 (no summaries, no embeddings), in a
new database: the rows numbered by the database are number 1."""


def test_an_upgrade_keeps_the_data_of_0001_and_the_new_columns_work(
    url: str, database: Database
) -> None:
    database.upgrade("0001")
    assert database.revision() == "0001"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in ROWS_OF_0001:
            connection.execute(text(statement))
    engine.dispose()

    database.upgrade()

    assert database.revision() == HEAD
    store = EventStore(database)
    detail = store.get_event("1718000001.000000-abc123")
    assert detail is not None and detail.window is not None
    assert (detail.event.summary, detail.event.level, detail.event.labels) == (
        "",
        "high",
        ("person",),
    )
    assert detail.event.reasons[0].detection_ids == (1,)
    assert [d.id for d in detail.window.detections] == [1]
    assert detail.window.tracks[0].enrichments == {"face": {"faces": 1}}
    (old,) = detail.enrichments
    assert (old.result, old.embedding) == ({"faces": 1}, None)
    camera = store.get_camera("front")
    assert camera is not None and camera.config == {"fps": 5}

    vector = np.arange(4, dtype=np.float32)
    store.add_enrichment("front-t1", 1, "reid", {}, vector, created_at=T0 + 3)
    health = store.add_event(
        EventRecord(
            "health",
            "front",
            None,
            T0 + 5,
            T0 + 5,
            0.0,
            "low",
            (),
            "health",
            "the stream stalled",
            (),
            (),
            T0 + 5,
        )
    )
    detail = store.get_event("1718000001.000000-abc123")
    assert detail is not None and detail.enrichments[-1].embedding is not None
    assert detail.enrichments[-1].embedding.tolist() == [0.0, 1.0, 2.0, 3.0]
    health_detail = store.get_event(health)
    assert health_detail is not None and health_detail.event.summary == "the stream stalled"


def test_the_models_agree_with_the_newest_migration(url: str, database: Database) -> None:
    database.upgrade()
    engine = create_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_opening_and_upgrading_at_once_and_again_changes_nothing(url: str) -> None:
    revisions: list[str | None] = []
    errors: list[BaseException] = []

    def start() -> None:  # what each process does at start
        try:
            database = open_database(url)
            database.upgrade()
            revisions.append(database.revision())
            database.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    start()
    assert revisions == [HEAD] * 4
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {*Base.metadata.tables, "alembic_version"}


def test_a_downgrade_drops_the_new_columns_and_keeps_the_rest(url: str, database: Database) -> None:
    database.upgrade()
    store = EventStore(database)
    store.put_camera("front", "Front door", "api", {}, now=T0)
    database.downgrade("0001")
    engine = create_engine(url)
    columns = {c["name"] for c in inspect(engine).get_columns("events")}
    engine.dispose()
    assert "summary" not in columns and "labels" in columns
    database.upgrade()
    assert [camera.id for camera in store.list_cameras()] == ["front"]
    database.downgrade("base")
    assert database.revision() is None


@pytest.mark.parametrize(
    "bad_url",
    [
        "mysql://root:hunter2@db/events",
        "postgresql+asyncpg://root:hunter2@db/events",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:events.db?mode=ro&uri=true",
        "not a url",
        "",
    ],
)
def test_an_unusable_database_url_is_refused_without_echoing_it(bad_url: str) -> None:
    with pytest.raises(DatabaseUrlError) as raised:
        open_database(bad_url)
    assert "hunter2" not in str(raised.value)


def test_a_postgresql_url_hides_its_password_and_uses_psycopg() -> None:
    database = open_database("postgresql://hw:hunter2@db.example:5432/events")
    assert database.url == "postgresql+psycopg://hw:***@db.example:5432/events"
    assert database.dialect == "postgresql"
    database.close()


def test_sqlite_is_opened_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/new/folder/events.db")
    database.upgrade()
    assert (tmp_path / "new/folder/events.db").is_file()
    pragmas = database.read(
        lambda session: [
            session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        ]
    )
    assert pragmas == ["wal", 1, 1, 30_000]  # synchronous 1 = NORMAL
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        database.write(
            lambda session: session.execute(
                text(
                    "INSERT INTO window_links (window_id, linked_window_id, track_id) "
                    "VALUES ('w1', 'w2', 't1')"
                )
            )
        )
    database.close()


KILLED_WRITER = """
import os, signal, sys
from hearthwatch.security.store.database import open_database
from hearthwatch.security.store.events_store import EventStore
from hearthwatch.security.store.records import FrameRecord
database = open_database(sys.argv[1])
database.upgrade()
store = EventStore(database)
for seq in range(1, 6):
    store.record_frame(FrameRecord("front", seq, 1718000000.0 + seq, 640, 480, "push"))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_what_a_killed_process_committed_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, url], capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert (tmp_path / "events.db-wal").exists()  # not checkpointed: the commits are in the log
    database = open_database(url)
    assert EventStore(database).last_seq("front") == 5
    database.close()
