"""Any external OpenAI-compatible server (Ollama, an existing vLLM), by URL; the supervisor
only watches its health."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hearthwatch.llm.engines.base import EngineConfig
from hearthwatch.llm.profiles import EngineFlags


class OpenAICompatConfig(EngineConfig):
    type: Literal["openai"] = "openai"
    url: str = Field(description="Base URL, e.g. http://127.0.0.1:11434")
    model: str = Field(description="Model name the server knows.")

    def command(self, flags: EngineFlags, host: str, port: int) -> None:
        return None

    def base_url(self, host: str, port: int) -> str:
        return self.url.rstrip("/")

    def health_path(self) -> str:
        return "/v1/models"

    def effective_flags(self, flags: EngineFlags) -> dict[str, Any]:
        return {"engine": "openai-compatible", "url": self.url, "model": self.model}

    def model_name(self) -> str:
        return self.model
