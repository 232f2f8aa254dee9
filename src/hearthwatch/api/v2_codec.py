"""Open Inference Protocol v2 request parsing and response encoding, JSON and binary.

Binary tensor data (Triton's ``binary_tensor_data`` extension, what ``tritonclient`` sends by
default): the JSON header's length is in ``Inference-Header-Content-Length``; raw tensor bytes
follow it in input order, each input's size in ``parameters.binary_data_size``. BYTES elements
are each prefixed by a 4-byte little-endian length.

Every field is checked before any work is sized by it: a shape has at most :data:`MAX_RANK`
dimensions and no more elements than the body can carry (each element takes at least one
byte), the model's :data:`InputCheck` accepts each input's name, datatype and shape before its
data is read, and the JSON part is at most :data:`MAX_JSON_HEADER_BYTES` (its parse holds the
interpreter lock), so no arithmetic, allocation or loop grows past what the model can take.
Anything malformed is a 400 naming the field. Parsing is pure and thread-safe (input checks
must only read); :func:`read_infer_request` runs it on a worker thread for bodies large enough
to cost the event loop real time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearthwatch.api.errors import ApiError
from hearthwatch.api.json_body import parse_json
from hearthwatch.runtime.serving.batcher import BatchingConfig

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
MAX_RANK = 8
MAX_NAME_CHARS = 256
MAX_TIMEOUT_US = 3600 * 1_000_000  # one hour
MAX_JSON_HEADER_BYTES = 4 * 1024 * 1024
INLINE_PARSE_BYTES = 64 * 1024  # larger bodies are parsed on a worker thread
_BYTES_PREFIX = 4


InputCheck = Callable[[str, str, list[int]], None]
"""A model's check of one input's (name, datatype, shape), run before its data is read; it
raises an :class:`ApiError` for an input the model cannot take."""


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


def _shape_text(shape: list[int]) -> str:
    """A validated shape for a message, each dimension shown in at most 20 characters."""
    return "[" + ", ".join(str(d) if d < 10**20 else "(over 10^20)" for d in shape) + "]"


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{what} without a 'name'")
    if len(value) > MAX_NAME_CHARS:
        raise bad_request(f"{what} 'name' is longer than {MAX_NAME_CHARS} characters")
    return value


def _flag(parameters: dict[str, Any], key: str, what: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f"{what}: parameter {key} must be true or false")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    """An optional JSON object field ({} when absent or null)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be an object")
    return value


def _parse_shape(value: Any, what: str, limit: int) -> list[int]:
    """The shape, refused before any arithmetic on it when it has more than
    :data:`MAX_RANK` dimensions or could hold more than ``limit`` elements."""
    if not isinstance(value, list):
        raise bad_request(f"{what}: 'shape' must be a list of non-negative integers")
    if len(value) > MAX_RANK:
        raise bad_request(
            f"{what}: 'shape' has {len(value)} dimensions; at most {MAX_RANK} are accepted"
        )
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise bad_request(f"{what}: 'shape' must be a list of non-negative integers")
    bound = 1
    for dim in value:  # zero dimensions count as one: every dimension must fit on its own too
        if dim > limit or bound * max(dim, 1) > limit:
            raise bad_request(
                f"{what}: 'shape' {_shape_text(value)} holds more elements than a body of "
                f"{limit} bytes can carry"
            )
        bound *= max(dim, 1)
    return value


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _deserialize_bytes(raw: bytes, count: int, what: str) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(items) == count:
            raise bad_request(f"{what}: binary data holds more than the shape's {count} elements")
        if offset + _BYTES_PREFIX > len(raw):
            raise bad_request(f"{what}: BYTES data ends inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += _BYTES_PREFIX
        if offset + length > len(raw):
            raise bad_request(f"{what}: BYTES element of {length} bytes runs past the data")
        items.append(raw[offset : offset + length])
        offset += length
    if len(items) != count:
        raise bad_request(f"{what}: {len(items)} BYTES elements for {count} in the shape")
    return items


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _flatten(data: Any, rank: int, what: str) -> list[Any]:
    """The values of ``data``, flat or nested like the shape, one nesting level at a time (no
    recursion); lists nested deeper than the shape's ``rank`` are refused."""
    level = data if isinstance(data, list) else [data]
    for _ in range(1, max(rank, 1)):
        if not any(type(item) is list for item in level):
            return level
        if all(type(item) is list for item in level):
            level = list(itertools.chain.from_iterable(level))
        else:
            level = [v for item in level for v in (item if type(item) is list else (item,))]
    if any(type(item) is list for item in level):
        raise bad_request(f"{what}: 'data' is nested deeper than its shape's {rank} dimensions")
    return level


def _json_bytes_element(value: Any, what: str, encoding: str | None) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f"{what}: BYTES elements in JSON must be strings")
    if encoding == "str":
        return value.encode()  # valid Unicode: parse_json refuses unpaired surrogates
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if encoding == "base64":
            raise bad_request(f"{what}: element is not valid base64") from None
        return value.encode()


