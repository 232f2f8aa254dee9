"""LLM benchmark: the gateway against the engine directly, side by side in one run.

N concurrent users (closed loop) and Poisson arrivals at a rate (open loop), fixed prompt and
output lengths (EOS ignored), streamed; TTFT P50/P99, TPOT, tokens/s per request and in total,
for ``hearthwatch``'s ``/v1/chat/completions`` and for the engine's own endpoint. Every run
gets prompts no earlier run used, so no prompt cache favours either side. Writes a record to
bench/results/ with the gateway's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import yaml

from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.loadgen import closed_loop, open_loop, summarize
from hearthwatch.tuning.loadtest import chat_payloads
from hearthwatch.tuning.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SALTS = count(1)


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


def run(url: str, scenario: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    payloads = chat_payloads(256, args.prompt_words, args.output_tokens, salt=next(SALTS))
    if scenario["kind"] == "closed":
        users = scenario["users"]
        records = asyncio.run(
            closed_loop(url, payloads, users, count=users * args.requests_per_user, timeout_s=600)
        )
        span = max(r.done_s for r in records)
        summary = summarize(records, None, span)
    else:
        records = asyncio.run(
            open_loop(url, payloads, scenario["rate"], args.duration, "poisson", timeout_s=600)
        )
        summary = summarize(records, scenario["rate"], args.duration)
    return summary.as_dict()


def ratio(gateway: dict[str, Any], engine: dict[str, Any], *path: str) -> float | None:
    a, b = gateway["llm"], engine["llm"]
    for key in path:
        a, b = a[key], b[key]
    return a / b if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="1,4", help="closed-loop concurrencies")
    parser.add_argument("--requests-per-user", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1.0, help="open-loop requests/s (0: skip)")
    parser.add_argument("--duration", type=float, default=20.0, help="open-loop seconds")
    parser.add_argument("--prompt-words", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    users = [int(u) for u in args.users.split(",")]
    scenarios = [{"kind": "closed", "users": u} for u in users]
    if args.rate > 0:
        scenarios.append({"kind": "open", "rate": args.rate})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        profiles = Path(tmp) / "profiles.yml"
        profiles.write_text(yaml.safe_dump(bench_profile(max(users), args.output_tokens)))
        env = {"LLM_ENABLED": "true", "LLM_PROFILE": "bench", "LLM_PROFILES_FILE": str(profiles),
               "LOG_LEVEL": "warning"}  # fmt: skip
        with ServerProcess(env, Path(tmp) / "server.log") as server:
            engine = httpx.get(f"{server.url}/v1/engine/config").json()
            targets = {
                "engine": f"{engine['url']}/v1/chat/completions",
                "gateway": f"{server.url}/v1/chat/completions",
            }
            for index, scenario in enumerate(scenarios):
                order = ("engine", "gateway") if index % 2 == 0 else ("gateway", "engine")
                measured = {name: run(targets[name], scenario, args) for name in order}
                gateway, direct = measured["gateway"], measured["engine"]
                row = {
                    **scenario,
                    "order": list(order),
                    "gateway": gateway,
                    "engine": direct,
                    "gateway_over_engine": {
                        "ttft_p50": ratio(gateway, direct, "ttft_ms", "p50"),
                        "ttft_p99": ratio(gateway, direct, "ttft_ms", "p99"),
                        "output_tokens_per_s_total": ratio(
                            gateway, direct, "output_tokens_per_s_total"
                        ),
                    },
                }
                tps = row["gateway_over_engine"]["output_tokens_per_s_total"]
                row["gateway_overhead_percent"] = None if tps is None else (1 - tps) * 100
                results.append(row)
                print(
                    json.dumps(
                        {
                            k: row[k]
                            for k in ("kind", "gateway_over_engine", "gateway_overhead_percent")
                        }
                        | {"users": scenario.get("users"), "rate": scenario.get("rate")}
                    ),
                    flush=True,
                )
    record = {
        "benchmark": "llm_bench",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **record_header(),
        "engine": engine["engine"],
        "prompt_words": args.prompt_words,
        "output_tokens": args.output_tokens,
        "scenarios": results,
    }
    write_record(record, args.out, "llm_bench_cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
