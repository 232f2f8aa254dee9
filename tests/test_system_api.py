"""/metrics, /api/system/gpu, its history and the /ws/system push."""

from __future__ import annotations

import json

import httpx
from conftest import Server
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from hearthwatch.runtime.metrics import ServingMetrics
from hearthwatch.runtime.telemetry import GpuReading, SystemSample


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
    reply = httpx.get(f"{hog_server.url}/api/system/gpu/history?minutes=1")
    assert reply.status_code == 200
    samples = reply.json()["samples"]
    assert samples
    stamps = [s["timestamp"] for s in samples]
    assert stamps == sorted(stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(0.5 < gap < 2.0 for gap in gaps), gaps


def test_history_minutes_are_validated(hog_server: Server) -> None:
    for bad in ("0", "-3", "abc", "100000"):
        reply = httpx.get(f"{hog_server.url}/api/system/gpu/history?minutes={bad}")
        assert reply.status_code == 400, bad
        assert "minutes" in reply.json()["error"]


def test_websocket_pushes_a_sample_each_second(hog_server: Server) -> None:
    with connect(f"ws://127.0.0.1:{hog_server.port}/ws/system", open_timeout=10) as socket:
        first = json.loads(socket.recv(timeout=5))
        second = json.loads(socket.recv(timeout=5))
        third = json.loads(socket.recv(timeout=5))
    assert {"timestamp", "gpus", "gpu_available", "inferences_per_second"} <= set(first)
    assert 0.5 < third["timestamp"] - second["timestamp"] < 2.0
