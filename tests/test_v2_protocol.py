"""Open Inference Protocol v2 through the stock ``tritonclient`` HTTP client, JSON and binary."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import Server, encode, jpeg
from photos import photo, photo_jpeg, two_people
from tritonclient.utils import InferenceServerException

ZOO_CATALOG = Path(__file__).parent / "data" / "enrich_models.yml"
OUTPUTS = [
    "num_detections",
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "detection_labels",
]


@pytest.fixture(scope="module")
def client(hog_server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(hog_server.url.removeprefix("http://"))


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("detector") and client.is_model_ready("detector", "1")
    assert not client.is_model_ready("missing")
    server = client.get_server_metadata()
    assert server["name"] == "hearthwatch"
    assert {"binary_tensor_data", "statistics"} <= set(server["extensions"])
    meta = client.get_model_metadata("detector")
    assert meta["platform"] == "opencv_hog"
    assert {i["name"] for i in meta["inputs"]} == {"IMAGE", "IMAGE_RGB"}
    assert [o["name"] for o in meta["outputs"]] == OUTPUTS


def test_model_config_is_triton_style(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("detector")
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 30_000
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 256
    assert config["input"][0] == {
        "name": "IMAGE",
        "data_type": "TYPE_STRING",
        "dims": [1],
        "optional": True,
    }
    assert config["parameters"]["class_names"]["string_value"] == "person"


def _image_input(frames: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("IMAGE", [len(frames), 1], "BYTES")
    if binary:
        data = np.array([[f] for f in frames], dtype=object)
    else:
        data = np.array([[base64.b64encode(f)] for f in frames], dtype=object)
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor


@pytest.mark.detections
@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_encoded_images(
    hog_server: Server, client: triton.InferenceServerClient, binary: bool
) -> None:
    """What /detect finds in each image, padded to the batch's most detections."""
    frames = [photo_jpeg(), encode(two_people(), ".png")]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]
    result = client.infer(
        "detector",
        [_image_input(frames, binary)],
        outputs=outputs,
        request_id="r1",
        parameters={"confidence_threshold": 0.3},
    )
    counts = result.as_numpy("num_detections")
    assert counts.shape == (2, 1) and counts.dtype == np.int32
    most = int(counts.max())
    boxes, scores = result.as_numpy("detection_boxes"), result.as_numpy("detection_scores")
    labels = result.as_numpy("detection_labels")
    assert boxes.shape == (2, most, 4) and scores.shape == (2, most) and labels.shape == (2, most)
    assert 0 < counts[0, 0] < counts[1, 0], counts  # the two-person frame has more
    for i, (n, frame) in enumerate(zip(counts[:, 0], frames, strict=True)):
        reply = httpx.post(f"{hog_server.url}/detect?confidence=0.3", content=frame, timeout=30)
        expected = reply.json()["detections"]
        assert n == len(expected)
        np.testing.assert_allclose(scores[i, :n], [d["confidence"] for d in expected], atol=1e-4)
        corners = [[d["bbox"][k] for k in ("x1", "y1", "x2", "y2")] for d in expected]
        np.testing.assert_allclose(boxes[i, :n], corners, atol=0.06)
        assert all(label in (b"person", "person") for label in labels[i, :n])
        assert (scores[i, n:] == 0).all() and (boxes[i, n:] == 0).all()  # padding
    assert result.get_response()["id"] == "r1"


def test_default_request_gets_binary_outputs(client: triton.InferenceServerClient) -> None:
    result = client.infer("detector", [_image_input([jpeg()], True)])
    response = result.get_response()
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("num_detections").shape == (1, 1)


