"""Observability: Prometheus metrics (:mod:`.metrics`: Triton's ``nv_inference_*`` and
``nv_gpu_*`` families, latency and batch-size histograms) and GPU and host telemetry
(:mod:`.telemetry`: NVML readings, a ring buffer sampled by a background thread).

Threading: :class:`~.metrics.ServingMetrics` is thread-safe (prometheus_client's metrics are;
each model's counters are read as one snapshot under its stats lock).
:class:`~.telemetry.TelemetrySampler` samples on its own thread; ``latest`` and ``history``
are safe from any thread (a lock), and ``start`` and ``stop`` are called by one thread at a
time.
"""
