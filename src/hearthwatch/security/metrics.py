"""The camera pipeline's Prometheus metrics: per-camera frame counts (in, skipped by motion,
deduplicated, dropped, corrupt, detected, failed) read at scrape time from each camera's
counters (one source of truth for ``/metrics`` and ``/api/cameras/{id}/status``), camera
health, queue depth and open windows; and, written as they happen, window close latency and
events by level.

Thread-safe (prometheus_client's own locking; the collector reads thread-safe counters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hearthwatch.security.camera import COUNTERS
from hearthwatch.security.evidence import LEVELS, Analysis

HEALTH_STATES = ("online", "offline", "tampered")
CLOSE_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class CameraReading(Protocol):
    """What the collector reads of one camera."""

    @property
    def camera_id(self) -> str: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def health(self) -> str: ...

    @property
    def open_windows(self) -> int: ...


class _PipelineCollector:
    def __init__(self, read: Callable[[], tuple[Iterable[CameraReading], int]]):
        self._read = read

    def collect(self) -> Iterator[Metric]:
        cameras, queue_depth = self._read()
        frames = {
            name: CounterMetricFamily(
                f"hearthwatch_camera_{name if name.startswith('frames_') else 'frames_' + name}",
                f"Frames per camera: {name.replace('_', ' ')}.",
                labels=["camera"],
            )
            for name in COUNTERS
        }
        health = GaugeMetricFamily(
            "hearthwatch_camera_health",
            "1 for the camera's present health state (online, offline, tampered).",
            labels=["camera", "state"],
        )
        windows = GaugeMetricFamily(
            "hearthwatch_camera_open_windows", "Windows open per camera.", labels=["camera"]
        )
        for camera in cameras:
            counts = camera.counts
            for name, family in frames.items():
                family.add_metric([camera.camera_id], counts[name])
            for state in HEALTH_STATES:
                health.add_metric([camera.camera_id, state], float(camera.health == state))
            windows.add_metric([camera.camera_id], camera.open_windows)
        yield from frames.values()
        yield health
        yield windows
        yield GaugeMetricFamily(
            "hearthwatch_detection_queue_depth",
            "Frames admitted for detection and not yet done, all cameras.",
            value=queue_depth,
        )


class PipelineMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        read: Callable[[], tuple[Iterable[CameraReading], int]],
    ):
        registry.register(_PipelineCollector(read))  # type: ignore[arg-type]
        self.events = Counter(
            "hearthwatch_events", "Events stored, by level.", ["level"], registry=registry
        )
        for level in LEVELS:
            self.events.labels(level)
        self.health_events = Counter(
            "hearthwatch_camera_health_events",
            "Camera health events (offline, tampered).",
            ["camera", "state"],
            registry=registry,
        )
        self.analyses = Counter(
            "hearthwatch_risk_analyses",
            "Windows analysed, by the analyser that scored them and whether it was a fallback "
            "(outcome: ok, fallback).",
            ["analyser", "outcome"],
            registry=registry,
        )
        self.dropped_reasons = Counter(
            "hearthwatch_risk_dropped_reasons",
            "Reasons of an analyser's answer dropped for citing ids the window does not hold.",
            registry=registry,
        )
        self.early_alerts = Counter(
            "hearthwatch_early_alerts",
            "Provisional events raised by a critical trigger before their window closed.",
            registry=registry,
        )
        self.window_close_latency = Histogram(
            "hearthwatch_window_close_latency_seconds",
            "From a window's close to its event stored (analysis, snapshot and clip).",
            buckets=CLOSE_LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe_analysis(self, analysis: Analysis) -> None:
        """Count a window's analysis: who scored it and the reasons it dropped."""
        fallback = "fallback_from" in analysis.details
        self.analyses.labels(analysis.analyser, "fallback" if fallback else "ok").inc()
        dropped = analysis.details.get("dropped_reasons", 0)
        if isinstance(dropped, int) and dropped > 0:
            self.dropped_reasons.inc(dropped)
