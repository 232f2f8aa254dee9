"""The GPU hot path's pieces that run on a CPU: batch buckets and padding for CUDA graphs with
their per-bucket fall back, decoding and resizing through the device path, the device path of
RT-DETR against its host path (in process and in a server), overlap of preparing with running,
and the compile cache."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch
from conftest import encode, scene
from photos import photo
from test_sources import CPU, PLAIN, TINY_RTDETR, no_fallback

from hearthwatch.runtime.accel.graphs import BucketedGraphs, Forward, bucket_sizes
from hearthwatch.runtime.accel.optimize import (
    OptimizationSettings,
    optimize_module,
    use_compile_cache,
)
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import Detections
from hearthwatch.runtime.detection.settings import RTDetrConfig
from hearthwatch.runtime.imaging.decode import ImageError, check_encoded, decode_image
from hearthwatch.runtime.imaging.device_decode import (
    UndecodableImagesError,
    decode_on_device,
)
from hearthwatch.runtime.imaging.preprocess import resize_on_device
from hearthwatch.runtime.serving.batcher import BatchingConfig
from hearthwatch.runtime.serving.served_model import ServedModel


def test_buckets_are_powers_of_two_up_to_the_largest_batch() -> None:
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(8) == [1, 2, 4, 8]
    assert bucket_sizes(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError, match="max_batch_size"):
        bucket_sizes(0)


def rows_forward(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each row's own outputs: padding rows would show as zeros."""
    return batch * 2 + 1, batch.flatten(1).sum(dim=1)


