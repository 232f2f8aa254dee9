"""Per-model inference statistics in Triton's terms, with recent latency percentiles.

One place counts; ``/v2/models/{name}/stats`` and the ``nv_inference_*`` metrics both read it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearthwatch.percentiles import Percentiles, percentiles

FAILURE_REASONS = ("REJECTED", "TIMEOUT", "CANCELED", "BACKEND", "BAD_INPUT")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class _BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(frozen=True)
class StageTimes:
    """Seconds a batch spent in each stage of the model."""

    input_s: float
    infer_s: float
    output_s: float


class ModelStats:
    """Thread-safe counters of one model; the worker thread and the event loop both write."""

    def __init__(self, name: str, version: str = "1", window: int = 10_000):
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self.success = Duration()
        self.fail = Duration()
        self.failures_by_reason = dict.fromkeys(FAILURE_REASONS, 0)
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self._batches: dict[int, _BatchStats] = {}
        self._latencies_ms: deque[float] = deque(maxlen=window)

    def record_batch(self, batch_size: int, stages: StageTimes) -> None:
        with self._lock:
            self.execution_count += 1
            self.inference_count += batch_size
            self.last_inference_ms = int(time.time() * 1000)
            batch = self._batches.setdefault(batch_size, _BatchStats())
            batch.compute_input.add(stages.input_s)
            batch.compute_infer.add(stages.infer_s)
            batch.compute_output.add(stages.output_s)

    def record_success(self, total_s: float, queue_s: float, stages: StageTimes) -> None:
        with self._lock:
            self.success.add(total_s)
            self.queue.add(queue_s)
            self.compute_input.add(stages.input_s)
            self.compute_infer.add(stages.infer_s)
            self.compute_output.add(stages.output_s)
            self._latencies_ms.append(total_s * 1000)

    def record_failure(self, reason: str, total_s: float) -> None:
        if reason not in self.failures_by_reason:
            raise ValueError(f"unknown failure reason {reason!r}; known: {FAILURE_REASONS}")
        with self._lock:
            self.fail.add(total_s)
            self.failures_by_reason[reason] += 1

    def percentiles_ms(self) -> Percentiles:
        """End-to-end latency of the last ``window`` successes, in milliseconds."""
        with self._lock:
            values = np.fromiter(self._latencies_ms, float)
        return percentiles(values)

    def triton_stats(self) -> dict[str, Any]:
        """This model's entry of Triton's ``model_stats`` list."""
        with self._lock:
            entry: dict[str, Any] = {
                "name": self.name,
                "version": self.version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.as_dict(),
                    "fail": self.fail.as_dict(),
                    "queue": self.queue.as_dict(),
                    "compute_input": self.compute_input.as_dict(),
                    "compute_infer": self.compute_infer.as_dict(),
                    "compute_output": self.compute_output.as_dict(),
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": b.compute_input.as_dict(),
                        "compute_infer": b.compute_infer.as_dict(),
                        "compute_output": b.compute_output.as_dict(),
                    }
                    for size, b in sorted(self._batches.items())
                ],
                "failures_by_reason": dict(self.failures_by_reason),
            }
        entry["latency_ms"] = self.percentiles_ms()
        return entry
