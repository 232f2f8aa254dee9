"""Hardware profiles (``profiles.yml``): engine flags, admission limits and performance
targets per GPU class, chosen by ``LLM_PROFILE`` or the GPU's name; an unknown name is an
error that lists the known ones. The GPU's name comes from NVML and torch.cuda: when only one
of them sees a GPU, :func:`reconcile_gpu_names` takes that one and says so in one log line.
Pure functions; :func:`cuda_device_name` imports torch, the rest does not."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearthwatch.llm.errors import ProfileError

log = logging.getLogger(__name__)

CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


class EngineFlags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_ctx: int = Field(4096, ge=256, description="Total context, split across the slots.")
    n_parallel: int = Field(2, ge=1, description="Parallel slots (concurrent sequences).")
    n_gpu_layers: int = Field(0, ge=0)
    cache_type_k: CacheType = "f16"
    cache_type_v: CacheType = "f16"
    n_batch: int = Field(512, ge=32)

    @property
    def context_per_slot(self) -> int:
        return self.n_ctx // self.n_parallel


class Targets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttft_ms: float = Field(gt=0)
    ttft_p99_ms: float = Field(gt=0)
    output_tokens_per_s: float = Field(gt=0)


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    gpu_match: list[str] = Field(default_factory=list)
    engine: EngineFlags = Field(default_factory=EngineFlags)
    max_concurrent_sessions: int = Field(ge=1)
    max_queue_depth: int = Field(ge=0)
    scheduler_policy: Literal["fcfs", "priority", "guaranteed_no_evict", "max_utilization"]
    max_tokens_cap: int = Field(ge=1)
    targets: Targets


def load_profiles(path: Path | None = None) -> dict[str, HardwareProfile]:
    if path is None:
        text = resources.files("hearthwatch.llm").joinpath("profiles.yml").read_text()
        where = "the built-in profiles.yml"
    else:
        if not path.is_file():
            raise ProfileError(f"profiles file {path} does not exist")
        text, where = path.read_text(), str(path)
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict) or not raw:
        raise ProfileError(f"{where} holds no profiles")
    try:
        return {name: HardwareProfile(name=name, **body) for name, body in raw.items()}
    except (ValidationError, TypeError) as exc:
        raise ProfileError(f"{where} is invalid: {exc}") from exc


def select_profile(
    profiles: dict[str, HardwareProfile], requested: str | None, gpu_name: str | None
) -> HardwareProfile:
    """``requested`` when given (it must exist), else the GPU's profile; on a GPU no profile
    names, ``gpu`` (with one warning line); with no GPU, ``cpu``."""
    if requested:
        if requested not in profiles:
            raise ProfileError(
                f"unknown LLM profile {requested!r}; known profiles: {', '.join(sorted(profiles))}"
            )
        return profiles[requested]
    if gpu_name:
        for profile in profiles.values():
            if any(match.lower() in gpu_name.lower() for match in profile.gpu_match):
                return profile
        if "gpu" in profiles:
            log.warning(
                "no LLM profile names GPU %r; using the generic 'gpu' profile (set LLM_PROFILE "
                "to choose another)",
                gpu_name,
            )
            return profiles["gpu"]
    if "cpu" not in profiles:
        raise ProfileError(f"no profile matches GPU {gpu_name!r} and there is no 'cpu' profile")
    return profiles["cpu"]


def cuda_device_name() -> str | None:
    """The first CUDA device's name as torch sees it, or None (no device, or CUDA failing)."""
    import torch

    try:
        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    except Exception as exc:  # a broken driver or runtime: no usable device
        log.info("torch.cuda failed to name a device (%s)", exc)
        return None


def reconcile_gpu_names(nvml: str | None, cuda: str | None) -> str | None:
    """The GPU to choose a profile by, from NVML's view and torch.cuda's; when only one sees a
    GPU it is taken, and one warning line says which failed."""
    if nvml and not cuda:
        log.warning(
            "NVML reports GPU %r but torch.cuda sees no device; choosing the LLM profile by "
            "NVML's name (set LLM_PROFILE to override)",
            nvml,
        )
    elif cuda and not nvml:
        log.warning(
            "NVML failed or reports no GPU but torch.cuda reports %r; choosing the LLM profile "
            "by torch.cuda's name (set LLM_PROFILE to override)",
            cuda,
        )
    return nvml or cuda
