"""Appearance descriptors of tracked people, for matching a track on one camera to a track on
another (cross-camera re-identification), and the similarity threshold each is calibrated at.

Two descriptors, each named by a constant that events carry, so a reader knows which decided:

- :data:`REID_DESCRIPTOR`: the zoo's ``reid`` enrichment model (DeepSORT's ImageNet
  MobileNetV2, :mod:`hearthwatch.runtime.enrichment.reid_mobilenet`), whose result per crop is
  ``{"embedding": [...]}``: :data:`REID_LENGTH` values of unit length. The model runs in the
  enrichment service; this module only combines and compares its embeddings.
- :data:`COLOUR_DESCRIPTOR`, the fallback that needs no weights: :func:`colour_histogram`.
  Every pixel falls in one bin: a hue × saturation bin when it has a hue (saturation at least
  :data:`MIN_SATURATION` and value at least :data:`MIN_VALUE`), else one of
  :data:`ACHROMATIC_BINS` value bins (grey, dark). The box's margins are trimmed
  (:data:`TRIM_X`, :data:`TRIM_Y`) and the rest split into an upper and a lower half (head and
  torso; legs). Colours common around the box are the background's, not the person's: with
  ``q`` and ``o`` a bin's share of the trimmed box's pixels and of the surround's (the frame
  around the box, :data:`SURROUND_X` and :data:`SURROUND_Y` of its size out), the bin counts
  ``q / (q + BACKGROUND_WEIGHT * o)`` per pixel (1 for a colour absent around the person, 1/3
  for one as common around them as on them: a background-weighted histogram). Each half's
  weighted histogram is L1-normalised and square-rooted, and the halves are concatenated and
  scaled to unit length: the cosine of two vectors is the mean of the halves' Bhattacharyya
  coefficients. Hue and saturation do not change when a scene's brightness is scaled; only
  the grey and dark pixels' value bins can, and those are coarse.

A track's crops become one unit vector with :func:`mean_descriptor` (or
:meth:`Appearance.of_track`); two tracks on different cameras are the same person when
:func:`cosine` of their vectors (of one descriptor) is at least
``DEFAULT_THRESHOLDS[descriptor]``. Those thresholds were measured
by ``bench/reid_threshold.py`` (its record in ``bench/results/`` says how, and what it does not
show): on the three people the installed packages' photos show, cut out and pasted into other
scenes at other scales, brightness, white balance, mirrored, with box errors; each threshold
lets through at most 1 % of the different-person pairs there. They are a starting point for
real cameras, not a guarantee: three people cannot show how alike two strangers in similar
clothes are, and the same photo on every camera is kinder than a new pose or a back view.

Everything here is a pure function of its arguments or frozen data: safe on any thread. The
vectors returned are float32, one-dimensional, unit length and read-only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels."""

REID_DESCRIPTOR = "reid (MobileNetV2)"
"""The zoo's ``reid`` enrichment model's embedding."""
COLOUR_DESCRIPTOR = "colour histogram (fallback)"
""":func:`colour_histogram`: needs no weights; for when the ``reid`` model is unavailable."""

REID_LENGTH = 1280
"""Values in a :data:`REID_DESCRIPTOR` embedding."""

DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {
        REID_DESCRIPTOR: 0.74,
        COLOUR_DESCRIPTOR: 0.78,
    }
)
"""Per descriptor, the cosine similarity of two tracks' vectors at or above which they are the
same person (measured: see the module's docstring)."""

TRIM_X = 0.20
"""Share of the box's width left out on each side: mostly background beside the body."""
TRIM_Y = 0.10
"""Share of the box's height left out at the top and at the bottom (above the head, the ground
at the feet, and the detector's error on both)."""
HUE_BINS = 16
"""Hue bins of a pixel with a hue (OpenCV's hue, 0–179)."""
SATURATION_BINS = 3
"""Saturation bins of a pixel with a hue, from :data:`MIN_SATURATION` to 255."""
ACHROMATIC_BINS = 3
"""Value bins of the pixels without a reliable hue (grey or dark)."""
MIN_SATURATION = 40
"""Below this saturation (0–255) a pixel is grey: its hue is noise."""
MIN_VALUE = 40
"""Below this value (0–255) a pixel is dark: its hue is noise."""
SURROUND_X = 0.30
"""The surround reaches this share of the box's width out on each side."""
SURROUND_Y = 0.15
"""The surround reaches this share of the box's height out above and below."""
BACKGROUND_WEIGHT = 2.0
"""How hard colours common in the surround are down-weighted (``o``'s factor)."""

