"""A throwaway PostgreSQL server for tests: initialised in a fresh temporary directory, listening
on a free loopback port only (no Unix socket), tuned for speed over durability, removed on stop.

The server binaries come from the Debian packages (``scripts/services/postgresql.sh`` installs
them), or from the folder ``HEARTHWATCH_PG_BIN`` names. PostgreSQL refuses to run as root, so a
root test run starts it as the unprivileged ``postgres`` user the Debian package creates (or
``nobody``). :meth:`PostgresServer.new_database` makes an empty database;
:meth:`PostgresServer.empty_tables` empties one between tests (cheaper than a new one).

:func:`started_or_skip` is what a module-scoped fixture yields: where no server can be started it
skips the test with the reason, except in CI (``CI`` set to a true value), where it fails.

A server object is confined to the thread that started it (pytest's).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 30.0
SUPERUSER = "postgres"
SPEED_OVER_SAFETY = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=60",
    "shared_buffers=32MB",
    "listen_addresses=127.0.0.1",
    "unix_socket_directories=",
)


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``: ``HEARTHWATCH_PG_BIN`` if set, else the
    newest Debian-packaged version, else wherever ``pg_config`` says."""
    named = os.environ.get("HEARTHWATCH_PG_BIN")
    if named:
        candidates = [Path(named)]
    else:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
            reverse=True,
        )
        pg_config = shutil.which("pg_config")
        found = pg_config and subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True
        )
        if found and found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresUnavailableError(
        "no PostgreSQL server binaries (initdb, postgres) found; run "
        "scripts/services/postgresql.sh or set HEARTHWATCH_PG_BIN"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the server: ``None`` (this process's user) unless this process is root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailableError("running as root, and neither a postgres nor a nobody user")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One running server; use as a context manager (or call :meth:`stop`)."""

    def __init__(self) -> None:
        self._bin = server_binaries()
        self._user = _unprivileged_user()
        # under /tmp itself: pytest's own temporary folders are private to root
        self._root = Path(tempfile.mkdtemp(prefix="hearthwatch-pg-", dir="/tmp"))
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self.port = 0
        try:
            self._initdb()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _as_server_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    @property
    def _data(self) -> Path:
        return self._root / "data"

    @property
    def _log(self) -> Path:
        return self._root / "server.log"

    def _initdb(self) -> None:
        if self._user is not None:
            os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
        command = [
            str(self._bin / "initdb"),
            "-D",
            str(self._data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=self._root, **self._as_server_user()
        )
        if done.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed: {(done.stdout + done.stderr)[-2000:]}")

    def _start(self) -> None:
        for _attempt in range(3):  # a free port may be taken between the check and the bind
            self.port = _free_port()
            settings = [arg for setting in SPEED_OVER_SAFETY for arg in ("-c", setting)]
            with open(self._log, "ab") as log:
                self._process = subprocess.Popen(
                    [
                        str(self._bin / "postgres"),
                        "-D",
                        str(self._data),
                        "-p",
                        str(self.port),
                        *settings,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._root,
                    **self._as_server_user(),
                )
            if self._wait_ready():
                return
        raise PostgresUnavailableError(f"postgres did not start: {self._log_tail()}")

    def _wait_ready(self) -> bool:
        import psycopg

        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                psycopg.connect(self._dsn("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self._process.kill()
        self._process.wait()
        return False

    def _log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Creates an empty database and answers its SQLAlchemy URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def empty_tables(self, url: str) -> None:
        """Empties every table of the database at ``url`` but Alembic's version table, and
        restarts its id sequences: a migrated database made fresh again, in milliseconds."""
        import psycopg

        with psycopg.connect(self._dsn(url.rsplit("/", 1)[1]), autocommit=True) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                names = ", ".join(f'"{table}"' for table in tables)
                connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")

    def stop(self) -> None:
        """Fast shutdown (clients disconnected), then the directory removed."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def started_or_skip() -> Iterator[PostgresServer]:
    """A running server for the ``with`` block; where none starts, the test is skipped with
    the reason, or fails in CI."""
    try:
        server = PostgresServer()
    except PostgresUnavailableError as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is needed in CI: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc}")
    with server:
        yield server
