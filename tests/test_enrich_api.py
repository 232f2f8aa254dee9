"""``/enrich``, ``/api/zoo`` and the repository extension over HTTP, on a real server with small
random-initialised enrichment models; the repository through the stock ``tritonclient``."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.http as triton
from conftest import Server, jpeg
from photos import photo_jpeg
from tritonclient.utils import InferenceServerException

CATALOG = Path(__file__).parent / "data" / "enrich_models.yml"
PERSON = {
    "class_name": "person",
    "confidence": 0.9,
    "bbox": {"x1": 40, "y1": 30, "x2": 140, "y2": 330},
}
CAR = {"class_name": "car", "bbox": {"x1": 300, "y1": 200, "x2": 600, "y2": 420}}


@pytest.fixture(scope="module")
def server(start_server: Any) -> Server:
    return start_server(ENRICH_MODELS_FILE=str(CATALOG), MAX_BODY_BYTES="2000000")  # type: ignore[no-any-return]


def frame_b64(seed: int = 0) -> str:
    return base64.b64encode(jpeg(640, 480, seed)).decode()


def enrich(server: Server, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/enrich", json=body, timeout=60, **kwargs)


def test_enrich_answers_every_triggered_model(server: Server) -> None:
    reply = enrich(server, {"image": frame_b64(), "detections": [PERSON, CAR]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["image"] == {"width": 640, "height": 480}
    person, car = body["detections"]
    assert person["class_name"] == "person" and person["bbox"]["x2"] == 140
    assert set(person["enrichments"]) == {"pose", "clothing", "reid", "depth"}
    assert set(car["enrichments"]) == {"vehicle", "depth"}
    assert "threat" in body["frame"]
    assert body["unavailable"] == {}


@pytest.mark.detections
def test_detect_output_feeds_enrich(server: Server) -> None:
    image = photo_jpeg()
    found = httpx.post(f"{server.url}/detect?confidence=0.3", content=image, timeout=30)
    assert found.status_code == 200, found.text
    detections = found.json()["detections"]
    assert detections, "the detector finds a person in the photo"
    body = {"image": base64.b64encode(image).decode(), "detections": detections}
    reply = enrich(server, body)
    assert reply.status_code == 200, reply.text
    enriched = reply.json()["detections"]
    assert [(d["class_name"], d["bbox"]) for d in enriched] == [
        (d["class_name"], d["bbox"]) for d in detections
    ]
    for person in enriched:
        assert set(person["enrichments"]) == {"pose", "clothing", "reid", "depth"}
        assert len(person["enrichments"]["pose"]["keypoints"]) == 17


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"detections": []}, 400, "image: Field required"),
        ({"image": "%%%"}, 400, "image: not valid base64"),
        ({"image": base64.b64encode(b"not an image").decode()}, 400, "image"),
        (
            {
                "image": "FRAME",
                "detections": [{**CAR, "bbox": {"x1": 5, "y1": 5, "x2": 1, "y2": 9}}],
            },
            400,
            "detections[0].bbox: x2 > x1",
        ),
        ({"image": "FRAME", "models": ["nope"]}, 400, "unknown enrichment model(s) nope"),
        ({"image": "FRAME", "detections": [{"bbox": CAR["bbox"]}]}, 400, "class_name"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(
    server: Server, body: dict[str, Any], status: int, message: str
) -> None:
    if body.get("image") == "FRAME":
        body = {**body, "image": frame_b64()}
    reply = enrich(server, body)
    assert reply.status_code == status
    assert message in reply.json()["error"]


def test_not_json_and_too_large_bodies(server: Server) -> None:
    reply = httpx.post(f"{server.url}/enrich", content=b"{", timeout=30)
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]
    big = {"image": base64.b64encode(b"\xff\xd8\xff" + b"0" * 2_000_000).decode()}
    reply = enrich(server, big)
    assert reply.status_code == 413


def test_zoo_table_and_metrics(server: Server) -> None:
    enrich(server, {"image": frame_b64(), "detections": [PERSON]})
    table = httpx.get(f"{server.url}/api/zoo").json()
    rows = {row["name"]: row for row in table["models"]}
    assert table["device"] == "cpu" and table["budget_bytes"] > 0
    assert rows["threat"]["priority"] == "CRITICAL" and rows["threat"]["triggers"] == ["always"]
    assert rows["reid"]["state"] == "loaded" and rows["reid"]["resident_bytes"] > 0
    assert rows["reid"]["loads_from_disk"] == 1 and rows["reid"]["hits"] >= 1
    assert rows["reid"]["batched_items"] >= 1
    assert table["resident_bytes"] == sum(r["resident_bytes"] for r in rows.values())
    assert server.metric("hearthwatch_zoo_budget_bytes") == table["budget_bytes"]
    assert server.metric("hearthwatch_zoo_resident_bytes", model="reid") > 0
    assert server.metric("hearthwatch_zoo_loads_total", model="reid", source="disk") == 1
    assert server.metric("hearthwatch_zoo_requests_total", model="reid", result="miss") >= 1
    server.metric("hearthwatch_zoo_evictions_total", model="depth", priority="LOW")
    server.metric("hearthwatch_zoo_load_seconds_total", model="reid", source="disk")


def test_pin_loads_the_model_and_unknown_models_404(server: Server) -> None:
    reply = httpx.post(f"{server.url}/api/zoo/pet/pin", timeout=60)
    assert reply.status_code == 200 and reply.json() == {"name": "pet", "pinned": True}
    rows = {r["name"]: r for r in httpx.get(f"{server.url}/api/zoo").json()["models"]}
    assert rows["pet"]["pinned"] and rows["pet"]["state"] == "loaded"
    assert httpx.post(f"{server.url}/api/zoo/pet/unpin").json()["pinned"] is False
    missing = httpx.post(f"{server.url}/api/zoo/nope/pin")
    assert missing.status_code == 404 and "unknown zoo model 'nope'" in missing.json()["error"]


def test_repository_extension_through_tritonclient(server: Server) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert "model_repository" in client.get_server_metadata()["extensions"]
    client.unload_model("vehicle")
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["detector"]["state"] == "READY"
    assert index["vehicle"] == {
        "name": "vehicle",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    }
    client.load_model("vehicle")
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["vehicle"]["state"] == "READY"
    client.unload_model("vehicle")
    rows = {r["name"]: r for r in httpx.get(f"{server.url}/api/zoo").json()["models"]}
    assert rows["vehicle"]["state"] == "unloaded" and rows["vehicle"]["resident_bytes"] == 0
    client.load_model("detector")  # always loaded: a no-op
    with pytest.raises(InferenceServerException, match="only zoo models unload"):
        client.unload_model("detector")
    with pytest.raises(InferenceServerException, match="unknown zoo model 'nope'"):
        client.load_model("nope")
    ready = httpx.post(f"{server.url}/v2/repository/index", json={"ready": True}).json()
    assert all(row["state"] == "READY" for row in ready)
    bad = httpx.post(f"{server.url}/v2/repository/index", content=b"[1")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]


def test_a_model_that_cannot_fit_answers_503_with_retry_after(start_server: Any) -> None:
    tight = start_server(
        ENRICH_MODELS_FILE=str(CATALOG), VRAM_BUDGET_GB="0.000001", ENRICH_TIMEOUT_MS="500"
    )
    reply = enrich(tight, {"image": frame_b64(), "detections": []})
    assert reply.status_code == 503
    assert "threat" in reply.json()["error"] and int(reply.headers["Retry-After"]) >= 1
    deadline = time.monotonic() + 60  # a load already in its thread finishes, then gives way
    while (row := zoo_row(tight, "threat"))["state"] == "loading":
        assert time.monotonic() < deadline, "the load that could not fit never ended"
        time.sleep(0.1)
    assert row["state"] in {"unloaded", "on_host"} and row["leases"] == 0


def zoo_row(server: Any, name: str) -> dict[str, Any]:
    rows = {r["name"]: r for r in httpx.get(f"{server.url}/api/zoo").json()["models"]}
    return rows[name]  # type: ignore[no-any-return]


def test_the_default_catalog_lists_the_models_without_weights_as_unavailable(
    hog_server: Server,
) -> None:
    rows = {r["name"]: r for r in httpx.get(f"{hog_server.url}/api/zoo").json()["models"]}
    assert rows["clothing"]["state"] == "unavailable"
    assert "weights not found" in rows["clothing"]["reason"]
    reply = enrich(hog_server, {"image": frame_b64(), "detections": [PERSON]})
    assert reply.status_code == 200
    assert {"pose", "face", "reid"} <= set(reply.json()["models_run"])  # packaged: real
    assert {"threat", "clothing", "depth"} <= set(reply.json()["unavailable"])
    pin = httpx.post(f"{hog_server.url}/api/zoo/clothing/pin")
    assert pin.status_code == 409 and "unavailable" in pin.json()["error"]
