"""Images decoded on the device: JPEGs in one batched ``torchvision.io.decode_jpeg`` call
(nvJPEG on CUDA), other formats decoded on the host and copied there; resizing them into one
model-input batch is :func:`~hearthwatch.runtime.imaging.preprocess.resize_on_device`.

Each JPEG is turned upright on the device by the EXIF orientation its header check read
(:data:`~hearthwatch.runtime.imaging.decode.ORIENTATION_STEPS`), as the host decoder does, so
both paths give one picture of one size. ``decode_jpeg``'s ``apply_exif_orientation`` is not
used: torchvision implements it on the CPU only and ignores it for CUDA. Functions only; they
hold no state and may run on any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torchvision

from hearthwatch.runtime.errors import InvalidInputError
from hearthwatch.runtime.imaging.decode import (
    ORIENTATION_STEPS,
    EncodedImage,
    ImageError,
    decode_image,
)

log = logging.getLogger(__name__)

Image = np.ndarray | EncodedImage


class UndecodableImagesError(InvalidInputError):
    """Some images of a batch could not be decoded; ``errors`` by their index in the batch."""

    def __init__(self, errors: dict[int, ImageError]):
        super().__init__("; ".join(f"image {i}: {e}" for i, e in errors.items()))
        self.errors = errors


def decode_on_device(images: Sequence[Image], device: torch.device) -> list[torch.Tensor]:
    """Each image as an upright (3, H, W) uint8 RGB tensor on ``device``, in order (an
    :class:`EncodedImage` of ``shape`` (H, W, 3), an array as it is); raises
    :class:`UndecodableImagesError` naming every image that could not be decoded."""
    jpegs = {
        i: im for i, im in enumerate(images) if isinstance(im, EncodedImage) and im.format == "jpeg"
    }
    decoded: dict[int, torch.Tensor | ImageError] = {
        i: tensor if isinstance(tensor, ImageError) else orient_tensor(tensor, jpeg.orientation)
        for (i, jpeg), tensor in zip(
            jpegs.items(), _decode_jpegs(list(jpegs.values()), device), strict=True
        )
    }
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


def orient_tensor(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A (C, H, W) tensor of stored pixels turned upright for EXIF ``orientation``, on its
    device (a flip copies; the swap of axes is a view)."""
    flip_rows, flip_columns, transpose = ORIENTATION_STEPS.get(orientation, (False,) * 3)
    dims = [d for d, flip in ((-2, flip_rows), (-1, flip_columns)) if flip]
    if dims:
        image = image.flip(dims)
    return image.transpose(-2, -1) if transpose else image


def _decode_jpegs(
    jpegs: Sequence[EncodedImage], device: torch.device
) -> list[torch.Tensor | ImageError]:
    """One batched decode of the stored pixels (not yet turned upright); if the batch fails,
    each alone, so a bad one fails by itself."""
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
