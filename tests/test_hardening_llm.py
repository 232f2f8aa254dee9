"""Regression tests for the LLM gateway's hardening, against the real SmolLM2 engine: an
admission that cannot leak, queued clients that leave, the served model id, OpenAI's error
shape on /v1, bad input refused with 400 before the engine, and engines that die with the
server. One request holds the only session where a test needs it busy (a long generation,
closed by the test), so states are observed, not timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from conftest import Server

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
PROFILE = {
    "hardening": {
        "engine": {"n_ctx": 2048, "n_parallel": 1, "n_gpu_layers": 0, "n_batch": 512},
        "max_concurrent_sessions": 1,
        "max_queue_depth": 1,
        "scheduler_policy": "fcfs",
        "max_tokens_cap": 1024,  # only the request that holds the session asks for this many
        "targets": {"ttft_ms": 1000, "ttft_p99_ms": 4000, "output_tokens_per_s": 20},
    }
}
CHAT = [{"role": "user", "content": "Describe a quiet street at night."}]
QUICK = {"messages": CHAT, "max_tokens": 4}
HOLD = {"messages": CHAT, "max_tokens": 1024, "ignore_eos": True, "stream": True}
MAX_BODY_BYTES = 200_000


def server_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    profiles = tmp_path_factory.mktemp("profiles") / "profiles.yml"
    profiles.write_text(yaml.safe_dump(PROFILE))
    return {
        "LLM_ENABLED": "true",
        "LLM_PROFILE": "hardening",
        "LLM_PROFILES_FILE": str(profiles),
        "LLM_REQUEST_TIMEOUT_S": "120",
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    }


@pytest.fixture(scope="module")
def llm(start_server, tmp_path_factory: pytest.TempPathFactory) -> Server:  # type: ignore[no-untyped-def]
    return start_server(**server_env(tmp_path_factory))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def client(llm: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm.url}/v1", api_key="unused", max_retries=0)


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gauges(server: Server) -> tuple[float, float]:
    """(requests on the engine, requests queued) as the gateway reports them."""
    return (
        server.metric("hearthwatch_llm_active_sessions"),
        server.metric("hearthwatch_llm_queue_depth"),
    )


def send_raw(server: Server, path: str, body: bytes) -> socket.socket:
    """A request written straight to a socket, so the test decides when the client leaves."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


class Holder:
    """A streamed request generating for a long time, holding the only session until
    :meth:`close`; ``done`` says whether its stream has ended."""

    def __init__(self, server: Server):
        self.sock = send_raw(server, "/v1/chat/completions", json.dumps(HOLD).encode())
        self.received = b""
        self.first_token = threading.Event()
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
                if b'"content":"' in self.received:
                    self.first_token.set()
                if b"[DONE]" in self.received:
                    break
        except OSError:
            pass
        self.done.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(10)


@pytest.fixture
def holder(llm: Server) -> Iterator[Holder]:
    assert wait_until(lambda: gauges(llm) == (0, 0), 120), "gateway not idle before the test"
    hold = Holder(llm)
    assert hold.first_token.wait(120), hold.received[-500:]
    try:
        yield hold
    finally:
        hold.close()
        wait_until(lambda: gauges(llm) == (0, 0), 120)


# Item 7: every response names the served model; /v1/models/{id}; unknown names are 404.
def test_responses_name_the_served_model_and_unknown_models_are_404(
    llm: Server, client: openai.OpenAI
) -> None:
    reply = client.chat.completions.create(model="default", messages=CHAT, max_tokens=4)
    assert reply.model == MODEL_ID
    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID, messages=CHAT, max_tokens=4, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks and {chunk.model for chunk in chunks} == {MODEL_ID}
    completion = client.completions.create(model=MODEL_ID, prompt="Doors and", max_tokens=3)
    assert completion.model == MODEL_ID
    assert [m.id for m in client.models.list()] == [MODEL_ID]
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    for ask in (
        lambda: client.models.retrieve("gpt-4o"),
        lambda: client.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=4),
        lambda: client.completions.create(model="gpt-4o", prompt="x", max_tokens=4),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            ask()
        assert caught.value.code == "model_not_found", caught.value.body
        assert MODEL_ID in caught.value.message


