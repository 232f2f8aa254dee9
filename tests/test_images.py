from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, jpeg, scene
from test_hardening_http import jpeg_declaring, png_declaring

from hearthwatch.runtime.imaging.decode import ImageError, check_encoded, decode_image

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


def test_a_header_beyond_pillows_bomb_limit_is_judged_by_our_limit() -> None:
    for big in (png_declaring(20_000, 10_000), jpeg_declaring(20_000, 10_000)):  # 200 MP
        with pytest.raises(ImageError, match=r"over the limit of 50000000 \(MAX_IMAGE_PIXELS\)"):
            check_encoded(big, LIMIT)
        assert check_encoded(big, 300_000_000).shape == (10_000, 20_000, 3)


@pytest.mark.parametrize("size", [(0, 0), (0, 48), (64, 0)])
def test_a_header_declaring_no_pixels_says_so(size: tuple[int, int]) -> None:
    for image in (png_declaring(*size), jpeg_declaring(*size)):
        with pytest.raises(ImageError, match="the image has no pixels") as err:
            check_encoded(image, LIMIT)
        assert err.value.reason == "no_pixels"
        assert " object at 0x" not in str(err.value) and "BytesIO" not in str(err.value)


def test_an_unreadable_header_is_described_without_pillows_words() -> None:
    for data, name in [(b"\xff\xd8\xff\xe0" + b"\x00" * 64, "JPEG"), (b"BM" + b"\x00" * 60, "BMP")]:
        with pytest.raises(ImageError) as err:
            check_encoded(data, LIMIT)
        assert str(err.value) == f"image header could not be read: not a valid {name} header"
