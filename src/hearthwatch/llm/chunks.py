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
    """Fold streamed chunks into the response the non-streaming API returns."""
    texts: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            piece = (
                (choice.get("delta") or {}).get("content") if kind == "chat" else choice.get("text")
            )
            texts.setdefault(index, []).append(piece or "")
            if choice.get("finish_reason"):
                finish[index] = choice["finish_reason"]
    first = chunks[0] if chunks else {}
    choices = []
    for index in sorted(texts):
        text = "".join(texts[index])
        if kind == "chat":
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish.get(index),
                }
            )
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
