"""What the modules that test the camera API against a real ``hearthwatch serve`` share: the
module's server, restarted on the same data directory; a client for it; and the check of a JSON
error answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from conftest import Server


class ServerStack:
    """A module's server, run with ``env`` and logging to ``server-N.log`` under ``root``;
    :meth:`restart` replaces it (same data directory) with one run with ``env`` updated."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(env)
        self.starts = 0
        self.server = self._spawn()

    def _spawn(self) -> Server:
        self.starts += 1
        return Server(self.env, self.root / f"server-{self.starts}.log")

    def restart(self, **env: str) -> None:
        self.server.stop()
        self.env.update(env)
        self.server = self._spawn()
        self.server.wait_ready()

    @property
    def url(self) -> str:
        return self.server.url

    def logs(self) -> str:
        """Every server's log so far, the first one first."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")))


def api_client(stack: ServerStack) -> Iterator[Callable[..., httpx.Response]]:
    """For a module fixture: ``api(method, path, **httpx_kwargs)`` against the stack's current
    server (after a restart, the new one)."""
    with httpx.Client(timeout=60) as client:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            return client.request(method, stack.url + path, **kwargs)

        yield call


def error_of(reply: httpx.Response, status: int) -> str:
    """The ``error`` of a JSON error answer with ``status``; nothing else in it."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    message = body["error"]
    assert isinstance(message, str) and message.strip(), body
    assert "Traceback" not in message and "internal error" not in message, message
    return message
