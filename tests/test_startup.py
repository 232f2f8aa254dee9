"""Start-up of the services: a part that fails to start stops what started before it, and the
metrics read each model's counters as one consistent snapshot under its lock."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from hearthwatch.app.services import Services
from hearthwatch.config import Settings
from hearthwatch.runtime.imaging.decode_pool import DecodePool
from hearthwatch.runtime.observability.metrics import ServingMetrics
from hearthwatch.runtime.observability.telemetry import TelemetrySampler
from hearthwatch.runtime.serving.stats import ModelStats


class Part:
    """A service part that records its calls and can fail to start."""

    def __init__(self, log: list[str], name: str, fails: bool = False) -> None:
        self.log, self.name, self.fails = log, name, fails

    def start(self, **_: Any) -> None:
        self.log.append(f"start {self.name}")
        if self.fails:
            raise RuntimeError(f"{self.name} failed to start")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def _services(log: list[str], **parts: Part) -> Services:
    telemetry = TelemetrySampler(60.0, use_gpu=False)
    llm = SimpleNamespace(supervisor=parts["engine"]) if "engine" in parts else None
    return Services(
        Settings(use_gpu=False, warmup=False),
        device=None,  # type: ignore[arg-type]
        telemetry=telemetry,
        metrics=ServingMetrics(lambda: []),
        decoder=DecodePool(workers=1, max_pixels=1000),
        models={n: p for n, p in parts.items() if n.startswith("model")},  # type: ignore[misc]
        llm=llm,  # type: ignore[arg-type]
        enrichment=parts.get("enrichment"),  # type: ignore[arg-type]
    )


def test_a_failed_start_stops_what_had_started_in_reverse_order() -> None:
    log: list[str] = []
    services = _services(
        log,
        model_a=Part(log, "model_a"),
        model_b=Part(log, "model_b", fails=True),
        engine=Part(log, "engine"),
    )
    with pytest.raises(RuntimeError, match="model_b failed"):
        services.start()
    # model_b is stopped too: it may have started threads before it failed
    assert log == ["start model_a", "start model_b", "stop model_b", "stop model_a"]
    assert services.telemetry._thread is None  # the sampler thread is gone


def test_an_engine_that_fails_to_start_is_stopped_with_everything_before_it() -> None:
    log: list[str] = []
    services = _services(
        log,
        model_a=Part(log, "model_a"),
        enrichment=Part(log, "enrichment"),
        engine=Part(log, "engine", fails=True),
    )
    with pytest.raises(RuntimeError, match="engine failed"):
        services.start()
    assert log[-3:] == ["stop engine", "stop enrichment", "stop model_a"]


def test_the_triton_families_read_a_model_under_its_lock() -> None:
    stats = ModelStats("m")
    metrics = ServingMetrics(lambda: [(stats, 0)])
    rendered: list[bytes] = []
    with stats._lock:  # a writer in the middle of an update
        reader = threading.Thread(target=lambda: rendered.append(metrics.render()))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "the metrics read the counters while a writer held the lock"
    reader.join(10)
    assert b'nv_inference_request_success{model="m",version="1"} 0.0' in rendered[0]
