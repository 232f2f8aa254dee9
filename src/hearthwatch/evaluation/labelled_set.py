"""A labelled test set for COCO object detectors, built at run time from real photos that
scikit-image and matplotlib ship (no download), the same for the same seed.

What is labelled: each object in a security class (COCO spelling, e.g. "person", "cat",
"motorcycle", "bicycle") visible in the four object photos: the astronaut and Grace Hopper
(each a "person"), Chelsea ("cat"), the red motorcycle ("motorcycle"), and, marked
``difficult``, the child's bicycle half hidden behind a bench at the motorcycle photo's left
edge. Boxes are (x1, y1, x2, y2) in the scene's own pixels, checked by eye on the photos.

- :func:`photo_scenes`: the four photos as shipped, plus the coffee photo (a cup, a spoon,
  a saucer: nothing to find, for precision).
- :func:`pasted_scenes`: 960x540 camera frames, each with one to three of the object photos
  pasted whole (the full photo rectangle, scaled; some mirrored) at heights from 20 % to 70 %
  of the frame, never overlapping. Their boxes are the photos' boxes moved by the same scale,
  mirroring and offset, so known by construction. The backgrounds (brick, grass and gravel
  textures, a colour gradient, a drawn street) hold no objects of any class.

What is not labelled: objects outside the security classes, which the evaluated classes must
leave out: Grace Hopper's tie ("tie"), the space shuttle model behind the astronaut (which a
detector may call an "airplane"), the bench and the bottles in the motorcycle photo, the cup
and spoon. A ``difficult`` instance is seen but not required (PASCAL VOC's convention): a
detection of it is neither a true nor a false positive, and missing it is no miss.

Every image is RGB uint8 (H, W, 3) and read-only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels."""


@dataclass(frozen=True)
class Instance:
    """One labelled object: its COCO class name and box; ``difficult``: not required;
    ``source``: the photo it is in (one person's photos show the same person)."""

    label: str
    box: Box
    difficult: bool = False
    source: str = ""


@dataclass(frozen=True, eq=False)
class Scene:
    """One image (RGB uint8, read-only) and every labelled object in it."""

    name: str
    image: np.ndarray
    instances: tuple[Instance, ...]


# The boxes were checked by eye: each drawn on its photo and viewed whole and zoomed on every
# edge. A person's box runs from the top of the head (or hat) to the photo's bottom edge, where
# the body is cut off, and leaves out what the person holds (the astronaut's helmet); the cat's
# covers its face and its right ear, cut off by the photo's top and bottom edges; the
# motorcycle's runs from the tail light to the front tyre and from the tall right mirror to
# the tyres' contact with the floor.
OBJECT_PHOTOS: dict[str, tuple[Instance, ...]] = {
    "astronaut": (Instance("person", (23, 17, 361, 512), source="astronaut"),),  # 512 x 512
    "grace_hopper": (Instance("person", (23, 24, 512, 600), source="grace_hopper"),),  # 512 x 600
    "chelsea": (Instance("cat", (0, 0, 400, 300), source="chelsea"),),  # 451 x 300
    "motorcycle_left": (  # 741 x 500
        Instance("motorcycle", (92, 15, 684, 452), source="motorcycle_left"),
        Instance("bicycle", (0, 107, 136, 229), difficult=True, source="motorcycle_left"),
    ),
}
"""The photos with objects and what is in them, in the photos' own pixels."""

EMPTY_PHOTO = "coffee"
"""A photo with no object of a security class."""

FRAME_WIDTH, FRAME_HEIGHT = 960, 540
"""The size of a pasted scene."""

BACKGROUNDS = ("brick", "grass", "gravel", "gradient", "street")
"""The pasted scenes' backgrounds, in turn."""

_FRAMES_PER_COUNT = 6
"""Pasted scenes with one, with two and with three objects: 18 scenes, 36 pastes."""
_HEIGHT_BANDS = {1: (0.45, 0.70), 2: (0.30, 0.50), 3: (0.20, 0.35)}
"""A pasted photo's height as a fraction of the frame's, by how many share the frame: side by
side they always fit."""
_MIRROR_EVERY = 3
"""Every third paste of each photo is mirrored left to right."""


