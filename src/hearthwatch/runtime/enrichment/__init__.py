"""Enrichment: the models file (``models.yml``, :mod:`.catalog`), the enrichment plugins keyed
by ``type`` (:mod:`.registry`; one config class and one hook class per model type: threat,
pose, clothing, vehicle, pet, re-identification, depth) and the service that runs every model
a request's detections trigger, each through the model zoo and its own dynamic batcher
(:mod:`.service`).

Threading: :class:`~.service.EnrichmentService` is event-loop-confined (as its zoo is); its
``start``, ``drain`` and ``stop`` may be called from the lifespan's thread. An
:class:`~.base.Enricher`'s hooks run on its model's batcher worker thread, one batch at a time.
Configs and the catalog are immutable data and :func:`~.catalog.load_catalog` a pure function,
safe from any thread.
"""
