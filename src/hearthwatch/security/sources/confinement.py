"""Where a camera source may point: files under the configured roots, streams on allowed hosts.

:func:`check_path` confines a file path to roots; :func:`check_stream_url` is the guard against
server-side request forgery for stream URLs. Both raise :class:`ConfinementError`, whose
message names only what the user gave (the path, the redacted URL, the host) and never what
lies beyond it. Pure functions of their arguments (and of DNS): safe on any thread.

The guard checks the URL once, when it is called; a stream reader calls it before each
(re)connect, so a host whose name later resolves elsewhere is caught at the next connect.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hearthwatch.runtime.errors import InvalidInputError
from hearthwatch.security.sources.config import redacted_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""``socket.getaddrinfo``'s signature: ``(host, port, family, type)`` to address tuples."""

DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fd00::/8",
)
"""The home networks: the private IPv4 ranges of RFC 1918 and the locally assigned IPv6 unique
local addresses (ULA, ``fd00::/8``). Not loopback, so a stream URL cannot reach services on the
server itself (add ``127.0.0.1`` for a restreamer such as go2rtc on the same machine); not
link-local (``169.254.0.0/16``, ``fe80::/10``), where cloud metadata services live."""

NEVER_BY_NETWORK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local, cloud metadata (169.254.169.254)
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # a cloud metadata service, inside fd00::/8
    ipaddress.ip_network("0.0.0.0/8"),  # "this host": connecting to 0.0.0.0 reaches loopback
    ipaddress.ip_network("::/128"),  # the unspecified IPv6 address, likewise
)
"""Addresses an allowed network never covers: each is allowed only when listed exactly."""

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"^(?:{_LABEL}\.)*(?!-)[a-z][a-z0-9-]{{0,62}}(?<!-)$")
"""A DNS host name whose last label starts with a letter, so that no numeric form of an IPv4
address (``2130706433``, ``0x7f.1``, ``127.1``, ``0177.0.0.1``) passes for a name."""
_MAX_HOST_NAME = 253


class ConfinementError(InvalidInputError):
    """A source points outside what this process allows; the message says what and why."""


def check_path(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` resolved (symlinks followed), if it lies within one of ``roots``.

    Raises :class:`ConfinementError` naming ``path`` as given otherwise: outside every root, a
    loop of links, no roots configured. The path need not exist.
    """
    try:
        resolved = path.resolve()
        for root in roots:
            if resolved.is_relative_to(root.resolve()):
                return resolved
    except (OSError, RuntimeError, ValueError):
        pass  # a loop of links, a NUL in the name: refused like any path outside the roots
    raise ConfinementError(f"the path {str(path)!r} is outside the configured media roots")


def check_stream_url(
    url: str, allowed_hosts: Sequence[str], *, resolve: Resolver = socket.getaddrinfo
) -> None:
    """Refuse ``url`` unless its host is allowed by ``allowed_hosts``.

    Each entry of ``allowed_hosts`` is a host name (``camera.lan``), an IP address
    (``192.168.1.20``) or a network (``192.168.0.0/16``). The URL's host is allowed when it is
    a listed name, or when it is an IP address (or a name resolving, through ``resolve``, to
    addresses) each of which is listed or inside a listed network; the addresses of
    :data:`NEVER_BY_NETWORK` only when listed exactly. Raises :class:`ConfinementError` (with
    the URL redacted) when the host is not allowed, cannot be resolved, or is written in a form
    other than a plain name or a canonical IP address. Raises ``ValueError`` for an entry of
    ``allowed_hosts`` that is none of the three.
    """
    names, addresses, networks = _parse_allowed(allowed_hosts)
    shown = redacted_url(url)
    host, port = _host_and_port(url, shown)
    literal = _ip_literal(host)
    if literal is None:
        if _normal_name(host) in names:
            return
        candidates = _resolved(host, port, resolve, shown)
    else:
        candidates = [literal]
    for address in candidates:
        if address in addresses:
            continue
        if any(address in net for net in NEVER_BY_NETWORK):
            raise ConfinementError(
                f"the stream URL {shown!r} leads to {address}, a link-local or special address "
                "allowed only when listed exactly in the allowed hosts"
            )
        if not any(address in net for net in networks if net.version == address.version):
            via = "" if literal is not None else f" (through {host!r})"
            raise ConfinementError(
                f"the stream URL {shown!r} leads to {address}{via}, outside the allowed hosts"
            )


def _parse_allowed(
    entries: Sequence[str],
) -> tuple[set[str], set[IPAddress], list[IPNetwork]]:
    names: set[str] = set()
    addresses: set[IPAddress] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower()
        if "/" in text:
            try:
                network = ipaddress.ip_network(text)
            except ValueError as exc:
                raise ValueError(
                    f"the allowed host {entry!r} is not a valid network: {exc}"
                ) from None
            networks.append(network)
            if network.num_addresses == 1:
                addresses.add(_unmapped(network.network_address))
            continue
        address = _ip_literal(text)
        if address is not None:
            addresses.add(address)
        elif _HOST_NAME.match(_normal_name(text)) and len(text) <= _MAX_HOST_NAME:
            names.add(_normal_name(text))
        else:
            raise ValueError(
                f"the allowed host {entry!r} is not a host name, an IP address or a network"
            )
    return names, addresses, networks


def _host_and_port(url: str, shown: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfinementError(f"the stream URL {shown!r} is malformed") from None
    if parts.netloc.count("@") > 1 or "\\" in parts.netloc:
        # parsers disagree on which '@' or '\' ends the user name: never guess
        raise ConfinementError(f"the stream URL {shown!r} has an ambiguous host part")
    host = parts.hostname
    if not host:
        raise ConfinementError(f"the stream URL {shown!r} names no host")
    if _ip_literal(host) is None and not (
        len(host) <= _MAX_HOST_NAME and _HOST_NAME.match(_normal_name(host))
    ):
        raise ConfinementError(
            f"the host {host!r} of the stream URL {shown!r} is neither a host name nor an IP "
            "address in its usual form"
        )
    return host, port


def _ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells in canonical form (dotted quad, IPv6 without a zone)."""
    if "%" in host:
        return None
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _normal_name(host: str) -> str:
    return host.lower().removesuffix(".")


def _resolved(host: str, port: int | None, resolve: Resolver, shown: str) -> list[IPAddress]:
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    found: list[IPAddress] = []
    for info in infos:
        address = _ip_literal(str(info[4][0]).split("%", 1)[0])
        if address is not None:
            found.append(address)
    if not found:
        raise ConfinementError(f"the host {host!r} of the stream URL {shown!r} does not resolve")
    return found
