"""Hostile JSON bodies on every JSON route: text no UTF-8 can carry, bodies that are small on
the wire and huge once decompressed, and many small values. Each is a 4xx naming the problem,
never a 500, and none stalls the other routes."""

from __future__ import annotations

import asyncio
import gzip
import time

import httpx
import pytest
from conftest import Server, llm_env

LONE = b'"\\ud800"'  # an escaped high surrogate with no low one after it


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory: pytest.TempPathFactory) -> Server:  # type: ignore[no-untyped-def]
    return start_server(  # type: ignore[no-any-return]
        **llm_env(tmp_path_factory, sessions=1, queue=1, max_tokens=4),
        ENRICH_MODELS_FILE="tests/data/enrich_models.yml",
    )


def _post(server: Server, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": ' + LONE + b"}]}"),
        ("/v1/completions", b'{"prompt": ' + LONE + b', "max_tokens": 2}'),
        (
            "/v2/models/detector/infer",
            b'{"inputs": [{"name": ' + LONE + b', "shape": [1, 1], "datatype": "BYTES", '
            b'"data": ["x"]}]}',
        ),
        ("/enrich", b'{"image": "AAAA", "detections": [], "models": [' + LONE + b"]}"),
    ],
    ids=["chat", "completions", "v2", "enrich"],
)
def test_an_unpaired_surrogate_is_a_400(server: Server, path: str, body: bytes) -> None:
    reply = _post(server, path, body)
    assert reply.status_code == 400, reply.text
    assert "surrogate" in reply.text


async def _stall_while(server: Server, path: str, body: bytes, **headers: str) -> tuple[int, float]:
    """The big request's status, and the longest a health probe waited meanwhile."""
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        big = asyncio.ensure_future(
            http.post(path, content=body, headers={"Content-Type": "application/json", **headers})
        )
        longest = 0.0
        while not big.done():
            started = time.monotonic()
            await http.get("/v2/health/live")
            longest = max(longest, time.monotonic() - started)
            await asyncio.sleep(0.01)
        return (await big).status_code, longest


def test_a_small_gzip_body_that_inflates_to_60_mb_is_refused_without_a_stall(
    server: Server,
) -> None:
    inflated = b'{"messages": [{"role": "user", "content": "' + b"a" * 60_000_000 + b'"}]}'
    body = gzip.compress(inflated)
    assert len(body) < 100_000
    status, longest = asyncio.run(
        _stall_while(server, "/v1/chat/completions", body, **{"Content-Encoding": "gzip"})
    )
    assert status == 413
    assert longest < 2.0, f"the event loop stalled {longest:.1f} s"


def test_many_small_values_in_an_enrich_body_are_refused_before_parsing(server: Server) -> None:
    body = b"[" + b"1," * 15_000_000 + b"1]"
    status, longest = asyncio.run(_stall_while(server, "/enrich", body))
    assert status == 400
    assert longest < 2.0, f"the event loop stalled {longest:.1f} s"
