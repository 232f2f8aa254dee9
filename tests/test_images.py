from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, jpeg, scene

from hearthwatch.runtime.images import ImageError, decode_image

LIMIT = 50_000_000


def test_jpeg_and_png_decode_to_rgb() -> None:
    frame = scene(64, 48)
    png = decode_image(encode(frame, ".png"), LIMIT)
    assert png.shape == (48, 64, 3) and png.dtype == np.uint8
    assert np.array_equal(png, frame)  # lossless, and RGB order kept
    assert decode_image(jpeg(64, 48), LIMIT).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a not supported", "not_an_image"),
        (b'{"json": true}', "not_an_image"),
        (jpeg()[:4000], "truncated"),
        (encode(scene(), ".png")[:3000], "corrupt"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt"),
    ],
)
def test_bad_input_raises_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as err:
        decode_image(data, LIMIT)
    assert err.value.reason == reason
    assert str(err.value)


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageError, match="over the limit of 1000") as err:
        decode_image(jpeg(64, 48), 1000)
    assert err.value.reason == "too_large"