def _photo_path(name: str) -> Path:
    # imported here: neither is a dependency of the server, and the scoring needs neither
    import matplotlib.cbook
    import skimage.data

    if name == "grace_hopper":
        file = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return Path(file)  # type: ignore[arg-type]
    return Path(skimage.data.__file__).parent / f"{name}.png"


@cache
def _photo(name: str) -> np.ndarray:
    bgr = cv2.imread(str(_photo_path(name)), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read the photo {_photo_path(name)}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.flags.writeable = False
    return rgb


@cache
def _texture(name: str) -> np.ndarray:
    gray = cv2.imread(str(_photo_path(name)), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise FileNotFoundError(f"cannot read the texture {_photo_path(name)}")
    gray.flags.writeable = False
    return gray


def photo_scenes() -> list[Scene]:
    """The object photos as shipped with their hand-checked boxes, and the empty photo."""
    scenes = [Scene(name, _photo(name), instances) for name, instances in OBJECT_PHOTOS.items()]
    return [*scenes, Scene(EMPTY_PHOTO, _photo(EMPTY_PHOTO), ())]


def pasted_scenes(seed: int = 0) -> list[Scene]:
    """Camera frames with the object photos pasted on plain backgrounds (see the module's
    docstring), named like ``pasted-07-street: astronaut, chelsea mirrored`` (the photos left
    to right), their instances in the same order."""
    rng = np.random.default_rng(seed)
    names = list(OBJECT_PHOTOS)
    counts = rng.permutation(np.repeat(list(_HEIGHT_BANDS), _FRAMES_PER_COUNT))
    pastes_per_photo = -(-int(counts.sum()) // len(names))
    queue = [names[i] for _ in range(pastes_per_photo) for i in rng.permutation(len(names))]
    pasted: Counter[str] = Counter()
    scenes = []
    for index, count in enumerate(counts):
        background = BACKGROUNDS[index % len(BACKGROUNDS)]
        frame = _background(background, rng)
        photos, queue = queue[:count], queue[count:]
        low, high = _HEIGHT_BANDS[int(count)]
        heights = [round(h) for h in rng.uniform(low, high, len(photos)) * FRAME_HEIGHT]
        widths = [
            round(h * _photo(p).shape[1] / _photo(p).shape[0])
            for p, h in zip(photos, heights, strict=True)
        ]
        # random gaps between the pastes, left to right: they never overlap
        gaps = rng.dirichlet(np.ones(len(photos) + 1)) * (FRAME_WIDTH - sum(widths))
        x, instances, parts = float(gaps[0]), [], []
        for photo, width, height, gap in zip(photos, widths, heights, gaps[1:], strict=True):
            y = int(rng.integers(0, FRAME_HEIGHT - height + 1))
            mirrored = pasted[photo] % _MIRROR_EVERY == _MIRROR_EVERY - 1
            pasted[photo] += 1
            instances += _paste(frame, photo, (int(x), y, width, height), mirrored)
            parts.append(f"{photo} mirrored" if mirrored else photo)
            x += width + gap
        frame.flags.writeable = False
        name = f"pasted-{index:02d}-{background}: {', '.join(parts)}"
        scenes.append(Scene(name, frame, tuple(instances)))
    return scenes


def labelled_set(seed: int = 0) -> list[Scene]:
    """The photo scenes, then the pasted scenes for ``seed``."""
    return photo_scenes() + pasted_scenes(seed)


def _paste(
    frame: np.ndarray, photo: str, where: tuple[int, int, int, int], mirrored: bool
) -> list[Instance]:
    """Paste ``photo`` scaled to ``where`` (x, y, width, height) into ``frame``; its instances
    moved there."""
    x, y, width, height = where
    rgb = _photo(photo)
    photo_height, photo_width = rgb.shape[:2]
    shrink = height < photo_height
    scaled = cv2.resize(
        rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    frame[y : y + height, x : x + width] = scaled[:, ::-1] if mirrored else scaled
    sx, sy = width / photo_width, height / photo_height
    moved = []
    for instance in OBJECT_PHOTOS[photo]:
        x1, y1, x2, y2 = instance.box
        if mirrored:
            x1, x2 = photo_width - x2, photo_width - x1
        box = (
            round(x + x1 * sx, 2),
            round(y + y1 * sy, 2),
            round(x + x2 * sx, 2),
            round(y + y2 * sy, 2),
        )
        moved.append(replace(instance, box=box))
    return moved


def _background(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "gradient":
        return _gradient(rng)
    if kind == "street":
        return _street(rng)
    return _tinted_texture(kind, rng)


def _tinted_texture(name: str, rng: np.random.Generator) -> np.ndarray:
    """A texture scaled to the frame's width, a random band of it, its contrast, brightness
    and colour varied."""
    side = cv2.resize(_texture(name), (FRAME_WIDTH, FRAME_WIDTH), interpolation=cv2.INTER_LINEAR)
    top = int(rng.integers(0, FRAME_WIDTH - FRAME_HEIGHT + 1))
    band = side[top : top + FRAME_HEIGHT].astype(np.float32)
    mean = float(band.mean())
    band = (band - mean) * rng.uniform(0.6, 1.3) + mean * rng.uniform(0.8, 1.15)
    tint = rng.uniform(0.75, 1.15, 3).astype(np.float32)
    return np.clip(band[..., None] * tint, 0, 255).astype(np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    """A linear blend between two random colours at a random angle."""
    start, end = rng.uniform(30, 225, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH].astype(np.float32)
    along = xs * np.cos(angle) + ys * np.sin(angle)
    t = ((along - along.min()) / (along.max() - along.min()))[..., None]
    return np.clip(start + t * (end - start), 0, 255).astype(np.uint8)


def _street(rng: np.random.Generator) -> np.ndarray:
    """A road running to the horizon under a sky band: pavement either side, white edge lines,
    a dashed centre line, and a little sensor noise."""
    horizon = int(FRAME_HEIGHT * rng.uniform(0.22, 0.35))
    colours = np.empty((FRAME_HEIGHT, FRAME_WIDTH, 3), np.float32)
    zenith = rng.uniform((70, 120, 190), (120, 170, 240))
    haze = np.array((205, 215, 225), np.float32)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    colours[:horizon] = zenith + t * (haze - zenith)
    colours[horizon:] = rng.uniform((130, 125, 115), (175, 170, 160))  # pavement
    frame = colours.astype(np.uint8)
    far_x = FRAME_WIDTH * rng.uniform(0.35, 0.65)
    near_x = FRAME_WIDTH * rng.uniform(0.4, 0.6)
    far_half, near_half = rng.uniform(15, 35), FRAME_WIDTH * rng.uniform(0.4, 0.6)
    far = np.array([(far_x - far_half, horizon), (far_x + far_half, horizon)])
    near = np.array([(near_x - near_half, FRAME_HEIGHT), (near_x + near_half, FRAME_HEIGHT)])
    road = np.array([far[0], far[1], near[1], near[0]]).round().astype(np.int32)
    asphalt = int(rng.integers(70, 110))
    cv2.fillPoly(frame, [road], (asphalt, asphalt, asphalt), cv2.LINE_AA)
    white = (235, 235, 230)
    for side in range(2):
        cv2.line(frame, _point(far[side]), _point(near[side]), white, 4, cv2.LINE_AA)
    dashes = 9
    for i in range(dashes):  # perspective: nearer dashes longer and wider
        t0, t1 = (i / dashes) ** 1.8, ((i + 0.5) / dashes) ** 1.8
        a, b = (far.mean(0) + f * (near.mean(0) - far.mean(0)) for f in (t0, t1))
        cv2.line(frame, _point(a), _point(b), white, max(1, round(2 + 12 * t1)), cv2.LINE_AA)
    noisy = frame + rng.normal(0, 3, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0])), round(float(xy[1]))
