"""Images onto the device as one model-input batch: JPEGs decoded there in one batched
``torchvision.io.decode_jpeg`` call (nvJPEG on CUDA), other formats decoded on the host,
then resized and scaled to [0, 1] on the device in the model's dtype."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torchvision
from torch.nn import functional

from hearthwatch.runtime.images import EncodedImage, ImageError, decode_image

log = logging.getLogger(__name__)

Image = np.ndarray | EncodedImage


class UndecodableImagesError(ValueError):
    """Some images of a batch could not be decoded; ``errors`` by their index in the batch."""

    def __init__(self, errors: dict[int, ImageError]):
        super().__init__("; ".join(f"image {i}: {e}" for i, e in errors.items()))
        self.errors = errors


def decode_on_device(images: Sequence[Image], device: torch.device) -> list[torch.Tensor]:
    """Each image as a (3, H, W) uint8 RGB tensor on ``device``, in order; raises
    :class:`UndecodableImagesError` naming every image that could not be decoded."""
    jpegs = {
        i: im for i, im in enumerate(images) if isinstance(im, EncodedImage) and im.format == "jpeg"
    }
    decoded = dict(zip(jpegs, _decode_jpegs(list(jpegs.values()), device), strict=True))
    out, errors = [], {}
    for i, image in enumerate(images):
        tensor = decoded.get(i)
        if isinstance(tensor, ImageError):
            errors[i] = tensor
            continue
        if tensor is None:
            if isinstance(image, EncodedImage):
                try:
                    image = decode_image(image.data, image.width * image.height)
                except ImageError as exc:
                    errors[i] = exc
                    continue
            host = torch.from_numpy(np.ascontiguousarray(image))
            tensor = host.to(device, non_blocking=True).permute(2, 0, 1)
        out.append(tensor)
    if errors:
        raise UndecodableImagesError(errors)
    return out


def _decode_jpegs(
    jpegs: Sequence[EncodedImage], device: torch.device
) -> list[torch.Tensor | ImageError]:
    """One batched decode; if the batch fails, each alone, so a bad one fails by itself."""
    if not jpegs:
        return []
    data = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
    mode = torchvision.io.ImageReadMode.RGB
    try:
        return list(torchvision.io.decode_jpeg(data, mode=mode, device=device))
    except RuntimeError as exc:
        log.warning("batched JPEG decode failed (%s); decoding one by one", exc)
    decoded: list[torch.Tensor | ImageError] = []
    for one in data:
        try:
            decoded.append(torchvision.io.decode_jpeg(one, mode=mode, device=device))
        except RuntimeError as exc:
            decoded.append(ImageError("corrupt", f"JPEG data could not be decoded: {exc}"))
    return decoded


def resize_on_device(
    images: Sequence[torch.Tensor], size: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """(N, 3, height, width) in ``dtype``, values in [0, 1]; same-sized images resize together."""
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
