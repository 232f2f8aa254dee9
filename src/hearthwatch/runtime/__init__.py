"""The generic serving core: devices, model sources, optimisation passes, dynamic batching,
telemetry and metrics. Knows nothing of HTTP or of the security application."""