@pytest.mark.detections
def test_infer_with_raw_pixels_in_json(client: triton.InferenceServerClient) -> None:
    """Pixels sent as numbers find what the same pixels sent as PNGs find."""
    pixels = np.stack([photo(160), photo(160)[:, ::-1]])  # 160 x 188: one person each
    tensor = triton.InferInput("IMAGE_RGB", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    wanted = [triton.InferRequestedOutput(name, binary_data=False) for name in OUTPUTS[:3]]
    result = client.infer("detector", [tensor], outputs=wanted)
    assert result.as_numpy("num_detections").tolist() == [[1], [1]]
    assert result.as_numpy("detection_labels") is None  # only what was asked for
    as_png = client.infer(
        "detector", [_image_input([encode(p, ".png") for p in pixels], True)], outputs=wanted
    )
    for name in OUTPUTS[:3]:
        np.testing.assert_array_equal(result.as_numpy(name), as_png.as_numpy(name))


def test_stats_count_inferences_and_give_percentiles(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("detector")["model_stats"][0]
    client.infer("detector", [_image_input([jpeg(), jpeg(200, 100)], True)])
    after = client.get_inference_statistics("detector")["model_stats"][0]
    assert after["inference_count"] == before["inference_count"] + 2
    assert (
        after["inference_stats"]["success"]["count"]
        == before["inference_stats"]["success"]["count"] + 2
    )
    assert (
        after["inference_stats"]["compute_infer"]["ns"]
        > before["inference_stats"]["compute_infer"]["ns"]
    )
    latency = after["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    everything = client.get_inference_statistics()
    assert [m["name"] for m in everything["model_stats"]] == ["detector"]


def test_client_errors_carry_the_servers_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'yolo'"):
        client.infer("yolo", [_image_input([jpeg()], True)])
    with pytest.raises(
        InferenceServerException, match="IMAGE\\[0\\]: body is not a supported image"
    ):
        client.infer("detector", [_image_input([b"junk"], True)])
    with pytest.raises(InferenceServerException, match="no version '7'"):
        client.get_model_metadata("detector", "7")


def _post(server: Server, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/detector/infer", content=body, headers=headers or {})


def _header(inputs: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


RGB_2x2: dict[str, object] = {
    "name": "IMAGE_RGB",
    "datatype": "UINT8",
    "shape": [1, 2, 2, 3],
    "data": list(range(12)),
}


@pytest.mark.parametrize(
    ("body", "headers", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "must be a JSON object"),
        (_header([]), None, "non-empty 'inputs'"),
        (
            _header([{"name": "IMAGE", "datatype": "TEXT", "shape": [1, 1], "data": ["x"]}]),
            None,
            "unknown datatype",
        ),
        (
            _header([{"name": "IMAGE", "datatype": "BYTES", "shape": [1, -1], "data": ["x"]}]),
            None,
            "non-negative",
        ),
        (
            _header([{"name": "IMAGE", "datatype": "BYTES", "shape": [2, 1], "data": ["x"]}]),
            None,
            "1 values in 'data' for shape [2, 1]",
        ),
        (
            _header([{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1]}]),
            None,
            "neither 'data'",
        ),
        (
            _header([{"name": "PIXELS", "datatype": "UINT8", "shape": [1], "data": [1]}]),
            None,
            "unknown input 'PIXELS'",
        ),
        (
            _header([{"name": "IMAGE", "datatype": "UINT8", "shape": [1, 1], "data": [1]}]),
            None,
            "must be BYTES",
        ),
        (
            _header(
                [
                    {
                        "name": "IMAGE_RGB",
                        "datatype": "UINT8",
                        "shape": [1, 2, 2],
                        "data": [1, 2, 3, 4],
                    }
                ]
            ),
            None,
            "[batch, height, width, 3]",
        ),
        (
            _header(
                [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["eA=="]}],
                outputs=[{"name": "masks"}],
            ),
            None,
            "unknown output 'masks'",
        ),
        (
            _header(
                [{"name": "IMAGE", "datatype": "BYTES", "shape": [9, 1], "data": ["eA=="] * 9}]
            ),
            None,
            "over max_batch_size 8",
        ),
        (
            _header(
                [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["eA=="]}],
                parameters={"confidence_threshold": 2},
            ),
            None,
            "confidence_threshold",
        ),
        (
            _header(
                [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["eA=="]}],
                parameters={"timeout": -5},
            ),
            None,
            "timeout",
        ),
        (
            _header(
                [
                    {
                        "name": "IMAGE",
                        "datatype": "BYTES",
                        "shape": [1, 1],
                        "parameters": {"binary_data_size": 50},
                    }
                ]
            ),
            {"Inference-Header-Content-Length": "0"},
            "outside the body",
        ),
        (_header([RGB_2x2]), {"Inference-Header-Content-Length": "-4"}, "non-negative integer"),
        (
            _header([{**RGB_2x2, "data": np.zeros((1, 1, 2, 2, 3), int).tolist()}]),
            None,
            "nested deeper",
        ),
        (_header([{**RGB_2x2, "data": ["1"] * 12}]), None, "must hold UINT8 numbers"),
        (_header([{**RGB_2x2, "data": [300] * 12}]), None, "out of UINT8's range"),
        (_header([{**RGB_2x2, "data": [True] * 12}]), None, "must hold UINT8 numbers"),
        (_header([RGB_2x2, RGB_2x2]), None, "given more than once"),
        (
            _header(
                [RGB_2x2, {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]
            ),
            None,
            "exactly one",
        ),
        (
            _header(
                [
                    {
                        "name": "IMAGE",
                        "datatype": "BYTES",
                        "shape": [1, 1],
                        "parameters": {"binary_data_size": True},
                    }
                ]
            ),
            None,
            "binary_data_size must be a non-negative integer",
        ),
        (_header([{**RGB_2x2, "shape": [1] * 9}]), None, "at most 8 are accepted"),
        (_header([{**RGB_2x2, "shape": [1, 2, 0, 3]}]), None, "no pixels"),
        (_header([RGB_2x2], parameters={"timeout": 4e9}), None, "at most 3600000000"),
        (_header([RGB_2x2], parameters={"binary_data_output": "yes"}), None, "true or false"),
        (
            _header(
                [RGB_2x2], outputs=[{"name": "num_detections", "parameters": {"classification": 3}}]
            ),
            None,
            "classification extension is not supported",
        ),
    ],
)
def test_malformed_requests_get_400_naming_the_problem(
    hog_server: Server, body: bytes, headers: dict[str, str] | None, fragment: str
) -> None:
    reply = _post(hog_server, body, headers)
    assert reply.status_code == 400, reply.text
    assert fragment in reply.json()["error"]


def _binary_request(
    name: str, datatype: str, shape: list[int], size: int, payload: bytes
) -> tuple[bytes, dict[str, str]]:
    header = _header(
        [
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "parameters": {"binary_data_size": size},
            }
        ]
    )
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "size", "payload", "fragment"),
    [
        ("IMAGE", "BYTES", [1, 1], 50, b"\x05\x00\x00\x00abc", "runs past the end"),
        ("IMAGE_RGB", "UINT8", [1, 2, 2, 3], 5, b"\x00" * 5, "do not fill shape"),
        ("IMAGE", "BYTES", [1, 1], 4, b"\x00" * 9, "not claimed"),
        ("IMAGE", "BYTES", [1, 1], 6, b"\x09\x00\x00\x00ab", "runs past the data"),
    ],
)
def test_binary_sizes_must_match_the_body(
    hog_server: Server,
    name: str,
    datatype: str,
    shape: list[int],
    size: int,
    payload: bytes,
    fragment: str,
) -> None:
    body, headers = _binary_request(name, datatype, shape, size, payload)
    reply = _post(hog_server, body, headers)
    assert reply.status_code == 400 and fragment in reply.json()["error"]


