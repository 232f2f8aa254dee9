"""Camera-like test frames for benchmarks, tuning and load tests when no images are given."""

from __future__ import annotations

import cv2
import numpy as np


def synthetic_frames(count: int, width: int, height: int, quality: int = 90) -> list[bytes]:
    """JPEGs of smooth noise with a few solid upright shapes, ``quality`` 90 by default."""
    if count < 1 or width < 64 or height < 64:
        raise ValueError(
            f"need count >= 1 and at least 64x64 pixels, got {count}, {width}x{height}"
        )
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        small = rng.integers(0, 255, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(6):
            w, h = max(8, width // 16), max(16, height // 4)
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(image, (x, y), (x + w, y + h), color, -1)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out
