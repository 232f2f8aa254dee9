"""Alembic migrations of the events store, run only through
:meth:`hearthwatch.security.store.database.Database.upgrade` (a package so it ships in the
wheel)."""
