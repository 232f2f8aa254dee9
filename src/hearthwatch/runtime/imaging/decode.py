"""Encoded image bytes → RGB arrays, with the checks that turn bad input into clear errors.

EXIF orientation has one rule here, for every path: an image is what a viewer shows, upright.
:func:`check_encoded` reads the Orientation tag (1–8) from the header once, and the sizes it
reports are the upright ones (5–8 swap width and height); :func:`decode_image` and the device
path (:mod:`.device_decode`) both decode the stored pixels as they are and apply that orientation
themselves with :data:`ORIENTATION_STEPS`, so no decoder's own EXIF handling (OpenCV applies it,
nvJPEG does not) decides what a caller sees. Pure functions: thread-safe.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import (
    BmpImagePlugin,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
)

from hearthwatch.runtime.errors import InputTooLargeError, InvalidInputError

_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"RIFF": "webp",
}


class ImageError(InvalidInputError):
    """An input that is not a usable image; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def labelled(self, label: str | None) -> ImageError:
        """This error with ``label`` (which image of a request) before its message."""
        return self if label is None else type(self)(self.reason, f"{label}: {self}")


class ImageTooLargeError(ImageError, InputTooLargeError):
    """An image over the pixel limit (``reason`` ``too_large``)."""


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


EXIF_ORIENTATION_TAG = 0x0112
MAX_EXIF_ENTRIES = 256
"""The most directory entries read while looking for the Orientation."""

ORIENTATION_STEPS: dict[int, tuple[bool, bool, bool]] = {
    1: (False, False, False),
    2: (False, True, False),  # mirrored left to right
    3: (True, True, False),  # turned 180°
    4: (True, False, False),  # mirrored top to bottom
    5: (False, False, True),  # mirrored along the main diagonal
    6: (True, False, True),  # stored turned 90° anticlockwise: shown turned clockwise
    7: (True, True, True),  # mirrored along the other diagonal
    8: (False, True, True),  # stored turned 90° clockwise: shown turned anticlockwise
}
"""EXIF Orientation → (reverse the rows, reverse the columns, then swap rows and columns): the
steps that turn the stored pixels into the upright image, as Pillow's ``exif_transpose``."""


def image_header(data: bytes, fmt: str) -> tuple[int, int, int]:
    """Upright width, upright height and EXIF orientation (1–8; 1 where there is no valid tag)
    from the header of an image in format ``fmt`` (as sniffed), without decoding the pixels.

    The format's own reader is used directly, so neither Pillow's decompression-bomb check
    (the pixel limit is the caller's) nor its search through other formats applies, and
    nothing of Pillow's messages reaches the caller.
    """
    try:
        with _HEADER_READERS[fmt](io.BytesIO(data)) as img:
            width, height = int(img.width), int(img.height)
            raw_exif = img.info.get("exif")
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
    orientation = _orientation(raw_exif)
    if ORIENTATION_STEPS[orientation][2]:
        width, height = height, width
    return width, height, orientation


def _orientation(raw_exif: object) -> int:
    """The Orientation of the EXIF block a header reader found (Pillow's ``info["exif"]``:
    JPEG APP1, a PNG eXIf chunk before the pixel data, WebP's EXIF chunk); 1 where there is
    none, it is unreadable or it is not 1–8. Only the first directory's entries are read, at
    most :data:`MAX_EXIF_ENTRIES` of them, so a hostile block costs microseconds (this runs
    where headers are checked, on the event loop for device-decoded images)."""
    if not isinstance(raw_exif, bytes):
        return 1
    tiff = raw_exif[6:] if raw_exif.startswith(b"Exif\x00\x00") else raw_exif
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    magic, first = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42 or first + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, first)
    for i in range(min(count, MAX_EXIF_ENTRIES)):
        at = first + 2 + 12 * i
        if at + 12 > len(tiff):
            return 1
        tag, kind, values = struct.unpack_from(order + "HHI", tiff, at)
        if tag == EXIF_ORIENTATION_TAG:
            if kind != 3 or values != 1:  # one SHORT, or it means nothing
                return 1
            (value,) = struct.unpack_from(order + "H", tiff, at + 8)
            return value if value in ORIENTATION_STEPS else 1
        if tag > EXIF_ORIENTATION_TAG:  # entries are sorted by tag
            return 1
    return 1


def orient_array(array: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, C) array of stored pixels turned upright for EXIF ``orientation``
    (C-contiguous; the array itself where there is nothing to do)."""
    flip_rows, flip_columns, transpose = ORIENTATION_STEPS.get(orientation, (False,) * 3)
    if flip_rows:
        array = array[::-1]
    if flip_columns:
        array = array[:, ::-1]
    if transpose:
        array = array.swapaxes(0, 1)
    return np.ascontiguousarray(array)


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
    """Checked encoded bytes whose pixels are decoded later, on the device. ``width``,
    ``height`` and ``shape`` (the decoded array's (height, width, 3)) are upright, after the
    EXIF ``orientation`` (1–8), which the decoder must apply (:data:`ORIENTATION_STEPS`)."""

    data: bytes
    format: str
    width: int
    height: int
    orientation: int = 1

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
    width, height, orientation = image_header(data, fmt)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            "too_large",
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (MAX_IMAGE_PIXELS)",
        )
    if fmt == "jpeg" and not _jpeg_is_complete(data):
        raise ImageError("truncated", "truncated JPEG: no end-of-image marker after the scan data")
    return EncodedImage(data, fmt, width, height, orientation)


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP bytes into an upright (H, W, 3) RGB uint8 array, its size the
    one :func:`check_encoded` reports.

    Raises :class:`ImageError` for empty, non-image, truncated or oversized input.
    """
    encoded = check_encoded(data, max_pixels)
    # OpenCV's own EXIF handling is off: the orientation is the header check's
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise ImageError(
            "corrupt", f"{encoded.format.upper()} data could not be decoded (corrupt or truncated)"
        )
    return orient_array(cv2.cvtColor(array, cv2.COLOR_BGR2RGB), encoded.orientation)
