"""/metrics, /api/system/gpu, its history and the /ws/system push."""

from __future__ import annotations

import json
import time

import httpx
from conftest import Server
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from hearthwatch.runtime.observability.metrics import ServingMetrics
from hearthwatch.runtime.observability.telemetry import GpuReading, SystemSample


def test_metrics_expose_triton_names_and_histograms(hog_server: Server) -> None:
    text = httpx.get(f"{hog_server.url}/metrics").text
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    expected = {
        "nv_inference_request_success": "counter", "nv_inference_request_failure": "counter",
        "nv_inference_count": "counter", "nv_inference_exec_count": "counter",
        "nv_inference_queue_duration_us": "counter",
        "nv_inference_compute_infer_duration_us": "counter",
        "nv_inference_pending_request_count": "gauge",
        "hearthwatch_request_duration_seconds": "histogram", "hearthwatch_batch_size": "histogram",
    }  # fmt: skip
    assert {name: types.get(name) for name in expected} == expected
    assert 'nv_inference_request_failure{model="detector",reason="REJECTED",version="1"}' in text


def test_gpu_families_render_each_gpu_under_triton_names() -> None:
    reading = GpuReading(0, "H100", "GPU-1", 42.0, 5 * 2**30, 80 * 2**30, 51.0, 300.0, 700.0)
    sample = SystemSample(0.0, [reading], 0.1, 1)
    text = ServingMetrics(lambda: [], lambda: sample).render().decode()
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("gpu_uuid") == "GPU-1"
    }
    assert values["nv_gpu_utilization"] == 0.42
    assert values["nv_gpu_memory_used_bytes"] == 5 * 2**30
    assert values["nv_gpu_memory_total_bytes"] == 80 * 2**30
    assert values["nv_gpu_power_usage"] == 300.0


def test_gpu_sample_on_a_cpu_host_says_so(hog_server: Server) -> None:
    sample = httpx.get(f"{hog_server.url}/api/system/gpu").json()
    assert sample["gpu_available"] is False and sample["gpus"] == []
    assert sample["process_max_rss_bytes"] > 0


def test_history_holds_one_sample_a_second(hog_server: Server) -> None:
    """Samples come in order, never closer than the interval, keep coming, and the median gap
    is near the interval (a loose bound: a loaded machine may delay the sampler)."""
    url = f"{hog_server.url}/api/system/gpu/history?minutes=1"
    deadline = time.monotonic() + 60
    while len((reply := httpx.get(url)).json()["samples"]) < 3:
        assert time.monotonic() < deadline, "fewer than three samples in a minute"
        time.sleep(0.5)
    assert reply.status_code == 200 and reply.json()["interval_s"] == 1.0
    stamps = [s["timestamp"] for s in reply.json()["samples"]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(gaps) >= 2 and min(gaps) >= 0.95, gaps
    assert sorted(gaps)[len(gaps) // 2] < 5.0, gaps  # about one a second, not one in 15
    while httpx.get(url).json()["samples"][-1]["timestamp"] == stamps[-1]:
        assert time.monotonic() < deadline, "no new sample"
        time.sleep(0.2)


def test_history_minutes_are_validated(hog_server: Server) -> None:
    for bad in ("0", "-3", "abc", "100000"):
        reply = httpx.get(f"{hog_server.url}/api/system/gpu/history?minutes={bad}")
        assert reply.status_code == 400, bad
        assert "minutes" in reply.json()["error"]


def test_websocket_pushes_a_sample_each_second(hog_server: Server) -> None:
    """Each push is a new sample, taken an interval or more after the one before."""
    with connect(f"ws://127.0.0.1:{hog_server.port}/ws/system", open_timeout=30) as socket:
        first, second, third = (json.loads(socket.recv(timeout=30)) for _ in range(3))
    assert {"timestamp", "gpus", "gpu_available", "inferences_per_second"} <= set(first)
    assert first["timestamp"] < second["timestamp"]
    assert third["timestamp"] - second["timestamp"] >= 0.95