# Item 4 (the /v1 parts): bad input is a 400 naming the field, never a 5xx.
def test_hostile_v1_bodies_are_400_naming_the_problem(llm: Server) -> None:
    deep = "[" * 1500 + "]" * 1500
    chat = json.dumps(QUICK)[:-1]  # the object, open for one more field
    chat_cases = {
        "temperature NaN": chat + ', "temperature": NaN}',
        "NaN in a nested field": chat + ', "logit_bias": {"5": -Infinity}}',
        "overflowing number": chat + ', "top_p": 1e999}',
        "1500 levels of nesting": chat + f', "extra": {deep}}}',
        "stream_options not an object": chat + ', "stream": true, "stream_options": "yes"}',
        "a tool without its function": chat + ', "tools": [{"type": "function"}]}',
        "a tool of another type": chat + ', "tools": [{"type": "x", "function": {"name": "f"}}]}',
        "a role that is a number": '{"messages": [{"role": 5, "content": "hi"}]}',
        "an image for a text model": (
            '{"messages": [{"role": "user", "content": [{"type": "image_url", '
            '"image_url": {"url": "data:image/png;base64,AAAA"}}]}]}'
        ),
        "a text part without text": (
            '{"messages": [{"role": "user", "content": [{"type": "text"}]}]}'
        ),
        "a tool call without arguments": (
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", '
            '"tool_calls": [{"id": "1", "type": "function", "function": {"name": "f"}}]}]}'
        ),
        "temperature out of range": chat + ', "temperature": 7}',
        "max_tokens not an integer": chat + ', "max_tokens": 4.5}',
    }
    completion_cases = {
        "prompt NaN list": '{"prompt": [NaN], "max_tokens": 4}',
        "prompt an object": '{"prompt": {"a": 1}, "max_tokens": 4}',
        "stream_options a list": '{"prompt": "x", "stream": true, "stream_options": [1]}',
    }
    wrong: dict[str, object] = {}
    for path, cases in (("chat/completions", chat_cases), ("completions", completion_cases)):
        for name, body in cases.items():
            reply = httpx.post(
                f"{llm.url}/v1/{path}", content=body.encode(),
                headers={"Content-Type": "application/json"}, timeout=120,
            )  # fmt: skip
            if reply.status_code != 400:
                wrong[name] = (reply.status_code, reply.text[:200])
    assert not wrong, wrong
    reply = httpx.post(
        f"{llm.url}/v1/chat/completions", json={**QUICK, "tools": [{"type": "function"}]}
    )
    assert "tools.0.function" in reply.json()["error"]["message"]
    assert gauges(llm) == (0, 0)


# Item 14: errors on /v1 in OpenAI's shape, raised by the gateway or before it.
def test_v1_errors_have_openais_shape_and_others_keep_theirs(
    llm: Server, hog_server: Server, holder: Holder
) -> None:
    queued = send_raw(llm, "/v1/chat/completions", json.dumps(QUICK).encode())
    try:
        assert wait_until(lambda: gauges(llm) == (1, 1), 30), gauges(llm)
        full = httpx.post(f"{llm.url}/v1/chat/completions", json=QUICK, timeout=30)
    finally:
        queued.close()
    assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
    assert full.json() == {
        "error": {
            "message": "Queue full: 1 session busy, 1 queued",
            "type": "server_error",
            "code": "queue_full",
        }
    }

    def shape(reply: httpx.Response) -> tuple[int, str, str]:
        error = reply.json()["error"]
        assert isinstance(error, dict) and set(error) == {"message", "type", "code"}, error
        assert isinstance(error["message"], str) and error["message"], error
        return reply.status_code, error["type"], error["code"]

    headers = {"Content-Type": "application/json"}
    url = f"{llm.url}/v1/chat/completions"
    too_big = b'{"messages": "' + b"x" * MAX_BODY_BYTES + b'"}'
    assert shape(httpx.post(url, content=too_big, headers=headers)) == (
        413, "invalid_request_error", "request_too_large",
    )  # fmt: skip
    assert shape(httpx.post(url, content=b"{nope", headers=headers)) == (
        400, "invalid_request_error", "invalid_request",
    )  # fmt: skip
    assert shape(httpx.get(f"{llm.url}/v1/no/such/route")) == (
        404, "invalid_request_error", "not_found",
    )  # fmt: skip
    off = httpx.post(f"{hog_server.url}/v1/chat/completions", json=QUICK)
    assert shape(off) == (404, "invalid_request_error", "llm_disabled")
    assert "LLM_ENABLED=false" in off.json()["error"]["message"]
    elsewhere = httpx.post(f"{hog_server.url}/detect", content=b"")
    assert elsewhere.status_code == 400 and isinstance(elsewhere.json()["error"], str)


