"""People's feedback on events: a verdict (a false alarm, or confirmed) and a note, stored per
event and removed with it, and read back for export as labelled scenarios.

:class:`FeedbackStore` is thread-safe (each call is its own transaction on the thread-safe
:class:`~hearthwatch.security.store.database.Database`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthwatch.security.store.database import Database
from hearthwatch.security.store.errors import InvalidRecordError, UnknownReferenceError
from hearthwatch.security.store.schema import Event, Feedback
from hearthwatch.security.store.validation import (
    MAX_INT64,
    check_choice,
    check_id,
    check_int,
    check_text,
    check_time,
)

Verdict = Literal["false_alarm", "confirmed"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
MAX_NOTE_CHARS = 2_000
MAX_PAGE = 1_000


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    event_id: str
    verdict: Verdict
    note: str
    created_at: float


class FeedbackStore:
    def __init__(self, database: Database):
        self._database = database

    def add(self, event_id: str, verdict: Verdict, note: str, *, created_at: float) -> FeedbackRow:
        """Stores a verdict on a window event; :class:`UnknownReferenceError` for no such
        event, :class:`InvalidRecordError` for a health event or a bad field."""
        check_id("event_id", event_id)
        check_choice("verdict", verdict, VERDICTS)
        check_text("note", note, MAX_NOTE_CHARS, empty=True)
        check_time("created_at", created_at)

        def add(session: Session) -> FeedbackRow:
            event = session.get(Event, event_id)
            if event is None:
                raise UnknownReferenceError(f"no event {event_id}")
            if event.kind != "window":
                raise InvalidRecordError("feedback is for window events, not health events")
            row = Feedback(event_id=event_id, verdict=verdict, note=note, created_at=created_at)
            session.add(row)
            session.flush()
            return _row(row)

        return self._database.write(add)

    def list(
        self, *, event_id: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[FeedbackRow]:
        """Feedback oldest first, with ids above ``after_id``, of one event (which must
        exist: :class:`UnknownReferenceError`) or all."""
        check_int("after_id", after_id, 0, MAX_INT64)
        check_int("limit", limit, 1, MAX_PAGE)
        statement = select(Feedback).where(Feedback.id > after_id)
        if event_id is not None:
            check_id("event_id", event_id)
            statement = statement.where(Feedback.event_id == event_id)
        statement = statement.order_by(Feedback.id).limit(limit)

        def read(session: Session) -> list[FeedbackRow]:
            if event_id is not None and session.get(Event, event_id) is None:
                raise UnknownReferenceError(f"no event {event_id}")
            return [_row(row) for row in session.scalars(statement)]

        return self._database.read(read)

    def latest_verdicts(self) -> dict[str, FeedbackRow]:
        """Per event with feedback, its latest verdict (a later one overrides an earlier), in
        the order of those latest verdicts."""
        statement = select(Feedback).order_by(Feedback.id)
        latest: dict[str, FeedbackRow] = {}
        for row in self._database.read(lambda s: [_row(r) for r in s.scalars(statement)]):
            latest.pop(row.event_id, None)
            latest[row.event_id] = row
        return latest


def _row(row: Feedback) -> FeedbackRow:
    return FeedbackRow(row.id, row.event_id, row.verdict, row.note, row.created_at)  # type: ignore[arg-type]
