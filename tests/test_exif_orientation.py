"""EXIF orientation: every path sees the upright image. The header check's size, the host
decoder's array, the device path's tensor (the code that runs nvJPEG on CUDA, exercised here
on the CPU) and ``/detect`` with device decoding on and off agree for Orientation 1–8."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import torch
from conftest import encode
from PIL import Image, ImageOps
from test_sources import CPU, TINY_RTDETR

from hearthwatch.runtime.detection.settings import RTDetrConfig
from hearthwatch.runtime.imaging.decode import check_encoded, decode_image, orient_array
from hearthwatch.runtime.imaging.device_decode import decode_on_device, orient_tensor

LIMIT = 50_000_000
ORIENTATIONS = range(1, 9)
WIDTH, HEIGHT = 240, 160  # upright; not square, so a swap of the axes shows
JPEG_NOISE = 3.0  # mean |difference| of two encodings of one picture; a wrong turn is ~40

# the transpose that stores an upright picture so that a viewer applying Orientation k shows
# it upright again: the inverse of what EXIF says to apply
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@cache
def upright() -> Image.Image:
    """A real photograph, cropped and scaled to WIDTH x HEIGHT."""
    photo = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB")
        return rgb.crop((0, 100, 512, 441)).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)


def stored_as(orientation: int, fmt: str = "JPEG") -> bytes:
    """The upright photo stored turned, with the EXIF Orientation that turns it back."""
    image = upright()
    if orientation in _STORE:
        image = image.transpose(_STORE[orientation])
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    options: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}
    image.save(buf, fmt, exif=exif, **options.get(fmt, {}))
    return buf.getvalue()


@cache
def reference() -> np.ndarray:
    """The upright photo as the host decodes an Orientation-1 JPEG of it."""
    return decode_image(stored_as(1), LIMIT)


def assert_upright(pixels: np.ndarray, what: str) -> None:
    assert pixels.shape == (HEIGHT, WIDTH, 3), f"{what}: {pixels.shape}, not upright"
    diff = np.abs(pixels.astype(np.int16) - reference().astype(np.int16)).mean()
    assert diff < JPEG_NOISE, f"{what}: mean difference {diff:.1f} from the upright picture"


def hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).cpu().numpy()


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_test_images_are_upright_as_pillow_shows_them(orientation: int) -> None:
    data = stored_as(orientation)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.getexif()[0x0112] == orientation
        if orientation != 1:  # what is stored is not what is shown
            assert (
                stored.size != (WIDTH, HEIGHT)
                or np.abs(np.asarray(stored, np.int16) - np.asarray(upright(), np.int16)).mean()
                > 10 * JPEG_NOISE
            )
        assert_upright(np.asarray(ImageOps.exif_transpose(stored)), "Pillow")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_turns_are_pillows_exactly_on_arrays_and_tensors(orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(stored)
    image.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(orient_array(stored, orientation), expected)
    assert np.array_equal(
        hwc(orient_tensor(torch.from_numpy(stored).permute(2, 0, 1), orientation)), expected
    )


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_header_check_reports_the_upright_size(orientation: int) -> None:
    encoded = check_encoded(stored_as(orientation), LIMIT)
    assert (encoded.width, encoded.height) == (WIDTH, HEIGHT)
    assert encoded.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_host_decoder_returns_the_upright_image(orientation: int) -> None:
    decoded = decode_image(stored_as(orientation), LIMIT)
    assert decoded.flags.c_contiguous and decoded.dtype == np.uint8
    assert_upright(decoded, "host decode")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_device_path_returns_the_upright_image(orientation: int) -> None:
    (decoded,) = decode_on_device([check_encoded(stored_as(orientation), LIMIT)], CPU)
    assert decoded.shape == (3, HEIGHT, WIDTH) and decoded.dtype == torch.uint8
    assert_upright(hwc(decoded), "device decode")


def test_one_batch_of_every_orientation_decodes_upright_in_order() -> None:
    images = [check_encoded(stored_as(k), LIMIT) for k in ORIENTATIONS]
    decoded = decode_on_device([*images, reference()], CPU)
    for k, tensor in zip([*ORIENTATIONS, "array"], decoded, strict=True):
        assert_upright(hwc(tensor), f"device batch, orientation {k}")


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_host_and_device_paths_give_the_same_pixels_for_one_file(orientation: int) -> None:
    data = stored_as(orientation)
    host = decode_image(data, LIMIT)
    (device,) = decode_on_device([check_encoded(data, LIMIT)], CPU)
    assert host.shape == hwc(device).shape == (HEIGHT, WIDTH, 3)
    assert np.abs(host.astype(np.int16) - hwc(device).astype(np.int16)).mean() < 1.5


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_other_formats_follow_the_same_rule_on_every_path(fmt: str, orientation: int) -> None:
    data = stored_as(orientation, fmt)
    encoded = check_encoded(data, LIMIT)
    assert encoded.format == fmt.lower() and encoded.shape == (HEIGHT, WIDTH, 3)
    host = decode_image(data, LIMIT)
    (device,) = decode_on_device([encoded], CPU)
    assert_upright(host, f"{fmt} host decode")
    assert np.array_equal(hwc(device), host)


def test_a_png_without_exif_decodes_exactly() -> None:
    frame = np.asarray(upright())
    data = encode(frame, ".png")
    encoded = check_encoded(data, LIMIT)
    assert encoded.shape == frame.shape
    assert np.array_equal(decode_image(data, LIMIT), frame)
    (device,) = decode_on_device([encoded], CPU)
    assert np.array_equal(hwc(device), frame)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_an_out_of_range_orientation_is_taken_as_upright(orientation: int) -> None:
    image = upright()
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif, quality=95)
    data = buf.getvalue()
    assert check_encoded(data, LIMIT).shape == (HEIGHT, WIDTH, 3)
    assert_upright(decode_image(data, LIMIT), "host decode")
    (device,) = decode_on_device([check_encoded(data, LIMIT)], CPU)
    assert_upright(hwc(device), "device decode")


@pytest.fixture(scope="module")
def detect_both_ways() -> Iterator[dict[str, Any]]:
    """The same random-initialised RT-DETR served in-process twice: decoding on the device
    and on the host (imported here: the GPU tests share this module's images, not the app)."""
    from fastapi.testclient import TestClient

    from hearthwatch.app.server import create_app
    from hearthwatch.config import Settings

    clients: dict[str, TestClient] = {}
    try:
        for mode in ("on", "off"):
            torch.manual_seed(0)
            detector = RTDetrConfig(
                random_init=True, config_overrides=TINY_RTDETR, input_size=64, device_decode=mode
            )
            settings = Settings(
                use_gpu=False,
                detector=detector,
                llm_enabled=False,
                enrich_enabled=False,
                pipeline_enabled=False,
                warmup=False,
                decode_workers=1,
                max_queue_delay_ms=0,
            )
            clients[mode] = TestClient(create_app(settings)).__enter__()
        yield clients
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)


