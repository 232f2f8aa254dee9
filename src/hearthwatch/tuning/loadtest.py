"""Load-test profiles against a running server, each with an SLA verdict:

- ``single``: one request at a time;
- ``burst``: N requests at once;
- ``sustained``: open-loop arrivals (constant or Poisson) at a rate for a duration;
- ``sweep``: the knee: open-loop rates rising by ``sweep_growth`` until one fails, then
  bisection to ``resolution``.

Each profile is measured by the shared method (:mod:`hearthwatch.tuning.method`) and judged by
its rule (:meth:`~hearthwatch.tuning.method.Point.passes`): latency runs from each request's
scheduled send time; an open-loop profile sends ``warmup_s`` of the same load first and
measures only the window after it; ``single`` sends one warm-up request first; throughput is
the successes completed inside the window ÷ its length. A profile passes with no errors (503s
and 504s are counted, never hidden), ≥ 95 % of its arrivals served, and its P95 under the SLA
(with fewer than 200 samples, no P95 is reported and every request must meet the SLA).
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hearthwatch.tuning.loadgen import (
    Arrival,
    Payload,
    RequestRecord,
    burst,
    closed_loop,
    image_payloads,
    run_schedule,
)
from hearthwatch.tuning.method import (
    Method,
    Point,
    Sanity,
    find_knee,
    measure_schedule,
    point_from_records,
)

PROFILES = ("single", "burst", "sustained", "sweep")
Route = Literal["detect", "v2", "chat"]


@dataclass(frozen=True)
class LoadTestPlan:
    p95_sla_ms: float = 100.0
    single_count: int = 20
    burst_size: int = 16
    rate: float = 10.0
    duration_s: float = 30.0  # the shared method's least window
    warmup_s: float = 5.0
    arrival: Arrival = "poisson"
    sweep_start_rate: float = 2.0
    sweep_growth: float = 1.5
    sweep_max_steps: int = 8
    resolution: float = 0.05
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.p95_sla_ms <= 0 or self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("SLA, rate and duration must be > 0")
        if self.warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s}")
        if self.single_count < 1 or self.burst_size < 1:
            raise ValueError("counts must be >= 1")
        if self.sweep_growth <= 1 or self.sweep_start_rate <= 0 or self.sweep_max_steps < 2:
            raise ValueError("a sweep needs a start rate > 0, a growth > 1 and two steps or more")
        self.method()  # its own checks

    def method(self) -> Method:
        """The shared method with this plan's windows and rule."""
        return Method(
            window_s=self.duration_s,
            warmup_s=self.warmup_s,
            min_requests=1,
            arrivals=self.arrival,
            repeats=1,
            sla_p95_ms=self.p95_sla_ms,
            resolution=self.resolution,
            timeout_s=self.timeout_s,
            max_probes=self.sweep_max_steps,
        )


@dataclass
class ProfileResult:
    name: str
    summary: Point
    records: list[RequestRecord]  # those scheduled in the window
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


def _result(
    name: str, records: list[RequestRecord], start_s: float, plan: LoadTestPlan
) -> ProfileResult:
    """A closed loop's or a burst's result over its window, from ``start_s`` to its last
    answer; what it offered is what was scheduled in it ÷ its length."""
    last = max(r.done_s for r in records)
    window_s = last - start_s
    while start_s + window_s <= last:  # the last answer inside it, whatever the rounding
        window_s = math.nextafter(window_s, math.inf)
    offered = sum(1 for r in records if r.scheduled_s >= start_s) / window_s
    point = point_from_records(records, offered, start_s, window_s)
    measured = [r for r in records if r.scheduled_s >= start_s]
    return ProfileResult(
        name, point, measured, point.passes(plan.method()), sent_in_all=len(records)
    )


def _open_loop(
    name: str, url: str, payloads: Sequence[Payload], rate: float, plan: LoadTestPlan
) -> ProfileResult:
    method = plan.method()
    point, records = asyncio.run(
        measure_schedule(
            lambda offsets: run_schedule(url, payloads, offsets, plan.timeout_s), rate, method
        )
    )
    end = method.warmup_s + point.window_s
    measured = [r for r in records if method.warmup_s <= r.scheduled_s < end]
    return ProfileResult(name, point, measured, point.passes(method), sent_in_all=len(records))


def run_profile(
    name: str, url: str, payloads: Sequence[Payload], plan: LoadTestPlan
) -> ProfileResult:
    if name == "single":  # the first request warms up
        records = asyncio.run(
            closed_loop(url, payloads, 1, count=1 + plan.single_count, timeout_s=plan.timeout_s)
        )
        return _result(name, records, records[1].scheduled_s, plan)
    if name == "burst":
        records = asyncio.run(burst(url, payloads, plan.burst_size, plan.timeout_s))
        return _result(name, records, 0.0, plan)
    if name == "sustained":
        return _open_loop(name, url, payloads, plan.rate, plan)
    if name == "sweep":
        return _sweep(url, payloads, plan)
    raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")


def _sweep(url: str, payloads: Sequence[Payload], plan: LoadTestPlan) -> ProfileResult:
    """The knee by the method's search; every rate tried is a step of the result."""
    steps: list[ProfileResult] = []

    def measure(rate: float) -> Point:
        rotated = _rotate(payloads, sum(s.sent_in_all for s in steps))
        steps.append(_open_loop(f"sweep@{rate:.3g}/s", url, rotated, rate, plan))
        return steps[-1].summary

    knee = find_knee(measure, plan.sweep_start_rate, plan.method(), step=plan.sweep_growth)
    if knee.knee is None:
        best = min(steps, key=lambda s: s.summary.offered_rps)
        note = f"no rate tried met the rule, down to {best.summary.offered_rps:.3g}/s"
    else:
        best = next(s for s in steps if s.summary is knee.knee)
        note = f"the knee: {knee.knee.offered_rps:.3g}/s offered met the rule"
        if knee.lowest_failing_rps is None:
            note += "; no rate tried failed: raise sweep_max_steps"
        else:
            note += f"; {knee.lowest_failing_rps:.3g}/s did not"
    return ProfileResult(
        "sweep", best.summary, best.records, knee.knee is not None, steps, note,
        sent_in_all=sum(s.sent_in_all for s in steps),
    )  # fmt: skip


def sanity_of(results: Sequence[ProfileResult]) -> Sanity:
    """The method's plausibility checks on every measured point (a sweep's every step)."""
    sanity = Sanity()
    for result in results:
        for step in result.steps or [result]:
            sanity.point(step.name, step.summary)
    return sanity


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
        offset += result.sent_in_all
        results.append(result)
    return results


def _rotate(payloads: Sequence[Payload], offset: int) -> list[Payload]:
    cut = offset % len(payloads)
    return [*payloads[cut:], *payloads[:cut]]
