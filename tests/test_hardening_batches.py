"""One bad item never fails another: odd images are refused before they join a batch (or
bisected out of one), the others in their batch are served; a multi-image request that the
queue can never hold is a 413 naming the limit and runs nothing; an internal error's detail
stays in the log, the client gets an id."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import zlib
from pathlib import Path

import httpx
import matplotlib.cbook
import numpy as np
import pytest
from conftest import Server, encode
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hearthwatch.api.errors import install_error_handlers

PHOTO = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # type: ignore[arg-type]
ENRICH_MODELS = Path(__file__).parent / "data" / "enrich_models.yml"
TRIALS = 3


def thin_png(width: int, height: int) -> bytes:
    """A real, decodable grey PNG of ``width`` x ``height``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def server(start_server) -> Server:  # type: ignore[no-untyped-def]
    """A wide batch window, so requests sent together run as one batch."""
    return start_server(MAX_QUEUE_DELAY_MS="300", MAX_BATCH_SIZE="8", MAX_QUEUE_SIZE="4")


async def _together(requests: list[tuple[str, dict]]) -> list[httpx.Response]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(timeout=60) as http:
        return list(await asyncio.gather(*(http.post(url, **kw) for url, kw in requests)))


def _detect(server: Server, body: bytes) -> tuple[str, dict]:  # type: ignore[type-arg]
    return (
        f"{server.url}/detect",
        {
            "content": body,
            "params": {"confidence": "0.3"},
            "headers": {"Content-Type": "application/octet-stream"},
        },
    )


@pytest.mark.detections
@pytest.mark.parametrize("bad", [thin_png(100_000, 1), thin_png(1, 100_000)], ids=["wide", "tall"])
def test_an_extreme_image_fails_alone_on_detect(server: Server, bad: bytes) -> None:
    photo = PHOTO.read_bytes()
    batched_with_others = 0
    for _ in range(TRIALS):
        replies = asyncio.run(_together([_detect(server, photo)] * 3 + [_detect(server, bad)]))
        statuses = [r.status_code for r in replies]
        assert statuses[:3] == [200, 200, 200], [r.text[:300] for r in replies]
        assert all(r.json()["detections"] for r in replies[:3])  # the photo has a person
        # the detector letterboxes it to a one-pixel strip and finds no one; a model that
        # cannot take it answers 400
        assert statuses[3] == 200 and replies[3].json()["detections"] == [], replies[3].text
        batched_with_others += replies[3].json()["batch_size"] > 1
    assert batched_with_others, "the odd image never shared a batch: nothing was tested"


def _rgb(server: Server, shape: list[int]) -> tuple[str, dict]:  # type: ignore[type-arg]
    count = int(np.prod(shape))
    tensor = {"name": "IMAGE_RGB", "datatype": "UINT8", "shape": shape}
    body = {"inputs": [{**tensor, "data": [128] * count}], "parameters": {"all_classes": True}}
    return f"{server.url}/v2/models/detector/infer", {"json": body}


@pytest.mark.parametrize("shape", [[1, 1, 3000, 3], [1, 0, 0, 3]], ids=["thin", "empty"])
def test_an_odd_v2_tensor_fails_alone(server: Server, shape: list[int]) -> None:
    good = _rgb(server, [1, 200, 120, 3])
    for _ in range(TRIALS):
        replies = asyncio.run(_together([good] * 3 + [_rgb(server, shape)]))
        assert [r.status_code for r in replies[:3]] == [200, 200, 200], replies[0].text[:300]
        if shape[1] == 0:
            assert replies[3].status_code == 400, replies[3].text
            assert "no pixels" in replies[3].json()["error"]
        else:
            assert replies[3].status_code == 200, replies[3].text


def test_a_batch_the_queue_can_never_hold_is_413_and_runs_nothing(server: Server) -> None:
    before = server.metric("nv_inference_request_success", model="detector")
    files = [("images", (f"{i}.jpg", PHOTO.read_bytes(), "image/jpeg")) for i in range(6)]
    reply = httpx.post(f"{server.url}/detect/batch", files=files, timeout=60)
    assert reply.status_code == 413, reply.text
    assert "4" in reply.json()["error"]  # names the queue's limit
    assert server.metric("nv_inference_request_success", model="detector") == before


@pytest.fixture(scope="module")
def enrich_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    return start_server(ENRICH_MODELS_FILE=str(ENRICH_MODELS), ENRICH_TIMEOUT_MS="60000")


def test_an_extreme_frame_fails_alone_on_enrich(enrich_server: Server) -> None:
    frame = encode(np.full((240, 320, 3), 90, np.uint8), ".png")
    good = {"image": base64.b64encode(frame).decode(), "detections": [], "models": ["threat"]}
    bad = {**good, "image": base64.b64encode(thin_png(100_000, 1)).decode()}
    url = f"{enrich_server.url}/enrich"
    for _ in range(TRIALS):
        replies = asyncio.run(_together([(url, {"json": good})] * 3 + [(url, {"json": bad})]))
        assert [r.status_code for r in replies[:3]] == [200, 200, 200], replies[0].text[:300]
        assert all(r.json()["models_run"] == ["threat"] for r in replies[:3])
        assert replies[3].status_code == 400, replies[3].text


@pytest.mark.parametrize("value", ["1e999", "-Infinity", "NaN"])
def test_enrich_box_coordinates_must_be_finite(enrich_server: Server, value: str) -> None:
    frame = base64.b64encode(encode(np.full((64, 64, 3), 90, np.uint8), ".png")).decode()
    body = (
        f'{{"image": "{frame}", "models": ["threat"], "detections": [{{"class_name": "person", '
        f'"bbox": {{"x1": 0, "y1": 0, "x2": {value}, "y2": 10}}}}]}}'
    )
    reply = httpx.post(
        f"{enrich_server.url}/enrich",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == 400, reply.text


def test_an_internal_error_gives_an_id_and_keeps_its_detail_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("OpenCV(4.14.0) /io/opencv/modules/imgproc/src/resize.cpp:4017 secret")

    with caplog.at_level(logging.ERROR):
        reply = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert reply.status_code == 500
    message = reply.json()["error"]
    assert (
        "opencv" not in message.lower() and "resize.cpp" not in message and "secret" not in message
    )
    assert "id" in message
    error_id = message.split("id ", 1)[1].split(")", 1)[0]
    assert any(error_id in r.getMessage() for r in caplog.records)
    assert any("resize.cpp" in (r.exc_text or "") or r.exc_info for r in caplog.records)
