"""Hugging Face ``transformers`` RT-DETR and RT-DETRv2 from a local directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from hearthwatch.runtime.accel.graphs import FallbackHook
from hearthwatch.runtime.accel.optimize import OptimizationSettings, optimize_module
from hearthwatch.runtime.accel.streams import Prepared, copy_stream, handoff
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.detections import COCO_80, Detections
from hearthwatch.runtime.detection.settings import RTDetrConfig
from hearthwatch.runtime.imaging.device_decode import Image, decode_on_device
from hearthwatch.runtime.imaging.preprocess import resize_on_device, resize_on_host

log = logging.getLogger(__name__)


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
        else:  # arrays: encoded images come only to a detector that decodes on its device
            batch = resize_on_host(images, size, self.device, self.model.dtype)  # type: ignore[arg-type]
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
