"""Hugging Face ``transformers`` RT-DETR and RT-DETRv2 from a local directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field, model_validator

from hearthwatch.runtime.detections import COCO_80, Detections
from hearthwatch.runtime.device_images import Image, decode_on_device, resize_on_device
from hearthwatch.runtime.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.sources.base import Detector, FallbackHook, SourceConfig
from hearthwatch.runtime.streams import Prepared, copy_stream, handoff

log = logging.getLogger(__name__)


class RTDetrConfig(SourceConfig):
    type: Literal["hf_rtdetr"] = "hf_rtdetr"
    path: Path | None = Field(None, description="Local directory saved by save_pretrained.")
    random_init: bool = Field(False, description="Random weights; for tests and benchmarks.")
    architecture: Literal["rt_detr", "rt_detr_v2"] = "rt_detr_v2"
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="With random_init: fields of the transformers config."
    )
    input_size: int = Field(640, ge=32)
    device_decode: Literal["auto", "on", "off"] = Field(
        "auto", description="Decode JPEGs and resize on the device; auto: on CUDA."
    )
    max_detections: int = Field(300, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RTDetrConfig:
        if self.path is None and not self.random_init:
            raise ValueError(
                "hf_rtdetr source needs `path` (a local directory) or `random_init: true`"
            )
        return self

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        return RTDetrDetector(self, device, optimization, on_fallback)


class _LogitsAndBoxes(torch.nn.Module):
    """The model as a plain tensor → (logits, boxes) function, ready for compile and graphs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixel_values)
        return out.logits, out.pred_boxes


def _load_model(config: RTDetrConfig) -> torch.nn.Module:
    import transformers

    if config.path is not None:
        if not (config.path / "config.json").is_file():
            raise FileNotFoundError(f"{config.path} holds no config.json (save_pretrained output)")
        model = transformers.AutoModelForObjectDetection.from_pretrained(
            config.path, local_files_only=True
        )
        log.info("loaded %s from %s", type(model).__name__, config.path)
        return model  # type: ignore[no-any-return]
    config_cls, model_cls = {
        "rt_detr": (transformers.RTDetrConfig, transformers.RTDetrForObjectDetection),
        "rt_detr_v2": (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection),
    }[config.architecture]
    overrides = dict(config.config_overrides)
    if "id2label" not in overrides and "num_labels" not in overrides:
        overrides["id2label"] = dict(enumerate(COCO_80))
    model_config = config_cls(**overrides)
    log.warning("%s is randomly initialised: its detections mean nothing", model_cls.__name__)
    return model_cls(model_config)  # type: ignore[no-any-return]


class RTDetrDetector(Detector):
    platform = "pytorch_transformers"

    def __init__(
        self,
        config: RTDetrConfig,
        device: torch.device,
        optimization: OptimizationSettings,
        on_fallback: FallbackHook,
    ):
        model = _load_model(config)
        id2label: dict[int, str] = model.config.id2label  # type: ignore[union-attr,assignment]
        self.class_names = tuple(config.class_names or [id2label[i] for i in range(len(id2label))])
        self.model = optimize_module(_LogitsAndBoxes(model), device, optimization, on_fallback)
        self.device = device
        self.optimizations = tuple(self.model.applied)
        self.size = config.input_size
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.decodes_on_device = config.device_decode == "on" or (
            config.device_decode == "auto" and device.type == "cuda"
        )
        self.score_floor = config.score_floor
        self.max_detections = config.max_detections

    def prepare(self, images: Sequence[Image]) -> Prepared:
        with copy_stream(self._copy_stream):
            batch = self._input_batch(images)
        sizes = np.array([[img.shape[1], img.shape[0]] for img in images], np.float32)
        return Prepared(batch, sizes, handoff(self._copy_stream, batch))

    def _input_batch(self, images: Sequence[Image]) -> torch.Tensor:
        size = (self.size, self.size)
        if self.decodes_on_device:
            batch = resize_on_device(decode_on_device(images, self.device), size, self.model.dtype)
        else:
            resized = np.stack(
                [cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) for img in images]  # type: ignore[arg-type]
            )
            host = torch.from_numpy(resized)
            if self.device.type == "cuda":
                host = host.pin_memory()
            batch = host.to(self.device, non_blocking=True)
            batch = batch.permute(0, 3, 1, 2).to(self.model.dtype).div_(255)
        if self.model.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    @torch.inference_mode()
    def forward(self, prepared: Prepared) -> tuple[torch.Tensor, torch.Tensor]:
        prepared.wait()
        logits, boxes = self.model.run_batch(prepared.batch)
        return logits, boxes

    @torch.inference_mode()
    def finish(
        self, outputs: tuple[torch.Tensor, torch.Tensor], prepared: Prepared
    ) -> list[Detections]:
        logits, boxes = outputs
        batch, queries, classes = logits.shape
        scores = logits.float().sigmoid().reshape(batch, -1)
        k = min(self.max_detections, queries * classes)
        top_scores, top_index = scores.topk(k, dim=1)
        query = top_index // classes
        picked = boxes.float().gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        cx, cy, w, h = picked.unbind(-1)
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        scale = torch.from_numpy(prepared.sizes).to(xyxy.device).repeat(1, 2).unsqueeze(1)
        xyxy = xyxy * scale
        host = torch.cat([xyxy, top_scores.unsqueeze(-1), (top_index % classes).unsqueeze(-1)], -1)
        host_np = host.cpu().numpy()  # one device→host copy for the batch
        results = []
        for rows in host_np:
            rows = rows[rows[:, 4] >= self.score_floor]
            results.append(
                Detections(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64))
            )
        return results
