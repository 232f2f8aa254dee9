"""The settings of each camera source type, validated up front (pydantic only: importing this
imports no PyAV).

A stream URL may hold credentials: :func:`redacted_url` is the only form of it that goes into
logs, errors and API replies. Where a source may point (roots, hosts) is checked elsewhere
(:mod:`hearthwatch.security.sources.confinement`), against the process's settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_URL_LENGTH = 2048


SECRET_QUERY_KEYS = re.compile(r"pass|pwd|secret|token|key|auth|sig", re.IGNORECASE)
"""Query parameters whose values are hidden too (``?user=admin&password=…``, ``?token=…``)."""


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the user name kept), in its user info
    and in query parameters whose names say they hold one (:data:`SECRET_QUERY_KEYS`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable url>"
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}:***@{host}" + (f":{port}" if port else "")
        parts = parts._replace(netloc=netloc)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(k, "***" if SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs]
        if hidden != pairs:
            parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts)


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _checked_url(url: str, schemes: tuple[str, ...]) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("the URL holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is not a number in range
    except ValueError:  # its text may quote part of a password
        raise ValueError(
            "the URL's host or port cannot be read (percent-encode '#', '/', '?' and '@' in a "
            "user name or password)"
        ) from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"the URL's scheme must be one of {', '.join(schemes)}")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    return url


class RtspSourceConfig(_Source):
    """An RTSP camera (or go2rtc/NVR restream), read through FFmpeg."""

    type: Literal["rtsp"] = "rtsp"
    url: str = Field(description="rtsp:// or rtsps:// URL; credentials may be in it.")
    transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _checked_url(url, ("rtsp", "rtsps"))


class HttpSourceConfig(_Source):
    """A stream served over HTTP(S) that FFmpeg reads: MJPEG, HLS, FLV, MP4."""

    type: Literal["http"] = "http"
    url: str = Field(description="http:// or https:// URL; credentials may be in it.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _checked_url(url, ("http", "https"))


class FileSourceConfig(_Source):
    """A video file FFmpeg reads, played at its own pace (``realtime``) or as fast as it
    decodes, once or in a loop."""

    type: Literal["file"] = "file"
    path: Path
    loop: bool = False
    realtime: bool = True


class PushSourceConfig(_Source):
    """Frames POSTed to ``/api/cameras/{id}/frames`` (JPEG or PNG bodies)."""

    type: Literal["push"] = "push"


class FolderSourceConfig(_Source):
    """A directory a camera uploads JPEG/PNG files into (FTP, SMB): a file is taken once its
    size has not changed for ``settle_s``; then moved under ``done/`` or deleted."""

    type: Literal["folder"] = "folder"
    path: Path
    after: Literal["move", "delete"] = "move"
    settle_s: float = Field(1.0, ge=0.0, le=3600.0)


StreamSourceConfig = RtspSourceConfig | HttpSourceConfig | FileSourceConfig
"""The sources a reader thread decodes through PyAV."""

SourceConfig = Annotated[
    RtspSourceConfig | HttpSourceConfig | FileSourceConfig | PushSourceConfig | FolderSourceConfig,
    Field(discriminator="type"),
]