class RecordingCapture:
    """A stand-in for CUDA graph capture: remembers what was captured and replayed."""

    def __init__(self, failing: set[int] = frozenset(), failing_replay: set[int] = frozenset()):  # type: ignore[assignment]
        self.captured: list[int] = []
        self.replayed: list[int] = []
        self.failing, self.failing_replay = failing, failing_replay

    def __call__(self, forward: Forward, example: torch.Tensor) -> Forward:
        bucket = example.shape[0]
        if bucket in self.failing:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captured.append(bucket)

        def replay(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
            assert batch.shape == example.shape  # graphs only ever see their own bucket
            if bucket in self.failing_replay:
                raise RuntimeError("replay failed")
            self.replayed.append(bucket)
            return forward(batch)

        return replay


def test_a_batch_is_padded_to_its_bucket_and_only_real_rows_come_back() -> None:
    capture = RecordingCapture()
    graphs = BucketedGraphs(rows_forward, 8, capture=capture)
    for size in (1, 3, 5, 8, 3):
        batch = torch.rand(size, 3, 4, 4) + 1  # no row is all zeros
        doubled, sums = graphs(batch)
        assert doubled.shape[0] == size and sums.shape[0] == size
        expected = rows_forward(batch)
        assert torch.equal(doubled, expected[0]) and torch.allclose(sums, expected[1])
    assert capture.captured == [1, 4, 8]  # each bucket captured once
    assert capture.replayed == [1, 4, 8, 8, 4]
    with pytest.raises(ValueError, match="over max_batch_size 8"):
        graphs(torch.rand(9, 3, 4, 4))


def test_a_bucket_whose_capture_fails_runs_eagerly_and_the_others_keep_graphs() -> None:
    fallbacks: list[tuple[str, str]] = []
    capture = RecordingCapture(failing={4}, failing_replay={2})
    graphs = BucketedGraphs(rows_forward, 4, capture, lambda *a: fallbacks.append(a))
    for size in (1, 2, 3, 4, 2):
        batch = torch.rand(size, 3, 2, 2)
        assert torch.equal(graphs(batch)[0], rows_forward(batch)[0])
    assert graphs.eager_buckets == {2, 4}
    assert capture.replayed == [1]
    assert [name for name, _ in fallbacks] == ["cuda_graphs", "cuda_graphs"]
    assert "bucket 2: replay failed" in fallbacks[0][1]
    assert "bucket 4: capture failed: RuntimeError" in fallbacks[1][1]


def test_graphs_are_a_cuda_pass_only() -> None:
    module = torch.nn.Conv2d(3, 4, 3)
    optimized = optimize_module(module, CPU, OptimizationSettings(cuda_graphs=True))
    assert optimized.graphs is None and "cuda_graphs" not in optimized.applied
    batch = torch.rand(3, 3, 8, 8)
    (out,) = optimized.run_batch(batch)  # one output: a 1-tuple, as graphs return it
    assert torch.allclose(out, module(batch))
    graphs = BucketedGraphs(module, 4, capture=RecordingCapture())
    (padded_out,) = graphs(batch)
    assert padded_out.shape[0] == 3 and torch.allclose(padded_out, module(batch), atol=1e-6)


def test_decoding_through_the_device_path_matches_the_host_decoder() -> None:
    frame = scene(320, 240)
    as_jpeg, as_png = encode(frame), encode(frame, ".png")
    images = [check_encoded(as_jpeg, 10**7), check_encoded(as_png, 10**7), frame]
    decoded = decode_on_device(images, CPU)
    assert [tuple(t.shape) for t in decoded] == [(3, 240, 320)] * 3
    host_jpeg = decode_image(as_jpeg, 10**7)
    jpeg_diff = np.abs(decoded[0].permute(1, 2, 0).numpy().astype(int) - host_jpeg.astype(int))
    assert jpeg_diff.mean() < 1.5  # two JPEG decoders: rounding differs, pixels do not
    assert np.array_equal(decoded[1].permute(1, 2, 0).numpy(), frame)
    assert np.array_equal(decoded[2].permute(1, 2, 0).numpy(), frame)


def undecodable_jpeg() -> bytes:
    """A JPEG whose header reads fine and whose Huffman table does not."""
    good = encode(scene(160, 160))
    table = good.find(b"\xff\xc4")
    return good[: table + 5] + b"\xff" * 16 + good[table + 21 :]


def assert_same_detections(got: Detections, expected: Detections, atol: float = 1e-4) -> None:
    """Equal as sets of (box, score, class), boxes within 0.1 px (the server rounds them):
    random weights tie scores, which may come in either order."""
    assert len(got) == len(expected)
    np.testing.assert_allclose(np.sort(got.scores), np.sort(expected.scores), atol=atol)
    for box, score, class_id in zip(got.boxes, got.scores, got.class_ids, strict=True):
        near = np.abs(expected.boxes - box).max(axis=1) <= 0.1
        near &= (np.abs(expected.scores - score) <= atol) & (expected.class_ids == class_id)
        assert near.any(), f"no {class_id} at {box} scoring {score} in {expected}"


def tiny_rtdetr(**settings: Any) -> RTDetrConfig:
    """Random weights; every one of the 50 best candidates kept, so each image has 50."""
    return RTDetrConfig(
        random_init=True,
        config_overrides=TINY_RTDETR,
        score_floor=0.0,
        max_detections=50,
        **settings,
    )


@pytest.mark.detections
def test_an_undecodable_jpeg_fails_alone_and_the_rest_of_its_batch_is_served() -> None:
    good, broken = encode(scene(160, 160)), undecodable_jpeg()
    images = [check_encoded(good, 10**7), check_encoded(broken, 10**7)]
    with pytest.raises(UndecodableImagesError) as caught:
        decode_on_device(images, CPU)
    assert list(caught.value.errors) == [1] and "Huffman" in str(caught.value.errors[1])

    served = ServedModel(
        "m",
        tiny_rtdetr(input_size=64, device_decode="on").build(CPU, PLAIN, no_fallback),
        BatchingConfig(max_batch_size=4, max_queue_delay_ms=200, max_queue_size=16),
    )
    served.start(warmup=False)

    async def together() -> list[Any]:
        jobs = [served.infer(check_encoded(data, 10**7), 10) for data in (good, broken, good)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        first, second, third = asyncio.run(together())
    finally:
        served.stop()
    assert isinstance(second, ImageError) and "could not be decoded" in str(second)
    assert first.batch_size == 3 and len(first.detections) == 50
    assert_same_detections(third.detections, first.detections)
    assert served.stats.failures_by_reason["BAD_INPUT"] == 1


def test_resizing_on_the_device_matches_opencv() -> None:
    frames = [scene(320, 240, 0), scene(320, 240, 1), scene(200, 300, 2)]
    tensors = [torch.from_numpy(f).permute(2, 0, 1) for f in frames]
    batch = resize_on_device(tensors, (128, 160), torch.float32)
    assert batch.shape == (3, 3, 128, 160) and batch.dtype == torch.float32
    for frame, resized in zip(frames, batch, strict=True):
        expected = cv2.resize(frame, (160, 128), interpolation=cv2.INTER_LINEAR) / 255
        assert np.abs(resized.permute(1, 2, 0).numpy() - expected).mean() < 0.01


@pytest.mark.detections
def test_rtdetr_device_path_detects_what_the_host_path_does() -> None:
    torch.manual_seed(0)
    on_device = tiny_rtdetr(input_size=128, device_decode="on").build(CPU, PLAIN, no_fallback)
    assert on_device.decodes_on_device
    on_host = tiny_rtdetr(input_size=128, device_decode="auto").build(CPU, PLAIN, no_fallback)
    assert not on_host.decodes_on_device
    frame = photo(400)
    data = encode(frame)
    from_bytes = on_device.prepare([check_encoded(data, 10**7)])  # type: ignore[list-item]
    from_array = on_device.prepare([decode_image(data, 10**7)])
    assert (from_bytes.batch - from_array.batch).abs().mean() < 0.01  # type: ignore[attr-defined]
    (device,) = on_device.finish(on_device.forward(from_bytes), from_bytes)
    (host,) = on_device.finish(on_device.forward(from_array), from_array)
    assert len(device) == 50 and device.boxes[:, 2].max() <= 400 * 1.5
    assert_same_detections(device, host, atol=0.01)


class HandshakeDetector(Detector):
    """Running batch 1 waits until batch 2 is being prepared: only overlap lets it finish."""

    def __init__(self) -> None:
        self.second_prepared = threading.Event()
        self.prepared = 0
        self.overlapped: list[bool] = []

    def prepare(self, images: Sequence[np.ndarray]) -> Any:
        self.prepared += 1
        if self.prepared == 2:
            self.second_prepared.set()
        return list(images)

    def forward(self, prepared: Any) -> Any:
        if not self.overlapped:
            self.overlapped.append(self.second_prepared.wait(timeout=2))
        return prepared

    def finish(self, outputs: Any, prepared: Any) -> list[Detections]:
        empty = Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )
        return [empty for _ in outputs]


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_batch_is_prepared_while_this_one_runs(overlap: bool) -> None:
    detector = HandshakeDetector()
    served = ServedModel(
        "m",
        detector,
        BatchingConfig(max_batch_size=1, max_queue_delay_ms=0, max_queue_size=16),
        overlap=overlap,
    )
    served.start(warmup=False)

    async def two() -> list[Any]:
        frame = np.zeros((4, 4, 3), np.uint8)
        return await asyncio.gather(served.infer(frame, 10), served.infer(frame, 10))

    try:
        outcomes = asyncio.run(two())
    finally:
        served.stop()
    assert len(outcomes) == 2
    assert detector.overlapped == [overlap]


def test_the_compile_cache_is_kept_in_the_configured_directory(tmp_path: Path) -> None:
    saved = {
        k: os.environ.get(k)
        for k in (
            "TORCHINDUCTOR_CACHE_DIR",
            "TORCHINDUCTOR_FX_GRAPH_CACHE",
            "TORCHINDUCTOR_AUTOGRAD_CACHE",
        )
    }
    try:
        use_compile_cache(tmp_path / "cache")
        assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) == (tmp_path / "cache").resolve()
        assert (tmp_path / "cache").is_dir()
        assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.detections
