"""The events store: what the pipeline records (frames, detections, tracks, windows,
enrichments) and the events analysers make of it, in SQLite or PostgreSQL through SQLAlchemy,
with Alembic migrations and retention.

- :mod:`.database`: :func:`open_database`, :class:`Database` (upgrade, transactions);
- :mod:`.events_store`: :class:`EventStore`, the repository the pipeline and the API use;
- :mod:`.records`: the frozen dataclasses it takes and answers, checked by :mod:`.validation`;
  :mod:`.errors`: its errors;
- :mod:`.retention`: :func:`apply_retention`;
- :mod:`.schema`: the tables (SQLAlchemy models), ``migrations/``: their history;
- :mod:`.json_lists`: a filter on JSON list columns for both databases.

Its modules import SQLAlchemy and Alembic (the pipeline imports them only when it is
enabled). Thread safety is stated per module; the store and the database are thread-safe.
"""
