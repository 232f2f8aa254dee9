"""Confinement of file paths to roots, and the SSRF guard on stream URLs: names, addresses,
networks, numeric and userinfo tricks, link-local addresses, resolution, redaction."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hearthwatch.runtime.errors import InvalidInputError
from hearthwatch.security.sources.confinement import (
    DEFAULT_ALLOWED_HOSTS,
    ConfinementError,
    check_path,
    check_stream_url,
)

# paths


def test_a_path_within_a_root_is_returned_resolved(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "cam").mkdir(parents=True)
    (root / "cam" / "clip.mp4").write_bytes(b"")
    (tmp_path / "link").symlink_to(root / "cam")
    other = tmp_path / "other"
    other.mkdir()
    assert check_path(root / "cam" / "clip.mp4", [other, root]) == root / "cam" / "clip.mp4"
    assert check_path(tmp_path / "link" / "clip.mp4", [root]) == root / "cam" / "clip.mp4"
    assert check_path(root / "cam" / "not-yet.mp4", [root]) == root / "cam" / "not-yet.mp4"


@pytest.mark.parametrize("given", ["../secret.mp4", "cam/../../secret.mp4", "/etc/passwd"])
def test_a_path_outside_the_roots_is_refused_naming_only_the_path(
    tmp_path: Path, given: str
) -> None:
    root = tmp_path / "media"
    (root / "cam").mkdir(parents=True)
    path = Path(given) if given.startswith("/") else root / given
    with pytest.raises(ConfinementError) as caught:
        check_path(path, [root])
    assert str(caught.value) == f"the path {str(path)!r} is outside the configured media roots"


def test_a_link_leading_out_of_the_roots_is_refused_without_saying_where(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "private").mkdir()
    (root / "escape.mp4").symlink_to(tmp_path / "private" / "clip.mp4")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    with pytest.raises(ConfinementError) as caught:
        check_path(root / "escape.mp4", [root])
    assert "private" not in str(caught.value) and "escape.mp4" in str(caught.value)
    with pytest.raises(ConfinementError):
        check_path(root / "loop.mp4", [root])
    with pytest.raises(ConfinementError):
        check_path(root / "nul\0.mp4", [root])


def test_no_roots_allow_nothing_and_a_sibling_with_a_common_prefix_is_outside(
    tmp_path: Path,
) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media-private").mkdir()
    with pytest.raises(ConfinementError):
        check_path(tmp_path / "media" / "a.mp4", [])
    with pytest.raises(ConfinementError):
        check_path(tmp_path / "media-private" / "a.mp4", [tmp_path / "media"])


def test_confinement_errors_are_invalid_input() -> None:
    assert issubclass(ConfinementError, InvalidInputError)


# stream URLs


class Resolver:
    """A stand-in for ``getaddrinfo``: names to addresses, recording what was asked."""

    def __init__(self, table: dict[str, Sequence[str]]):
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: Any, family: int = 0, type: int = 0) -> list[Any]:
        self.asked.append(host)
        host = host.removesuffix(".")  # a fully qualified name
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port or 0))
            for a in self.table[host]
        ]


DNS = Resolver(
    {
        "camera.lan": ["192.168.1.20"],
        "nvr.lan": ["192.168.1.30", "fd12::30"],
        "split.lan": ["192.168.1.40", "8.8.8.8"],
        "metadata.lan": ["169.254.169.254"],
        "mapped.lan": ["::ffff:127.0.0.1"],
        "evil.example": ["203.0.113.9"],
        "zoned.lan": ["fe80::1%eth0"],
    }
)


def allowed(url: str, hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS) -> bool:
    try:
        check_stream_url(url, hosts, resolve=DNS)
    except ConfinementError:
        return False
    return True


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://192.168.1.20:554/stream1",
        "rtsp://admin:pw@10.0.0.5/live",
        "rtsp://172.31.255.1/live",
        "rtsp://[fd00::1]:8554/live",
        "http://camera.lan/mjpeg",
        "http://camera.lan./mjpeg",
        "http://CAMERA.LAN/mjpeg",
        "rtsp://nvr.lan/cam1",
    ],
)
def test_home_network_cameras_pass_the_default_list(url: str) -> None:
    assert allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1/live",  # loopback is not in the default list
        "rtsp://[::1]/live",
        "rtsp://8.8.8.8/live",
        "rtsp://172.32.0.1/live",
        "rtsp://[2001:db8::1]/live",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",  # an IPv4-mapped IPv6 loopback
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        "http://split.lan/",  # one of its addresses is outside
        "http://metadata.lan/",
        "http://mapped.lan/",
        "http://zoned.lan/",
        "http://nowhere.lan/",  # does not resolve
    ],
)
def test_addresses_outside_the_default_list_are_refused(url: str) -> None:
    assert not allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # 127.0.0.1 in decimal
        "http://3232235796/",  # 192.168.1.20 in decimal: refused though it is allowed
        "http://0x7f.1/",
        "http://0xc0a80114/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://192.168.1.020/",  # a leading zero: octal to some parsers
        "http://[fe80::1%25eth0]/",
        "http://%31%39%32.168.1.20/",
        "http://camera.lan@evil.example/",  # the host is evil.example
        "http://a@camera.lan@evil.example/",
        "http://evil.example\\@camera.lan/",
        "http://caméra.lan/",
        "http://-camera.lan/",
        "http:///path-only",
    ],
)
def test_numeric_userinfo_and_malformed_host_tricks_are_refused(url: str) -> None:
    assert not allowed(url, ["camera.lan", "192.168.0.0/16", "127.0.0.1", "169.254.0.0/16"])


def test_the_user_name_is_not_the_host() -> None:
    assert allowed("rtsp://evil.example:pw@camera.lan/live", ["camera.lan"])
    assert not allowed("rtsp://camera.lan:pw@evil.example/live", ["camera.lan"])


def test_a_listed_name_is_allowed_wherever_it_resolves_and_unlisted_ones_are_resolved() -> None:
    resolver = Resolver({"metadata.lan": ["169.254.169.254"], "camera.lan": ["192.168.1.20"]})
    check_stream_url("http://metadata.lan./", ["Metadata.LAN"], resolve=resolver)
    assert resolver.asked == []  # a listed name is trusted as named
    check_stream_url("http://camera.lan/", ["192.168.1.0/24"], resolve=resolver)
    assert resolver.asked == ["camera.lan"]


def test_link_local_addresses_pass_only_when_listed_exactly() -> None:
    broad = ["0.0.0.0/0", "::/0"]
    assert allowed("rtsp://8.8.8.8/", broad)
    assert not allowed("http://169.254.169.254/", broad)
    assert not allowed("http://169.254.169.254/", ["169.254.0.0/16"])
    assert not allowed("http://[fe80::1]/", broad)
    assert not allowed("http://[fd00:ec2::254]/", broad)
    assert not allowed("http://0.0.0.0/", broad)
    assert allowed("http://169.254.169.254/", ["169.254.169.254"])
    assert allowed("http://169.254.10.10/", ["169.254.10.10/32"])
    assert allowed("http://[fe80::1]/", ["fe80::1"])
    assert allowed("http://metadata.lan/", ["169.254.169.254"])  # resolved to a listed one


def test_loopback_is_allowed_when_listed() -> None:
    assert allowed("rtsp://127.0.0.1:8554/cam", ["127.0.0.1"])
    assert allowed("rtsp://[::ffff:127.0.0.1]:8554/cam", ["127.0.0.1"])
    assert allowed("rtsp://[::1]:8554/cam", ["::1"])
    assert not allowed("rtsp://127.0.0.2:8554/cam", ["127.0.0.1"])


def test_refusals_name_the_redacted_url_and_why() -> None:
    with pytest.raises(ConfinementError) as caught:
        check_stream_url("rtsp://admin:hunter2@8.8.8.8/live", ["192.168.0.0/16"], resolve=DNS)
    message = str(caught.value)
    assert "hunter2" not in message
    assert message == (
        "the stream URL 'rtsp://admin:***@8.8.8.8/live' leads to 8.8.8.8, outside the allowed hosts"
    )
    with pytest.raises(ConfinementError) as caught:
        check_stream_url("rtsp://u:hunter2@split.lan/x", ["192.168.0.0/16"], resolve=DNS)
    assert "hunter2" not in str(caught.value) and "8.8.8.8 (through 'split.lan')" in str(
        caught.value
    )
    with pytest.raises(ConfinementError, match="does not resolve") as caught:
        check_stream_url("rtsp://u:hunter2@nowhere.lan/x", ["192.168.0.0/16"], resolve=DNS)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("entry", ["192.168.1.0/16", "not a host", "300.1.1.1/8", "0x7f.1", ""])
def test_a_bad_allow_list_entry_is_a_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed host"):
        check_stream_url("rtsp://192.168.1.20/", [entry], resolve=DNS)


def test_the_real_resolver_is_used_by_default() -> None:
    check_stream_url("rtsp://localhost:8554/cam", ["127.0.0.0/8", "::1"])
    with pytest.raises(ConfinementError):
        check_stream_url("rtsp://localhost:8554/cam", DEFAULT_ALLOWED_HOSTS)
