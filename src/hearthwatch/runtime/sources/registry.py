"""The model-source plugins by ``type``, as one discriminated pydantic union."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hearthwatch.runtime.sources.hf_rtdetr import RTDetrConfig
from hearthwatch.runtime.sources.hog import HogConfig
from hearthwatch.runtime.sources.onnx_source import OnnxConfig
from hearthwatch.runtime.sources.torchscript_source import TorchScriptConfig
from hearthwatch.runtime.sources.torchvision_source import TorchvisionConfig

ModelSourceConfig = Annotated[
    HogConfig | TorchvisionConfig | RTDetrConfig | OnnxConfig | TorchScriptConfig,
    Field(discriminator="type"),
]

__all__ = [
    "HogConfig",
    "ModelSourceConfig",
    "OnnxConfig",
    "RTDetrConfig",
    "TorchScriptConfig",
    "TorchvisionConfig",
]