# Item 5: a client that leaves the queue frees its place at once.
def test_a_queued_client_that_leaves_frees_its_place(llm: Server, holder: Holder) -> None:
    leaving = send_raw(llm, "/v1/chat/completions", json.dumps(QUICK).encode())
    assert wait_until(lambda: gauges(llm) == (1, 1), 30), gauges(llm)
    leaving.close()
    freed = wait_until(lambda: gauges(llm)[1] == 0, 10)
    assert freed and not holder.done.is_set(), (
        f"queue still {gauges(llm)[1]:.0f} after its client left"
        if not freed
        else "the queue only emptied because the running request ended"
    )

    async def newcomer() -> httpx.Response:
        async with httpx.AsyncClient(timeout=120) as http:
            reply = asyncio.ensure_future(http.post(f"{llm.url}/v1/chat/completions", json=QUICK))
            while not reply.done() and gauges(llm) != (1, 1):
                await asyncio.sleep(0.05)
            holder.close()  # the session frees up; the newcomer is next
            return await reply

    reply = asyncio.run(newcomer())
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]


# Item 1: nothing between admission and the first chunk can keep a session.
def test_failed_and_abandoned_streams_release_their_session(llm: Server) -> None:
    assert wait_until(lambda: gauges(llm) == (0, 0), 120), gauges(llm)
    nan = json.dumps({**QUICK, "stream": True})[:-1] + ', "temperature": NaN}'
    reply = httpx.post(
        f"{llm.url}/v1/chat/completions", content=nan.encode(),
        headers={"Content-Type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert wait_until(lambda: gauges(llm) == (0, 0), 5), (
        f"session kept after a {reply.status_code}: {gauges(llm)}"
    )
    for _ in range(6):  # clients that leave right after asking for a stream
        send_raw(
            llm, "/v1/chat/completions", json.dumps({**QUICK, "stream": True}).encode()
        ).close()
    assert wait_until(lambda: gauges(llm) == (0, 0), 60), gauges(llm)
    ok = httpx.post(f"{llm.url}/v1/chat/completions", json=QUICK, timeout=60)
    assert ok.status_code == 200 and reply.status_code == 400


def _engine_pids(port: int) -> list[int]:
    """Live processes running the llama.cpp engine (not a wrapper of it) on ``port``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"hearthwatch.llm.engines.llama_cpp_child"] and (
            str(port).encode() in argv
        ):
            pids.append(int(entry.name))
    return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# Item 12: after kill -9 of the server, its engine does not keep running.
def test_the_engine_dies_with_a_killed_server(
    start_server, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    server = start_server(**server_env(tmp_path_factory))
    port = int(httpx.get(f"{server.url}/v1/engine/config").json()["url"].rsplit(":", 1)[1])
    engines = _engine_pids(port)
    assert engines, "engine process not found"
    try:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        gone = wait_until(lambda: not any(_alive(pid) for pid in engines), 15)
        assert gone, f"engine {engines} still running 15 s after the server was killed"
    finally:
        for pid in engines:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
