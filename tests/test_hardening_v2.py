"""Regression tests for the Open Inference Protocol v2 routes: shapes and fields that used to
stall the event loop or answer 500, and zoo models the repository lists READY but v2 did not
serve. One server (the default detector and small random-initialised enrichment models)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import Server, jpeg
from tritonclient.utils import InferenceServerException

CATALOG = Path(__file__).parent / "data" / "enrich_models.yml"
PHOTO = base64.b64encode(jpeg(160, 120)).decode()
GOOD_INPUT = {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": [PHOTO]}


@pytest.fixture(scope="module")
def server(start_server: Any) -> Server:
    return start_server(  # type: ignore[no-any-return]
        ENRICH_MODELS_FILE=str(CATALOG), ENRICH_TIMEOUT_MS="60000", MAX_BATCH_SIZE="8"
    )


@pytest.fixture(scope="module")
def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)


def _infer(server: Server, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/models/detector/infer", content=body, headers=headers, timeout=120
    )


def test_a_600000_dimension_shape_is_refused_without_stalling_other_requests(
    server: Server,
) -> None:
    body = json.dumps(
        {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [2] * 600_000, "data": []}]}
    ).encode()
    replies: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: replies.append(_infer(server, body)))
    sender.start()
    slowest = 0.0
    while sender.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{server.url}/v2/health/live", timeout=120).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    sender.join()
    assert slowest < 3.0, f"/v2/health/live took {slowest:.1f} s while the shape was parsed"
    (reply,) = replies
    assert reply.status_code == 400, reply.text[:300]
    assert "'shape' has 600000 dimensions; at most 8" in reply.json()["error"]


def _header(inputs: list[Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary(spec: dict[str, Any], payload: bytes) -> tuple[bytes, dict[str, str]]:
    header = _header([spec])
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


NESTED = b'{"inputs": ' + b"[" * 1500 + b"]" * 1500 + b"}"
MALFORMED: dict[str, tuple[bytes, dict[str, str] | None, str]] = {
    "datatype-list": (_header([{**GOOD_INPUT, "datatype": ["BYTES"]}]), None, "datatype"),
    "datatype-object": (_header([{**GOOD_INPUT, "datatype": {"a": 1}}]), None, "datatype"),
    "output-parameters-list": (
        _header([GOOD_INPUT], outputs=[{"name": "num_detections", "parameters": [1]}]),
        None,
        "output 'num_detections': 'parameters' must be an object",
    ),
    "output-parameters-string": (
        _header([GOOD_INPUT], outputs=[{"name": "num_detections", "parameters": "binary"}]),
        None,
        "'parameters' must be an object",
    ),
    "shape-zero-by-huge": (
        _header([{**GOOD_INPUT, "shape": [0, 10**20], "data": []}]),
        None,
        "'shape'",
    ),
    "binary-shape-50-huge-dims": (
        *_binary(
            {
                "name": "IMAGE",
                "datatype": "BYTES",
                "shape": [10**100] * 50,
                "parameters": {"binary_data_size": 4},
            },
            b"\x00" * 4,
        ),
        "'shape' has 50 dimensions",
    ),
    "timeout-nan": (
        _header([GOOD_INPUT])[:-1] + b', "parameters": {"timeout": NaN}}',
        None,
        "NaN",
    ),
    "timeout-400-digits": (
        _header([GOOD_INPUT])[:-1] + b', "parameters": {"timeout": ' + b"9" * 400 + b"}}",
        None,
        "parameter timeout",
    ),
    "nested-1500-deep": (NESTED, None, "nested more than"),
    "id-object": (_header([GOOD_INPUT], id={"a": 1}), None, "'id' must be a string"),
    "bytes-lone-surrogate": (
        b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], '
        b'"data": ["\\ud800"], "parameters": {"content_type": "str"}}]}',
        None,
        "unpaired UTF-16 surrogate",
    ),
    "rgb-zero-height": (
        _header([{"name": "IMAGE_RGB", "datatype": "UINT8", "shape": [1, 0, 5, 3], "data": []}]),
        None,
        "no pixels",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_fields_get_a_400_naming_them(server: Server, case: str) -> None:
    body, headers, fragment = MALFORMED[case]
    reply = _infer(server, body, headers)
    assert reply.status_code == 400, reply.text[:300]
    assert fragment in reply.json()["error"]


def _error_of(call: Callable[[], object]) -> str:
    try:
        call()
    except InferenceServerException as exc:
        return str(exc)
    return "no error"


def _images(frames: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("IMAGE", [len(frames), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[f] for f in frames], dtype=object))
    return tensor


def test_every_model_the_index_lists_ready_answers_ready_metadata_and_infer(
    client: triton.InferenceServerClient,
) -> None:
    client.load_model("pose")
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["pose"]["state"] == "READY"
    ready = [name for name, row in index.items() if row["state"] == "READY"]
    assert {"detector", "pose"} <= set(ready)
    for name in ready:
        assert client.is_model_ready(name) and client.is_model_ready(name, "1"), name
        assert client.get_model_metadata(name, "1")["name"] == name
        assert client.get_model_config(name)["name"] == name
    meta = client.get_model_metadata("pose")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("IMAGE", "BYTES")]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("RESULT", "BYTES")]

    result = client.infer("pose", [_images([jpeg(48, 96, 1), jpeg(60, 120, 2)])])
    poses = result.as_numpy("RESULT")
    assert poses.shape == (2, 1)
    assert all(isinstance(json.loads(p), dict) and json.loads(p) for p in poses[:, 0])
    threats = client.infer("threat", [_images([jpeg(320, 240, 3)])]).as_numpy("RESULT")
    assert "threats" in json.loads(threats[0, 0])["frame"]

    client.unload_model("vehicle")
    assert not client.is_model_ready("vehicle")
    assert client.get_model_metadata("vehicle")["outputs"][0]["name"] == "RESULT"
    assert "unknown model 'nope'" in _error_of(lambda: client.get_model_metadata("nope"))


def test_load_with_a_config_or_files_is_refused(
    server: Server, client: triton.InferenceServerClient
) -> None:
    config = json.dumps({"max_batch_size": 64})
    message = _error_of(lambda: client.load_model("vehicle", config=config))
    assert "parameters.config is not supported" in message
    files = {"parameters": {"file:1/model.pt": "AAAA"}}
    reply = httpx.post(f"{server.url}/v2/repository/models/vehicle/load", json=files, timeout=60)
    assert reply.status_code == 400 and "'file:" in reply.json()["error"]


def test_unversioned_model_routes_have_no_version_parameter(server: Server) -> None:
    paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    unversioned = [p for p in paths if p.startswith("/v2/models/{name}") and "versions" not in p]
    assert "/v2/models/{name}/infer" in unversioned
    for path in unversioned:
        for method, operation in paths[path].items():
            names = [p["name"] for p in operation.get("parameters", [])]
            assert "version" not in names, f"{method.upper()} {path} lists a version parameter"