def _json_values(flat: list[Any], datatype: str, what: str) -> np.ndarray:
    """JSON numbers (or booleans for BOOL) as an array of ``datatype``; anything else, a value
    out of the type's range or, for floating types, one that overflows it is refused."""
    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if datatype == "BOOL":
        allowed: tuple[type, ...] = (bool,)
    elif dtype.kind == "f":
        allowed = (int, float)
    else:
        allowed = (int,)
    if not all(type(v) in allowed for v in flat):
        kind = "booleans" if datatype == "BOOL" else f"{datatype} numbers"
        raise bad_request(f"{what}: 'data' must hold {kind}")
    try:
        with np.errstate(over="ignore"):
            data = np.asarray(flat, dtype=dtype)
    except (OverflowError, ValueError):
        raise bad_request(f"{what}: 'data' holds a value out of {datatype}'s range") from None
    if dtype.kind == "f" and not np.isfinite(data).all():
        raise bad_request(f"{what}: 'data' holds a value out of {datatype}'s range")
    return data


def _parse_input(
    spec: Any, binary: memoryview, offset: int, limit: int, check: InputCheck
) -> tuple[InputTensor, int]:
    if not isinstance(spec, dict):
        raise bad_request("each entry of 'inputs' must be an object")
    name = _name(spec.get("name"), "input")
    what = f"input '{name}'"
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise bad_request(
            f"{what}: unknown datatype; 'datatype' must be one of {', '.join(NUMPY_DTYPES)}"
        )
    shape = _parse_shape(spec.get("shape"), what, limit)
    check(name, datatype, shape)
    count = _count(shape)
    parameters = _object(spec.get("parameters"), f"{what}: 'parameters'")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in spec:
            raise bad_request(f"{what}: give either 'data' or parameters.binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad_request(f"{what}: binary_data_size must be a non-negative integer")
        if size > len(binary) - offset:
            raise bad_request(
                f"{what}: binary_data_size runs past the end of the body "
                f"({len(binary) - offset} bytes left)"
            )
        raw = bytes(binary[offset : offset + size])
        offset += size
        if datatype == "BYTES":
            if count * _BYTES_PREFIX > size:
                raise bad_request(
                    f"{what}: binary_data_size {size} is too small for {count} BYTES elements"
                )
            data = np.empty(count, dtype=object)
            data[:] = _deserialize_bytes(raw, count, what)
        else:
            dtype = np.dtype(NUMPY_DTYPES[datatype])
            if size != count * dtype.itemsize:
                raise bad_request(
                    f"{what}: {size} bytes of {datatype} do not fill shape {_shape_text(shape)} "
                    f"({count * dtype.itemsize} expected)"
                )
            data = np.frombuffer(raw, dtype=dtype)
    else:
        if "data" not in spec:
            raise bad_request(f"{what}: neither 'data' nor parameters.binary_data_size given")
        flat = _flatten(spec["data"], len(shape), what)
        if len(flat) != count:
            raise bad_request(
                f"{what}: {len(flat)} values in 'data' for shape {_shape_text(shape)}"
            )
        if datatype == "BYTES":
            encoding = parameters.get("content_type")
            if encoding is not None and not isinstance(encoding, str):
                raise bad_request(f"{what}: parameter content_type must be a string")
            data = np.empty(count, dtype=object)
            data[:] = [_json_bytes_element(v, what, encoding) for v in flat]
        else:
            data = _json_values(flat, datatype, what)
    return InputTensor(name, datatype, shape, data.reshape(shape), parameters), offset


def only_input(request: InferRequest, names: list[str]) -> InputTensor:
    """The request's one input (its name already checked to be one of ``names``)."""
    if len(request.inputs) != 1:
        raise bad_request(f"give exactly one of the inputs {' and '.join(names)}")
    return request.inputs[0]


def check_signature(specs: dict[str, tuple[str, list[int]]], name: str, datatype: str) -> None:
    """Refuse an input that is not one of ``specs`` (name → datatype, shape) or not of its
    datatype."""
    if name not in specs:
        raise bad_request(f"unknown input '{name}'; this model takes {' or '.join(specs)}")
    expected = specs[name][0]
    if datatype != expected:
        raise bad_request(f"input '{name}' must be {expected}, got {datatype}")


def check_encoded_images(name: str, shape: list[int], max_batch_size: int) -> None:
    """Refuse a tensor of encoded images that is not [batch, 1] (or [batch]) with a batch of
    1 to ``max_batch_size``."""
    if len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
        raise bad_request(f"input '{name}' must have shape [batch, 1], got {shape}")
    if shape[0] == 0:
        raise bad_request(f"input '{name}' holds no images")
    if shape[0] > max_batch_size:
        raise bad_request(f"batch of {shape[0]} is over max_batch_size {max_batch_size}")


def request_timeout_s(parameters: dict[str, Any], default_s: float) -> float:
    """The ``timeout`` request parameter (µs) in seconds, ``default_s`` when absent."""
    value = parameters.get("timeout")
    if value is None:
        return default_s
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_US
    ):
        raise bad_request(
            f"parameter timeout must be a number of microseconds over 0 and at most "
            f"{MAX_TIMEOUT_US} (one hour)"
        )
    return value / 1e6


