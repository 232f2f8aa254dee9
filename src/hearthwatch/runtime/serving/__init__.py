"""Serving a model: the dynamic batcher (:mod:`.batcher`, with :mod:`.isolation` bisecting a
failed batch), a detector served behind it (:mod:`.served_model`) and its per-model statistics
in Triton's terms (:mod:`.stats`).

Threading:

- :class:`~.batcher.DynamicBatcher`: ``submit`` and ``submit_many`` are awaited on one event
  loop; ``start``, ``drain`` and ``stop`` may be called from any thread (all shared state is
  under one condition variable); ``run_batch`` runs on its worker thread (or where it hands
  its work to), never on the loop.
- :class:`~.served_model.ServedModel`: its coroutines (``intake``, ``infer``, ``infer_many``)
  run on the event loop; ``start`` and ``stop`` on one thread at a time; the detector runs on
  the batcher's worker thread and, with ``overlap``, a device thread.
- :class:`~.stats.ModelStats`: thread-safe (a lock; the worker thread and the loop both write).
- :func:`~.isolation.isolate_failures`: a pure function on the calling thread.
"""