def test_a_server_that_decodes_on_its_device_answers_as_the_host_path_does(
    start_server: Any, tmp_path: Path
) -> None:
    """The server decodes and resizes through the device path; the same weights here take the
    host path (OpenCV decode and resize): both find the same detections."""
    tiny_rtdetr().build(CPU, PLAIN, no_fallback).model.eager.model.save_pretrained(tmp_path)  # type: ignore[attr-defined]
    server = start_server(
        DETECTOR__TYPE="hf_rtdetr",
        DETECTOR__PATH=str(tmp_path),
        DETECTOR__INPUT_SIZE="64",
        DETECTOR__SCORE_FLOOR="0",
        DETECTOR__MAX_DETECTIONS="50",
        DETECTOR__DEVICE_DECODE="on",
        MAX_QUEUE_DELAY_MS="50",
    )
    host_path = RTDetrConfig(
        path=tmp_path, input_size=64, score_floor=0.0, max_detections=50, device_decode="off"
    ).build(CPU, PLAIN, no_fallback)
    url = f"{server.url}/detect?all_classes=true&confidence=0"
    frame = photo(320)
    for data in (encode(frame), encode(frame, ".png")):
        reply = httpx.post(url, content=data, headers={"Content-Type": "image/*"}, timeout=30)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["image"] == {"width": 320, "height": 375}
        found = body["detections"]
        served = Detections(
            np.array([[d["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for d in found]),
            np.array([d["confidence"] for d in found]),
            np.array([d["class_id"] for d in found]),
        )
        (expected,) = host_path.detect([decode_image(data, 10**7)])
        assert len(served) == 50
        assert_same_detections(served, expected, atol=0.01)
    bad = httpx.post(url, content=undecodable_jpeg(), headers={"Content-Type": "image/jpeg"})
    assert bad.status_code == 400 and "could not be decoded" in bad.json()["error"]
    truncated = encode(frame)[:-200]
    cut = httpx.post(url, content=truncated, headers={"Content-Type": "image/jpeg"})
    assert cut.status_code == 400 and "truncated" in cut.json()["error"]
    assert server.metric("nv_inference_request_failure", reason="BAD_INPUT") == 2
