"""/detect and /detect/batch against a real server: happy paths, every bad input, batching,
overload (503 + Retry-After), deadlines (504, never run) and metrics that move."""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from conftest import Server, encode, jpeg, scene
from photos import photo_jpeg, two_people

from hearthwatch.api.schemas import DetectBatchResponse, DetectResponse

JPEG = {"Content-Type": "image/jpeg"}


def test_detect_raw_jpeg_returns_the_typed_response(hog_server: Server) -> None:
    reply = httpx.post(f"{hog_server.url}/detect", content=jpeg(320, 240), headers=JPEG)
    assert reply.status_code == 200, reply.text
    body = DetectResponse.model_validate(reply.json())
    assert (body.image.width, body.image.height) == (320, 240)
    assert body.model == "detector" and body.batch_size >= 1
    t = body.timings_ms
    assert t.total_ms >= t.queue_ms + t.inference_ms - 0.01 and t.inference_ms > 0


def test_detect_takes_a_multipart_file_and_png(hog_server: Server) -> None:
    files = {"image": ("frame.png", encode(scene(200, 100), ".png"), "image/png")}
    reply = httpx.post(f"{hog_server.url}/detect", files=files)
    assert reply.status_code == 200, reply.text
    assert reply.json()["image"] == {"width": 200, "height": 100}


def detect(server: Server, image: bytes, query: str = "") -> list[dict[str, Any]]:
    reply = httpx.post(f"{server.url}/detect{query}", content=image, headers=JPEG, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["detections"]  # type: ignore[no-any-return]


@pytest.mark.detections
def test_detect_batch_answers_each_image_in_order(hog_server: Server) -> None:
    images = [photo_jpeg(), jpeg(200, 100), encode(two_people(), ".png")]
    files = [("images", (f"{i}", image, "image/*")) for i, image in enumerate(images)]
    url = f"{hog_server.url}/detect/batch?confidence=0.3"
    reply = httpx.post(url, files=files, timeout=30)
    assert reply.status_code == 200, reply.text
    body = DetectBatchResponse.model_validate(reply.json())
    sizes = [(r.image.width, r.image.height) for r in body.results]
    assert sizes == [(512, 600), (200, 100), (1024, 600)]
    found = [r["detections"] for r in reply.json()["results"]]
    alone = [detect(hog_server, image, "?confidence=0.3") for image in images]
    assert 0 < len(found[0]) < len(found[2]), found  # the two-person frame has more
    assert found == alone


@pytest.mark.detections
def test_the_confidence_threshold_follows_the_request(hog_server: Server) -> None:
    """HOG scores the two-person frame on both sides of the 0.5 default."""
    frame = encode(two_people(), ".png")
    low = detect(hog_server, frame, "?confidence=0.3")
    default = detect(hog_server, frame)
    assert default and all(d["confidence"] >= 0.5 for d in default)
    assert all(d["confidence"] >= 0.3 for d in low)
    assert len(low) > len(default)
    assert [d for d in low if d["confidence"] >= 0.5] == default
    assert {d["class_name"] for d in low} == {"person"}


@pytest.fixture(scope="module")
def mannequin_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    """HOG, its one class named "mannequin": not a security class."""
    return start_server(DETECTOR__TYPE="hog", DETECTOR__CLASS_NAMES='["mannequin"]')  # type: ignore[no-any-return]


@pytest.mark.detections
def test_classes_outside_the_security_set_come_only_when_asked(mannequin_server: Server) -> None:
    frame = photo_jpeg()
    assert detect(mannequin_server, frame, "?confidence=0.3") == []
    everything = detect(mannequin_server, frame, "?confidence=0.3&all_classes=true")
    assert everything and {d["class_name"] for d in everything} == {"mannequin"}


@pytest.mark.detections
def test_a_real_person_shape_is_found_by_hog(hog_server: Server) -> None:
    """A drawn standing figure on a plain background: HOG's default detector answers."""
    canvas = np.full((480, 640, 3), 200, np.uint8)
    cv2.ellipse(canvas, (320, 120), (22, 28), 0, 0, 360, (40, 40, 40), -1)  # head
    cv2.rectangle(canvas, (290, 150), (350, 280), (40, 40, 40), -1)  # torso
    cv2.rectangle(canvas, (262, 155), (284, 270), (40, 40, 40), -1)  # arms
    cv2.rectangle(canvas, (356, 155), (378, 270), (40, 40, 40), -1)
    cv2.rectangle(canvas, (294, 280), (316, 420), (40, 40, 40), -1)  # legs
    cv2.rectangle(canvas, (324, 280), (346, 420), (40, 40, 40), -1)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 2)
    reply = httpx.post(
        f"{hog_server.url}/detect?confidence=0.3", content=encode(canvas), headers=JPEG
    )
    assert reply.status_code == 200
    boxes = [d["bbox"] for d in reply.json()["detections"]]
    assert any(
        b["x1"] < 300 and b["x2"] > 340 and b["y1"] < 150 and b["y2"] > 380 for b in boxes
    ), boxes