@pytest.mark.detections
def test_nested_and_flat_json_data_are_the_same_tensor(hog_server: Server) -> None:
    pixels = photo(160)[None]
    nested = {"name": "IMAGE_RGB", "datatype": "UINT8", "shape": list(pixels.shape)}
    wanted = [{"name": "num_detections"}, {"name": "detection_boxes"}]
    answers = []
    for data in (pixels.tolist(), pixels.reshape(-1).tolist()):
        reply = _post(hog_server, _header([{**nested, "data": data}], outputs=wanted))
        assert reply.status_code == 200, reply.text
        answers.append(reply.json()["outputs"])
    assert answers[0][0]["shape"] == [1, 1] and answers[0][0]["data"] == [1]
    assert answers[0] == answers[1]


def test_a_json_part_over_the_limit_is_413_naming_it(hog_server: Server) -> None:
    data = [0] * (2 * 1024 * 1024)  # "0, " each: over 4 MiB of JSON
    body = _header([{"name": "IMAGE_RGB", "datatype": "UINT8", "shape": [1, 1024, 2048, 1]}])
    reply = _post(hog_server, body[:-3] + b', "data": ' + json.dumps(data).encode() + b"}]}")
    assert reply.status_code == 413
    assert "binary data" in reply.json()["error"]


def test_zoo_models_infer_over_json_and_refuse_what_they_cannot_take(start_server: Any) -> None:
    server = start_server(ENRICH_MODELS_FILE=str(ZOO_CATALOG), ENRICH_TIMEOUT_MS="60000")
    url = f"{server.url}/v2/models/vehicle/infer"
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1]}
    crop = base64.b64encode(jpeg(64, 48, 5)).decode()
    reply = httpx.post(url, content=_header([{**image, "data": [crop]}], id="v1"), timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "vehicle" and body["model_version"] == "1" and body["id"] == "v1"
    (result,) = body["outputs"]
    assert result["name"] == "RESULT" and result["shape"] == [1, 1]
    assert isinstance(json.loads(result["data"][0]), dict)
    config = httpx.get(f"{server.url}/v2/models/vehicle/versions/1/config").json()
    assert config["max_batch_size"] == 16 and config["input"][0]["name"] == "IMAGE"
    stats = httpx.get(f"{server.url}/v2/models/vehicle/stats").json()["model_stats"][0]
    assert stats["inference_count"] >= 1
    refusals = [
        (_header([{**image, "shape": [17, 1], "data": [crop] * 17}]), "over max_batch_size 16"),
        (_header([{**image, "name": "IMAGE_RGB"}]), "unknown input 'IMAGE_RGB'"),
        (_header([{**image, "data": [crop]}], outputs=[{"name": "boxes"}]), "unknown output"),
        (_header([{**image, "data": ["eA=="]}]), "IMAGE[0]: body is not a supported image"),
    ]
    for request, fragment in refusals:
        reply = httpx.post(url, content=request, timeout=60)
        assert reply.status_code == 400 and fragment in reply.json()["error"], reply.text
    missing = httpx.get(f"{server.url}/v2/models/vehicle/versions/2")
    assert missing.status_code == 404 and "no version '2'" in missing.json()["error"]
