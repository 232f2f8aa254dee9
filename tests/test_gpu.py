"""GPU-only paths, opt in with ``pytest -m gpu tests/test_gpu.py`` on a CUDA machine (skipped
elsewhere): CUDA graphs at bucketed batch sizes against eager, fp16 and channels_last against
fp32, nvJPEG decoding (EXIF orientation included) against the host decoder, RT-DETR's device
path against its host path, and the zoo's pinned host copies and their reload. Small random
models only: nothing is downloaded, and the file runs in well under a minute."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from conftest import encode, scene
from test_exif_orientation import HEIGHT, JPEG_NOISE, WIDTH, stored_as
from test_hot_path import undecodable_jpeg
from test_sources import TINY_RTDETR

from hearthwatch.runtime.accel.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.detection.settings import RTDetrConfig
from hearthwatch.runtime.imaging.decode import check_encoded, decode_image
from hearthwatch.runtime.imaging.device_decode import (
    Image,
    UndecodableImagesError,
    decode_on_device,
)
from hearthwatch.runtime.imaging.preprocess import resize_on_device
from hearthwatch.runtime.zoo.loader import module_loader
from hearthwatch.runtime.zoo.registry import ModelZoo, Priority, State

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda", 0)  # as select_device gives it: with an index
LIMIT = 50_000_000
BUCKETS = [1, 2, 4, 8]


def no_fallback(name: str, reason: str) -> None:
    raise AssertionError(f"unexpected fallback {name}: {reason}")


@pytest.fixture(autouse=True)
def _restore_cudnn_benchmark() -> Iterator[None]:
    """optimize_module turns cuDNN's benchmark mode on process-wide; put it back after."""
    before = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = before


class TwoHeads(torch.nn.Module):
    """A small convolutional net with two outputs (scores and a feature map, so that both a
    flat and a 4-D output go through the graphs); ``calls`` counts Python-level forwards,
    which a graph replay does not make."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(16 * 8 * 8, 10)
        with torch.no_grad():  # running statistics that do something in eval mode
            for bn in (self.features[1], self.features[4]):
                assert isinstance(bn, torch.nn.BatchNorm2d)
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        features = self.features(x)
        return self.head(features.flatten(1)), features


def distinct_rows(size: int, seed: int) -> torch.Tensor:
    """(size, 3, 32, 32) on the GPU, each row on its own scale and offset, so rows give
    clearly different outputs (a stale or shifted row cannot pass for the right one)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(size, 3, 32, 32, generator=generator)
    scale = torch.linspace(0.5, 3.0, size).view(-1, 1, 1, 1) if size > 1 else torch.ones(1)
    offset = torch.linspace(-1.0, 1.0, size).view(-1, 1, 1, 1) if size > 1 else torch.zeros(1)
    return (noise * scale + offset).to(CUDA)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).abs().max() / want.float().abs().max())


def small_net() -> TwoHeads:
    torch.manual_seed(0)
    return TwoHeads().eval()


@torch.inference_mode()
def test_cuda_graphs_replay_what_eager_computes_at_every_bucket() -> None:
    reference = small_net().to(CUDA)
    served = copy.deepcopy(reference)
    settings = OptimizationSettings(precision="fp32", max_batch_size=8)
    optimized = optimize_module(served, CUDA, settings, no_fallback)
    assert optimized.graphs is not None and "cuda_graphs" in optimized.applied
    assert optimized.graphs.buckets == BUCKETS and optimized.dtype == torch.float32

    sizes = [1, 3, 4, 5, 8, 3, 5]  # 3 is padded to bucket 4, 5 to bucket 8; both come back
    runs = []
    for seed, size in enumerate(sizes):
        batch = distinct_rows(size, seed)
        runs.append((batch, optimized.run_batch(batch)))
    assert optimized.graphs.eager_buckets == set()
    # buckets 1, 4 and 8 each ran forward 3 times to warm up and once to capture; every other
    # batch was a replay, which runs no Python
    assert served.calls == 3 * 4

    torch.cuda.synchronize()
    for batch, outputs in runs:  # checked after all runs: each reply is a copy of its own
        expected = reference(batch)
        assert len(outputs) == len(expected) == 2
        for got, want in zip(outputs, expected, strict=True):
            assert got.shape == want.shape and got.shape[0] == batch.shape[0]
            assert got.is_cuda and got.dtype == torch.float32
            assert relative_error(got, want) < 5e-3  # TF32 convolutions, whichever algorithm


