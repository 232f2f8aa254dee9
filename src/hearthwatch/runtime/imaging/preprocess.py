"""Decoded images into one model-input batch: resized on the host (OpenCV) or on the device,
scaled to [0, 1] in the model's dtype, optionally normalised; and the shape rule every model
applies before an image joins a batch. Letterboxing is :mod:`.letterbox`.

Functions only; they hold no state and may run on any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.nn import functional

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def shrunk(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` scaled down (area interpolation) so its longer side is at most ``max_side``,
    and the factor it was scaled by (1.0: untouched)."""
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor == 1.0:
        return image, factor
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def shape_problem(
    height: int, width: int, max_aspect_ratio: float | None, model: str
) -> str | None:
    """The rule every model applies before an image joins a batch: it has pixels, and it is
    not so elongated that the model's resize would shrink a side to nothing."""
    if height < 1 or width < 1:
        return f"image of {width}x{height} has no pixels"
    if max_aspect_ratio is not None and max(height, width) > max_aspect_ratio * min(height, width):
        return (
            f"image of {width}x{height} is too elongated for {model}: "
            f"its sides may differ at most {max_aspect_ratio:g}-fold"
        )
    return None


def resize_on_host(
    images: Sequence[np.ndarray], size: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """RGB uint8 (H, W, 3) images resized on the host to ``size`` (height, width) and copied
    to ``device`` (through pinned memory on CUDA): (N, 3, height, width) in ``dtype``, values
    in [0, 1]."""
    height, width = size
    resized = np.stack(
        [cv2.resize(im, (width, height), interpolation=cv2.INTER_LINEAR) for im in images]
    )
    host = torch.from_numpy(resized)
    if device.type == "cuda":
        host = host.pin_memory()
    batch = host.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return batch.to(dtype).div_(255)


def resize_on_device(
    images: Sequence[torch.Tensor], size: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """(3, H, W) uint8 tensors resized on their device: (N, 3, height, width) in ``dtype``,
    values in [0, 1]; same-sized images resize together."""
    batch = torch.empty((len(images), 3, *size), dtype=dtype, device=images[0].device)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(i)
    for indices in by_shape.values():
        group = torch.stack([images[i] for i in indices]).to(dtype)
        if group.shape[-2:] != size:
            group = functional.interpolate(group, size=size, mode="bilinear", align_corners=False)
        batch[indices] = group.div_(255)
    return batch


def normalized_batch(
    images: Sequence[np.ndarray],
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """:func:`resize_on_host`, then normalised by ``mean`` and ``std`` per channel
    (ImageNet's by default); contiguous NCHW on ``device``."""
    batch = resize_on_host(images, size, device, dtype)
    mean_t = torch.tensor(mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=dtype).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t).contiguous()
