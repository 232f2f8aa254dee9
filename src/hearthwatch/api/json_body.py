"""The one JSON parser for request bodies: finite numbers only, bounded nesting, text that is
valid Unicode, optionally a bounded count of values, and a 400 naming the problem for anything
else. Pure functions; safe from any thread.

Parsing holds the interpreter lock however it is scheduled, so a worker thread only spares the
event loop the wait, not the stall: what bounds the stall is the size of what is parsed. Each
route caps its JSON bodies (1 MiB on ``/v1``, 4 MiB for a v2 JSON part; ``/enrich`` bounds its
count of values), and every check here is a C-speed pass over the bytes or proportional to the
containers parsed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from hearthwatch.api.errors import ApiError

MAX_JSON_DEPTH = 64
OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are parsed on a worker thread
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number: only finite numbers are accepted")


def parse_json(
    raw: bytes | str,
    what: str = "request body",
    max_depth: int = MAX_JSON_DEPTH,
    max_values: int | None = None,
) -> Any:
    """``raw`` as JSON. Refused with a 400: NaN, Infinity, numbers that overflow a float,
    integers of more than 4300 digits, nesting deeper than ``max_depth``, more than
    ``max_values`` values (arrays, objects and their elements, counted from the bytes before
    parsing, so that a large body of many small values is refused at C speed), and strings
    holding an unpaired UTF-16 surrogate (no UTF-8 can carry one)."""
    data = raw.encode() if isinstance(raw, str) else raw
    openings = data.count(b"[") + data.count(b"{")  # brackets in strings count too: stricter
    if max_values is not None and openings + data.count(b",") > max_values:
        raise ApiError(400, f"{what} holds more than {max_values} values")
    try:
        value = json.loads(data, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, f"{what} is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except UnicodeDecodeError:
        raise ApiError(400, f"{what} is not valid JSON: not UTF-8 text") from None
    except ValueError as exc:  # from the number hooks, or an integer too long to convert
        raise ApiError(400, f"{what} is not valid JSON: {exc}") from None
    if openings > max_depth and _depth_over(value, max_depth):
        raise ApiError(400, f"{what} is nested more than {max_depth} levels deep")
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise ApiError(
            400, f"{what} holds text with an unpaired UTF-16 surrogate (\\ud800-\\udfff)"
        )
    return value


def _containers(value: Any) -> list[tuple[Any, int]]:
    """Every array and object in ``value`` with its depth, without recursion."""
    if not isinstance(value, dict | list):
        return []
    found: list[tuple[Any, int]] = []
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        found.append((node, depth))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return found


def _depth_over(value: Any, max_depth: int) -> bool:
    return any(depth > max_depth for _, depth in _containers(value))


def _has_lone_surrogate(value: Any) -> bool:
    def bad(text: Any) -> bool:
        if not isinstance(text, str):
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    if bad(value):
        return True
    for node, _ in _containers(value):
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if any(bad(item) for item in items):
            return True
    return False


async def parse_json_off_loop(
    raw: bytes, what: str = "request body", max_values: int | None = None
) -> Any:
    """:func:`parse_json`, on a worker thread when ``raw`` is large enough to keep the loop
    waiting (the caller caps its size)."""
    if len(raw) <= OFF_LOOP_BYTES:
        return parse_json(raw, what, max_values=max_values)
    return await asyncio.to_thread(parse_json, raw, what, MAX_JSON_DEPTH, max_values)
