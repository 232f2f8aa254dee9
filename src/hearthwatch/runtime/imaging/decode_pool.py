"""Host decoding off the event loop: :class:`DecodePool` decodes encoded images, and checks
the headers of those decoded on a device, on its own thread pool under one pixel limit (a
header is cheap, but a hostile one is not: a PNG's compressed text chunks are inflated when
its header is read).

Thread-safe: its coroutines may be awaited on any event loop, from any number of requests at
once; :meth:`DecodePool.shutdown` ends it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hearthwatch.runtime.imaging.decode import EncodedImage, ImageError, check_encoded, decode_image


class DecodePool:
    """Decodes on ``workers`` threads; every image is refused above ``max_pixels``. Errors
    are :class:`ImageError` with the caller's ``label`` (which image of a request) in front."""

    def __init__(self, *, workers: int, max_pixels: int):
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")

    async def decode(self, data: bytes, label: str | None = None) -> np.ndarray:
        """``data`` decoded into an upright RGB array, on the pool."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, decode_image, data, self.max_pixels)
        except ImageError as exc:
            raise exc.labelled(label) from None

    async def check(self, data: bytes, label: str | None = None) -> EncodedImage:
        """``data`` checked but not decoded (its header only), on the pool."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, check_encoded, data, self.max_pixels)
        except ImageError as exc:
            raise exc.labelled(label) from None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)
