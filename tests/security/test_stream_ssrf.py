"""An ``http`` source on an allowed host cannot lead the reader to another host: a playlist
(HLS) naming a segment elsewhere is refused as a format, so nothing is fetched from there."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hearthwatch.security.sources.config import HttpSourceConfig
from hearthwatch.security.sources.stream import StreamReader


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def servers() -> Iterator[tuple[int, int, list[tuple[str, str]]]]:
    """An allowed host (127.0.0.1) serving a playlist whose segment is on 127.0.0.2."""
    hits: list[tuple[str, str]] = []
    outside = free_port("127.0.0.2")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  # the stdlib's name
            hits.append((self.server.server_address[0], self.path))  # type: ignore[index]
            if self.path.endswith(".m3u8"):
                body = (
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\n"
                    f"http://127.0.0.2:{outside}/latest/meta-data/seg.ts\n#EXT-X-ENDLIST\n"
                ).encode()
                kind = "application/vnd.apple.mpegurl"
            else:
                body, kind = b"\x47" + b"\x00" * 187, "video/mp2t"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    started = []
    for address in (("127.0.0.1", 0), ("127.0.0.2", outside)):
        server = ThreadingHTTPServer(address, Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    try:
        yield started[0].server_address[1], outside, hits
    finally:
        for server in started:
            server.shutdown()
            server.server_close()


def test_an_hls_playlist_cannot_send_the_reader_to_another_host(
    servers: tuple[int, int, list[tuple[str, str]]],
) -> None:
    port, _, hits = servers
    reader = StreamReader(
        "cam",
        HttpSourceConfig(url=f"http://127.0.0.1:{port}/live.m3u8"),
        detect_fps=5,
        on_frame=lambda image, when: None,
        roots=[],
        allowed_hosts=["127.0.0.1"],
        open_timeout_s=3,
        read_timeout_s=3,
    )
    reader.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not hits:
        time.sleep(0.1)
    time.sleep(1.0)  # time for a segment fetch, were it allowed
    reader.stop(2)
    assert hits, "the reader never asked the allowed host"
    assert all(host == "127.0.0.1" for host, _ in hits), hits
    assert reader.status().last_error is not None
