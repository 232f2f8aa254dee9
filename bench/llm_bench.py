"""LLM benchmark: the gateway against the engine alone, side by side in one run, on the shared
measuring method (:mod:`hearthwatch.tuning.method`).

Points: a closed loop of N users, each sending its next request when its last is answered
(1 and 4 users, ``--requests-per-user`` each after one warm-up request each), and an open loop
of Poisson arrivals at ``--rate`` over a steady-state window after a warm-up. Every point is
measured on both targets back to back, one engine behind both: the gateway's
``/v1/chat/completions`` and the engine's own endpoint. The whole comparison is repeated with
the order alternating (gateway first in even repeats, engine first in odd ones), so a machine
that gets busier during a run cannot favour one side. Requests stream a fixed prompt length
and a fixed output length (EOS ignored); each point gets prompts no earlier point used, all
of one token length, so no prompt cache favours either side; both targets of a point get the
same arrival schedule.

The open loop must run under the engine's capacity, or the queue (and TTFT with it) grows for
as long as the window lasts: there is no steady state, and a TTFT ratio then measures the queue,
not the gateway. On a 2-core CPU, SmolLM2-135M with 32-word prompts serves about 0.5 requests/s
(closed loop, 4 users), so the default rate is 0.3/s (1/s, what earlier runs used, is twice the
capacity); a sanity check flags a rate over the capacity measured in the same run. Defaults
keep the run near 18 minutes on such a machine; its 30-request windows report no P95.

The record has every point, the gateway/engine ratios with their spread over the repeats,
whether the gateway stays within 3 % of the engine alone (or within the engine's own
run-to-run spread where that is larger), the server's event-loop CPU per streamed token, and
the sanity checks. On a 2-core machine client, gateway and engine share the cores: the
record says how busy the machine was at each point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.loadgen import Payload, schedule
from hearthwatch.tuning.loadtest import chat_payloads
from hearthwatch.tuning.method import (
    Method,
    Sanity,
    measure_closed_point,
    measure_point,
    spread,
)
from hearthwatch.tuning.server_process import ServerProcess, process_cpu_s

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("gateway", "engine")
GOAL = 0.03  # the gateway's overhead allowed on tokens/s and TTFT, or the engine's own spread
SALT_BASE = 1000  # four-digit salts: every prompt of every point has the same token count
PAYLOADS_PER_POINT = 512  # more than any point sends: no prompt is sent twice in one point
RATIOS = {  # name: (path into a point's "llm" figures, True where higher is better)
    "output_tokens_per_s_total": (("output_tokens_per_s_total",), True),
    "ttft_p50": (("ttft_ms", "p50"), False),
    "tpot_p50": (("tpot_ms", "p50"), False),
}


def bench_profile(users: int, output_tokens: int) -> dict[str, Any]:
    """A profile whose limits never throttle the gateway below the engine: sessions equal
    the engine's slots, a queue deep enough for every request."""
    return {
        "bench": {
            "engine": {"n_ctx": 2048 * users, "n_parallel": users, "n_gpu_layers": 99},
            "max_concurrent_sessions": users,
            "max_queue_depth": 4096,
            "scheduler_policy": "fcfs",
            "max_tokens_cap": max(output_tokens, 16),
            "targets": {"ttft_ms": 1000, "ttft_p99_ms": 4000, "output_tokens_per_s": 20},
        }
    }


