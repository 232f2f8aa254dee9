"""The published OpenAPI document: every reference resolves, every body is described, every
status an operation can answer is listed with the error shape of its routes (and
``Retry-After`` on each 503), each 200 has a concrete schema, and nothing is documented that
the server never answers (422, ``default``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hearthwatch.app.server import create_app
from hearthwatch.config import Settings

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external or malformed reference {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def schema_of(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return resolve(document, schema["$ref"]) if "$ref" in schema else schema


def request_body(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = document["paths"][path][method.lower()]
    assert "requestBody" in operation, f"{method} {path} documents no request body"
    return operation["requestBody"]  # type: ignore[no-any-return]


def statuses(document: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(code) for code in document["paths"][path][method.lower()]["responses"]}


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    broken = [ref for ref in refs(document) if not _resolves(document, ref)]
    assert not broken, broken


def _resolves(document: dict[str, Any], ref: str) -> bool:
    try:
        resolve(document, ref)
    except AssertionError:
        return False
    return True


def test_no_422_and_no_default_catch_all(document: dict[str, Any]) -> None:
    listed = [
        (method, path, code)
        for method, path, operation in operations(document)
        for code in operation["responses"]
        if code in ("422", "default")
    ]
    assert not listed, listed
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})


def test_image_bodies_are_described(document: dict[str, Any]) -> None:
    detect = request_body(document, "POST", "/detect")
    assert detect["required"] is True
    content = detect["content"]
    for raw in ("image/jpeg", "image/png", "application/octet-stream"):
        assert content[raw]["schema"] == {"type": "string", "format": "binary"}, raw
    form = schema_of(document, content["multipart/form-data"]["schema"])
    assert form["required"] == ["image"] and form["properties"]["image"]["format"] == "binary"
    batch = request_body(document, "POST", "/detect/batch")["content"]
    images = schema_of(document, batch["multipart/form-data"]["schema"])["properties"]["images"]
    assert images["type"] == "array" and images["items"]["format"] == "binary"


def test_v2_infer_bodies_are_described(document: dict[str, Any]) -> None:
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = document["paths"][path]["post"]
        content = request_body(document, "POST", path)["content"]
        request = schema_of(document, content["application/json"]["schema"])
        assert "inputs" in request["required"], path
        tensor = schema_of(document, request["properties"]["inputs"]["items"])
        assert {"name", "datatype", "shape"} <= set(tensor["required"]), path
        assert content["application/octet-stream"]["schema"]["format"] == "binary", path
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [h["name"] for h in headers] == ["Inference-Header-Content-Length"], path


def test_the_unversioned_infer_route_takes_no_version(document: dict[str, Any]) -> None:
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}"):
        names = [p["name"] for p in document["paths"][path]["post" if "infer" in path else "get"]
                 .get("parameters", [])]  # fmt: skip
        assert "version" not in names, (path, names)


def test_llm_bodies_are_described(document: dict[str, Any]) -> None:
    for path, needed in (("/v1/chat/completions", "messages"), ("/v1/completions", "prompt")):
        body = request_body(document, "POST", path)
        assert body["required"] is True
        schema = schema_of(document, body["content"]["application/json"]["schema"])
        assert needed in schema["required"], path
        assert {"max_tokens", "stream", "temperature"} <= set(schema["properties"]), path


def test_each_operation_lists_the_statuses_it_answers(document: dict[str, Any]) -> None:
    expected = {
        ("POST", "/detect"): {200, 400, 404, 413, 415, 503, 504},
        ("POST", "/detect/batch"): {200, 400, 404, 413, 415, 503, 504},
        ("POST", "/v2/models/{name}/infer"): {200, 400, 404, 413, 415, 503, 504},
        ("POST", "/v2/models/{name}/versions/{version}/infer"): {200, 400, 404, 413, 503, 504},
        ("GET", "/v2/models/{name}"): {200, 404},
        ("GET", "/v2/models/{name}/ready"): {200, 404, 503},
        ("GET", "/v2/health/ready"): {200, 503},
        ("POST", "/v2/repository/models/{name}/load"): {200, 400, 404, 409, 503},
        ("POST", "/v2/repository/models/{name}/unload"): {200, 400, 404, 409, 503},
        ("POST", "/enrich"): {200, 400, 404, 413, 415, 503, 504},
        ("GET", "/api/zoo"): {200, 404},
        ("POST", "/api/zoo/{name}/pin"): {200, 404, 409, 503},
        ("GET", "/api/system/gpu/history"): {200, 400},
        ("POST", "/v1/chat/completions"): {200, 400, 404, 413, 415, 503, 504},
        ("POST", "/v1/completions"): {200, 400, 404, 413, 415, 503, 504},
        ("GET", "/v1/models"): {200, 404},
        ("POST", "/api/cameras"): {201, 400, 409, 413, 415},
        ("PUT", "/api/cameras/{camera_id}"): {200, 400, 404, 409},
        ("DELETE", "/api/cameras/{camera_id}"): {204, 404, 409},
        ("POST", "/api/cameras/{camera_id}/frames"): {202, 400, 404, 409, 413, 503},
        ("GET", "/api/events"): {200, 400},
        ("GET", "/api/events/{event_id}"): {200, 404},
    }
    missing = {
        key: sorted(codes - statuses(document, *key))
        for key, codes in expected.items()
        if not codes <= statuses(document, *key)
    }
    assert not missing, missing
    for method, path, operation in operations(document):
        if operation.get("requestBody"):
            assert {400, 408, 413, 415} <= statuses(document, method, path), (method, path)


def test_errors_have_their_routes_shape_and_503s_say_when_to_retry(
    document: dict[str, Any],
) -> None:
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            if code.startswith("2"):
                continue
            schema = schema_of(document, response["content"]["application/json"]["schema"])
            error = schema_of(document, schema["properties"]["error"])
            if path.startswith("/v1/"):
                assert error["type"] == "object", (method, path, code)
                assert {"message", "type", "code"} <= set(error["required"]), (method, path)
            else:
                assert error["type"] == "string" and schema["required"] == ["error"], (path, code)
            if code == "503":
                retry_after = response.get("headers", {}).get("Retry-After", {})
                assert retry_after.get("required") is True, (method, path, "Retry-After")


def test_every_200_has_a_concrete_schema(document: dict[str, Any]) -> None:
    """Every success is 200, or 201/202 with a body, or 204 without one."""
    vague = []
    for method, path, operation in operations(document):
        (code,) = [c for c in operation["responses"] if c.startswith("2")]
        content = operation["responses"][code].get("content", {})
        if code == "204":
            assert not content, (method, path)
            continue
        if not content:
            vague.append((method, path, "no content"))
        for media_type, entry in content.items():
            schema = schema_of(document, entry.get("schema", {}))
            closed = schema.get("additionalProperties") is False  # e.g. {} and nothing else
            if not (
                schema.get("properties") or closed or schema.get("type") in ("string", "array")
            ):
                vague.append((method, path, media_type))
    assert not vague, vague
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(chat)
