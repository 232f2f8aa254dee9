"""vLLM's OpenAI server (``vllm serve``) for datacenter GPUs; not installed by default."""

from __future__ import annotations

import shutil
from typing import Any, Literal

from pydantic import Field

from hearthwatch.llm.engines.base import EngineConfig
from hearthwatch.llm.profiles import EngineFlags


class VllmConfig(EngineConfig):
    type: Literal["vllm"] = "vllm"
    model: str = Field(description="Hugging Face id or local directory.")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    block_size: int = Field(16, ge=1)
    enable_chunked_prefill: bool = True
    max_num_batched_tokens: int = Field(8192, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"

    def check(self) -> None:
        self._executable()

    def _executable(self) -> str:
        executable = shutil.which("vllm")
        if executable is None:
            raise FileNotFoundError("the vllm engine needs `vllm` on PATH (pip install vllm)")
        return executable

    def command(self, flags: EngineFlags, host: str, port: int) -> list[str]:
        executable = self._executable()
        command = [
            executable, "serve", self.model, "--host", host, "--port", str(port),
            "--max-model-len", str(flags.context_per_slot), "--max-num-seqs", str(flags.n_parallel),
            "--kv-cache-dtype", self.kv_cache_dtype, "--block-size", str(self.block_size),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--scheduling-policy", self.scheduling_policy,
        ]  # fmt: skip
        if self.enable_chunked_prefill:
            command.append("--enable-chunked-prefill")
        return command

    def effective_flags(self, flags: EngineFlags) -> dict[str, Any]:
        return {
            "engine": "vllm",
            **self.model_dump(exclude={"type"}),
            "max_num_seqs": flags.n_parallel,
        }

    def model_name(self) -> str:
        return self.model
