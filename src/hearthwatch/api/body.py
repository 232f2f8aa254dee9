"""Reading request bodies: one bounded reader for every body (size limit applied while reading,
a deadline on each wait for more of it), content types, raw and multipart images.

Everything here runs on the event loop; :class:`BodyReadDeadline` is an ASGI middleware and
holds no state between requests.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearthwatch.api.errors import ApiError

RAW_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/bmp", "image/webp", "application/octet-stream"}
)

MAX_FORM_FILES = 1024
"""Most files one multipart body may hold; parsing stops at the next one."""
MAX_FORM_FIELDS = 16
"""Most non-file fields one multipart body may hold (none is used; a few are tolerated)."""
FORM_FEED_BYTES = 64 * 1024
"""The multipart parser gets the body in pieces this large, yielding to the loop between."""

CLOSE = {"Connection": "close"}
"""On a reply sent before the body was read to its end: the rest is not worth reading."""


MIN_BODY_RATE_BYTES_S = 32 * 1024
"""A body may take BODY_READ_TIMEOUT_S plus one second for every this many bytes it brings."""


class BodyReadDeadline:
    """Answers 408 and closes the connection when a request body stops arriving (no data for
    ``timeout_s``: a ``Content-Length`` larger than what is sent, a client that stalls) or
    trickles in (longer in all than ``timeout_s`` plus a second per
    :data:`MIN_BODY_RATE_BYTES_S` bytes received: one byte every few seconds). Only the body
    counts: once it has ended, ``receive`` waits as long as the server needs (a streamed
    response listening for the client leaving)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_ended = False
        started = time.monotonic()
        received = 0

        async def receive_in_time() -> Message:
            nonlocal body_ended, received
            if body_ended:
                return await receive()
            allowed = started + self.timeout_s + received / MIN_BODY_RATE_BYTES_S
            wait_s = min(self.timeout_s, allowed - time.monotonic())
            try:
                async with asyncio.timeout(max(0.0, wait_s)):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    f"request body incomplete: it stopped arriving, or arrived slower than "
                    f"{MIN_BODY_RATE_BYTES_S // 1024} KiB/s after {self.timeout_s:g} s "
                    "(BODY_READ_TIMEOUT_S); send the whole body its Content-Length announces",
                    CLOSE,
                ) from None
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_ended = True
            return message

        await self.app(scope, receive_in_time, send)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, decompressed, refused with 413 as soon as it passes ``max_bytes``: from
    its ``Content-Length`` before reading, else while reading (chunked bodies included)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body of {declared} bytes is over the limit of {max_bytes}", CLOSE)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"body is over the limit of {max_bytes} bytes", CLOSE)
        chunks.append(chunk)
    body, encoding = b"".join(chunks), request.headers.get("content-encoding")
    if not encoding or encoding == "identity":
        return body
    # inflating up to max_bytes takes long enough to stall every other request: off the loop
    return await asyncio.to_thread(_decompress, body, encoding, max_bytes)


def _decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decompressor = zlib.decompressobj()
        else:
            raise ApiError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
        out = decompressor.decompress(body, max_bytes + 1)
    except (zlib.error, gzip.BadGzipFile):
        raise ApiError(400, f"body is not valid {encoding} data") from None
    if len(out) > max_bytes:
        raise ApiError(413, f"decompressed body is over the limit of {max_bytes} bytes")
    return out


async def _pieces(body: bytes) -> AsyncGenerator[bytes, None]:
    """``body`` again, as a request stream, letting other requests run between pieces."""
    for start in range(0, len(body), FORM_FEED_BYTES):
        yield body[start : start + FORM_FEED_BYTES]
        await asyncio.sleep(0)


async def read_images(request: Request, max_bytes: int, field_hint: str) -> list[bytes]:
    """Image bytes from a raw image body or from the files of a multipart form; either way the
    body is read by :func:`read_body`, so its limit holds before anything is parsed."""
    kind = media_type(request)
    if kind != "multipart/form-data":
        if kind and kind not in RAW_IMAGE_TYPES and not kind.startswith("image/"):
            raise ApiError(
                415,
                f"unsupported content type {kind!r}: send the image as the raw body "
                "(image/jpeg, image/png, application/octet-stream) or as multipart/form-data",
            )
        return [await read_body(request, max_bytes)]
    body = await read_body(request, max_bytes)
    parser = MultiPartParser(
        request.headers, _pieces(body), max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS
    )
    try:
        form = await parser.parse()
    except MultiPartException:
        raise ApiError(
            400,
            "multipart body could not be parsed: it needs the boundary of its Content-Type, a "
            f"name on every part, at most {MAX_FORM_FILES} files and {MAX_FORM_FIELDS} other "
            "fields of at most 1 MiB each",
        ) from None
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(400, f"multipart body holds no file; send the image as '{field_hint}'")
        return [await f.read() for f in files]
    finally:
        await form.close()
