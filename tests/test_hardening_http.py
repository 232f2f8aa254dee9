"""Regression tests for the HTTP plumbing: image headers beyond Pillow's own limits, bodies
that are too large or never complete, a bounded shutdown and the default bind address."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import httpx
import pytest
from conftest import Server, jpeg

from hearthwatch.config import load_settings
from hearthwatch.processes import free_port, terminate
from hearthwatch.tuning.server_process import HEARTHWATCH_SERVE

BODY_LIMIT = 1 << 20
BODY_READ_TIMEOUT_S = 2.0
SHUTDOWN_GRACE_S = 2.0


@pytest.fixture(scope="module")
def small_body_server(start_server) -> Server:  # type: ignore[no-untyped-def]
    return start_server(  # type: ignore[no-any-return]
        MAX_BODY_BYTES=str(BODY_LIMIT),
        BODY_READ_TIMEOUT_S=str(BODY_READ_TIMEOUT_S),
        ENRICH_ENABLED="false",
    )


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header states ``width`` x ``height``, with a valid CRC and a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose start-of-frame (SOF0) is rewritten to state the given size."""
    data = jpeg(64, 48)
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def read_reply(sock: socket.socket, timeout_s: float) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (then True) or ``timeout_s``
    passes (then False)."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not piece:
            return data, True
        data += piece
    return data, False


def parse_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of a raw HTTP/1.1 reply; status 0 if none."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return 0, {}, b""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("content_type", "image"),
    [("image/png", png_declaring(20_000, 10_000)), ("image/jpeg", jpeg_declaring(20_000, 10_000))],
    ids=["png", "jpeg"],
)
def test_an_image_over_pillows_own_limit_is_413_naming_the_pixel_limit(
    small_body_server: Server, content_type: str, image: bytes
) -> None:
    # 200 MP: beyond MAX_IMAGE_PIXELS (50 MP) and beyond Pillow's decompression-bomb limit
    reply = httpx.post(
        f"{small_body_server.url}/detect", content=image, headers={"Content-Type": content_type}
    )
    assert reply.status_code == 413, reply.text
    assert "MAX_IMAGE_PIXELS" in reply.json()["error"]
    assert "200000000" in reply.json()["error"]


def test_a_jpeg_declaring_no_pixels_is_400_in_our_words(small_body_server: Server) -> None:
    reply = httpx.post(
        f"{small_body_server.url}/detect",
        content=jpeg_declaring(0, 0),
        headers={"Content-Type": "image/jpeg"},
    )
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "BytesIO" not in message and " object at 0x" not in message, message
    assert "no pixels" in message


def test_a_chunked_multipart_body_is_refused_once_over_the_limit(
    small_body_server: Server,
) -> None:
    total = 32 * BODY_LIMIT
    piece = b"\x00" * 65536
    part = (
        b"--BOUNDARY\r\nContent-Disposition: form-data; name=images; filename=a.jpg\r\n"
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    sent, answered_early = 0, False
    with socket.create_connection(("127.0.0.1", small_body_server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(
            b"POST /detect/batch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n\r\n"
        )
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    answered_early = True
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                time.sleep(0.0005)
            else:
                end = b"\r\n--BOUNDARY--\r\n"
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))
        except (BrokenPipeError, ConnectionResetError):
            answered_early = True  # the server closed while the body was still coming
        raw, _ = read_reply(sock, 60)
    assert answered_early and sent < total, f"the whole body ({sent} bytes) was read first"
    status, headers, body = parse_reply(raw)
    assert status == 413, raw[:300]
    assert f"over the limit of {BODY_LIMIT} bytes" in json.loads(body)["error"]


def test_a_body_shorter_than_its_content_length_gets_408_and_a_closed_connection(
    small_body_server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", small_body_server.port)) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000\r\n\r\n" + jpeg(64, 48)[:100]
        )
        started = time.monotonic()
        raw, closed = read_reply(sock, BODY_READ_TIMEOUT_S + 15)
        waited = time.monotonic() - started
    status, _, body = parse_reply(raw)
    assert status == 408, f"no 408 after {waited:.1f} s: {raw[:300]!r}"
    assert "BODY_READ_TIMEOUT_S" in json.loads(body)["error"]
    assert closed
    assert waited >= BODY_READ_TIMEOUT_S * 0.9  # it did wait for the rest of the body


def test_a_body_that_trickles_in_gets_408(small_body_server: Server) -> None:
    """One byte a second never lets the per-piece timeout fire; the overall rate does."""
    with socket.create_connection(("127.0.0.1", small_body_server.port)) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started, answered = time.monotonic(), False
        while time.monotonic() - started < BODY_READ_TIMEOUT_S + 15:
            if select.select([sock], [], [], 1.0)[0]:
                answered = True
                break
            try:
                sock.sendall(b"\xff")
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
        waited = time.monotonic() - started
        raw, _ = read_reply(sock, 5) if answered else (b"", False)
    assert answered, f"still reading a trickling body after {waited:.1f} s"
    assert parse_reply(raw)[0] == 408, raw[:300]
    assert waited < BODY_READ_TIMEOUT_S + 5


def test_sigterm_with_a_stuck_request_exits_within_the_grace(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(
        SHUTDOWN_GRACE_S=str(SHUTDOWN_GRACE_S), BODY_READ_TIMEOUT_S="600", ENRICH_ENABLED="false"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as stuck:
        stuck.sendall(
            b"POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000000\r\n\r\n" + jpeg(64, 48)[:100]
        )
        # served after the stuck request's head, on the same event loop
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(SHUTDOWN_GRACE_S + 15)
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        took = time.monotonic() - started
        raw, _ = read_reply(stuck, 5)
        if not exited:
            server.process.kill()
            server.process.wait()
    assert exited, f"still running {took:.1f} s after SIGTERM (grace {SHUTDOWN_GRACE_S} s)"
    status, headers, body = parse_reply(raw)
    assert status == 503, raw[:300]
    assert int(headers["retry-after"]) >= 1
    assert "shutting down" in json.loads(body)["error"]


def test_the_server_binds_to_loopback_by_default(tmp_path: Path) -> None:
    loaded = load_settings(environ={})
    assert loaded.settings.host == "127.0.0.1"
    assert {r.name: r for r in loaded.describe()}["host"].env_var == "HOST"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "HOST"}
    env.update(PORT=str(port), USE_GPU="false", LLM_ENABLED="false", ENRICH_ENABLED="false")
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(HEARTHWATCH_SERVE, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not (listening := _listeners(port)):
            assert process.poll() is None and time.monotonic() < deadline, "serve did not listen"
            time.sleep(0.2)
    finally:
        terminate(process)
    assert listening == {"127.0.0.1"}


def _listeners(port: int) -> set[str]:
    """The IPv4 addresses listening on ``port``, from the kernel's socket table."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found