def engine_pid(guard_pid: int) -> int:
    """The engine's process: the guard's one child (the guard itself where /proc says none)."""
    children = Path(f"/proc/{guard_pid}/task/{guard_pid}/children")
    try:
        return int(children.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return guard_pid


def scenario_name(scenario: dict[str, Any]) -> str:
    if scenario["kind"] == "closed":
        return f"closed_{scenario['users']}_users"
    return f"open_{scenario['rate']:g}_rps"


def figure(point: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = point["extra"]["llm"]
    for key in path:
        value = value[key]
    return None if value is None else float(value)


class Run:
    """One benchmark run against a started server: measures points and keeps them."""

    def __init__(
        self,
        server: ServerProcess,
        urls: dict[str, str],
        args: argparse.Namespace,
        engine_pid: int,
    ):
        self.server = server
        self.engine_pid = engine_pid
        self.urls = urls
        self.args = args
        self.method = Method(
            window_s=args.window,
            warmup_s=args.warmup,
            min_requests=max(1, round(args.window * args.rate)) if args.rate > 0 else 1,
            arrivals="poisson",
            repeats=args.repeats,
            timeout_s=args.timeout,
        )
        self.sanity = Sanity()
        self.points: list[dict[str, Any]] = []
        self._salt = SALT_BASE

    def requests_in(self, scenario: dict[str, Any], seed: int) -> int:
        """How many requests a point sends in all (warm-up included)."""
        if scenario["kind"] == "closed":
            return scenario["users"] * (1 + self.args.requests_per_user)
        rate = scenario["rate"]
        return len(schedule(rate, self.method.warmup_s + self.method.window_for(rate),
                            self.method.arrivals, seed))  # fmt: skip

    def measure(self, target: str, scenario: dict[str, Any], repeat: int) -> dict[str, Any]:
        self._salt += 1
        payloads = [  # llama.cpp closes a connection after a stream: no client reuses one
            Payload(p.body, {**p.headers, "Connection": "close"}, p.streamed)
            for p in chat_payloads(
                PAYLOADS_PER_POINT, self.args.prompt_words, self.args.output_tokens, self._salt
            )
        ]
        url, seed = self.urls[target], SALT_BASE + repeat  # both targets: the same schedule
        label = f"repeat {repeat} {scenario_name(scenario)} {target}"
        cpu_before = self.cpu_readings()
        loop_cpu_before, started = self.server.main_thread_cpu_s(), time.perf_counter()
        if scenario["kind"] == "closed":
            closed = asyncio.run(
                measure_closed_point(
                    url, payloads, scenario["users"], self.args.requests_per_user, 1,
                    timeout_s=self.args.timeout,
                )
            )  # fmt: skip
            point = closed.as_dict()
        else:
            opened = asyncio.run(measure_point(url, payloads, scenario["rate"], self.method, seed))
            self.sanity.point(label, opened)
            point = opened.as_dict()
        wall = time.perf_counter() - started
        loop_cpu_after = self.server.main_thread_cpu_s()
        tokens = self.requests_in(scenario, seed) * self.args.output_tokens
        if loop_cpu_before is not None and loop_cpu_after is not None:
            loop_cpu = loop_cpu_after - loop_cpu_before
            point["server_event_loop"] = {
                "cpu_s": loop_cpu,
                "cpu_share_of_one_core": loop_cpu / wall,
                "cpu_us_per_streamed_token": loop_cpu / tokens * 1e6,
                "note": "the hearthwatch server's main thread; at engine points it only idles",
            }
        cpu_after = self.cpu_readings()
        point["cpu_us_per_streamed_token"] = {
            name: (cpu_after[name] - before) / tokens * 1e6  # type: ignore[operator]
            for name, before in cpu_before.items()
            if before is not None and cpu_after[name] is not None
        }
        point.update(scenario=scenario_name(scenario), target=target, repeat=repeat, wall_s=wall)
        self.points.append(point)
        llm = point["extra"]["llm"]
        self.sanity.check(
            f"{label}: no errors", point["errors"] == 0, f"statuses {point['statuses']}"
        )
        per_request = llm["output_tokens_per_request"]
        self.sanity.check(
            f"{label}: every request streamed {self.args.output_tokens} tokens",
            per_request["mean"] == self.args.output_tokens,
            f"tokens per request {per_request}",
        )
        print(
            f"  {label:38s} {llm['output_tokens_per_s_total']:7.1f} tok/s  TTFT P50 "
            f"{llm['ttft_ms']['p50']:8.1f} ms (n={llm['ttft_ms']['samples']})  "
            f"busy {point['machine_busy'] or 0:.0%}  {wall:5.1f} s  CPU us/token "
            + " ".join(f"{k} {v:.0f}" for k, v in point["cpu_us_per_streamed_token"].items()),
            flush=True,
        )
        return point

    def cpu_readings(self) -> dict[str, float | None]:
        """CPU seconds used so far by the whole server process and by the engine's: what a
        streamed token costs each, the gateway's share included, whatever thread spends it."""
        return {
            "server_process": self.server.process_cpu_s(),
            "engine_process": process_cpu_s(self.engine_pid),
        }

    def of(self, scenario: str, target: str, path: tuple[str, ...]) -> list[float]:
        """A figure of every repeat, in repeat order."""
        values = [
            figure(p, path)
            for p in sorted(self.points, key=lambda p: p["repeat"])
            if p["scenario"] == scenario and p["target"] == target
        ]
        return [v for v in values if v is not None]


def compare(run: Run, scenarios: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Gateway/engine ratios with their spread over repeats, and the goal's verdict."""
    ratios: dict[str, Any] = {}
    goal: dict[str, Any] = {}
    for scenario in map(scenario_name, scenarios):
        for name, (path, higher_is_better) in RATIOS.items():
            gateway = run.of(scenario, "gateway", path)
            engine = run.of(scenario, "engine", path)
            if not gateway or len(gateway) != len(engine):
                continue
            per_repeat = [g / e for g, e in zip(gateway, engine, strict=True) if e]
            ratios[f"{scenario}.{name}.gateway_over_engine"] = spread(per_repeat) | {
                "per_repeat": per_repeat
            }
            if name == "tpot_p50":
                continue
            if higher_is_better:
                run.sanity.not_above(
                    f"{scenario}: the gateway's {name} not above the engine's alone",
                    gateway,
                    engine,
                )
            else:
                run.sanity.check(
                    f"{scenario}: the gateway's {name} not below the engine's alone",
                    max(gateway) * 1.02 >= min(engine),
                    f"gateway {min(gateway):.4g}..{max(gateway):.4g} against engine "
                    f"{min(engine):.4g}..{max(engine):.4g}",
                )
            median = statistics.median(per_repeat)
            overhead = 1 - median if higher_is_better else median - 1
            engine_spread = (max(engine) - min(engine)) / statistics.median(engine)
            allowed = max(GOAL, engine_spread)
            goal[f"{scenario}.{name}"] = {
                "overhead": overhead,
                "ratio_min": min(per_repeat),
                "ratio_max": max(per_repeat),
                "engine_run_to_run_spread": engine_spread,
                "allowed": allowed,
                "met": overhead <= allowed,
            }
    verdict = {
        "rule": (
            f"gateway tokens/s at most {GOAL:.0%} below, and TTFT P50 at most {GOAL:.0%} above, "
            "the engine alone (median over repeats of the per-repeat ratio), or within the "
            "engine's own run-to-run spread ((max - min) / median over repeats) where larger"
        ),
        "figures": goal,
        "met": all(g["met"] for g in goal.values()),
    }
    return ratios, verdict


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="1,4", help="closed-loop concurrencies")
    parser.add_argument("--requests-per-user", type=int, default=15)
    parser.add_argument("--rate", type=float, default=0.3, help="open-loop requests/s (0: skip)")
    parser.add_argument("--window", type=float, default=100.0, help="open-loop window, seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="open-loop warm-up, seconds")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    users = [int(u) for u in args.users.split(",")]
    scenarios: list[dict[str, Any]] = [{"kind": "closed", "users": u} for u in users]
    if args.rate > 0:
        scenarios.append({"kind": "open", "rate": args.rate})
    with tempfile.TemporaryDirectory() as tmp:
        profiles = Path(tmp) / "profiles.yml"
        profiles.write_text(yaml.safe_dump(bench_profile(max(users), args.output_tokens)))
        env = {
            "LLM_ENABLED": "true",
            "LLM_PROFILE": "bench",
            "LLM_PROFILES_FILE": str(profiles),
            "LOG_LEVEL": "warning",
            "USE_GPU": "false",
            "LLM_REQUEST_TIMEOUT_S": str(args.timeout),  # the client's: neither side cuts first
        }
        started = time.perf_counter()
        with ServerProcess(env, Path(tmp) / "server.log") as server:
            start_up_s = time.perf_counter() - started
            engine = httpx.get(f"{server.url}/v1/engine/config").json()
            urls = {
                "gateway": f"{server.url}/v1/chat/completions",
                "engine": f"{engine['url']}/v1/chat/completions",
            }
            run = Run(server, urls, args, engine_pid(engine["pid"]))
            for repeat in range(args.repeats):
                order = TARGETS if repeat % 2 == 0 else TARGETS[::-1]
                print(f"repeat {repeat}: {' then '.join(order)} at every point", flush=True)
                for scenario in scenarios:
                    for target in order:
                        run.measure(target, scenario, repeat)
    ratios, goal = compare(run, scenarios)
    closed = [s for s in scenarios if s["kind"] == "closed"]
    if closed:
        ceiling = scenario_name(max(closed, key=lambda s: s["users"]))
        run.sanity.repeats(
            f"{ceiling}: the engine's tokens/s (its ceiling here) between repeats",
            run.of(ceiling, "engine", ("output_tokens_per_s_total",)),
        )
        if args.rate > 0:
            capacity = [
                p["achieved_rps"]
                for p in run.points
                if p["scenario"] == ceiling and p["target"] == "engine"
            ]
            run.sanity.check(
                "the open-loop rate is under the engine's closed-loop capacity (a steady state)",
                args.rate < min(capacity),
                f"offered {args.rate:g}/s, engine alone at {max(users)} users "
                f"{min(capacity):.3g}..{max(capacity):.3g} requests/s",
            )
    record = {
        "benchmark": "llm_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "engine": engine["engine"],
        "method": run.method.describe()
        | {
            "closed_loop": {
                "users": users,
                "requests_per_user": args.requests_per_user,
                "warmup_per_user": 1,
                "window": "first measured send to last measured completion",
            },
            "open_loop": {"rate_rps": args.rate, "window_s": args.window} if args.rate else None,
            "order": "every point on both targets back to back; gateway first in even "
            "repeats, the engine first in odd ones",
            "ttft_from": "scheduled send time (closed loop: the send time)",
            "tokens_per_s_total": "tokens of the successes completed inside the window / "
            "window length",
            "prompt_words": args.prompt_words,
            "output_tokens": args.output_tokens,
        },
        "start_up_s": start_up_s,
        "points": run.points,
        "ratios": ratios,
        "goal": goal,
        "sanity": run.sanity.as_dict(),
    }
    write_record(record, args.out, "llm_bench_cpu")
    for name, value in ratios.items():
        print(f"  {name:60s} {value['value']:.4f} ({value['min']:.4f}..{value['max']:.4f})")
    print(f"goal met: {goal['met']}; sanity passed: {record['sanity']['passed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
