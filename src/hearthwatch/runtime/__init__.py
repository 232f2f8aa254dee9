"""The generic serving core: any PyTorch/ONNX vision model served with dynamic batching, on
the device the host has. Knows nothing of HTTP, of the security application or of the LLM.

Sub-packages, from the bottom up (each imports only those before it; ``tests/test_layers.py``
checks it): :mod:`~hearthwatch.runtime.errors` (the error base class and its kinds),
``observability`` (Prometheus metrics, NVML telemetry), ``imaging`` (decode and preprocessing),
``accel`` (device choice, optimisation passes, CUDA graphs and streams), ``detection`` (the
Detections type and the detector plugins), ``serving`` (the dynamic batcher, the served model
and its statistics), ``zoo`` (the memory-budgeted model zoo) and ``enrichment`` (enrichment
plugins and the service that batches crops through the zoo).

Threading, in one line: model code runs on worker threads, never on the event loop; what a
request awaits (a batcher's submit, the zoo, the enrichment service) is confined to the one
event loop that serves; statistics, metrics, telemetry and pure functions are thread-safe.
Each sub-package's docstring says which of its objects is which.
"""