@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [
        (b"", JPEG, 400, "empty body"),
        (b"definitely not an image", JPEG, 400, "not a supported image"),
        (jpeg()[:5000], JPEG, 400, "truncated JPEG"),
        (
            encode(scene(), ".png")[:2000],
            {"Content-Type": "image/png"},
            400,
            "could not be decoded",
        ),
        (jpeg(), {"Content-Type": "text/plain"}, 415, "unsupported content type 'text/plain'"),
        (jpeg(), {"Content-Type": "application/json"}, 415, "unsupported content type"),
    ],
)
def test_bad_input_gets_a_clear_error(
    hog_server: Server, content: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    reply = httpx.post(f"{hog_server.url}/detect", content=content, headers=headers)
    assert reply.status_code == status
    assert fragment in reply.json()["error"]


def test_bad_query_parameters_and_unknown_models(hog_server: Server) -> None:
    url = hog_server.url
    bad = httpx.post(f"{url}/detect?confidence=1.5", content=jpeg(), headers=JPEG)
    assert bad.status_code == 400 and "confidence" in bad.json()["error"]
    unknown = httpx.post(f"{url}/detect?model=yolo", content=jpeg(), headers=JPEG)
    assert unknown.status_code == 404 and "unknown model 'yolo'" in unknown.json()["error"]
    nothing = httpx.get(f"{url}/nowhere")
    assert nothing.status_code == 404 and "error" in nothing.json()


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(hog_server: Server) -> None:
    huge = np.full((7200, 7200, 3), 90, np.uint8)  # 51.8 MP against the 50 MP default
    reply = httpx.post(f"{hog_server.url}/detect", content=encode(huge), headers=JPEG)
    assert reply.status_code == 413
    assert "over the limit of 50000000" in reply.json()["error"]


def test_batch_errors_name_the_image_and_the_server_keeps_serving(hog_server: Server) -> None:
    files = [
        ("images", ("ok.jpg", jpeg(), "image/jpeg")),
        ("images", ("bad.jpg", b"nope", "image/jpeg")),
    ]
    reply = httpx.post(f"{hog_server.url}/detect/batch", files=files)
    assert reply.status_code == 400 and reply.json()["error"].startswith("images[1]:")
    empty = httpx.post(f"{hog_server.url}/detect/batch", files={"note": (None, "text")})
    assert empty.status_code == 400 and "no file" in empty.json()["error"]
    after = httpx.post(f"{hog_server.url}/detect", content=jpeg(), headers=JPEG)
    assert after.status_code == 200


def test_bad_input_is_counted_as_a_failure(hog_server: Server) -> None:
    before = hog_server.metric("nv_inference_request_failure", reason="BAD_INPUT")
    httpx.post(f"{hog_server.url}/detect", content=b"nope", headers=JPEG)
    assert hog_server.metric("nv_inference_request_failure", reason="BAD_INPUT") == before + 1


async def _concurrent(url: str, frames: list[bytes], params: str = "") -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(frames))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(client.post(f"{url}/detect{params}", content=f, headers=JPEG) for f in frames)
            )
        )


