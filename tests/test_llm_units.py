"""LLM parts that need no engine: admission, profile choice, response assembly, engine flags."""

from __future__ import annotations

import asyncio

import pytest

from hearthwatch.llm.admission import Admission, QueueFullError, SessionTimeoutError
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