_CHROMATIC_BINS = HUE_BINS * SATURATION_BINS
_BINS = _CHROMATIC_BINS + ACHROMATIC_BINS
COLOUR_LENGTH = 2 * _BINS
"""Values in a :data:`COLOUR_DESCRIPTOR` vector."""


def colour_histogram(image: np.ndarray, box: Box) -> np.ndarray:
    """The :data:`COLOUR_DESCRIPTOR` vector of the person in ``box`` (x1, y1, x2, y2 in pixels;
    clipped to the frame) of ``image`` (the whole RGB uint8 frame, height × width × 3, whose
    pixels around the box are the background): float32, :data:`COLOUR_LENGTH` values, unit
    length. Raises ValueError for a frame that is not RGB uint8, a box that is not four finite
    numbers with x1 < x2 and y1 < y2, or a box with no pixels in the frame."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"the frame must be an RGB array (height, width, 3), not {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"the frame must be uint8, not {image.dtype}")
    frame_height, frame_width = image.shape[:2]
    x1, y1, x2, y2 = _pixels(box, frame_width, frame_height)
    width, height = x2 - x1, y2 - y1
    dx, dy = math.floor(width * TRIM_X), math.floor(height * TRIM_Y)
    person = _bins(image[y1 + dy : y2 - dy, x1 + dx : x2 - dx])
    # the surround: the frame around the box, the box itself left out
    sx1, sx2 = (
        max(0, x1 - round(width * SURROUND_X)),
        min(frame_width, x2 + round(width * SURROUND_X)),
    )
    sy1, sy2 = (
        max(0, y1 - round(height * SURROUND_Y)),
        min(frame_height, y2 + round(height * SURROUND_Y)),
    )
    around = _bins(image[sy1:sy2, sx1:sx2])
    outside = np.ones(around.shape, bool)
    outside[y1 - sy1 : y2 - sy1, x1 - sx1 : x2 - sx1] = False
    q = np.bincount(person.ravel(), minlength=_BINS) / person.size
    background = np.bincount(around[outside], minlength=_BINS).astype(np.float64)
    if background.sum() > 0:
        o = background / background.sum()
        # q > 0 wherever a pixel counts, so every counted bin keeps a weight above 0
        weight = np.divide(q, q + BACKGROUND_WEIGHT * o, out=np.ones(_BINS), where=q > 0)
    else:  # the box fills the frame: nothing is known of the background
        weight = np.ones(_BINS)
    rows = person.shape[0]
    # the halves share the middle row when the rows are odd: a one-row crop fills both
    halves = (person[: (rows + 1) // 2], person[rows // 2 :])
    parts = []
    for half in halves:
        counts = np.bincount(half.ravel(), minlength=_BINS) * weight
        parts.append(np.sqrt(counts / counts.sum()))
    return _frozen(np.concatenate(parts) / math.sqrt(2.0))


def mean_descriptor(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """One unit vector for a track from its crops' vectors (each of one descriptor, hence of
    one length): each scaled to unit length (every crop weighs the same), averaged, and the
    mean scaled to unit length (float32). Raises ValueError for no vectors, vectors of
    different lengths, values that are not finite, a zero vector, or vectors that cancel
    out."""
    if len(vectors) == 0:
        raise ValueError("a track's descriptor needs at least one vector")
    rows = [_checked_vector(v, f"vector {i}") for i, v in enumerate(vectors)]
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise ValueError(f"the vectors must have one length, not {lengths}")
    mean = np.mean([r / np.linalg.norm(r) for r in rows], axis=0)
    norm = float(np.linalg.norm(mean))
    if not norm > 1e-6:
        raise ValueError("the vectors cancel out: their mean has no direction")
    return _frozen(mean / norm)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine similarity of two vectors of one length, in [-1, 1]. Raises ValueError for
    vectors of different lengths, values that are not finite, or a zero vector."""
    u, v = _checked_vector(a, "a"), _checked_vector(b, "b")
    if u.shape != v.shape:
        raise ValueError(f"the vectors must have one length, not {len(u)} and {len(v)}")
    value = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return min(1.0, max(-1.0, value))


