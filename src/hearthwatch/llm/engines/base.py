"""What every engine plugin provides to the supervisor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from hearthwatch.llm.profiles import EngineFlags


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def check(self) -> None:
        """Raise a clear error when what the engine needs (a model file, a program) is missing."""

    def command(self, flags: EngineFlags, host: str, port: int) -> list[str] | None:
        """The child process to run, or None for an engine someone else runs."""
        raise NotImplementedError

    def base_url(self, host: str, port: int) -> str:
        return f"http://{host}:{port}"

    def health_path(self) -> str:
        return "/health"

    def effective_flags(self, flags: EngineFlags) -> dict[str, Any]:
        """The flags the engine runs with, as ``GET /v1/engine/config`` reports them."""
        raise NotImplementedError

    def model_name(self) -> str:
        raise NotImplementedError