@torch.inference_mode()
def test_fp16_and_channels_last_are_applied_and_stay_close_to_fp32() -> None:
    reference = small_net().to(CUDA)
    settings = OptimizationSettings(precision="fp16", cuda_graphs=False)
    optimized = optimize_module(copy.deepcopy(reference), CUDA, settings, no_fallback)
    assert optimized.dtype == torch.float16 and optimized.channels_last
    assert {"float16", "channels_last"} <= set(optimized.applied)
    for name, param in optimized.eager.named_parameters():
        assert param.dtype == torch.float16 and param.is_cuda, name
        if param.dim() == 4:
            assert param.is_contiguous(memory_format=torch.channels_last), name

    batch = distinct_rows(4, 0)
    scores, features = optimized.run_batch(batch.to(torch.float16))
    assert scores.dtype == features.dtype == torch.float16
    want_scores, want_features = reference(batch)
    assert relative_error(scores, want_scores) < 2e-2
    assert relative_error(features, want_features) < 2e-2


@torch.inference_mode()
def test_the_cuda_defaults_fp16_channels_last_graphs_match_fp32_eager() -> None:
    reference = small_net().to(CUDA)
    served = copy.deepcopy(reference)
    optimized = optimize_module(served, CUDA, OptimizationSettings(), no_fallback)
    assert optimized.dtype == torch.float16 and optimized.graphs is not None
    assert {"float16", "channels_last", "cudnn_benchmark", "cuda_graphs"} <= set(optimized.applied)
    for size in (3, 8, 3):
        batch = distinct_rows(size, size)
        outputs = optimized.run_batch(batch.to(torch.float16))
        for got, want in zip(outputs, reference(batch), strict=True):
            assert got.dtype == torch.float16 and got.shape == want.shape
            assert relative_error(got, want) < 2e-2
    assert optimized.graphs.eager_buckets == set() and served.calls == 2 * 4


def test_nvjpeg_decodes_a_batch_upright_as_the_host_does(caplog: pytest.LogCaptureFixture) -> None:
    files = [stored_as(k) for k in (1, 3, 6, 8)]  # 6 and 8 are stored on their side
    frame = scene(320, 240)
    png = encode(frame, ".png")
    plain = encode(scene(200, 150, seed=1))
    images: list[Image] = [check_encoded(d, LIMIT) for d in [*files, png, plain]]
    images.append(frame)
    with caplog.at_level(logging.WARNING, "hearthwatch.runtime.imaging.device_decode"):
        decoded = decode_on_device(images, CUDA)
    assert "decoding one by one" not in caplog.text  # one batched nvJPEG call
    assert len(decoded) == len(images)
    torch.cuda.synchronize()
    for i, (tensor, data) in enumerate(zip(decoded, [*files, png, plain], strict=False)):
        assert tensor.is_cuda and tensor.dtype == torch.uint8, i
        host = decode_image(data, LIMIT)
        device = tensor.permute(1, 2, 0).cpu().numpy()
        assert device.shape == host.shape, i
        if i < len(files):
            assert host.shape == (HEIGHT, WIDTH, 3)
        diff = np.abs(device.astype(np.int16) - host.astype(np.int16)).mean()
        assert diff < JPEG_NOISE, f"image {i}: mean difference {diff:.2f} from the host decode"
    assert np.array_equal(decoded[4].permute(1, 2, 0).cpu().numpy(), frame)  # PNG: lossless
    assert np.array_equal(decoded[6].permute(1, 2, 0).cpu().numpy(), frame)  # array: as it is

    batch = resize_on_device(decoded, (64, 64), torch.float16)
    assert batch.is_cuda and batch.shape == (len(images), 3, 64, 64)
    assert batch.dtype == torch.float16 and 0 <= float(batch.min()) <= float(batch.max()) <= 1


