"""The gateway's request to the engine: one HTTP/1.1 POST whose reply body is read as it
arrives, straight from asyncio's transport through httptools' parser (the one uvicorn uses).

This is the hot path of every streamed token, and on a small machine the gateway's CPU is
taken from the engine, so nothing sits between the socket and the relay: no client library
layers, no per-read timers (one timer bounds the whole exchange: past its deadline every
wait, and every read after it, raises :class:`TimeoutError`), reads handed over as they came
(several chunks at once when they arrived together). One
connection per request (``Connection: close``; llama.cpp's server closes after a stream in
any case). Reading pauses while more than :data:`HIGH_WATER_BYTES` wait for a slow caller.
Event-loop-confined."""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import urlsplit

import httptools

from hearthwatch.llm.errors import UpstreamError

HIGH_WATER_BYTES = 256 * 1024


class Reply(asyncio.Protocol):
    """One request's connection and its reply: :attr:`status` once the head has come, then
    the body by :meth:`read`; from ``deadline`` (the loop's clock) on, :class:`TimeoutError`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.status = 0
        self.timed_out = False
        self._timer = loop.call_at(deadline, self._expire)
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._head: asyncio.Future[None] = loop.create_future()
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._until_close = True  # a body without a length or chunks ends with the connection
        self._error: Exception | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the engine's reply is not valid HTTP: {exc}"))
            self.close()
            return
        if self._buffered > HIGH_WATER_BYTES and not self._paused and self._transport:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._complete:
            if self._head.done() and self._until_close and exc is None:
                self._complete = True
            else:
                self._fail(UpstreamError(f"the engine closed the connection ({exc or 'EOF'})"))
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._until_close = False

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # the caller's side
    def _expire(self) -> None:
        self.timed_out = True
        self._fail(TimeoutError("the engine did not answer within the request's deadline"))
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def head(self) -> None:
        """Wait for the reply's status line and headers."""
        await asyncio.shield(self._head)  # a cancelled wait leaves the future for close()

    async def read(self) -> bytes:
        """The body received since the last read (at least one byte), or b"" at its end."""
        if self.timed_out:  # even with data waiting: an engine that never pauses is bounded too
            raise TimeoutError("the engine did not finish within the request's deadline")
        while not self._pieces:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read_all(self) -> bytes:
        pieces = []
        while piece := await self.read():
            pieces.append(piece)
        return b"".join(pieces)

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise UpstreamError("the engine closed the connection before the request was sent")
        self._transport.write(data)

    def close(self) -> None:
        """Close the connection: an engine still streaming sees its client leave."""
        self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
        if not self._head.done():
            self._head.cancel()
        elif not self._head.cancelled():
            self._head.exception()  # seen: no "never retrieved" warning for a failed start


async def post(
    url: str,
    body: bytes,
    *,
    deadline: float,
    connect_timeout_s: float,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """POST ``body`` (JSON) to ``url`` and return once the reply's head has come; the caller
    reads the body and closes the reply. ``deadline`` (the loop's clock) bounds everything,
    connecting within ``connect_timeout_s`` of it too; ``tls``: the context for ``https``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    loop = asyncio.get_running_loop()
    reply = Reply(loop, deadline)
    try:
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + connect_timeout_s)):
                await loop.create_connection(
                    lambda: reply,
                    parts.hostname,
                    port,
                    ssl=(tls or ssl.create_default_context()) if secure else None,
                )
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the engine at {parts.netloc}: {exc}") from None
        reply.send(head + body)
        await reply.head()
    except BaseException:
        reply.close()
        raise
    return reply
