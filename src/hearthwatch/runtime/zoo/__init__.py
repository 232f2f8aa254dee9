"""The memory-budgeted model zoo: models load on demand under a byte budget and are evicted
lowest priority first (:mod:`.registry`, :class:`~.registry.ModelZoo`), PyTorch loaders that
measure footprints and keep evicted models on the host (:mod:`.loader`), the budget and memory
measurements (:mod:`.memory`) and the zoo's Prometheus families (:mod:`.metrics`).

Threading: :class:`~.registry.ModelZoo` is event-loop-confined (call it from the one loop that
runs it), and so is :class:`~.metrics.ZooCollector`, which reads its table at scrape time on
that loop (the ``/metrics`` route). A loader's functions run in the zoo's worker threads,
never twice at once for one model; :mod:`.memory` is safe from any thread (GPU loads take its
process-wide lock).
"""
