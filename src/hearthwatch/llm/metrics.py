"""Prometheus metrics of the LLM gateway, and the recent TTFT and tokens/s samples that
``GET /v1/performance/targets`` reports next to the profile's targets."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500)


class LlmMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        active: Callable[[], int],
        queued: Callable[[], int],
        window: int = 1000,
    ):
        self.ttft = Histogram(
            "hearthwatch_llm_ttft_seconds",
            "Time to first token, request arrival to the first streamed token",
            buckets=TTFT_BUCKETS_S,
            registry=registry,
        )
        self.tokens_per_second = Histogram(
            "hearthwatch_llm_output_tokens_per_second",
            "Output tokens per second of each request after its first token",
            buckets=TPS_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "hearthwatch_llm_requests", "LLM requests by outcome", ["status"], registry=registry
        )
        self.prompt_tokens = Counter(
            "hearthwatch_llm_prompt_tokens", "Prompt tokens processed", registry=registry
        )
        self.completion_tokens = Counter(
            "hearthwatch_llm_completion_tokens", "Completion tokens generated", registry=registry
        )
        self.engine_restarts = Counter(
            "hearthwatch_llm_engine_restarts",
            "Engine restarts by the supervisor",
            registry=registry,
        )
        Gauge(
            "hearthwatch_llm_active_sessions", "Requests running on the engine", registry=registry
        ).set_function(active)
        Gauge(
            "hearthwatch_llm_queue_depth", "Requests waiting for a session", registry=registry
        ).set_function(queued)
        self._lock = threading.Lock()
        self._ttft_ms: deque[float] = deque(maxlen=window)
        self._tps: deque[float] = deque(maxlen=window)

    def observe(self, ttft_s: float | None, tokens_per_s: float | None) -> None:
        with self._lock:
            if ttft_s is not None:
                self.ttft.observe(ttft_s)
                self._ttft_ms.append(ttft_s * 1000)
            if tokens_per_s is not None:
                self.tokens_per_second.observe(tokens_per_s)
                self._tps.append(tokens_per_s)

    def measured(self) -> dict[str, float | int | None]:
        with self._lock:
            ttft = np.fromiter(self._ttft_ms, float)
            tps = np.fromiter(self._tps, float)
        return {
            "ttft_p50_ms": float(np.percentile(ttft, 50)) if ttft.size else None,
            "ttft_p99_ms": float(np.percentile(ttft, 99)) if ttft.size else None,
            "output_tokens_per_s_p50": float(np.percentile(tps, 50)) if tps.size else None,
            "samples": int(ttft.size),
        }
