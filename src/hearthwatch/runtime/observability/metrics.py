"""Prometheus metrics: Triton-named inference and GPU metrics rendered from each model's
statistics (:class:`~hearthwatch.runtime.serving.stats.ModelStats`, or anything else with its
``triton_stats``) and telemetry, plus histograms of end-to-end latency and batch size.

The Triton families are written by :func:`_exposition` rather than prometheus_client, which
would rename every counter family to ``<name>_total``; Triton's dashboards use the bare names.
Each model's counters are read as one snapshot taken under its stats lock
(``triton_stats``), so a scrape never mixes two updates. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from hearthwatch.runtime.observability.telemetry import SystemSample

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class TritonStats(Protocol):
    """A model's statistics as Triton reports them (its ``model_stats`` entry), read as one
    consistent snapshot."""

    def triton_stats(self) -> dict[str, Any]: ...


ModelsProvider = Callable[[], Iterable[tuple[TritonStats, int]]]
SampleProvider = Callable[[], SystemSample]


def _metric(name: str, doc: str, kind: str) -> Metric:
    return Metric(name, doc, kind)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _exposition(metrics: Iterable[Metric]) -> bytes:
    """Text exposition format 0.0.4, family and sample names exactly as given."""
    lines = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.documentation}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for sample in metric.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


class _TritonFamilies:
    """``nv_inference_*`` per model and ``nv_gpu_*`` per GPU, under Triton's exact names."""

    def __init__(self, models: ModelsProvider, sample: SampleProvider | None):
        self._models = models
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        yield from self._inference_metrics()
        if self._sample is not None:
            yield from self._gpu_metrics(self._sample())

    def _inference_metrics(self) -> Iterator[Metric]:
        specs = {
            "nv_inference_request_success": ("Successful inference requests", "counter"),
            "nv_inference_request_failure": ("Failed inference requests, by reason", "counter"),
            "nv_inference_count": ("Inferences performed (batch items)", "counter"),
            "nv_inference_exec_count": ("Model executions (batches)", "counter"),
            "nv_inference_request_duration_us": ("Cumulative request duration", "counter"),
            "nv_inference_queue_duration_us": ("Cumulative queue time", "counter"),
            "nv_inference_compute_input_duration_us": ("Cumulative input time", "counter"),
            "nv_inference_compute_infer_duration_us": ("Cumulative infer time", "counter"),
            "nv_inference_compute_output_duration_us": ("Cumulative output time", "counter"),
            "nv_inference_pending_request_count": ("Requests queued or running", "gauge"),
        }
        metrics = {name: _metric(name, doc, kind) for name, (doc, kind) in specs.items()}
        for stats, pending in self._models():
            snapshot = stats.triton_stats()  # consistent: taken under the stats lock
            timing = {k: v["ns"] for k, v in snapshot["inference_stats"].items()}
            labels = {"model": snapshot["name"], "version": snapshot["version"]}

            def add(
                name: str,
                value: float,
                extra: dict[str, str] | None = None,
                labels: dict[str, str] = labels,
            ) -> None:
                metrics[name].add_sample(name, {**labels, **(extra or {})}, value)

            add("nv_inference_request_success", snapshot["inference_stats"]["success"]["count"])
            for reason, count in snapshot["failures_by_reason"].items():
                add("nv_inference_request_failure", count, {"reason": reason})
            add("nv_inference_count", snapshot["inference_count"])
            add("nv_inference_exec_count", snapshot["execution_count"])
            add("nv_inference_request_duration_us", (timing["success"] + timing["fail"]) / 1000)
            add("nv_inference_queue_duration_us", timing["queue"] / 1000)
            add("nv_inference_compute_input_duration_us", timing["compute_input"] / 1000)
            add("nv_inference_compute_infer_duration_us", timing["compute_infer"] / 1000)
            add("nv_inference_compute_output_duration_us", timing["compute_output"] / 1000)
            add("nv_inference_pending_request_count", pending)
        yield from metrics.values()

    def _gpu_metrics(self, sample: SystemSample) -> Iterator[Metric]:
        fields = {
            "nv_gpu_utilization": ("GPU utilization rate [0.0 - 1.0)", "utilization_percent", 0.01),
            "nv_gpu_memory_used_bytes": ("GPU used memory (bytes)", "memory_used_bytes", 1.0),
            "nv_gpu_memory_total_bytes": ("GPU total memory (bytes)", "memory_total_bytes", 1.0),
            "nv_gpu_power_usage": ("GPU power usage in watts", "power_w", 1.0),
            "nv_gpu_power_limit": ("GPU power limit in watts", "power_limit_w", 1.0),
            "hearthwatch_gpu_temperature_celsius": ("GPU temperature", "temperature_c", 1.0),
        }
        for name, (doc, attr, scale) in fields.items():
            metric = _metric(name, doc, "gauge")
            for gpu in sample.gpus:
                value = getattr(gpu, attr)
                if value is not None:
                    metric.add_sample(name, {"gpu_uuid": gpu.uuid}, float(value) * scale)
            yield metric


class ServingMetrics:
    """The process's metrics registry."""

    def __init__(self, models: ModelsProvider, sample: SampleProvider | None = None):
        self._triton = _TritonFamilies(models, sample)
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_duration = Histogram(
            "hearthwatch_request_duration_seconds",
            "End-to-end request latency, decode to response",
            ["model", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "hearthwatch_batch_size",
            "Requests per model execution",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.startup_seconds = Gauge(
            "hearthwatch_model_startup_seconds",
            "Seconds a model took to start: build (load, compile set-up) and warm-up",
            ["model", "phase"],
            registry=self.registry,
        )
        self.optimization_fallbacks = Counter(
            "hearthwatch_optimization_fallback",
            "Optimisation passes that failed and fell back to the plain path",
            ["model", "optimization"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return _exposition(self._triton.collect()) + generate_latest(self.registry)
