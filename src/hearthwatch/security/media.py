"""Event media: stored JPEG frames read and written, the detections drawn on a frame, the best
snapshot of a window, and an MP4 clip of its frames.

Every function here blocks (file I/O, JPEG and video encoding): callers run them on worker
threads. They keep no state, so they are thread-safe; two writers of one path race only in
which complete file ends up there.

Paths: every path given is resolved (symlinks included) under the data directory given with
it, and one that escapes it raises :class:`UnsafePathError` before anything is read or
written; relative paths are relative to that directory. Writes are atomic: the bytes go to a
temporary file beside the target, are fsynced and renamed over it (and the directory is
fsynced), so a reader sees the old file or the new one, never part of one; on any error the
temporary file is removed. Written files are readable by their owner only.

Images are RGB ``uint8`` arrays of shape (height, width, 3), as the runtime decodes them.

Clips are H.264 (High profile, yuv420p; ``libx264``, which the FFmpeg bundled in PyAV 18's
wheels has) with ``libopenh264`` next and MPEG-4 Part 2 (``mpeg4``) where neither encoder is
there, in an MP4 whose index comes first (``+faststart``), so a browser plays it while it
downloads.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av
import cv2
import numpy as np
from av.video.stream import VideoStream

from hearthwatch.runtime.imaging.decode import ImageError, decode_image, sniff_format
from hearthwatch.security.evidence import DetectionEvidence, WindowEvidence
from hearthwatch.security.observations import Box

MAX_IMAGE_PIXELS: Final = 50_000_000
"""The most pixels a stored frame may decode to (the server's ``MAX_IMAGE_PIXELS`` default)."""
MAX_JPEG_BYTES: Final = 64 * 1024 * 1024
"""A stored JPEG larger than this is not read."""
MAX_LABEL_CHARS: Final = 40
H264_ENCODERS: Final = ("libx264", "libopenh264")
FALLBACK_ENCODER: Final = "mpeg4"
X264_OPTIONS: Final = {"crf": "23", "preset": "veryfast", "profile": "high"}
BITS_PER_PIXEL: Final = 0.15
"""Bit rate of the encoders without a quality mode: this many bits per pixel per frame."""
MAX_CLIP_FPS: Final = 240.0
MIN_CLIP_RATE: Final = Fraction(1, 1001)
"""The lowest frame rate a clip is given (frames spread over hours)."""
PERSON: Final = "person"
PALETTE: Final[tuple[tuple[int, int, int], ...]] = (
    (255, 56, 56),
    (255, 157, 151),
    (255, 112, 31),
    (255, 178, 29),
    (207, 210, 49),
    (72, 249, 10),
    (146, 204, 23),
    (61, 219, 134),
    (26, 147, 52),
    (0, 212, 187),
    (44, 153, 168),
    (0, 194, 255),
    (52, 69, 147),
    (100, 115, 255),
    (0, 24, 236),
    (132, 56, 255),
    (82, 0, 133),
    (203, 56, 255),
    (255, 149, 200),
    (255, 55, 199),
)
"""RGB colours of the boxes: a label's is chosen by the CRC-32 of its text less any trailing
score, so ``person 91%`` and ``person 40%`` share one."""
_TRAILING_SCORE = re.compile(r"[\s\d.%]+$")


class MediaError(Exception):
    """Base of the errors this module raises on purpose."""


class UnsafePathError(MediaError, ValueError):
    """A path that escapes the data directory, names the directory itself or is no path."""


class ImageArrayError(MediaError, ValueError):
    """An array that is not an RGB uint8 image, or a box that is not four finite numbers."""


@dataclass(frozen=True)
class Snapshot:
    """A window's best frame as a JPEG, every detection of that frame drawn on it."""

    detection_id: int
    """The detection the frame was chosen for."""
    frame_id: int
    jpeg: bytes
    width: int
    height: int


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    """The clip, resolved under the data directory."""
    frames: int
    skipped: int
    """Frames picked for the clip that could not be read (missing, corrupt, too large)."""
    width: int
    height: int
    fps: float
    encoder: str
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def confined_path(data_dir: Path, path: str | os.PathLike[str]) -> Path:
    """``path`` (relative to ``data_dir``, or absolute) resolved, symlinks followed; raises
    :class:`UnsafePathError` unless it lies strictly inside ``data_dir``."""
    try:
        root = Path(data_dir).resolve()
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (OSError, ValueError, TypeError, RuntimeError) as error:  # NUL bytes, symlink loops
        raise UnsafePathError(f"not a usable path: {path!r}") from error
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafePathError(f"{str(path)!r} is not inside the data directory")
    return resolved


def _checked_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ImageArrayError("expected a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageArrayError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    return image


def _label_text(label: str) -> str:
    """``label`` in the printable ASCII that OpenCV's fonts draw, cut to a readable length."""
    text = "".join(c if " " <= c <= "~" else "?" for c in str(label))
    return text[:MAX_LABEL_CHARS]


def _colour(label: str) -> tuple[int, int, int]:
    name = _TRAILING_SCORE.sub("", label) or label
    return PALETTE[zlib.crc32(name.encode("utf-8", "replace")) % len(PALETTE)]


def _finite_box(box: Any) -> Box:
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError) as error:
        raise ImageArrayError(f"a box is four numbers, got {box!r}") from error
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ImageArrayError(f"a box is four finite numbers, got {box!r}")
    return x1, y1, x2, y2


def draw_boxes(image: np.ndarray, boxes_with_labels: Sequence[tuple[Box, str]]) -> np.ndarray:
    """A copy of ``image`` with each box drawn as a rectangle clipped to the image, its label
    on a filled tag above it (inside it when there is no room above), in one colour per label
    (:data:`PALETTE`). A box outside the image is not drawn. Later boxes are drawn over earlier
    ones.

    Raises :class:`ImageArrayError` for an image that is not RGB uint8 or a box that is not
    four finite numbers.
    """
    canvas = np.ascontiguousarray(_checked_image(image)).copy()
    height, width = canvas.shape[:2]
    boxes = [(_finite_box(box), label) for box, label in boxes_with_labels]
    side = min(height, width)
    thickness = max(1, round(side / 320))
    font_scale = max(0.4, side / 900)
    for (bx1, by1, bx2, by2), label in boxes:
        x1, x2 = sorted((bx1, bx2))
        y1, y2 = sorted((by1, by2))
        if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
            continue
        left, right = round(max(0.0, x1)), round(min(width - 1.0, x2))
        top, bottom = round(max(0.0, y1)), round(min(height - 1.0, y2))
        colour = _colour(label)
        cv2.rectangle(canvas, (left, top), (right, bottom), colour, thickness)
        text = _label_text(label)
        if not text:
            continue
        (text_w, text_h), baseline = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
        )
        tag_h = text_h + baseline + 2 * thickness
        tag_top = top - tag_h if top - tag_h >= 0 else top
        tag_left = max(0, min(left, width - text_w - 2 * thickness))
        cv2.rectangle(
            canvas,
            (tag_left, tag_top),
            (tag_left + text_w + 2 * thickness, tag_top + tag_h),
            colour,
            cv2.FILLED,
        )
        ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        cv2.putText(
            canvas,
            text,
            (tag_left + thickness, tag_top + thickness + text_h),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            ink,
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """``image`` (RGB) as JPEG bytes; ``quality`` 1–100."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality is an integer in 1..100, got {quality!r}")
    bgr = cv2.cvtColor(_checked_image(image), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageArrayError(f"OpenCV could not encode an image of shape {image.shape}")
    return encoded.tobytes()


@contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; once the block ends without error it is
    fsynced and renamed over ``target``, else removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes, *, data_dir: Path) -> Path:
    """Write ``data`` to ``path`` under ``data_dir`` atomically; the resolved path."""
    target = confined_path(data_dir, path)
    with _atomic_target(target) as temporary:
        temporary.write_bytes(data)
    return target


def write_jpeg(
    path: str | os.PathLike[str], image: np.ndarray, *, data_dir: Path, quality: int = 85
) -> Path:
    """Encode ``image`` (RGB) as a JPEG and write it to ``path`` under ``data_dir``
    atomically, creating missing directories; the resolved path."""
    return write_bytes_atomically(path, encode_jpeg(image, quality), data_dir=data_dir)


def read_jpeg(
    path: str | os.PathLike[str], *, data_dir: Path, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """The JPEG at ``path`` under ``data_dir``, decoded upright to RGB.

    Raises :class:`UnsafePathError`, ``OSError`` (missing, unreadable) and the runtime's
    :class:`~hearthwatch.runtime.imaging.decode.ImageError` for a file that is not a JPEG, or
    is corrupt, truncated or over ``max_pixels`` or :data:`MAX_JPEG_BYTES`.
    """
    source = confined_path(data_dir, path)
    with source.open("rb") as file:
        data = file.read(MAX_JPEG_BYTES + 1)
    if len(data) > MAX_JPEG_BYTES:
        raise ImageError("too_large", f"{source.name} is over {MAX_JPEG_BYTES} bytes")
    if sniff_format(data) != "jpeg":
        raise ImageError("not_a_jpeg", f"{source.name} is not a JPEG")
    return decode_image(data, max_pixels)


def best_snapshot(
    evidence: WindowEvidence,
    data_dir: Path,
    *,
    path: str | os.PathLike[str] | None = None,
    quality: int = 85,
) -> Snapshot | None:
    """The window's best frame with every detection of that frame drawn (labelled with its
    label and score), as a JPEG, also written atomically to ``path`` when one is given.

    The best frame is that of the highest-scoring person detection, else of the
    highest-scoring detection; when a frame is not kept or cannot be read, the next detection
    in that order is tried. ``None`` when no detection's frame can be read. Every kept frame's
    path must lie under ``data_dir`` (:class:`UnsafePathError` otherwise, before any read).
    """
    frames = {
        frame_id: confined_path(data_dir, frame_path)
        for frame_id, frame_path in evidence.frame_paths.items()
    }
    target = confined_path(data_dir, path) if path is not None else None
    ranked = sorted(evidence.detections, key=lambda d: (d.label != PERSON, -d.score, d.id))
    tried: set[int] = set()
    for detection in ranked:
        if detection.frame_id in tried or detection.frame_id not in frames:
            continue
        tried.add(detection.frame_id)
        try:
            image = read_jpeg(frames[detection.frame_id], data_dir=data_dir)
        except (OSError, ImageError):
            continue
        drawn = draw_boxes(image, _frame_boxes(evidence.detections, detection.frame_id))
        jpeg = encode_jpeg(drawn, quality)
        if target is not None:
            write_bytes_atomically(target, jpeg, data_dir=data_dir)
        height, width = drawn.shape[:2]
        return Snapshot(detection.id, detection.frame_id, jpeg, width, height)
    return None


def _frame_boxes(detections: Sequence[DetectionEvidence], frame_id: int) -> list[tuple[Box, str]]:
    """The boxes of one frame, lowest score first so the best is drawn on top."""
    in_frame = sorted((d for d in detections if d.frame_id == frame_id), key=lambda d: d.score)
    return [(d.box, f"{d.label} {d.score:.0%}") for d in in_frame]


@functools.cache
def clip_encoder() -> str:
    """The video encoder clips use: the first H.264 encoder of :data:`H264_ENCODERS` that the
    FFmpeg linked into PyAV has, else :data:`FALLBACK_ENCODER`."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    return FALLBACK_ENCODER


