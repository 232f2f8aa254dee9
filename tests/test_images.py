from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, jpeg, scene

from hearthwatch.runtime.images import ImageError, check_encoded, decode_image

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


def with_thumbnail(main: bytes, thumbnail: bytes) -> bytes:
    """``main`` with ``thumbnail`` (a whole JPEG) in an APP1 segment, as cameras write EXIF."""
    payload = b"Exif\x00\x00" + thumbnail
    return main[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + main[2:]


def test_jpeg_completeness_is_judged_from_the_tail() -> None:
    big = encode(np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8))
    assert len(big) > 200_000
    assert check_encoded(big, LIMIT).format == "jpeg"
    assert check_encoded(big + b"\x00" * 100, LIMIT).format == "jpeg"  # padding after the end
    for cut in (len(big) // 2, len(big) - 10):
        with pytest.raises(ImageError) as err:
            check_encoded(big[:cut], LIMIT)
        assert err.value.reason == "truncated"
    small = with_thumbnail(jpeg(320, 240), jpeg(32, 24, seed=1))
    assert decode_image(small, LIMIT).shape == (240, 320, 3)
    with pytest.raises(ImageError) as err:  # the thumbnail's end marker is not the file's end
        check_encoded(small[:-300], LIMIT)
    assert err.value.reason == "truncated"


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageError, match="over the limit of 1000") as err:
        decode_image(jpeg(64, 48), 1000)
    assert err.value.reason == "too_large"
