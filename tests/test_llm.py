"""The LLM service with the real SmolLM2 engine (llama.cpp through xllamacpp), through the
official ``openai`` client and raw HTTP: completions, streaming, admission limits, client
disconnects, engine death and restart, profiles."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from conftest import Server

PROFILE = {
    "test": {
        "engine": {"n_ctx": 4096, "n_parallel": 2, "n_gpu_layers": 0, "n_batch": 512},
        "max_concurrent_sessions": 2,
        "max_queue_depth": 2,
        "scheduler_policy": "fcfs",
        "max_tokens_cap": 1024,  # under the 2048-token slot, so the cap is what stops it
        "targets": {"ttft_ms": 1000, "ttft_p99_ms": 4000, "output_tokens_per_s": 20},
    },
    "cpu": {
        "max_concurrent_sessions": 1,
        "max_queue_depth": 0,
        "scheduler_policy": "fcfs",
        "max_tokens_cap": 16,
        "targets": {"ttft_ms": 1000, "ttft_p99_ms": 4000, "output_tokens_per_s": 20},
    },
}
CHAT = [{"role": "user", "content": "Describe a quiet street at night."}]
LONG = {"messages": CHAT, "max_tokens": 1500, "ignore_eos": True}  # seconds of generation


@pytest.fixture(scope="module")
def llm_server(start_server, tmp_path_factory: pytest.TempPathFactory) -> Server:  # type: ignore[no-untyped-def]
    profiles = tmp_path_factory.mktemp("profiles") / "profiles.yml"
    profiles.write_text(yaml.safe_dump(PROFILE))
    return start_server(LLM_ENABLED="true", LLM_PROFILE="test", LLM_PROFILES_FILE=str(profiles))


@pytest.fixture(scope="module")
def client(llm_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0)


def engine(server: Server) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{server.url}/v1/engine/config").json()  # type: ignore[no-any-return]


def test_chat_completion_through_the_openai_client(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="default", messages=CHAT, max_tokens=12)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("length", "stop")


def test_streamed_chat_and_plain_completions(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default", messages=CHAT, max_tokens=12, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 12
    quiet = list(
        client.chat.completions.create(model="default", messages=CHAT, max_tokens=4, stream=True)
    )
    assert all(c.choices for c in quiet)  # no usage chunk unless asked for
    completion = client.completions.create(
        model="default", prompt="Doors and windows", max_tokens=6
    )
    assert completion.choices[0].text and completion.usage.completion_tokens <= 6  # type: ignore[union-attr]


def test_models_targets_and_engine_config(llm_server: Server, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct.Q4_1"]
    targets = httpx.get(f"{llm_server.url}/v1/performance/targets").json()
    assert targets["profile"] == "test" and targets["targets"]["ttft_ms"] == 1000
    measured = targets["measured"]
    assert measured["samples"] >= 1 and 0 < measured["ttft_p50_ms"] <= measured["ttft_p99_ms"]
    config = engine(llm_server)
    assert config["engine"]["parallel"] == 2 and config["engine"]["ctx_per_slot"] == 2048
    assert config["state"] == "ready" and config["pid"] > 0


def test_bad_requests_get_400s(llm_server: Server) -> None:
    url = f"{llm_server.url}/v1/chat/completions"
    cases = [
        (b"{nope", "not valid JSON"),
        (b'{"messages": []}', "messages: List should have at least 1 item"),
        (b'{"messages": [{"content": "x"}]}', "messages.0.role: Field required"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', "only n=1"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -2}',
            "max_tokens: Input should be greater than or equal to 1",
        ),
    ]
    for body, fragment in cases:
        reply = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        error = reply.json()["error"]
        assert reply.status_code == 400 and fragment in error["message"], body
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")


def test_max_tokens_is_capped_by_the_profile(llm_server: Server) -> None:
    body = {"messages": CHAT, "max_tokens": 100_000, "ignore_eos": True}
    reply = httpx.post(f"{llm_server.url}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] == 1024


async def _flood(url: str, count: int) -> list[httpx.Response]:
    body = {"messages": CHAT, "max_tokens": 64, "ignore_eos": True}
    async with httpx.AsyncClient(timeout=120) as http:
        return list(await asyncio.gather(*(http.post(url, json=body) for _ in range(count))))


def test_beyond_sessions_and_queue_is_503_and_accepted_work_completes(llm_server: Server) -> None:
    replies = asyncio.run(_flood(f"{llm_server.url}/v1/chat/completions", 10))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) == 4, statuses  # 2 sessions + 2 waiting
    assert statuses.count(503) == 6
    for reply in replies:
        if reply.status_code == 503:
            assert reply.json() == {
                "error": {
                    "message": "Queue full: 2 sessions busy, 2 queued",
                    "type": "server_error",
                    "code": "queue_full",
                }
            }
            assert int(reply.headers["Retry-After"]) >= 1
        else:
            assert reply.json()["usage"]["completion_tokens"] == 64
    assert llm_server.metric("hearthwatch_llm_requests_total", status="queue_full") >= 6


def test_a_client_that_disconnects_frees_its_session(llm_server: Server) -> None:
    with httpx.stream(
        "POST", f"{llm_server.url}/v1/chat/completions", json={**LONG, "stream": True}, timeout=60
    ) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        seen = [next(lines) for _ in range(3)]  # the role chunk, a blank line, a first token
        assert llm_server.metric("hearthwatch_llm_active_sessions") == 1, seen
    deadline = time.monotonic() + 5
    while llm_server.metric("hearthwatch_llm_active_sessions") != 0:
        assert time.monotonic() < deadline, "the session was not freed"
        time.sleep(0.05)
    started = time.monotonic()  # the engine is not still generating for the departed client
    quick = httpx.post(
        f"{llm_server.url}/v1/chat/completions",
        json={"messages": CHAT, "max_tokens": 8}, timeout=30,
    )  # fmt: skip
    assert quick.status_code == 200 and time.monotonic() - started < 2


def test_a_non_streaming_client_that_leaves_frees_its_session(llm_server: Server) -> None:
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(f"{llm_server.url}/v1/chat/completions", json=LONG, timeout=1.0)
    deadline = time.monotonic() + 5
    while llm_server.metric("hearthwatch_llm_active_sessions") != 0:
        assert time.monotonic() < deadline, "the session was not freed"
        time.sleep(0.05)
    assert llm_server.metric("hearthwatch_llm_requests_total", status="cancelled") >= 1


def test_killing_the_engine_gives_503_then_it_restarts(llm_server: Server) -> None:
    pid = engine(llm_server)["pid"]
    restarts = llm_server.metric("hearthwatch_llm_engine_restarts_total")

    async def long_then_kill() -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as http:
            request = asyncio.ensure_future(
                http.post(f"{llm_server.url}/v1/chat/completions", json=LONG)
            )
            await asyncio.sleep(1.0)
            os.kill(pid, signal.SIGKILL)
            return await request

    started = time.monotonic()
    reply = asyncio.run(long_then_kill())
    assert reply.status_code == 503 and "connection lost" in reply.json()["error"]["message"]
    assert time.monotonic() - started < 10  # answered, not left hanging
    deadline = time.monotonic() + 60
    while (config := engine(llm_server))["state"] != "ready" or config["pid"] == pid:
        assert time.monotonic() < deadline, config
        time.sleep(0.2)
    ok = httpx.post(
        f"{llm_server.url}/v1/chat/completions",
        json={"messages": CHAT, "max_tokens": 4},
        timeout=30,
    )
    assert ok.status_code == 200
    assert llm_server.metric("hearthwatch_llm_engine_restarts_total") == restarts + 1


def test_an_unknown_profile_stops_start_up_naming_the_known_ones() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hearthwatch.cli", "serve"],
        env={**os.environ, "LLM_PROFILE": "rtx_9090", "USE_GPU": "false"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown LLM profile 'rtx_9090'" in result.stderr
    assert "cpu, gpu, h100_80gb, jetson_thor_128gb, rtx_4000_20gb, rtx_a5500_24gb" in result.stderr


def test_a_missing_model_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hearthwatch.cli", "serve"],
        env={**os.environ, "LLM_ENGINE__MODEL_PATH": str(tmp_path / "absent.gguf")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"hearthwatch: GGUF model {tmp_path / 'absent.gguf'} does not exist"
    )


def test_the_llm_routes_say_when_the_service_is_off(hog_server: Server) -> None:
    reply = httpx.post(f"{hog_server.url}/v1/chat/completions", json={"messages": CHAT})
    assert reply.status_code == 404 and "LLM_ENABLED=false" in reply.json()["error"]["message"]


def test_profiles_file_is_checked(tmp_path: Path) -> None:
    from hearthwatch.llm.errors import ProfileError
    from hearthwatch.llm.profiles import load_profiles

    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"x": {"max_concurrent_sessions": 0}}))
    with pytest.raises(ProfileError, match="invalid"):
        load_profiles(bad)
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "none.yml")


def test_a_prompt_over_the_slot_context_is_400_with_the_limit(llm_server: Server) -> None:
    body = {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 4}
    for stream in (False, True):
        reply = httpx.post(
            f"{llm_server.url}/v1/chat/completions", json={**body, "stream": stream}, timeout=60
        )
        assert reply.status_code == 400
        message = reply.json()["error"]["message"]
        assert "exceeds the available context size (2048 tokens)" in message


def test_loadtest_reports_ttft_and_tokens_for_the_chat_route(
    llm_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hearthwatch.cli import main

    argv = ["loadtest", "--url", llm_server.url, "--route", "chat", "--out", str(tmp_path)]
    argv += [
        "--profiles",
        "single,burst",
        "--single-count",
        "2",
        "--burst",
        "6",
        "--max-tokens",
        "16",
    ]
    argv += ["--prompt-words", "32", "--p95-sla-ms", "30000"]
    assert main(argv) == 1  # the burst overflows 2 sessions + 2 waiting: FAIL, not hidden
    profiles = json.loads((tmp_path / "report.json").read_text())["profiles"]
    single, burst = profiles
    llm = single["extra"]["llm"]
    assert single["passed"]
    assert llm["output_tokens_in_window"] == 2 * 16
    assert 0 < llm["ttft_ms"]["p50"] < single["latency_ms"]["p50"]
    assert burst["statuses"] == {"200": 4, "503": 2}
    assert "TTFT" in (tmp_path / "report.md").read_text()


def test_chat_payloads_differ_by_index_and_salt() -> None:
    from hearthwatch.tuning.loadtest import chat_payloads

    first, again = chat_payloads(3, 8, 4), chat_payloads(3, 8, 4)
    other = chat_payloads(3, 8, 4, salt=1)
    assert [p.body for p in first] == [p.body for p in again]
    assert len({p.body for p in first + other}) == 6
    assert all(p.streamed for p in first)


def test_json_schema_constrained_output_passes_through(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"risk": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["risk"],
    }
    reply = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Rate the risk of a parked car from 0 to 100."}],
        max_tokens=32,
        response_format={"type": "json_schema", "json_schema": {"name": "risk", "schema": schema}},
    )
    parsed = json.loads(reply.choices[0].message.content or "")
    assert isinstance(parsed["risk"], int) and 0 <= parsed["risk"] <= 100
