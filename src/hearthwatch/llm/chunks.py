"""OpenAI streaming chunks: whether one carries a token, and folding a stream into the
response the non-streaming API returns. Shared by the gateway and the load generator, so
both mean the same thing by "first token"."""

from __future__ import annotations

import time
from typing import Any


def has_token(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries generated output (content, tool calls or text)."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
            return True
    return False


def assemble(kind: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold streamed chunks into the response the non-streaming API returns: text, and for
    chat the tool calls (their deltas merged by index, arguments concatenated)."""
    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    finish: dict[int, str | None] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            piece = delta.get("content") if kind == "chat" else choice.get("text")
            texts.setdefault(index, []).append(piece or "")
            for call in delta.get("tool_calls") or []:
                _merge_call(calls.setdefault(index, {}), call)
            if choice.get("finish_reason"):
                finish[index] = choice["finish_reason"]
    first = chunks[0] if chunks else {}
    choices = []
    for index in sorted(texts):
        text = "".join(texts[index])
        if kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if index in calls:
                message["tool_calls"] = [calls[index][i] for i in sorted(calls[index])]
                message["content"] = text or None
            choices.append({"index": index, "message": message, "finish_reason": finish.get(index)})
        else:
            choices.append({"index": index, "text": text, "finish_reason": finish.get(index)})
    return {
        "id": first.get("id", ""),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": first.get("created", int(time.time())),
        "model": first.get("model", ""),
        "choices": choices,
        "usage": usage or {},
    }


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """One streamed tool-call delta into the call at its index."""
    call = calls.setdefault(
        int(delta.get("index", 0)),
        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
    )
    call["id"] = delta.get("id") or call["id"]
    call["type"] = delta.get("type") or call["type"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
