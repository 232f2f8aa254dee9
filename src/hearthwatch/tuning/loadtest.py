"""Load-test profiles against a running server, each with an SLA verdict:

- ``single``: one request at a time;
- ``burst``: N requests at once;
- ``sustained``: open-loop arrivals (constant or Poisson) at a rate for a duration;
- ``sweep``: rising open-loop rates until the SLA breaks.

Each profile is measured by the shared method (:mod:`hearthwatch.tuning.method`): latency
runs from each request's scheduled send time; an open-loop profile sends ``warmup_s`` of the
same load first and measures only the window after it, its throughput being the successes
scheduled in the window and done by its end (plus the grace) ÷ the window's length; a closed
loop (``single``) sends one warm-up request first. A profile passes when every measured request
got 200 (503s and 504s are counted, never hidden), it kept up (achieved ≥ 95 % of what was
scheduled) and the P95 latency meets the SLA; a sweep reports the highest rate that passed.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hearthwatch.percentiles import percentiles
from hearthwatch.tuning.loadgen import (
    LATE_WARNING_MS,
    Arrival,
    LoadSummary,
    Payload,
    RequestRecord,
    burst,
    closed_loop,
    image_payloads,
    open_loop,
)
from hearthwatch.tuning.method import llm_figures, window_figures

PROFILES = ("single", "burst", "sustained", "sweep")
SERVED_FRACTION = 0.95  # a profile keeps up when this share of what was scheduled is served
Route = Literal["detect", "v2", "chat"]


@dataclass(frozen=True)
class LoadTestPlan:
    p95_sla_ms: float = 100.0
    single_count: int = 20
    burst_size: int = 16
    rate: float = 10.0
    duration_s: float = 10.0
    warmup_s: float = 2.0
    arrival: Arrival = "poisson"
    sweep_start_rate: float = 2.0
    sweep_growth: float = 1.5
    sweep_max_steps: int = 8
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.p95_sla_ms <= 0 or self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("SLA, rate and duration must be > 0")
        if self.warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s}")
        if self.single_count < 1 or self.burst_size < 1 or self.sweep_max_steps < 1:
            raise ValueError("counts and steps must be >= 1")
        if self.sweep_growth <= 1 or self.sweep_start_rate <= 0:
            raise ValueError("a sweep needs a start rate > 0 and a growth > 1")


@dataclass
class ProfileResult:
    name: str
    summary: LoadSummary
    records: list[RequestRecord]
    passed: bool
    steps: list[ProfileResult] = field(default_factory=list)  # a sweep's rates
    note: str = ""
    sent_in_all: int = 0  # warm-up included

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "profile": self.name,
            "passed": self.passed,
            "note": self.note,
            **self.summary.as_dict(),
        }
        if self.steps:
            data["steps"] = [step.as_dict() for step in self.steps]
        return data


def v2_payloads(images: Sequence[bytes]) -> list[Payload]:
    """Binary-data v2 infer requests, as ``tritonclient`` sends them, one image each."""
    payloads = []
    for image in images:
        data = struct.pack("<I", len(image)) + image
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "IMAGE",
                        "datatype": "BYTES",
                        "shape": [1, 1],
                        "parameters": {"binary_data_size": len(data)},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
        payloads.append(Payload(header + data, headers))
    return payloads


def chat_payloads(count: int, prompt_words: int, max_tokens: int, salt: int = 0) -> list[Payload]:
    """Streaming chat requests of a fixed prompt length and a fixed output length (EOS
    ignored), each opening with its own tag so no prompt cache serves one from another;
    a different ``salt`` gives a new set."""
    payloads = []
    for index in range(count):
        words = " ".join(f"w{(index * 7919 + i) % 997}" for i in range(prompt_words))
        content = f"[{salt}.{index}] Summarise these notes: {words}"
        body = {
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        payloads.append(
            Payload(json.dumps(body).encode(), {"Content-Type": "application/json"}, streamed=True)
        )
    return payloads


def route_target(
    base_url: str,
    route: Route,
    images: Sequence[bytes],
    model: str,
    prompt_words: int = 128,
    max_tokens: int = 64,
) -> tuple[str, list[Payload]]:
    base = base_url.rstrip("/")
    if route == "detect":
        return f"{base}/detect", image_payloads(images)
    if route == "v2":
        return f"{base}/v2/models/{model}/infer", v2_payloads(images)
    if route == "chat":
        return f"{base}/v1/chat/completions", chat_payloads(1024, prompt_words, max_tokens)
    raise ValueError(f"unknown route {route!r}; use detect, v2 or chat")


def summarize(
    records: Sequence[RequestRecord], rate: float | None, start_s: float, window_s: float
) -> LoadSummary:
    """What ``records`` say about the window [start_s, start_s + window_s), by the shared
    method's rules; ``rate`` None (a closed loop or a burst): what was scheduled in it ÷ its
    length."""
    figures = window_figures(records, start_s, window_s)
    late = percentiles(figures.lateness_ms)
    streamed = any(r.first_token_s is not None for r in records)
    return LoadSummary(
        offered_rps=rate if rate is not None else figures.scheduled / window_s,
        duration_s=window_s,
        sent=figures.scheduled,
        ok=figures.statuses.get(200, 0),
        statuses={str(k): v for k, v in sorted(figures.statuses.items())},
        achieved_rps=figures.served / window_s,
        latency_ms=percentiles(figures.latency_ms),
        lateness_ms={k: v for k, v in late.items() if v is not None},
        fell_behind=bool(late["p99"] is not None and late["p99"] > LATE_WARNING_MS),
        llm=llm_figures(records, start_s, start_s + window_s) if streamed else None,
    )


def _verdict(summary: LoadSummary, sla_ms: float) -> bool:
    p95 = summary.latency_ms["p95"]
    kept_up = summary.achieved_rps >= SERVED_FRACTION * summary.sent / summary.duration_s
    return summary.ok == summary.sent and kept_up and p95 is not None and p95 <= sla_ms


def _result(
    name: str, records: list[RequestRecord], rate: float | None, start_s: float, plan: LoadTestPlan
) -> ProfileResult:
    """The profile's result over its window, from ``start_s`` to the last answer (a closed
    loop or a burst) or for ``plan.duration_s`` (an open loop at ``rate``)."""
    if rate is None:
        window_s = max(r.done_s for r in records) - start_s
        window_s = math.nextafter(window_s, math.inf)  # the last answer lies inside it
    else:
        window_s = plan.duration_s
    summary = summarize(records, rate, start_s, window_s)
    measured = [r for r in records if start_s <= r.scheduled_s < start_s + window_s]
    verdict = _verdict(summary, plan.p95_sla_ms)
    return ProfileResult(name, summary, measured, verdict, sent_in_all=len(records))


def _open_loop(
    name: str, url: str, payloads: Sequence[Payload], rate: float, plan: LoadTestPlan
) -> ProfileResult:
    records = asyncio.run(
        open_loop(
            url, payloads, rate, plan.warmup_s + plan.duration_s, plan.arrival, plan.timeout_s
        )
    )
    return _result(name, records, rate, plan.warmup_s, plan)


def run_profile(
    name: str, url: str, payloads: Sequence[Payload], plan: LoadTestPlan
) -> ProfileResult:
    if name == "single":  # the first request warms up
        records = asyncio.run(
            closed_loop(url, payloads, 1, count=1 + plan.single_count, timeout_s=plan.timeout_s)
        )
        return _result(name, records, None, records[1].scheduled_s, plan)
    if name == "burst":
        records = asyncio.run(burst(url, payloads, plan.burst_size, plan.timeout_s))
        return _result(name, records, None, 0.0, plan)
    if name == "sustained":
        return _open_loop(name, url, payloads, plan.rate, plan)
    if name == "sweep":
        return _sweep(url, payloads, plan)
    raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")


def _sweep(url: str, payloads: Sequence[Payload], plan: LoadTestPlan) -> ProfileResult:
    steps: list[ProfileResult] = []
    rate = plan.sweep_start_rate
    for _ in range(plan.sweep_max_steps):
        rotated = _rotate(payloads, sum(s.sent_in_all for s in steps))
        step = _open_loop(f"sweep@{rate:.3g}/s", url, rotated, rate, plan)
        steps.append(step)
        if not step.passed:
            break
        rate *= plan.sweep_growth
    passing = [s for s in steps if s.passed]
    best = max(passing, key=lambda s: s.summary.offered_rps) if passing else steps[0]
    note = (
        f"highest rate meeting the SLA: {best.summary.offered_rps:.3g}/s"
        if passing
        else "the SLA broke at the first rate"
    )
    if passing and len(passing) == len(steps):
        note += " (the SLA never broke: raise sweep_max_steps)"
    return ProfileResult("sweep", best.summary, best.records, bool(passing), steps, note)


def run_load_test(
    url: str, payloads: Sequence[Payload], profiles: Sequence[str], plan: LoadTestPlan
) -> list[ProfileResult]:
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise ValueError(f"unknown profile {unknown[0]!r}; known: {', '.join(PROFILES)}")
    results, offset = [], 0
    for name in profiles:
        # each profile starts where the last stopped: no prompt cache or repeat helps it
        result = run_profile(name, url, _rotate(payloads, offset), plan)
        offset += _sent(result)
        results.append(result)
    return results


def _rotate(payloads: Sequence[Payload], offset: int) -> list[Payload]:
    cut = offset % len(payloads)
    return [*payloads[cut:], *payloads[:cut]]


def _sent(result: ProfileResult) -> int:
    return sum(s.sent_in_all for s in result.steps) if result.steps else result.sent_in_all
