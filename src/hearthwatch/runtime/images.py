"""Encoded image bytes → RGB arrays, with the checks that turn bad input into clear errors."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import BmpImagePlugin, ImageFile, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"RIFF": "webp",
}


class ImageError(ValueError):
    """An input that is not a usable image; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def sniff_format(data: bytes) -> str | None:
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            if name == "webp" and data[8:12] != b"WEBP":
                return None
            return name
    return None


JPEG_TAIL_BYTES = 65536


def _jpeg_is_complete(data: bytes) -> bool:
    """A complete JPEG ends (give or take trailing bytes) with an end-of-image marker that no
    start-of-scan marker follows. Only the tail is searched: entropy-coded data cannot hold
    either marker, so a file cut inside its scan data has neither there, and an embedded
    thumbnail's marker near the start of a small file is followed by the main image's scan.
    More than ``JPEG_TAIL_BYTES`` after the end marker (a motion photo's video) reads as cut."""
    tail = max(0, len(data) - JPEG_TAIL_BYTES)
    end = data.rfind(b"\xff\xd9", tail)
    return end >= 0 and data.find(b"\xff\xda", end) < 0


_HEADER_READERS: dict[str, type[ImageFile.ImageFile]] = {
    "jpeg": JpegImagePlugin.JpegImageFile,
    "png": PngImagePlugin.PngImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
}

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); the others that
# fall in C0–CF are DHT (C4), JPG (C8) and DAC (CC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def image_size(data: bytes, fmt: str) -> tuple[int, int]:
    """Width and height from the header of an image in format ``fmt`` (as sniffed), without
    decoding the pixels.

    The format's own reader is used directly, so neither Pillow's decompression-bomb check
    (the pixel limit is the caller's) nor its search through other formats applies, and
    nothing of Pillow's messages reaches the caller.
    """
    try:
        with _HEADER_READERS[fmt](io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception as exc:  # any failure of a header reader means the header is bad
        declared = _declared_size(data, fmt)
        if declared is not None and 0 in declared:
            width, height = declared
            raise ImageError(
                "no_pixels",
                f"image header declares a width of {width} and a height of {height}: "
                "the image has no pixels",
            ) from exc
        raise ImageError(
            "corrupt", f"image header could not be read: not a valid {fmt.upper()} header"
        ) from exc


def _declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """The width and height a PNG's IHDR or a JPEG's start-of-frame states, read as they are
    (Pillow refuses to open an image that states a zero size); None where there is none."""
    if fmt == "png":
        if data[12:16] != b"IHDR" or len(data) < 24:
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if fmt != "jpeg":
        return None
    pos = 2  # after the start-of-image marker
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        elif marker == 0xDA:  # start of scan before any frame header
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


@dataclass(frozen=True)
class EncodedImage:
    """Checked encoded bytes whose pixels are decoded later, on the device; ``shape`` is the
    decoded array's (height, width, 3)."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, 3


def check_encoded(data: bytes, max_pixels: int) -> EncodedImage:
    """Every check :func:`decode_image` makes short of decoding the pixels.

    Raises :class:`ImageError` for empty, non-image, truncated, pixel-less or oversized input.
    """
    if not data:
        raise ImageError("empty", "empty body: expected an encoded image (JPEG, PNG, BMP, WebP)")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            "not_an_image",
            f"body is not a supported image (JPEG, PNG, BMP, WebP); first bytes {data[:8]!r}",
        )
    width, height = image_size(data, fmt)
    if width * height > max_pixels:
        raise ImageError(
            "too_large",
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (MAX_IMAGE_PIXELS)",
        )
    if fmt == "jpeg" and not _jpeg_is_complete(data):
        raise ImageError("truncated", "truncated JPEG: no end-of-image marker after the scan data")
    return EncodedImage(data, fmt, width, height)


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP bytes into an (H, W, 3) RGB uint8 array.

    Raises :class:`ImageError` for empty, non-image, truncated or oversized input.
    """
    encoded = check_encoded(data, max_pixels)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise ImageError(
            "corrupt", f"{encoded.format.upper()} data could not be decoded (corrupt or truncated)"
        )
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
