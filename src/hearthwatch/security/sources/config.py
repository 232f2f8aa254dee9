"""The settings of each camera source type, validated up front (pydantic only: importing this
imports no PyAV).

A stream URL may hold credentials: :func:`redacted_url` is the only form of it that goes into
logs, errors and API replies. Where a source may point (roots, hosts) is checked elsewhere
(:mod:`hearthwatch.security.sources.confinement`), against the process's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_URL_LENGTH = 2048


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the user name kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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
    except ValueError as exc:
        raise ValueError(f"the URL is malformed ({exc})") from None
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
