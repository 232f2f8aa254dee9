"""Open Inference Protocol v2 request parsing and response encoding, JSON and binary.

Binary tensor data (Triton's ``binary_tensor_data`` extension, what ``tritonclient`` sends by
default): the JSON header's length is in ``Inference-Header-Content-Length``; raw tensor bytes
follow it in input order, each input's size in ``parameters.binary_data_size``. BYTES elements
are each prefixed by a 4-byte little-endian length.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearthwatch.api.errors import ApiError

NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.uint16,  # raw bit patterns; numpy has no bfloat16
    "BYTES": np.object_,
}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass
class InputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None
    binary_output_default: bool


def _deserialize_bytes(raw: bytes, what: str) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad_request(f"{what}: BYTES data ends inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise bad_request(f"{what}: BYTES element of {length} bytes runs past the data")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [data]


def _json_bytes_element(value: Any, what: str, encoding: str | None) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f"{what}: BYTES elements in JSON must be strings")
    if encoding == "str":
        return value.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if encoding == "base64":
            raise bad_request(f"{what}: element is not valid base64") from None
        return value.encode()


def _parse_input(spec: Any, binary: memoryview, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(spec, dict):
        raise bad_request("each entry of 'inputs' must be an object")
    name = spec.get("name")
    datatype = spec.get("datatype")
    shape = spec.get("shape")
    if not isinstance(name, str) or not name:
        raise bad_request("input without a 'name'")
    what = f"input '{name}'"
    if datatype not in NUMPY_DTYPES:
        raise bad_request(
            f"{what}: unknown datatype {datatype!r}; known: {', '.join(NUMPY_DTYPES)}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise bad_request(f"{what}: 'shape' must be a list of non-negative integers")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request(f"{what}: 'parameters' must be an object")
    count = math.prod(shape)
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise bad_request(f"{what}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise bad_request(
                f"{what}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} bytes left)"
            )
        raw = bytes(binary[offset : offset + size])
        offset += size
        if datatype == "BYTES":
            items = _deserialize_bytes(raw, what)
            if len(items) != count:
                raise bad_request(f"{what}: {len(items)} BYTES elements for shape {shape}")
            data = np.empty(count, dtype=object)
            data[:] = items
        else:
            dtype = np.dtype(NUMPY_DTYPES[datatype])
            if size != count * dtype.itemsize:
                raise bad_request(
                    f"{what}: {size} bytes of {datatype} do not fill shape {shape} "
                    f"({count * dtype.itemsize} expected)"
                )
            data = np.frombuffer(raw, dtype=dtype)
    else:
        if "data" not in spec:
            raise bad_request(f"{what}: neither 'data' nor parameters.binary_data_size given")
        flat = _flatten(spec["data"])
        if len(flat) != count:
            raise bad_request(f"{what}: {len(flat)} values in 'data' for shape {shape}")
        if datatype == "BYTES":
            encoding = parameters.get("content_type")
            data = np.empty(count, dtype=object)
            data[:] = [_json_bytes_element(v, what, encoding) for v in flat]
        else:
            try:
                data = np.asarray(flat, dtype=NUMPY_DTYPES[datatype])
            except (TypeError, ValueError, OverflowError) as exc:
                raise bad_request(
                    f"{what}: 'data' does not hold {datatype} values: {exc}"
                ) from None
    return InputTensor(name, datatype, shape, data.reshape(shape), parameters), offset


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse a v2 inference request; any problem raises a 400 naming it."""
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise bad_request("Inference-Header-Content-Length is not an integer") from None
        if not 0 < json_size <= len(body):
            raise bad_request(
                f"Inference-Header-Content-Length {json_size} is outside the body "
                f"of {len(body)} bytes"
            )
    else:
        json_size = len(body)
    if json_size == 0:
        raise bad_request("empty inference request")
    try:
        header = json.loads(body[:json_size])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"inference request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad_request("inference request must be a JSON object")
    inputs_spec = header.get("inputs")
    if not isinstance(inputs_spec, list) or not inputs_spec:
        raise bad_request("inference request needs a non-empty 'inputs' list")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request("'parameters' must be an object")
    binary = memoryview(body)[json_size:]
    offset = 0
    inputs = []
    for spec in inputs_spec:
        tensor, offset = _parse_input(spec, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise bad_request(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    outputs = None
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise bad_request("'outputs' must be a list")
        outputs = []
        for out in header["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise bad_request("each entry of 'outputs' must be an object with a 'name'")
            out_params = out.get("parameters") or {}
            outputs.append(RequestedOutput(out["name"], bool(out_params.get("binary_data", False))))
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        parameters=parameters,
        inputs=inputs,
        outputs=outputs,
        binary_output_default=bool(parameters.get("binary_data_output", False)),
    )


@dataclass
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: list[OutputTensor],
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the JSON header's length."""
    wanted = {o.name: o.binary for o in request.outputs} if request.outputs is not None else None
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        header["id"] = request.id
    entries, blobs = [], []
    for tensor in outputs:
        if wanted is not None and tensor.name not in wanted:
            continue
        binary = wanted[tensor.name] if wanted is not None else request.binary_output_default
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.data.shape),
        }
        flat = tensor.data.reshape(-1)
        if binary:
            if tensor.datatype == "BYTES":
                blob = serialize_bytes([bytes(v) for v in flat])
            else:
                blob = np.ascontiguousarray(flat).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif tensor.datatype == "BYTES":
            entry["data"] = [bytes(v).decode("utf-8", "replace") for v in flat]
        else:
            entry["data"] = flat.tolist()
        entries.append(entry)
    header["outputs"] = entries
    encoded = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return encoded, None
    return encoded + b"".join(blobs), len(encoded)


def validate_requested_outputs(request: InferRequest, known: list[str]) -> None:
    if request.outputs is None:
        return
    for out in request.outputs:
        if out.name not in known:
            raise bad_request(f"unknown output '{out.name}'; this model has {', '.join(known)}")
