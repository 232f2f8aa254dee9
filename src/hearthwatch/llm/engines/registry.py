"""The engine plugins by ``type``, as one discriminated pydantic union."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hearthwatch.llm.engines.llama_cpp import LlamaCppConfig
from hearthwatch.llm.engines.openai_compat import OpenAICompatConfig
from hearthwatch.llm.engines.vllm import VllmConfig

LlmEngineConfig = Annotated[
    LlamaCppConfig | VllmConfig | OpenAICompatConfig, Field(discriminator="type")
]

__all__ = ["LlamaCppConfig", "LlmEngineConfig", "OpenAICompatConfig", "VllmConfig"]