@dataclass(frozen=True, eq=False)
class Appearance:
    """A track's appearance: the descriptor that made it (one of :data:`DEFAULT_THRESHOLDS`),
    its unit vector (float32, read-only; scaled to unit length on creation), and how many crops
    were averaged into it. Compared by identity (``==`` on arrays has no single answer): use
    :meth:`similarity` or :meth:`matches`."""

    descriptor: str
    vector: np.ndarray
    crops: int = 1

    def __post_init__(self) -> None:
        if self.descriptor not in DEFAULT_THRESHOLDS:
            raise ValueError(
                f"unknown descriptor {self.descriptor!r}; one of {sorted(DEFAULT_THRESHOLDS)}"
            )
        if isinstance(self.crops, bool) or not isinstance(self.crops, int) or self.crops < 1:
            raise ValueError(f"an appearance comes from at least one crop, not {self.crops!r}")
        object.__setattr__(self, "vector", mean_descriptor([self.vector]))

    @classmethod
    def of_track(cls, descriptor: str, vectors: Sequence[np.ndarray]) -> Appearance:
        """The appearance of a track whose crops gave ``vectors`` (:func:`mean_descriptor`)."""
        return cls(descriptor, mean_descriptor(vectors), len(vectors))

    def similarity(self, other: Appearance) -> float:
        """:func:`cosine` of the two vectors; ValueError when the descriptors differ (their
        vectors are not comparable)."""
        if other.descriptor != self.descriptor:
            raise ValueError(
                f"cannot compare a {self.descriptor!r} appearance with a {other.descriptor!r} one"
            )
        return cosine(self.vector, other.vector)

    def matches(self, other: Appearance, threshold: float | None = None) -> bool:
        """Whether the two are the same person: :meth:`similarity` at least ``threshold``
        (by default the descriptor's :data:`DEFAULT_THRESHOLDS`)."""
        limit = DEFAULT_THRESHOLDS[self.descriptor] if threshold is None else threshold
        return self.similarity(other) >= limit


def _pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` as whole pixels in a ``width`` × ``height`` frame: out to every pixel it
    touches, then clipped to the frame."""
    if (
        not isinstance(box, Sequence)
        or len(box) != 4
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for v in box
        )
    ):
        raise ValueError(f"a box is four finite numbers x1, y1, x2, y2, not {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"empty box {box!r}: it needs x1 < x2 and y1 < y2")
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if left >= right or top >= bottom:
        raise ValueError(f"empty crop: the box {box!r} has no pixels in the {width}x{height} frame")
    return left, top, right, bottom


def _bins(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's bin: hue × saturation for a pixel with a hue, else its value's."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hue, saturation, value = (hsv[..., i].astype(np.intp) for i in range(3))
    hue_bin = np.minimum(hue * HUE_BINS // 180, HUE_BINS - 1)
    span = 256 - MIN_SATURATION
    saturation_bin = np.clip((saturation - MIN_SATURATION) * SATURATION_BINS // span, 0,
                             SATURATION_BINS - 1)  # fmt: skip
    grey_bin = _CHROMATIC_BINS + value * ACHROMATIC_BINS // 256
    has_hue = (saturation >= MIN_SATURATION) & (value >= MIN_VALUE)
    return np.where(has_hue, hue_bin * SATURATION_BINS + saturation_bin, grey_bin)


def _checked_vector(vector: np.ndarray, name: str) -> np.ndarray:
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a vector of numbers") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional vector, not {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has values that are not finite")
    if not np.any(array):
        raise ValueError(f"{name} is a zero vector: it has no direction")
    return array


def _frozen(vector: np.ndarray) -> np.ndarray:
    out = np.array(vector, dtype=np.float32)  # a copy: the caller's array stays writeable
    out.flags.writeable = False
    return out
