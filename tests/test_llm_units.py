"""LLM parts that need no engine: admission, profile choice, response assembly, engine flags,
request models, engine error mapping, the engine guard."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hearthwatch.llm.admission import Admission
from hearthwatch.llm.chunks import assemble
from hearthwatch.llm.engines.openai_compat import OpenAICompatConfig
from hearthwatch.llm.engines.vllm import VllmConfig
from hearthwatch.llm.errors import (
    AdmissionClosedError,
    AdmissionFullError,
    GatewayError,
    ProfileError,
    SessionTimeoutError,
)
from hearthwatch.llm.gateway import Exchange, LlmGateway
from hearthwatch.llm.profiles import EngineFlags, load_profiles, select_profile
from hearthwatch.llm.supervisor import EngineSupervisor
from hearthwatch.runtime.observability.telemetry import GpuReading


def test_admission_runs_queues_then_refuses() -> None:
    async def main() -> None:
        gate = Admission(max_running=2, max_waiting=1)
        await gate.acquire(1)
        await gate.acquire(1)
        waiting = asyncio.ensure_future(gate.acquire(1))
        await asyncio.sleep(0)
        assert (gate.running, gate.waiting) == (2, 1)
        with pytest.raises(AdmissionFullError, match="Queue full"):
            await gate.acquire(1)
        gate.release()  # the slot passes to the waiter
        await waiting
        assert (gate.running, gate.waiting) == (2, 0)
        gate.release()
        gate.release()
        assert gate.running == 0

    asyncio.run(main())


def test_a_free_place_is_taken_at_once_and_never_past_a_waiter() -> None:
    async def main() -> None:
        gate = Admission(max_running=1, max_waiting=1)
        assert gate.try_acquire() and gate.running == 1
        assert not gate.try_acquire()  # full
        waiting = asyncio.ensure_future(gate.acquire(1))
        await asyncio.sleep(0)
        gate.release()  # the place goes to the waiter, not to whoever asks next
        assert not gate.try_acquire()
        await waiting
        gate.release()
        gate.close()
        assert not gate.try_acquire() and gate.running == 0

    asyncio.run(main())


def test_admission_timeouts_and_cancellations_leave_no_trace() -> None:
    async def main() -> None:
        gate = Admission(max_running=1, max_waiting=2)
        await gate.acquire(1)
        with pytest.raises(SessionTimeoutError):
            await gate.acquire(0.05)
        cancelled = asyncio.ensure_future(gate.acquire(5))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert (gate.running, gate.waiting) == (1, 0)
        gate.release()
        assert gate.running == 0
        await gate.acquire(1)  # still usable
        assert gate.running == 1

    asyncio.run(main())


def test_closing_admission_answers_the_waiters_and_admits_no_one() -> None:
    async def main() -> None:
        gate = Admission(max_running=1, max_waiting=2)
        await gate.acquire(1)
        waiting = [asyncio.ensure_future(gate.acquire(10)) for _ in range(2)]
        await asyncio.sleep(0.01)
        gate.close()
        for waiter in waiting:
            with pytest.raises(AdmissionClosedError):
                await waiter
        with pytest.raises(AdmissionClosedError):
            await gate.acquire(1)
        assert (gate.running, gate.waiting) == (1, 0)
        gate.release()
        assert gate.running == 0

    asyncio.run(main())


def test_profiles_are_chosen_by_name_then_gpu_then_cpu(caplog: pytest.LogCaptureFixture) -> None:
    profiles = load_profiles()
    assert select_profile(profiles, "h100_80gb", None).name == "h100_80gb"
    assert select_profile(profiles, None, "NVIDIA H100 80GB HBM3").name == "h100_80gb"
    assert select_profile(profiles, None, "NVIDIA H200").name == "h100_80gb"
    assert select_profile(profiles, None, "NVIDIA RTX A5500").name == "rtx_a5500_24gb"
    assert select_profile(profiles, None, None).name == "cpu"
    with caplog.at_level(logging.WARNING):  # a GPU is never served by the CPU profile
        assert select_profile(profiles, None, "Some Future GPU").name == "gpu"
    assert "Some Future GPU" in caplog.text and "LLM_PROFILE" in caplog.text
    without_gpu = {name: p for name, p in profiles.items() if name != "gpu"}
    assert select_profile(without_gpu, None, "Some Future GPU").name == "cpu"
    with pytest.raises(ProfileError, match="known profiles: cpu, gpu, h100_80gb"):
        select_profile(profiles, "rtx_a5000", None)
    thor = profiles["jetson_thor_128gb"]
    assert (thor.max_concurrent_sessions, thor.max_queue_depth) == (20, 10)
    assert thor.targets.ttft_ms == 500 and thor.targets.output_tokens_per_s == 60


def test_streamed_chunks_fold_into_a_response() -> None:
    chunks = [
        {
            "id": "c1",
            "created": 5,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        },
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {
            "id": "c1",
            "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}],
        },
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    ]
    reply = assemble("chat", chunks)
    assert reply["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
    ]
    assert reply["usage"]["completion_tokens"] == 2 and reply["id"] == "c1"
    text = assemble(
        "completions",
        [
            {"choices": [{"index": 0, "text": "a"}]},
            {"choices": [{"index": 0, "text": "b", "finish_reason": "length"}]},
        ],
    )
    assert text["choices"][0]["text"] == "ab" and text["object"] == "text_completion"


def test_streamed_tool_calls_survive_folding() -> None:
    def call(**delta: object) -> dict[str, object]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **delta}]}}]}

    chunks = [
        {"id": "c2", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        call(id="call_1", type="function", function={"name": "open_gate", "arguments": ""}),
        call(function={"arguments": '{"gate": '}),
        call(function={"arguments": '"front"}'}),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    (choice,) = assemble("chat", chunks)["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "open_gate", "arguments": '{"gate": "front"}'},
            }
        ],
    }


def test_vllm_and_openai_engines_map_the_profile_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = EngineFlags(n_ctx=32768, n_parallel=8)
    vllm = VllmConfig(model="org/model", kv_cache_dtype="fp8", block_size=32)
    with pytest.raises(FileNotFoundError, match="vllm"):
        vllm.command(flags, "127.0.0.1", 9000)
    monkeypatch.setattr("shutil.which", lambda name: "/opt/bin/vllm")
    command = vllm.command(flags, "127.0.0.1", 9000)
    assert command[:3] == ["/opt/bin/vllm", "serve", "org/model"]
    pairs = dict(zip(command[3::2], command[4::2], strict=False))
    assert pairs["--max-num-seqs"] == "8" and pairs["--max-model-len"] == "4096"
    assert pairs["--kv-cache-dtype"] == "fp8" and pairs["--block-size"] == "32"
    assert "--enable-chunked-prefill" in command
    external = OpenAICompatConfig(url="http://10.0.0.5:11434/", model="llama3")
    assert external.command(flags, "h", 1) is None
    assert external.base_url("h", 1) == "http://10.0.0.5:11434"


def test_request_models_refuse_what_the_engine_would_fail_on() -> None:
    from hearthwatch.llm.requests import ChatRequest, CompletionRequest, ValidationError

    chat = {"messages": [{"role": "user", "content": "hi"}]}
    for bad in (
        {"tools": [{"type": "function"}]},
        {"stream_options": "yes"},
        {"temperature": 2.5},
        {"temperature": "0.5"},
        {"max_tokens": 0},
        {"n": 2},
        {"messages": [{"role": 5, "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
    ):
        with pytest.raises(ValidationError):
            ChatRequest.model_validate({**chat, **bad})
    parsed = ChatRequest.model_validate({**chat, "ignore_eos": True, "mirostat": 2})
    assert parsed.model_dump(exclude_unset=True)["mirostat"] == 2  # extras pass through
    assert CompletionRequest.model_validate({"prompt": [[1, 2], [3]]}).prompt == [[1, 2], [3]]
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"prompt": {"a": 1}})


def test_engine_failures_become_502_and_refusals_keep_their_status() -> None:
    from hearthwatch.llm.gateway import _engine_refusal

    failed = _engine_refusal(500, b'{"error": {"message": "Failed to parse tools: /x/y.cpp"}}')
    assert (failed.status, failed.code) == (502, "engine_error")
    assert "/x/y.cpp" not in failed.message
    busy = _engine_refusal(503, b"{}")
    assert busy.status == 503 and busy.retry_after_s
    refused = _engine_refusal(400, b'{"error": {"message": "context too long"}}')
    assert refused.status == 400 and "context too long" in refused.message


def test_a_guarded_command_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    from hearthwatch.llm.guard import guarded

    pid_file = tmp_path / "engine.pid"
    write_pid = f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))"
    engine = [sys.executable, "-c", f"import os, time; {write_pid}; time.sleep(120)"]
    start_guard = f"subprocess.Popen({guarded(engine)!r}, stdin=subprocess.PIPE)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, time; {start_guard}; time.sleep(120)"]
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the guarded command did not start"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        parent.kill()  # like kill -9 of the server: nothing gets to clean up
        parent.wait()
        deadline = time.monotonic() + 10
        while _running(pid):
            assert time.monotonic() < deadline, "the command outlived the killed parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_tool_call_needs_its_type_and_content_may_be_null_only_beside_tool_calls() -> None:
    from hearthwatch.llm.requests import ChatRequest, ValidationError

    call = {"id": "c1", "function": {"name": "open_gate", "arguments": "{}"}}
    with pytest.raises(ValidationError, match="type"):
        ChatRequest.model_validate({"messages": [{"role": "assistant", "tool_calls": [call]}]})
    typed = {**call, "type": "function"}
    request = ChatRequest.model_validate(
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [typed]}]}
    )
    assert request.model_dump(exclude_unset=True)["messages"][0]["tool_calls"][0]["type"] == (
        "function"
    )
    for role in ("user", "tool"):
        with pytest.raises(ValidationError, match="'content' is required"):
            ChatRequest.model_validate({"messages": [{"role": role, "content": None}]})


H100 = "NVIDIA H100 80GB HBM3"


def _signals(monkeypatch: pytest.MonkeyPatch, nvml: str | None, cuda: str | None) -> None:
    import torch

    readings = [] if nvml is None else [GpuReading(0, nvml, "GPU-0", *[None] * 6)]
    monkeypatch.setattr(
        "hearthwatch.runtime.observability.telemetry.Nvml.read", lambda self: readings
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: cuda)


@pytest.mark.parametrize(
    ("nvml", "cuda", "said"),
    [(None, H100, "torch.cuda"), (H100, None, "NVML")],
    ids=["nvml-failed", "cuda-failed"],
)
def test_when_one_gpu_signal_fails_the_profile_follows_the_other_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    nvml: str | None,
    cuda: str | None,
    said: str,
) -> None:
    from hearthwatch.app.services import llm_profile
    from hearthwatch.config import Settings

    _signals(monkeypatch, nvml, cuda)
    with caplog.at_level(logging.INFO):
        assert llm_profile(Settings()).name == "h100_80gb"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and H100 in warnings[0] and said in warnings[0]


def test_agreeing_gpu_signals_choose_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hearthwatch.app.services import llm_profile
    from hearthwatch.config import Settings

    _signals(monkeypatch, None, None)
    with caplog.at_level(logging.WARNING):
        assert llm_profile(Settings()).name == "cpu"
        _signals(monkeypatch, H100, H100)
        assert llm_profile(Settings()).name == "h100_80gb"
        assert llm_profile(Settings(use_gpu=False)).name == "cpu"
    assert not caplog.records


async def _trickling_engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An OpenAI-style SSE stream that sends a token every 0.2 s and never ends."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # the request head; the body is not needed
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
    writer.write(f"{head}\r\n\r\n".encode())
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
    try:
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.2)
    except (ConnectionError, asyncio.CancelledError):
        writer.close()


def test_a_trickling_engine_stream_ends_at_the_request_deadline() -> None:
    async def scenario() -> tuple[GatewayError, float, int]:
        server = await asyncio.start_server(_trickling_engine, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = OpenAICompatConfig(url=f"http://127.0.0.1:{port}", model="m")
        supervisor = EngineSupervisor(config, EngineFlags())
        gateway = LlmGateway(supervisor, load_profiles()["cpu"], CollectorRegistry(), timeout_s=1.0)
        exchange = gateway.exchange("chat", {"messages": [{"role": "user", "content": "hi"}]})
        received = 0

        async def consume() -> None:
            nonlocal received
            async for _ in gateway.chunks(exchange):
                received += 1

        started = time.monotonic()
        try:
            with pytest.raises(GatewayError) as caught:
                await asyncio.wait_for(consume(), 10)  # each read is quick: only a total ends it
            return caught.value, time.monotonic() - started, received
        finally:
            await gateway.close()
            server.close()

    error, elapsed, received = asyncio.run(scenario())
    assert (error.status, error.code) == (504, "timeout")
    assert 0.9 <= elapsed < 3.0 and received >= 2


def _chunk(model: str = "m", **fields: object) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": model, **fields}
    return json.dumps(body, separators=(",", ":")).encode()


def _delta(content: str, model: str = "m") -> bytes:
    return _chunk(model, choices=[{"index": 0, "delta": {"content": content}}])


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def _relay(
    pieces: list[bytes], body: dict[str, object]
) -> tuple[list[list[bytes]], Exchange, dict[str, object]]:
    """What the gateway makes of an engine whose SSE body arrives in ``pieces`` (one read
    each): the batches it yields, the exchange, and the request the engine received."""
    received: dict[str, object] = {}

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        received.update(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.05)  # each piece its own read
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> tuple[list[list[bytes]], Exchange]:
        server = await asyncio.start_server(engine, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = OpenAICompatConfig(url=f"http://127.0.0.1:{port}", model="m")
        gateway = LlmGateway(
            EngineSupervisor(config, EngineFlags()), load_profiles()["cpu"], CollectorRegistry()
        )
        exchange = gateway.exchange("chat", body)
        try:
            return [batch async for batch in gateway.chunks(exchange)], exchange
        finally:
            await gateway.close()
            server.close()

    batches, exchange = asyncio.run(scenario())
    return batches, exchange, received


def test_the_relay_passes_the_engines_bytes_on_and_records_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hearthwatch.llm.gateway as gateway_module

    parsed: list[bytes] = []

    class CountingJson:
        dumps = staticmethod(json.dumps)
        JSONDecodeError = json.JSONDecodeError

        @staticmethod
        def loads(text: bytes) -> object:
            parsed.append(text)
            return json.loads(text)

    monkeypatch.setattr(gateway_module, "json", CountingJson)
    role = _chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": None}}])
    split = _delta("Hel")
    foreign = _delta("!", model="/models/other.gguf")
    usage = _chunk(choices=[], usage=USAGE)
    you = _chunk(choices=[{"index": 0, "delta": {"content": " you"}}], usage=None)  # as vLLM
    pieces = [
        b"data: " + role + b"\n\n",
        b"data: " + split[:20],  # a chunk split across two reads
        split[20:] + b"\n\n: a comment line\n\n",
        b"data: " + _delta("l\u00e9") + b"\n\ndata: " + you + b"\n\n",  # one read, two
        b"data: " + foreign + b"\r\n\r\n",
        b"data: " + usage + b"\n\ndata: [DONE]\n\n",
    ]
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4}
    batches, exchange, request = _relay(pieces, chat)
    assert request["stream"] is True and request["model"] == "m"
    assert request["stream_options"] == {"include_usage": True}
    # as the engine sent them ("\\u00e9" escaped: a re-serialised chunk would carry "é")
    assert batches[:3] == [[role], [split], [_delta("l\u00e9"), you]]
    (renamed,) = batches[3]
    assert json.loads(renamed) == {**json.loads(foreign), "model": "m"}
    assert len(batches) == 4  # the usage chunk stays with the gateway: the client did not ask
    assert exchange.usage == USAGE and exchange.first_token_at is not None
    # parsed: up to the first token, the other model's chunk, the usage; the rest only relayed
    assert parsed == [role, split, foreign, usage]

    asked = {**chat, "stream_options": {"include_usage": True}}
    batches, exchange, _ = _relay(pieces, asked)
    assert batches[-1] == [usage] and exchange.usage == USAGE


def test_a_failing_engine_stream_is_an_error_not_a_relayed_chunk() -> None:
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    error = json.dumps({"error": {"message": "out of memory at /src/x.cpp"}}).encode()
    for pieces, status in (
        ([b"data: " + _delta("a") + b"\n\n", b"data: " + error + b"\n\n"], 502),
        ([b"data: " + _delta("a") + b"\n\n", b"data: {not json\n\n"], 503),
        ([b"data: [1, 2]\n\n"], 503),
    ):
        with pytest.raises(GatewayError) as caught:
            _relay(pieces, chat)
        assert caught.value.status == status and "x.cpp" not in caught.value.message


def test_a_closed_loop_point_leaves_out_its_warm_up_and_counts_streamed_tokens() -> None:
    from hearthwatch.tuning.loadgen import Payload
    from hearthwatch.tuning.method import measure_closed_point

    served = 0

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while head := await reader.readuntil(b"\r\n\r\n"):  # keep-alive: request after request
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            served += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
            events = [_delta("a"), _delta("b"), _delta("c"), _chunk(choices=[], usage=USAGE)]
            for event in [b"data: " + e + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]:
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def scenario() -> Any:
        server = await asyncio.start_server(engine, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        payload = Payload(b"{}", {"Content-Type": "application/json"}, streamed=True)
        try:
            return await measure_closed_point(
                f"http://127.0.0.1:{port}/v1/chat/completions", [payload], 2, 3, 1, 10
            )
        finally:
            server.close()

    point = asyncio.run(scenario())
    assert served == 8 and (point.warmup_requests, point.requests, point.ok) == (2, 6, 6)
    llm = point.extra["llm"]
    assert llm["ttft_ms"]["samples"] == 6 and llm["ttft_ms"]["p95"] is None  # too few for a P95
    assert llm["output_tokens_in_window"] == 6 * USAGE["completion_tokens"]
    assert llm["output_tokens_per_s_total"] == pytest.approx(24 / point.window_s)
    assert 5 < llm["tpot_ms"]["p50"] < 200  # the engine's 10 ms between events


def test_an_engine_refusal_keeps_its_status_and_an_engine_gone_is_a_503() -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"message": "the prompt exceeds the context (4096 tokens)"}}'
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def outcome(port: int) -> GatewayError:
        config = OpenAICompatConfig(url=f"http://127.0.0.1:{port}", model="m")
        gateway = LlmGateway(
            EngineSupervisor(config, EngineFlags()), load_profiles()["cpu"], CollectorRegistry()
        )
        exchange = gateway.exchange("chat", {"messages": [{"role": "user", "content": "hi"}]})
        with pytest.raises(GatewayError) as caught:
            await gateway.complete(exchange)
        return caught.value

    async def scenario() -> tuple[GatewayError, GatewayError]:
        server = await asyncio.start_server(refusing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            refused = await outcome(port)
        finally:
            server.close()
            await server.wait_closed()
        return refused, await outcome(port)  # nothing listens there any more

    refused, gone = asyncio.run(scenario())
    assert refused.status == 400 and "4096 tokens" in refused.message
    assert (gone.status, gone.code) == (503, "engine_unavailable")
