"""ONNX files through onnxruntime, in the common YOLO export layouts (with or without NMS)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from hearthwatch.runtime.accel.graphs import FallbackHook
from hearthwatch.runtime.detection.settings import OnnxConfig
from hearthwatch.runtime.detection.yolo_export import (
    YoloExportDetector,
    parse_names,
)
from hearthwatch.runtime.detection.yolo_layouts import infer_layout

log = logging.getLogger(__name__)


def _providers(device: torch.device, on_fallback: FallbackHook) -> list[str]:
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        on_fallback("onnx_cuda", "onnxruntime has no CUDAExecutionProvider; running on the CPU")
    return ["CPUExecutionProvider"]


class OnnxDetector(YoloExportDetector):
    platform = "onnxruntime_onnx"

    def __init__(self, config: OnnxConfig, device: torch.device, on_fallback: FallbackHook):
        import onnxruntime as ort

        if not config.path.is_file():
            raise FileNotFoundError(f"ONNX file {config.path} does not exist")
        self.session = ort.InferenceSession(
            str(config.path), providers=_providers(device, on_fallback)
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self._setup(config, parse_names(meta.get("names")))
        self.device = torch.device("cpu")
        self.optimizations = tuple(self.session.get_providers())
        (model_input,) = self.session.get_inputs()
        self.input_name = model_input.name
        shape = model_input.shape
        self.input_size = shape[2] if isinstance(shape[2], int) else config.input_size
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.input_dtype = np.float16 if "float16" in model_input.type else np.float32
        self.layout = config.layout
        if self.layout == "auto":
            # with dynamic output dimensions it is decided from the first real output
            with contextlib.suppress(ValueError):
                self.layout = infer_layout([o.shape for o in self.session.get_outputs()])
        log.info("ONNX %s: input %s, layout %s", config.path.name, shape, self.layout)

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: chunk.astype(self.input_dtype, copy=False)})  # type: ignore[no-any-return]

    def run(self, batch: np.ndarray) -> list[torch.Tensor]:
        step = self.fixed_batch or len(batch)
        chunks = [self._run_chunk(batch[i : i + step]) for i in range(0, len(batch), step)]
        return [
            torch.from_numpy(np.concatenate([c[j] for c in chunks])) for j in range(len(chunks[0]))
        ]