def _clip_size(shape: tuple[int, ...], max_width: int) -> tuple[int, int]:
    """Width and height of a clip whose first frame has ``shape``: at most ``max_width`` wide,
    the frame's aspect kept, both even (yuv420p needs it) and at least 2."""
    height, width = shape[:2]
    scale = min(1.0, max_width / width)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def _fitted(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` × ``height`` with its aspect kept, centred on black."""
    if image.shape[:2] == (height, width):
        return image
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w = min(width, max(1, round(image.shape[1] * scale)))
    new_h = min(height, max(1, round(image.shape[0] * scale)))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=method)
    if (new_h, new_w) == (height, width):
        return resized
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _picked(paths: Sequence[Path], max_frames: int) -> list[Path]:
    """At most ``max_frames`` of ``paths``, evenly spread over them, first and last kept."""
    if len(paths) <= max_frames:
        return list(paths)
    if max_frames == 1:
        return [paths[0]]
    step = (len(paths) - 1) / (max_frames - 1)
    return [paths[round(i * step)] for i in range(max_frames)]


class _Frames:
    """The readable frames of ``paths``, decoded one at a time; counts those skipped."""

    def __init__(self, paths: Sequence[Path], data_dir: Path):
        self.paths = paths
        self.data_dir = data_dir
        self.skipped = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            try:
                yield read_jpeg(path, data_dir=self.data_dir)
            except (OSError, ImageError):
                self.skipped += 1


def write_clip(
    path: str | os.PathLike[str],
    frame_paths: Sequence[str | os.PathLike[str]],
    *,
    data_dir: Path,
    fps: float,
    max_frames: int = 300,
    max_width: int = 1280,
) -> ClipInfo | None:
    """Encode the stored JPEG frames ``frame_paths`` (in order) into an MP4 at ``path``,
    written atomically; all paths under ``data_dir`` (:class:`UnsafePathError` otherwise,
    before anything is read).

    The clip has the first readable frame's aspect, at most ``max_width`` wide (never
    enlarged), with even sides; frames of other sizes are scaled to fit and centred on black.
    Frames that cannot be read (missing, corrupt, truncated, not JPEG) are skipped. Given more
    than ``max_frames`` frames, ``max_frames`` of them spread evenly over all are kept and the
    frame rate lowered in proportion, so the clip lasts as long as ``fps`` says the frames did.
    ``None``, and nothing written, when no frame can be read.
    """
    if not (math.isfinite(fps) and 0 < fps <= MAX_CLIP_FPS):
        raise ValueError(f"fps must be in (0, {MAX_CLIP_FPS:g}], got {fps!r}")
    if not 1 <= max_frames <= 100_000:
        raise ValueError(f"max_frames must be in 1..100000, got {max_frames!r}")
    if not 16 <= max_width <= 8192:
        raise ValueError(f"max_width must be in 16..8192, got {max_width!r}")
    target = confined_path(data_dir, path)
    sources = [confined_path(data_dir, frame_path) for frame_path in frame_paths]
    picked = _picked(sources, max_frames)
    frames = _Frames(picked, data_dir)
    readable = iter(frames)
    first = next(readable, None)
    if first is None:
        return None
    rate = max(MIN_CLIP_RATE, Fraction(fps * len(picked) / len(sources)).limit_denominator(1001))
    width, height = _clip_size(first.shape, max_width)
    encoder = clip_encoder()
    with _atomic_target(target) as temporary:
        count = _encode(temporary, first, readable, width, height, rate, encoder)
    return ClipInfo(
        path=target,
        frames=count,
        skipped=frames.skipped,
        width=width,
        height=height,
        fps=float(rate),
        encoder=encoder,
        size_bytes=target.stat().st_size,
    )


def _encode(
    destination: Path,
    first: np.ndarray,
    rest: Iterator[np.ndarray],
    width: int,
    height: int,
    rate: Fraction,
    encoder: str,
) -> int:
    """Encode ``first`` and ``rest`` into an MP4 at ``destination``; the frames written."""
    options = X264_OPTIONS if encoder == "libx264" else {}
    with av.open(
        str(destination), "w", format="mp4", container_options={"movflags": "+faststart"}
    ) as container:
        stream = container.add_stream(encoder, rate=rate, options=dict(options))
        if not isinstance(stream, VideoStream):
            raise MediaError(f"{encoder} is not a video encoder")
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if encoder != "libx264":
            stream.bit_rate = max(100_000, round(BITS_PER_PIXEL * width * height * float(rate)))
        count = 0
        for image in itertools.chain([first], rest):
            frame = av.VideoFrame.from_ndarray(_fitted(image, width, height), format="rgb24")
            frame.pts, frame.time_base = count, 1 / rate
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
    return count