def test_concurrent_requests_are_batched_and_metrics_move(hog_server: Server) -> None:
    loop_cpu_before = hog_server.main_thread_cpu_s()
    count_before = hog_server.metric("nv_inference_count")
    exec_before = hog_server.metric("nv_inference_exec_count")
    success_before = hog_server.metric("nv_inference_request_success")
    replies = asyncio.run(_concurrent(hog_server.url, [photo_jpeg()] * 16))
    loop_cpu_after = hog_server.main_thread_cpu_s()
    assert [r.status_code for r in replies] == [200] * 16
    inferences = hog_server.metric("nv_inference_count") - count_before
    executions = hog_server.metric("nv_inference_exec_count") - exec_before
    assert inferences == 16
    assert executions < inferences  # average batch size above one
    assert hog_server.metric("nv_inference_request_success") - success_before == 16
    assert max(r.json()["batch_size"] for r in replies) > 1
    assert hog_server.metric("hearthwatch_batch_size_sum") > hog_server.metric(
        "hearthwatch_batch_size_count"
    )
    assert hog_server.metric("hearthwatch_request_duration_seconds_count", route="detect") >= 16
    assert hog_server.metric("nv_inference_queue_duration_us") > 0
    if sys.platform == "linux":  # the main thread started the server and runs its event loop
        assert loop_cpu_before is not None and loop_cpu_after is not None
        # each request reports its batch's inference time: shared out over the batch, the
        # shares add up to the time the model ran
        model_s = sum(
            r.json()["timings_ms"]["inference_ms"] / r.json()["batch_size"] / 1000 for r in replies
        )
        loop_s = loop_cpu_after - loop_cpu_before
        assert loop_s < model_s / 4, (loop_s, model_s)  # decoding and the model run elsewhere


@pytest.fixture(scope="module")
def tiny_queue_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    """One request at a time, and a slower HOG (full-size frames)."""
    return start_server(
        MAX_QUEUE_SIZE="1",
        MAX_BATCH_SIZE="1",
        MAX_QUEUE_DELAY_MS="0",
        DETECTOR__TYPE="hog",
        DETECTOR__MAX_SIDE="1920",
    )


def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing(
    tiny_queue_server: Server,
) -> None:
    server = tiny_queue_server
    before = server.metric("nv_inference_request_success")
    rejected_before = server.metric("nv_inference_request_failure", reason="REJECTED")
    frames = [jpeg(1280, 720, i) for i in range(12)]
    replies = asyncio.run(_concurrent(server.url, frames))
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 503}, statuses
    full = [r for r in replies if r.status_code == 503]
    assert full, "twelve concurrent requests against a queue of one should overflow it"
    for reply in full:
        assert int(reply.headers["Retry-After"]) >= 1
        assert "queue" in reply.json()["error"]
    served = statuses.count(200)
    assert server.metric("nv_inference_request_success") - before == served
    assert server.metric(
        "nv_inference_request_failure", reason="REJECTED"
    ) - rejected_before == len(full)


def test_an_expired_deadline_answers_504_without_running(tiny_queue_server: Server) -> None:
    server = tiny_queue_server
    noise = np.random.default_rng(7).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    slow = encode(noise)  # HOG spends about half a second on full-size noise
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(
            httpx.post, f"{server.url}/detect", content=slow, headers=JPEG, timeout=60
        )
        deadline = time.monotonic() + 10
        while server.metric("nv_inference_pending_request_count") < 1:
            assert time.monotonic() < deadline, "the slow request never started"
            time.sleep(0.005)
        count_before = server.metric("nv_inference_count")
        late = httpx.post(f"{server.url}/detect?timeout_ms=5", content=jpeg(), headers=JPEG)
        assert busy.result().status_code == 200
    assert late.status_code == 504
    assert "deadline" in late.json()["error"]
    assert server.metric("nv_inference_count") - count_before == 1  # only the long one ran
    assert server.metric("nv_inference_request_failure", reason="TIMEOUT") >= 1
