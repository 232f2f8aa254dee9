"""Reading request bodies: size limits, content types, raw and multipart images."""

from __future__ import annotations

import gzip
import zlib

from fastapi import Request
from starlette.datastructures import UploadFile

from hearthwatch.api.errors import ApiError

RAW_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/bmp", "image/webp", "application/octet-stream"}
)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refusing anything over ``max_bytes`` before and while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return _decompress(b"".join(chunks), request.headers.get("content-encoding"), max_bytes)


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
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise ApiError(400, f"body is not valid {encoding} data: {exc}") from None
    if len(out) > max_bytes:
        raise ApiError(413, f"decompressed body is over the limit of {max_bytes} bytes")
    return out


async def read_images(request: Request, max_bytes: int, field_hint: str) -> list[bytes]:
    """Image bytes from a raw image body or from the files of a multipart form."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ApiError(413, f"body of {declared} bytes is over the limit of {max_bytes}")
        try:
            form = await request.form()
        except Exception as exc:
            raise ApiError(400, f"multipart body could not be parsed: {exc}") from None
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(400, f"multipart body holds no file; send the image as '{field_hint}'")
        images = [await f.read() for f in files]
        await form.close()
        if sum(len(i) for i in images) > max_bytes:
            raise ApiError(413, f"files are over the limit of {max_bytes} bytes")
        return images
    if kind and kind not in RAW_IMAGE_TYPES and not kind.startswith("image/"):
        raise ApiError(
            415,
            f"unsupported content type {kind!r}: send the image as the raw body "
            "(image/jpeg, image/png, application/octet-stream) or as multipart/form-data",
        )
    return [await read_body(request, max_bytes)]
