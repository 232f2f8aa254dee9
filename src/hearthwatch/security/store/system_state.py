"""Settings changed at run time that must outlive a restart (the arm mode), as JSON values by
key. :class:`SystemStateStore` is thread-safe (each call is its own transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hearthwatch.security.store.database import Database
from hearthwatch.security.store.schema import SystemState
from hearthwatch.security.store.validation import check_json_object, check_text, check_time

MAX_KEY_CHARS = 64


class SystemStateStore:
    def __init__(self, database: Database):
        self._database = database

    def get(self, key: str) -> Any:
        """The value stored under ``key``; None when there is none."""
        check_text("key", key, MAX_KEY_CHARS)
        row = self._database.read(lambda session: session.get(SystemState, key))
        return None if row is None else row.value

    def put(self, key: str, value: Any, *, now: float) -> None:
        """Stores ``value`` (any JSON value) under ``key``, replacing what was there."""
        check_text("key", key, MAX_KEY_CHARS)
        stored = check_json_object("value", {"value": value})["value"]
        check_time("now", now)

        def put(session: Session) -> None:
            row = session.get(SystemState, key, with_for_update=True)
            if row is None:
                session.add(SystemState(key=key, value=stored, updated_at=now))
            else:
                row.value, row.updated_at = stored, now

        self._database.write(put)
