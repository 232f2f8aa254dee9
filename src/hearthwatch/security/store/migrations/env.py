"""Alembic's entry point: migrates the connection that
:meth:`~hearthwatch.security.store.database.Database.upgrade` hands over in
``config.attributes["connection"]``, inside that connection's transaction. There is no offline
(SQL script) mode and no ``alembic.ini``. Runs on the thread that called ``upgrade``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hearthwatch.security.store.schema import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the events store's migrations through Database.upgrade()")
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
