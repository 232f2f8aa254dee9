"""TorchScript detectors: a scripted or traced module taking a letterboxed (B, 3, S, S) batch
in [0, 1] and returning one of the YOLO layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hearthwatch.runtime.accel.graphs import FallbackHook
from hearthwatch.runtime.accel.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.detection.settings import TorchScriptConfig
from hearthwatch.runtime.detection.yolo_export import YoloExportDetector


class TorchScriptDetector(YoloExportDetector):
    platform = "pytorch_libtorch"

    def __init__(
        self,
        config: TorchScriptConfig,
        device: torch.device,
        optimization: OptimizationSettings,
        on_fallback: FallbackHook,
    ):
        if not config.path.is_file():
            raise FileNotFoundError(f"TorchScript file {config.path} does not exist")
        module = torch.jit.load(str(config.path), map_location="cpu")
        no_compile = dataclasses.replace(optimization, torch_compile=False)
        self.model = optimize_module(module, device, no_compile, on_fallback)
        self._setup(config, None)
        self.device = device
        self.optimizations = tuple(self.model.applied)
        self.input_size = config.input_size
        self.layout = config.layout

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> list[torch.Tensor]:
        x = torch.from_numpy(batch).to(self.device, self.model.dtype, non_blocking=True)
        if self.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return list(self.model.run_batch(x))