@torch.inference_mode()
def test_rtdetr_on_the_gpu_prepares_a_rotated_jpeg_as_its_host_path_does() -> None:
    fallbacks: list[tuple[str, str]] = []

    def record(name: str, reason: str) -> None:
        fallbacks.append((name, reason))

    def build(mode: str) -> RTDetrConfig:
        return RTDetrConfig(
            random_init=True, config_overrides=TINY_RTDETR, input_size=64, device_decode=mode
        )

    torch.manual_seed(0)
    settings = OptimizationSettings(max_batch_size=4)
    detector = build("auto").build(CUDA, settings, record)
    assert detector.decodes_on_device  # auto: on CUDA
    data = [stored_as(6), stored_as(1)]
    encoded: list[Any] = [check_encoded(d, LIMIT) for d in data]  # prepare takes these too
    from_bytes = detector.prepare(encoded)
    from_arrays = detector.prepare([decode_image(d, LIMIT) for d in data])
    assert from_bytes.batch.is_cuda and from_bytes.batch.dtype == torch.float16
    assert np.array_equal(from_bytes.sizes, [[WIDTH, HEIGHT], [WIDTH, HEIGHT]])
    assert np.array_equal(from_bytes.sizes, from_arrays.sizes)
    from_bytes.wait()
    from_arrays.wait()
    assert float((from_bytes.batch - from_arrays.batch).abs().float().mean()) < 0.02
    detections = detector.finish(detector.forward(from_bytes), from_bytes)
    assert len(detections) == 2
    for found in detections:
        assert found.boxes.shape[1] == 4 and np.isfinite(found.boxes).all()
    # graphs may fall back for a model that cannot be captured, but only by saying so
    assert all(name == "cuda_graphs" for name, _ in fallbacks)


def test_an_evicted_zoo_model_waits_in_pinned_memory_and_reloads_the_same() -> None:
    builds: list[int] = []

    def build() -> torch.nn.Module:
        builds.append(1)
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None)

    @torch.inference_mode()
    def warmup(module: torch.nn.Module) -> None:
        module(torch.zeros(1, 3, 64, 64, device=CUDA, dtype=torch.float16))

    loader = module_loader(build, CUDA, torch.float16, warmup, host_reserve_bytes=0)
    zoo = ModelZoo(budget_bytes=2 * 1024**3)
    zoo.register("resnet", Priority.MEDIUM, loader)

    async def main() -> None:
        async with zoo.lease("resnet", 120) as loaded:
            module = loaded.module
            weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        assert all(w.is_cuda for w in weights.values())
        assert weights["conv1.weight"].dtype == torch.float16

        await zoo.evict("resnet")
        assert zoo.state("resnet") is State.ON_HOST
        kept = [*module.parameters(), *module.buffers()]
        assert all(t.device.type == "cpu" for t in kept)
        assert all(t.is_pinned() for t in kept), "evicted weights are not in pinned memory"

        async with zoo.lease("resnet", 120) as again:
            assert again.module is module  # a copy back, not a rebuild
            reloaded = module.state_dict()
            assert reloaded.keys() == weights.keys()
            for name, tensor in reloaded.items():
                assert tensor.is_cuda, name
                assert torch.equal(tensor, weights[name]), name
        (row,) = zoo.stats()
        assert (row.loads_from_disk, row.loads_from_host, row.evictions) == (1, 1, 1)
        assert len(builds) == 1
        await zoo.unload("resnet")

    asyncio.run(main())


def test_an_undecodable_jpeg_in_an_nvjpeg_batch_fails_alone() -> None:
    good = check_encoded(encode(scene(160, 160)), LIMIT)
    broken = check_encoded(undecodable_jpeg(), LIMIT)
    with pytest.raises(UndecodableImagesError) as caught:
        decode_on_device([good, broken, good], CUDA)
    assert list(caught.value.errors) == [1]
    (tensor,) = decode_on_device([good], CUDA)  # the decoder still works afterwards
    assert tensor.is_cuda and tensor.shape == (3, 160, 160)
