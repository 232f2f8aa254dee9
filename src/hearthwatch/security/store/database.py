"""The events database: :func:`open_database` opens a SQLite file or a PostgreSQL server,
:meth:`Database.upgrade` brings its schema to the newest migration, and :meth:`Database.read` /
:meth:`Database.write` run a unit of work in one transaction.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (a killed process loses nothing committed),
foreign keys enforced and a busy timeout; its write transactions begin ``IMMEDIATE``, so
concurrent writers queue on the lock instead of failing. On PostgreSQL reads run in ``REPEATABLE
READ`` (one consistent snapshot) and a write that loses a race (unique violation, deadlock,
serialization failure) is retried from the start.

A :class:`Database` is thread-safe (SQLAlchemy's engine and pool); each unit of work gets its own
session on the calling thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from hearthwatch.security.store.errors import DatabaseUrlError

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 3
LOST_RACE_SQLSTATES = frozenset({"23505", "40001", "40P01"})
"""PostgreSQL: unique violation, serialization failure, deadlock detected."""
MIGRATION_LOCK = 0x6865_6172_7468
"""The advisory lock that keeps two processes from migrating a PostgreSQL database at once."""


def open_database(url: str) -> Database:
    """``sqlite:///path/to/events.db`` (the folder and the file are created, the file put in WAL
    mode) or ``postgresql[+psycopg]://user:password@host/dbname`` (connected lazily: the first
    :meth:`Database.upgrade` or unit of work connects)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise DatabaseUrlError("the database URL is malformed") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return Database(_sqlite_engine(parsed))
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return Database(
            create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
        )
    raise DatabaseUrlError(
        "the database URL must be sqlite:///path/to/file.db or postgresql+psycopg://..."
    )


def _sqlite_engine(url: URL) -> Engine:
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query:
        raise DatabaseUrlError("a SQLite database URL must name a file: sqlite:///path/events.db")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _use_wal(path)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below emits BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
            "synchronous = NORMAL",
            "foreign_keys = ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _use_wal(path: str) -> None:
    """Puts the SQLite file in WAL mode (a lasting property of the file), creating it if need
    be. The switch needs the file to itself and SQLite answers "locked" at once, without
    waiting, while another connection holds it, so it is retried up to the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as db:
        while True:
            try:
                (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    if mode != "wal":
        raise RuntimeError(f"SQLite cannot use WAL mode for {path} (the file system refuses)")


def _lost_race(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in LOST_RACE_SQLSTATES


class Database:
    """An open events database (see :func:`open_database`); :meth:`close` when done."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.dialect: str = engine.dialect.name
        """``sqlite`` or ``postgresql``."""
        self._reader: Engine
        self._writer: Engine
        if self.dialect == "sqlite":
            self._reader = engine
            self._writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self._reader = engine.execution_options(isolation_level="REPEATABLE READ")
            self._writer = engine

    @property
    def url(self) -> str:
        """The URL with any password hidden: fit for logs."""
        return self._engine.url.render_as_string(hide_password=True)

    def _alembic(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Migrates the schema up to ``revision``; nothing to do when it is there already, so
        safe to call at every start (also from two processes at once)."""
        with self._writer.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            command.upgrade(self._alembic(connection), revision)

    def downgrade(self, revision: str) -> None:
        """Migrates the schema down to ``revision`` (``base``: no tables)."""
        with self._writer.begin() as connection:
            command.downgrade(self._alembic(connection), revision)

    def revision(self) -> str | None:
        """The migration the schema is at; ``None`` before the first."""
        with self._engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def read(self, work: Callable[[Session], T]) -> T:
        """``work`` in one read transaction (a consistent snapshot)."""
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            return work(session)

    def write(self, work: Callable[[Session], T]) -> T:
        """``work`` in one write transaction, committed when it returns and rolled back when it
        raises; run again from the start (up to :data:`WRITE_ATTEMPTS` times) when it lost a
        race to a concurrent writer, so ``work`` must only touch the database."""
        attempt = 1
        while True:
            try:
                with Session(self._writer, expire_on_commit=False) as session, session.begin():
                    return work(session)
            except DBAPIError as exc:
                if attempt >= WRITE_ATTEMPTS or not _lost_race(exc):
                    raise
                attempt += 1

    def close(self) -> None:
        """Closes every pooled connection."""
        self._engine.dispose()
