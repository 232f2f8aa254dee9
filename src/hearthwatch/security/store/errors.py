"""The errors the events store raises on purpose, each of one of the runtime's error kinds (see
:mod:`hearthwatch.runtime.errors`) so the HTTP layer maps them without knowing these classes:
bad input and bad queries are :class:`InvalidInputError` (HTTP 400), a missing thing named by
a record is :class:`NotFoundError`, a window in the wrong state is :class:`ConflictError`.

Messages say what was wrong with the input, never anything of the database. Plain data: safe on
any thread.
"""

from __future__ import annotations

from hearthwatch.runtime.errors import ConflictError, InvalidInputError, NotFoundError


class InvalidRecordError(InvalidInputError):
    """A record handed to the store has a missing, malformed or out-of-range field."""


class InvalidQueryError(InvalidInputError):
    """A query's filter or limit is malformed or out of range."""


class BadCursorError(InvalidQueryError):
    """A pagination cursor the store did not hand out (malformed, or tampered with)."""


class UnknownReferenceError(NotFoundError):
    """A record names a camera, window, track or detection the store does not hold."""


class WindowStateError(ConflictError):
    """The window is not in the state the operation needs (open for new detections, closed
    for evidence and events)."""


class DatabaseUrlError(ValueError):
    """The database URL is not one the store can open (SQLite file or PostgreSQL)."""
