"""Camera footage for tests, drawn at run time and the same for the same seed: a static backdrop
(a drawn yard of real brick and gravel textures, or one of scikit-image's photos), fresh
Gaussian sensor noise on every frame, optionally a person walking along a straight path, and
optionally global brightness steps (an IR lamp or the exposure switching).

The walking person is cut from scikit-image's astronaut photo: a head cut from her face and a
body (torso, swinging arms and legs) cut from her orange suit, assembled into a standing
figure whose legs and arms swing as it walks. Its true box is the bounding box of the figure's
pixels that are inside the frame, exact by construction.

A still object the detector finds in every frame, whatever else it sees, is a photo of a
parked motorcycle (scikit-image's ``stereo_motorcycle``, left view) pasted into the backdrop
with :func:`with_picture`. A frame can carry its own index as a code of big black and white
cells drawn into a corner (:func:`with_index_code`), which survives H.264 and JPEG and is read
back from a stored image by :func:`read_index_code`, for sources (a stream) whose frames
otherwise carry no index; :func:`index_code_mask` is the corner to mask from a motion gate.

Frames are BGR uint8 (H, W, 3), read-only, produced lazily (a hundred 1080p frames would take
600 MB). Each generator is confined to the thread that iterates it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import skimage.data

Box = tuple[int, int, int, int]
"""x1, y1, x2, y2 in the frame's pixels; x2 and y2 exclusive."""

_FACE = (150, 20, 302, 196)
"""The astronaut's head in her photo (x1, y1, x2, y2): hair, face and chin."""
_SUIT = (40, 200, 360, 512)
"""Her orange suit below the collar."""

INDEX_CODE_BITS = 8
"""Bits of a frame index the code holds (indices 0–255)."""
INDEX_CODE_CELL = 40
"""The side of one cell of the code, in the frame's pixels."""
INDEX_CODE_BOX: Box = (0, 0, INDEX_CODE_BITS * INDEX_CODE_CELL, 2 * INDEX_CODE_CELL)
"""Where the code is drawn (the frame's top left): a row of cells for the index's bits, most
significant first, white for 1, and under it a row of their complements."""


@dataclass(frozen=True)
class Walk:
    """A person ``height`` pixels tall whose feet (the bottom centre of the figure) move in a
    straight line from ``start`` at frame ``first_frame`` to ``end`` at ``last_frame``; absent
    before and after."""

    start: tuple[float, float]
    end: tuple[float, float]
    first_frame: int
    last_frame: int
    height: int


@dataclass(frozen=True, eq=False)
class SceneFrame:
    """One frame and its truth: ``person_box`` is the walking person's visible box (None when
    no part of it is in the frame); ``gain`` the brightness factor in force."""

    index: int
    image: np.ndarray
    person_box: Box | None
    gain: float