def _json_size(header_length: str | None, body_size: int) -> int:
    if header_length is None:
        return body_size
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):
        raise bad_request("Inference-Header-Content-Length is not a non-negative integer")
    digits = text.lstrip("0") or "0"
    if len(digits) > 20 or not 0 < int(digits) <= body_size:
        raise bad_request(
            f"Inference-Header-Content-Length {digits} is outside the body of {body_size} bytes"
        )
    return int(digits)


def _parse_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'outputs' must be a list")
    outputs = []
    for out in value:
        if not isinstance(out, dict):
            raise bad_request("each entry of 'outputs' must be an object with a 'name'")
        name = _name(out.get("name"), "output")
        what = f"output '{name}'"
        parameters = _object(out.get("parameters"), f"{what}: 'parameters'")
        if "classification" in parameters:
            raise bad_request(f"{what}: the classification extension is not supported")
        outputs.append(RequestedOutput(name, _flag(parameters, "binary_data", what)))
    return outputs


def parse_infer_request(
    body: bytes, header_length: str | None, check_input: InputCheck
) -> InferRequest:
    """Parse a v2 inference request, each input's data only after ``check_input`` accepted its
    name, datatype and shape; any problem raises a 400 naming it."""
    json_size = _json_size(header_length, len(body))
    if json_size == 0:
        raise bad_request("empty inference request")
    if json_size > MAX_JSON_HEADER_BYTES:
        raise ApiError(
            413,
            f"JSON part of {json_size} bytes is over the limit of {MAX_JSON_HEADER_BYTES}; send "
            "large tensors as binary data (parameters.binary_data_size)",
        )
    header = parse_json(body[:json_size], "inference request")
    if not isinstance(header, dict):
        raise bad_request("inference request must be a JSON object")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("'id' must be a string")
    inputs_spec = header.get("inputs")
    if not isinstance(inputs_spec, list) or not inputs_spec:
        raise bad_request("inference request needs a non-empty 'inputs' list")
    parameters = _object(header.get("parameters"), "'parameters'")
    binary_output_default = _flag(parameters, "binary_data_output", "request")
    binary = memoryview(body)[json_size:]
    offset = 0
    inputs: list[InputTensor] = []
    for spec in inputs_spec:
        tensor, offset = _parse_input(spec, binary, offset, len(body), check_input)
        if any(t.name == tensor.name for t in inputs):
            raise bad_request(f"input '{tensor.name}' is given more than once")
        inputs.append(tensor)
    if offset != len(binary):
        raise bad_request(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    return InferRequest(
        id=request_id,
        parameters=parameters,
        inputs=inputs,
        outputs=_parse_outputs(header.get("outputs")),
        binary_output_default=binary_output_default,
    )


async def read_infer_request(
    body: bytes, header_length: str | None, check_input: InputCheck
) -> InferRequest:
    """:func:`parse_infer_request`, on a worker thread when the body is large enough for its
    parse to hold up the event loop."""
    if len(body) <= INLINE_PARSE_BYTES:
        return parse_infer_request(body, header_length, check_input)
    return await asyncio.to_thread(parse_infer_request, body, header_length, check_input)


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


def scheduling_config(
    batching: BatchingConfig, default_timeout_ms: float, device_type: str
) -> dict[str, Any]:
    """The ``dynamic_batching`` and ``instance_group`` of a Triton model configuration."""
    return {
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(batching.max_queue_delay_ms * 1000),
            "preserve_ordering": False,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": int(default_timeout_ms * 1000),
                "allow_timeout_override": True,
                "max_queue_size": batching.max_queue_size,
            },
        },
        "instance_group": [
            {"kind": "KIND_GPU" if device_type == "cuda" else "KIND_CPU", "count": 1}
        ],
    }
