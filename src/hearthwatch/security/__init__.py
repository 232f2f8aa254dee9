"""The home-security application on top of the serving core: cameras and their sources, the
motion gate, tracking, zones, per-camera windows, analysers, media and the events store.

The server imports this package only when the camera pipeline is enabled (``PIPELINE_ENABLED``);
with it off, none of its dependencies (SQLAlchemy, Alembic, PyAV) are imported. It talks to
models only through :mod:`hearthwatch.runtime`.

Threading: each module says which of its objects are event-loop-confined (the pipeline, its
windows and trackers), confined to one thread (a source's reader or watcher) or thread-safe (the
store, the spool, counters, plain data).
"""
