"""Validation of what callers hand the events store: each ``check_*`` answers the value when it
is well formed and raises :class:`InvalidRecordError` naming the field and what is wrong with it
otherwise (never echoing the value). Stateless: safe on any thread.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from hearthwatch.security.store.errors import InvalidRecordError
from hearthwatch.security.store.schema import ID_LENGTH, LABEL_LENGTH, PATH_LENGTH

MAX_EPOCH_S = 32_503_680_000.0
"""Year 3000: a later time is a unit mistake (milliseconds), not a moment."""
MAX_LIST_ITEMS = 256
MAX_TEXT_LENGTH = 10_000
MAX_JSON_BYTES = 256 * 1024
MAX_DIMENSION = 100_000
MAX_INT64 = 2**63 - 1
"""The largest whole number a BIGINT column holds."""
CAMERA_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""A camera id is a slug: it appears in URLs and file names."""


def check_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecordError(f"{name} must be a number of epoch seconds")
    if not math.isfinite(value) or not 0.0 <= value <= MAX_EPOCH_S:
        raise InvalidRecordError(f"{name} must be epoch seconds between 0 and {MAX_EPOCH_S:.0f}")
    return float(value)


def check_number(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecordError(f"{name} must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidRecordError(f"{name} must be a finite number from {low:g} to {high:g}")
    return float(value)


def check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRecordError(f"{name} must be a whole number from {low} to {high}")
    return value


def check_text(name: str, value: str, max_length: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRecordError(f"{name} must be text")
    if not empty and not value.strip():
        raise InvalidRecordError(f"{name} must not be empty")
    if len(value) > max_length:
        raise InvalidRecordError(f"{name} is longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidRecordError(f"{name} holds a NUL character")
    return value


def check_id(name: str, value: str) -> str:
    check_text(name, value, ID_LENGTH)
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidRecordError(f"{name} holds whitespace or control characters")
    return value


def check_camera_id(value: str) -> str:
    if not isinstance(value, str) or not CAMERA_ID.fullmatch(value):
        raise InvalidRecordError(
            "camera_id must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a "
            "letter or digit"
        )
    return value


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidRecordError(f"{name} must be one of {', '.join(choices)}")
    return value


def check_names(name: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """A list of labels or zone names: each a short non-empty text."""
    if not isinstance(values, tuple):
        raise InvalidRecordError(f"{name} must be a tuple of names")
    if len(values) > MAX_LIST_ITEMS:
        raise InvalidRecordError(f"{name} holds more than {MAX_LIST_ITEMS} names")
    for value in values:
        check_text(f"each of {name}", value, LABEL_LENGTH)
    return values


def check_relative_path(name: str, value: str | None) -> str | None:
    """A path relative to the data directory that cannot step out of it."""
    if value is None:
        return None
    check_text(name, value, PATH_LENGTH)
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value or value != path.as_posix():
        raise InvalidRecordError(
            f"{name} must be a normalised relative path inside the data directory"
        )
    return value


def check_json_object(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object of bounded size: plain, finite, string keys."""
    if not isinstance(value, Mapping):
        raise InvalidRecordError(f"{name} must be a JSON object")
    try:
        encoded = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidRecordError(
            f"{name} must hold only JSON values (text, finite numbers, booleans, null, "
            "lists and objects with text keys)"
        ) from None
    if len(encoded) > MAX_JSON_BYTES:
        raise InvalidRecordError(f"{name} is larger than {MAX_JSON_BYTES} bytes as JSON")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def check_embedding(value: np.ndarray | None) -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.ndim != 1:
        raise InvalidRecordError("embedding must be a 1-D float32 array")
    if not 1 <= value.size <= 65_536:
        raise InvalidRecordError("embedding must hold 1 to 65536 values")
    if not np.isfinite(value).all():
        raise InvalidRecordError("embedding holds a NaN or infinite value")
    return value