@pytest.mark.detections
@pytest.mark.parametrize("orientation", [1, 6])
def test_detect_answers_the_same_with_device_decoding_on_and_off(
    detect_both_ways: dict[str, Any], orientation: int
) -> None:
    data = stored_as(orientation)
    replies = {}
    for mode, client in detect_both_ways.items():
        reply = client.post(
            "/detect?all_classes=true&confidence=0",
            content=data,
            headers={"Content-Type": "image/jpeg"},
        )
        assert reply.status_code == 200, reply.text
        replies[mode] = reply.json()
    on, off = replies["on"], replies["off"]
    assert (on["image"], off["image"]) == ({"width": WIDTH, "height": HEIGHT},) * 2
    boxes = {
        mode: np.array([[d["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for d in r["detections"]])
        for mode, r in replies.items()
    }
    assert len(boxes["on"]) == len(boxes["off"]) > 0
    # the two resizers differ by rounding: boxes agree to within a pixel or two
    assert np.abs(np.sort(boxes["on"], axis=0) - np.sort(boxes["off"], axis=0)).max() < 3


def _png_with_exif(entries: list[tuple[int, int, int, int]]) -> bytes:
    """A 16×16 PNG whose eXIf chunk holds one directory of (tag, type, count, value) entries."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, count, value, 0) for tag, kind, count, value in entries
    )
    tiff = b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<I", 0)
    crc = zlib.crc32(b"eXIf" + tiff) & 0xFFFFFFFF
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", crc)
    return png[:33] + chunk + png[33:]  # after the signature and IHDR


def test_a_hostile_exif_directory_costs_little_to_check() -> None:
    entries = [(0x0112, 3, 1, 6)] + [(0x8000 + i % 0x7000, 3, 1, 0) for i in range(65534)]
    data = _png_with_exif(entries)
    started = time.perf_counter()
    image = check_encoded(data, 10**8)
    elapsed = time.perf_counter() - started
    assert image.orientation == 6
    assert elapsed < 0.05  # before: Pillow parsed all 65 535 entries, 0.25 s on the loop


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([(0x0112, 3, 1, 8)], 8),
        ([(0x0100, 3, 1, 5), (0x0112, 3, 1, 3)], 3),
        ([(0x0112, 3, 1, 0)], 1),  # out of range
        ([(0x0112, 3, 1, 9)], 1),
        ([(0x0112, 4, 1, 6)], 1),  # a LONG, not a SHORT
        ([(0x0112, 3, 2, 6)], 1),  # two values
        ([(0x0200, 3, 1, 6)], 1),  # no Orientation
    ],
)
def test_the_orientation_is_read_from_the_first_directory_only_when_well_formed(
    entries: list[tuple[int, int, int, int]], expected: int
) -> None:
    assert check_encoded(_png_with_exif(entries), 10**8).orientation == expected
