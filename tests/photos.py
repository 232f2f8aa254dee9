"""Real photos for tests whose subject must find something. matplotlib, a dependency, ships a
portrait of Grace Hopper: OpenCV's HOG people detector (the default ``hog`` source) finds two
boxes in it at scores of about 0.45 (on the flag beside her: HOG is crude, but it answers), and
more in frames composed from it. (scikit-image's photos would do too; it is no dependency.)"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np

PHOTO_PATH = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # type: ignore[arg-type]


def photo_jpeg() -> bytes:
    """The photo's JPEG file as shipped (512 x 600)."""
    return PHOTO_PATH.read_bytes()


@cache
def _photo() -> np.ndarray:
    bgr = cv2.imread(str(PHOTO_PATH))
    assert bgr is not None, f"cannot read {PHOTO_PATH}"
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.flags.writeable = False
    return rgb


def photo(width: int) -> np.ndarray:
    """The photo as RGB pixels, scaled to ``width`` (aspect kept)."""
    rgb = _photo()
    height = round(rgb.shape[0] * width / rgb.shape[1])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def two_people() -> np.ndarray:
    """The photo beside its mirror image (1024 x 600): HOG finds more in it than in one, at
    scores on both sides of 0.5."""
    rgb = _photo()
    return np.hstack([rgb, rgb[:, ::-1]])