def yard(width: int = 1920, height: int = 1080) -> np.ndarray:
    """A house wall of real brick texture above a gravel path, with a dark door, a lit window
    and a kerb along the wall's foot: strong edges and fine texture, no object of any class."""
    wall_bottom = round(height * 0.58)
    frame = np.empty((height, width, 3), np.uint8)
    frame[:wall_bottom] = _tinted(_tiled(_texture("brick"), width, wall_bottom), (0.55, 0.7, 1.0))
    ground = _tiled(_texture("gravel"), width, height - wall_bottom)
    frame[wall_bottom:] = _tinted(ground, (0.85, 0.9, 0.95))
    door_x = round(width * 0.18)
    cv2.rectangle(
        frame, (door_x, round(height * 0.2)), (door_x + round(width * 0.1), wall_bottom),
        (40, 50, 70), cv2.FILLED,
    )  # fmt: skip
    window = (round(width * 0.62), round(height * 0.14), round(width * 0.8), round(height * 0.38))
    cv2.rectangle(frame, window[:2], window[2:], (150, 210, 235), cv2.FILLED)
    cv2.rectangle(frame, window[:2], window[2:], (235, 235, 235), max(2, width // 200))
    middle = (window[0] + window[2]) // 2
    cv2.line(frame, (middle, window[1]), (middle, window[3]), (235, 235, 235), max(2, width // 300))
    kerb = max(3, height // 60)
    cv2.rectangle(frame, (0, wall_bottom), (width, wall_bottom + kerb), (185, 185, 180), cv2.FILLED)
    frame.flags.writeable = False
    return frame


def photo_backdrop(name: str, width: int, height: int) -> np.ndarray:
    """One of scikit-image's photos (colour: ``rocket``, ``coffee``, ``chelsea`` …; grey:
    ``grass``, ``brick`` …) scaled to cover ``width`` x ``height`` and cropped to it, as BGR."""
    rgb = getattr(skimage.data, name)()
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    scale = max(width / rgb.shape[1], height / rgb.shape[0])
    size = (math.ceil(rgb.shape[1] * scale), math.ceil(rgb.shape[0] * scale))
    scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    bgr = np.ascontiguousarray(scaled[top : top + height, left : left + width, ::-1])
    bgr.flags.writeable = False
    return bgr


def motorcycle(width: int) -> np.ndarray:
    """The photo of a parked motorcycle (scikit-image's ``stereo_motorcycle``, left view) as
    BGR, scaled to ``width`` pixels wide. YOLOv3-tiny finds it with a score near 0.9 at 500
    pixels wide in a 1080p yard, noise, JPEG and H.264 notwithstanding."""
    rgb = skimage.data.stereo_motorcycle()[0]
    height = round(width * rgb.shape[0] / rgb.shape[1])
    scaled = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(scaled[..., ::-1])
    bgr.flags.writeable = False
    return bgr


def with_picture(backdrop: np.ndarray, picture: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    """``backdrop`` with ``picture`` (BGR, whole inside it) pasted with its top left at ``at``
    (x, y), as a new read-only array."""
    x, y = at
    rows, cols = picture.shape[:2]
    if not (0 <= x <= backdrop.shape[1] - cols and 0 <= y <= backdrop.shape[0] - rows):
        raise ValueError(f"a {cols}x{rows} picture at {at} is not inside the backdrop")
    pasted = backdrop.copy()
    pasted[y : y + rows, x : x + cols] = picture
    pasted.flags.writeable = False
    return pasted


def with_index_code(image: np.ndarray, index: int) -> np.ndarray:
    """``image`` with ``index`` drawn as a code over :data:`INDEX_CODE_BOX` (pure black and
    white, whatever the brightness of the rest), as a new read-only array."""
    if not 0 <= index < 1 << INDEX_CODE_BITS:
        raise ValueError(f"the code holds indices 0 to {(1 << INDEX_CODE_BITS) - 1}, not {index}")
    coded = image.copy()
    cell = INDEX_CODE_CELL
    for bit in range(INDEX_CODE_BITS):
        value = 255 if index >> (INDEX_CODE_BITS - 1 - bit) & 1 else 0
        coded[0:cell, bit * cell : (bit + 1) * cell] = value
        coded[cell : 2 * cell, bit * cell : (bit + 1) * cell] = 255 - value
    coded.flags.writeable = False
    return coded


def read_index_code(image: np.ndarray) -> int | None:
    """The index :func:`with_index_code` drew into ``image`` (BGR), read from the middle half
    of each cell; None when any cell is not clearly black or white, or a bit's complement
    disagrees with it (no code there, or one that compression ruined)."""
    x1, y1, x2, y2 = INDEX_CODE_BOX
    if image.shape[0] < y2 or image.shape[1] < x2:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_BGR2GRAY)
    cell, inset = INDEX_CODE_CELL, INDEX_CODE_CELL // 4
    index = 0
    for bit in range(INDEX_CODE_BITS):
        left = bit * cell + inset
        value, complement = (
            float(grey[top + inset : top + cell - inset, left : left + cell - 2 * inset].mean())
            for top in (0, cell)
        )
        if not (min(value, complement) < 64 and max(value, complement) > 192):
            return None
        index = index << 1 | (value > complement)
    return index


def index_code_mask(width: int, height: int, margin: int = 64) -> tuple[tuple[float, float], ...]:
    """The polygon, relative to a ``width`` x ``height`` frame, of :data:`INDEX_CODE_BOX` and
    ``margin`` pixels around it: a motion gate's mask that keeps the code's changes (and their
    blur at the gate's scale) from counting as motion."""
    x2 = min(1.0, (INDEX_CODE_BOX[2] + margin) / width)
    y2 = min(1.0, (INDEX_CODE_BOX[3] + margin) / height)
    return ((0.0, 0.0), (x2, 0.0), (x2, y2), (0.0, y2))


def person(height: int, stride_phase: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The walking figure ``height`` pixels tall, as (BGR pixels, mask of the figure's pixels),
    both ``height`` rows and ``0.5 * height`` columns; its feet touch the bottom row at the
    middle column. ``stride_phase`` (radians) sets the swing of arms and legs."""
    if height < 8:
        raise ValueError(f"a person needs at least 8 pixels of height, not {height}")
    width = max(4, round(height * 0.5))
    centre = width / 2
    pixels = cv2.resize(_crop(_SUIT), (width, height), interpolation=cv2.INTER_AREA)
    mask = np.zeros((height, width), np.uint8)
    swing = math.sin(stride_phase)
    # legs from the hips to the feet, swinging opposite each other
    hip_y, limb = round(height * 0.5), max(1, round(height * 0.085))
    for side in (-1, 1):
        hip = (round(centre + side * height * 0.045), hip_y)
        foot = (round(centre + side * swing * height * 0.14), height - 1 - limb // 2)
        cv2.line(mask, hip, foot, 255, limb)
    # arms from the shoulders, swinging against the legs
    shoulder_y, arm = round(height * 0.17), max(1, round(height * 0.06))
    for side in (-1, 1):
        shoulder = (round(centre + side * height * 0.15), shoulder_y)
        hand = (round(centre + side * (height * 0.19 - swing * height * 0.1)), hip_y)
        cv2.line(mask, shoulder, hand, 255, arm)
    torso = np.array(
        [
            (centre - height * 0.14, shoulder_y - arm // 2),
            (centre + height * 0.14, shoulder_y - arm // 2),
            (centre + height * 0.1, hip_y + limb // 2),
            (centre - height * 0.1, hip_y + limb // 2),
        ]
    )
    cv2.fillPoly(mask, [torso.round().astype(np.int32)], 255)
    # the head, cut from her face, on a neck
    head_axes = (max(1, round(height * 0.052)), max(1, round(height * 0.068)))
    head_centre = (round(centre), head_axes[1])
    neck_y = head_centre[1] + head_axes[1]
    cv2.line(mask, (round(centre), neck_y - 1), (round(centre), shoulder_y), 255, arm)
    head_box = (
        head_centre[0] - head_axes[0],
        0,
        head_centre[0] + head_axes[0] + 1,
        2 * head_axes[1] + 1,
    )
    head_size = (head_box[2] - head_box[0], head_box[3] - head_box[1])
    face = cv2.resize(_crop(_FACE), head_size, interpolation=cv2.INTER_AREA)
    pixels[head_box[1] : head_box[3], head_box[0] : head_box[2]] = face
    cv2.ellipse(mask, head_centre, head_axes, 0, 0, 360, 255, cv2.FILLED)
    return pixels, mask > 0


def scene_frames(
    backdrop: np.ndarray,
    *,
    count: int,
    noise_sigma: float = 3.0,
    walk: Walk | None = None,
    brightness_steps: Mapping[int, float] | None = None,
    seed: int = 0,
) -> Iterator[SceneFrame]:
    """``count`` frames of ``backdrop`` (BGR uint8) with sensor noise of ``noise_sigma`` grey
    levels, ``walk``'s person if given, and ``brightness_steps`` (frame index → gain in force
    from that frame on; the gain multiplies the scene before the noise, as a lamp would)."""
    height, width = backdrop.shape[:2]
    rng = np.random.default_rng(seed)
    noise = _noise_field(height, width, noise_sigma, seed)
    margin = noise.shape[0] - height
    steps = sorted((brightness_steps or {}).items())
    offset = (-1, -1)
    for index in range(count):
        gain = next((g for first, g in reversed(steps) if first <= index), 1.0)
        scene = backdrop.copy()
        box = _paste_walker(scene, walk, index) if walk is not None else None
        if gain != 1.0:
            scene = cv2.convertScaleAbs(scene, alpha=gain)
        previous, offset = offset, (-1, -1)
        while offset in (previous, (-1, -1)):  # never the same noise twice in a row
            offset = (int(rng.integers(0, margin + 1)), int(rng.integers(0, margin + 1)))
        dy, dx = offset
        image = cv2.add(scene, noise[dy : dy + height, dx : dx + width], dtype=cv2.CV_8U)
        image.flags.writeable = False
        yield SceneFrame(index, image, box, gain)


def _paste_walker(scene: np.ndarray, walk: Walk, index: int) -> Box | None:
    if not walk.first_frame <= index <= walk.last_frame:
        return None
    span = max(1, walk.last_frame - walk.first_frame)
    t = (index - walk.first_frame) / span
    feet_x = walk.start[0] + t * (walk.end[0] - walk.start[0])
    feet_y = walk.start[1] + t * (walk.end[1] - walk.start[1])
    walked = math.dist(walk.start, (feet_x, feet_y))
    pixels, mask = person(walk.height, stride_phase=walked / (walk.height * 0.35) * math.pi)
    rows, cols = mask.shape
    left, top = round(feet_x - cols / 2), round(feet_y) - rows
    # the part of the figure inside the frame
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(left + cols, scene.shape[1]), min(top + rows, scene.shape[0])
    if x1 >= x2 or y1 >= y2:
        return None
    visible = mask[y1 - top : y2 - top, x1 - left : x2 - left]
    if not visible.any():
        return None
    region = scene[y1:y2, x1:x2]
    region[visible] = pixels[y1 - top : y2 - top, x1 - left : x2 - left][visible]
    ys, xs = np.nonzero(visible)
    return (x1 + int(xs.min()), y1 + int(ys.min()), x1 + int(xs.max()) + 1, y1 + int(ys.max()) + 1)


@cache
def _noise_field(height: int, width: int, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise a little larger than the frame; each frame takes a window of it at a
    random offset, so consecutive frames get unrelated noise at every pixel without drawing
    six million normals per frame."""
    margin = 64
    rng = np.random.default_rng(seed + 1)
    field = rng.standard_normal((height + margin, width + margin, 3), dtype=np.float32)
    noise = np.round(field * sigma).astype(np.int16)
    noise.flags.writeable = False
    return noise


@cache
def _crop(box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    bgr = np.ascontiguousarray(skimage.data.astronaut()[y1:y2, x1:x2, ::-1])
    bgr.flags.writeable = False
    return bgr


@cache
def _texture(name: str) -> np.ndarray:
    grey = getattr(skimage.data, name)()
    grey.flags.writeable = False
    return grey


def _tiled(texture: np.ndarray, width: int, height: int) -> np.ndarray:
    reps = (-(-height // texture.shape[0]), -(-width // texture.shape[1]))
    return np.tile(texture, reps)[:height, :width]


def _tinted(grey: np.ndarray, bgr_gain: tuple[float, float, float]) -> np.ndarray:
    tint = np.array(bgr_gain, np.float32)
    return np.clip(grey[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int) -> Path:
    """``frames`` (BGR uint8, all one size) as an H.264 MP4 at ``fps``, for file and stream
    sources."""
    import av

    with av.open(str(path), "w") as out:
        stream = None
        for image in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "veryfast", "crf": "18"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            out.mux(stream.encode(frame))
        if stream is not None:
            out.mux(stream.encode(None))
    return path
