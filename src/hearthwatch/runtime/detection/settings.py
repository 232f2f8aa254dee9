"""The detector plugins' settings, keyed by ``type``, as one discriminated pydantic union.

Pydantic only: validating a configuration imports no torch (``hearthwatch config`` stays fast);
each ``build`` imports its plugin's implementation when a detector is actually made. Immutable
once validated; safe from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hearthwatch.weights.packaged import WeightsOrigin, origin_of, size_on_disk

if TYPE_CHECKING:
    import torch

    from hearthwatch.runtime.accel.graphs import FallbackHook
    from hearthwatch.runtime.accel.optimize import OptimizationSettings
    from hearthwatch.runtime.detection.base import Detector

Layout = Literal["auto", "yolov8", "yolov5", "end2end", "efficient_nms"]
"""The output layouts of the common YOLO exports (``auto``: read from the output's shape)."""


class SourceConfig(BaseModel):
    """Fields every model source accepts."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    class_names: list[str] | None = Field(
        None, description="Class names by index; the source's own names when omitted."
    )
    score_floor: float = Field(
        0.05, ge=0.0, le=1.0, description="Candidates below this score are dropped in the model."
    )

    def build(
        self,
        device: torch.device,
        optimization: OptimizationSettings,
        on_fallback: FallbackHook,
    ) -> Detector:
        raise NotImplementedError

    def weights_path(self) -> Path | None:
        """The file or directory its weights are read from (None: built in, or random)."""
        return None

    def origin(self) -> WeightsOrigin:
        """Where its weights came from, their licence and size. Reads (and may hash) files:
        call it off the event loop."""
        path = self.weights_path()
        return origin_of(path, size_on_disk(path))


class HogConfig(SourceConfig):
    type: Literal["hog"] = "hog"
    max_side: int = Field(800, ge=64, description="Longer side images are scaled down to.")
    win_stride: int = Field(8, ge=1)
    padding: int = Field(8, ge=0)
    scale: float = Field(1.05, gt=1.0)
    threads: int = Field(0, ge=0, description="Images detected in parallel; 0: one per core.")
    score_floor: float = Field(
        0.3, ge=0.0, le=1.0, description="Lower floors multiply HOG's candidate windows and time."
    )

    def origin(self) -> WeightsOrigin:
        return WeightsOrigin(origin="built into OpenCV", licence="Apache-2.0 (OpenCV)")

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.hog import HogDetector

        return HogDetector(self)


class DarknetConfig(SourceConfig):
    """A Darknet YOLO (cfg + weights, e.g. the packaged YOLOv3-tiny) through OpenCV's DNN
    module, on the CPU. In the settings, relative paths are under MODELS_DIR, and files not
    named are the packaged YOLOv3-tiny's there."""

    type: Literal["darknet"] = "darknet"
    cfg: Path = Path("models/detector/yolov3-tiny.cfg")
    weights: Path = Path("models/detector/yolov3-tiny.weights")
    names: Path | None = Field(
        Path("models/detector/coco.names"), description="One class name per line."
    )
    input_sizes: list[int] = Field(
        default_factory=lambda: [544, 224],
        min_length=1,
        description="Square input sides (multiples of 32), each a pass over the batch; the small "
        "pass finds objects too big for the network's largest anchors at the main size.",
    )
    iou_threshold: float = Field(0.45, ge=0.0, le=1.0)
    max_detections: int = Field(100, ge=1)
    threads: int = Field(0, ge=0, description="OpenCV's threads; 0: OpenCV's default.")

    @model_validator(mode="after")
    def _check(self) -> DarknetConfig:
        bad = [size for size in self.input_sizes if size % 32 or not 32 <= size <= 2048]
        if bad:
            raise ValueError(f"input_sizes must be multiples of 32 in 32..2048, not {bad}")
        return self

    def weights_path(self) -> Path | None:
        return self.weights

    def files(self) -> list[Path]:
        return [p for p in (self.cfg, self.weights, self.names) if p is not None]

    def missing_files(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.darknet_source import DarknetDetector

        if device.type == "cuda":
            on_fallback("darknet_cuda", "OpenCV's DNN module here has no CUDA; the CPU runs it")
        return DarknetDetector(self)


def packaged_darknet_files(models_dir: Path) -> dict[str, Path]:
    """Where ``hearthwatch models install`` puts YOLOv3-tiny's files under ``models_dir``."""
    folder = models_dir / "detector"
    return {
        "cfg": folder / "yolov3-tiny.cfg",
        "weights": folder / "yolov3-tiny.weights",
        "names": folder / "coco.names",
    }


def default_detector(models_dir: Path) -> HogConfig | DarknetConfig:
    """The packaged YOLOv3-tiny under ``models_dir`` when its files are there, else HOG."""
    darknet = DarknetConfig(**packaged_darknet_files(models_dir))
    return HogConfig() if darknet.missing_files() else darknet


class TorchvisionConfig(SourceConfig):
    type: Literal["torchvision"] = "torchvision"
    architecture: str = "fasterrcnn_mobilenet_v3_large_320_fpn"
    weights: Path | None = Field(None, description="Local state-dict file (.pth).")
    random_init: bool = Field(False, description="Random weights; for tests and benchmarks.")
    num_classes: int = Field(91, ge=2)
    min_size: int | None = Field(None, ge=32, description="Override the model's resize.")
    max_size: int | None = Field(None, ge=32)

    @model_validator(mode="after")
    def _check(self) -> TorchvisionConfig:
        from hearthwatch.runtime.detection.torchvision_source import detection_architectures

        if self.architecture not in detection_architectures():
            raise ValueError(
                f"unknown torchvision architecture {self.architecture!r}; "
                f"known: {', '.join(detection_architectures())}"
            )
        if self.weights is None and not self.random_init:
            raise ValueError(
                "torchvision source needs `weights` (a local file) or `random_init: true`"
            )
        return self

    def weights_path(self) -> Path | None:
        return self.weights

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.torchvision_source import TorchvisionDetector

        return TorchvisionDetector(self, device, optimization, on_fallback)


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

    def weights_path(self) -> Path | None:
        return self.path

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.hf_rtdetr import RTDetrDetector

        return RTDetrDetector(self, device, optimization, on_fallback)


class YoloExportConfig(SourceConfig):
    path: Path
    input_size: int = Field(640, ge=32, description="Square input size when the file has none.")
    layout: Layout = "auto"
    iou_threshold: float = Field(0.45, ge=0.0, le=1.0)
    max_detections: int = Field(300, ge=1)

    def weights_path(self) -> Path | None:
        return self.path


class OnnxConfig(YoloExportConfig):
    type: Literal["onnx"] = "onnx"

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.onnx_source import OnnxDetector

        return OnnxDetector(self, device, on_fallback)


class TorchScriptConfig(YoloExportConfig):
    type: Literal["torchscript"] = "torchscript"

    def build(
        self, device: torch.device, optimization: OptimizationSettings, on_fallback: FallbackHook
    ) -> Detector:
        from hearthwatch.runtime.detection.torchscript_source import TorchScriptDetector

        return TorchScriptDetector(self, device, optimization, on_fallback)


ModelSourceConfig = Annotated[
    HogConfig | DarknetConfig | TorchvisionConfig | RTDetrConfig | OnnxConfig | TorchScriptConfig,
    Field(discriminator="type"),
]
