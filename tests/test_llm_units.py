"""LLM parts that need no engine: admission, profile choice, response assembly, engine flags,
request models, engine error mapping, the engine guard."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearthwatch.llm.admission import (
    Admission,
    AdmissionClosedError,
    QueueFullError,
    SessionTimeoutError,
)
from hearthwatch.llm.chunks import assemble
from hearthwatch.llm.engines.openai_compat import OpenAICompatConfig
from hearthwatch.llm.engines.vllm import VllmConfig
from hearthwatch.llm.profiles import EngineFlags, ProfileError, load_profiles, select_profile


def test_admission_runs_queues_then_refuses() -> None:
    async def main() -> None:
        gate = Admission(max_running=2, max_waiting=1)
        await gate.acquire(1)
        await gate.acquire(1)
        waiting = asyncio.ensure_future(gate.acquire(1))
        await asyncio.sleep(0)
        assert (gate.running, gate.waiting) == (2, 1)
        with pytest.raises(QueueFullError, match="Queue full"):
            await gate.acquire(1)
        gate.release()  # the slot passes to the waiter
        await waiting
        assert (gate.running, gate.waiting) == (2, 0)
        gate.release()
        gate.release()
        assert gate.running == 0

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


def test_profiles_are_chosen_by_name_then_gpu_then_cpu() -> None:
    profiles = load_profiles()
    assert select_profile(profiles, "h100_80gb", None).name == "h100_80gb"
    assert select_profile(profiles, None, "NVIDIA H100 80GB HBM3").name == "h100_80gb"
    assert select_profile(profiles, None, "NVIDIA RTX A5500").name == "rtx_a5500_24gb"
    assert select_profile(profiles, None, "Some Future GPU").name == "cpu"
    assert select_profile(profiles, None, None).name == "cpu"
    with pytest.raises(ProfileError, match="known profiles: cpu, h100_80gb"):
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
