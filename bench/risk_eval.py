"""Risk quality benchmark: every analyser on the committed labelled scenarios
(``bench/risk_scenarios.json``: half for tuning, half held out), each half reported apart.

Rows (``--analysers``):

* ``constant``: the single score that fits most tuning scenarios, given to every window — the
  floor any analyser must clear (``constant_with_rules``: the same with the risk rules after
  it, which shows what the rules alone contribute);
* ``rules``: the rule-based analyser;
* ``smollm2``: the LLM analyser on the embedded SmolLM2-135M (a hearthwatch server started for
  the run, its gateway asked over HTTP);
* ``gguf``: the same on any GGUF file (``--gguf PATH``), served by the same llama.cpp engine;
* ``openai``: the same on any OpenAI-compatible server (``--openai-url``, ``--openai-model``,
  ``OPENAI_API_KEY`` from the environment).

Every row is scored as events are: the analyser's answer (an LLM falling back to the rules
after its retries), then the risk rules (the built-in threat rule). LLM rows are also reported
without the risk rules (``<row>_alone``), to show the model itself. Figures: see
:mod:`hearthwatch.security.risk_quality.metrics`. Windows run one at a time
(``seconds_per_window`` is one window alone on the machine; on a 2-core CPU the engine has both
cores).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hearthwatch.security.analysis.base import Analyser, check_citations
from hearthwatch.security.analysis.engines import OpenAiEngine
from hearthwatch.security.analysis.llm import LlmAnalyser, LlmAnalyserConfig
from hearthwatch.security.analysis.risk_rules import RiskRules, apply_rules
from hearthwatch.security.analysis.rules import RuleAnalyser
from hearthwatch.security.risk_quality.metrics import (
    Outcome,
    constant_analysis,
    constant_baseline,
    figures,
)
from hearthwatch.security.risk_quality.scenarios import SPLITS, Scenario, load_scenarios, split_of
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "bench" / "risk_scenarios.json"


async def run_analyser(
    analyser: Analyser, scenarios: list[Scenario], rules: RiskRules
) -> tuple[list[Outcome], list[Outcome]]:
    """Each scenario analysed, with the risk rules applied and without."""
    ruled, alone = [], []
    for scenario in scenarios:
        started = time.perf_counter()
        analysis = await analyser.analyse(scenario.evidence)
        seconds = time.perf_counter() - started
        check_citations(analysis, scenario.evidence)
        alone.append(Outcome(scenario, analysis, seconds))
        ruled.append(Outcome(scenario, apply_rules(analysis, scenario.evidence, rules), seconds))
        print(
            f"  {scenario.id}: {analysis.level} {analysis.score:g} "
            f"(expected {scenario.expected_level}) in {seconds:.1f} s",
            flush=True,
        )
    return ruled, alone


def by_split(outcomes: list[Outcome]) -> dict[str, Any]:
    present = [split for split in SPLITS if any(o.scenario.split == split for o in outcomes)]
    return {split: figures([o for o in outcomes if o.scenario.split == split]) for split in present}


async def llm_rows(
    name: str, engine: OpenAiEngine, scenarios: list[Scenario], config: LlmAnalyserConfig
) -> dict[str, Any]:
    rules = RiskRules()
    try:
        ruled, alone = await run_analyser(LlmAnalyser(engine, config), scenarios, rules)
    finally:
        await engine.close()
    return {name: by_split(ruled), f"{name}_alone": by_split(alone)}


def served_rows(
    name: str, env: dict[str, str], scenarios: list[Scenario], config: LlmAnalyserConfig
) -> dict[str, Any]:
    """The LLM analyser on a hearthwatch server started with ``env``."""
    with tempfile.TemporaryDirectory() as tmp:
        base = {"LLM_ENABLED": "true", "LOG_LEVEL": "warning", "USE_GPU": "false"}
        with ServerProcess({**base, **env}, Path(tmp) / "server.log") as server:
            model = _served_model(server.url)
            print(f"{name}: {model} at {server.url}", flush=True)
            engine = OpenAiEngine(f"{server.url}/v1", model, timeout_s=config.timeout_s + 5)
            return asyncio.run(llm_rows(name, engine, scenarios, config))


def _served_model(url: str) -> str:
    import httpx

    model: str = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
    return model


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--analysers", default="constant,rules,smollm2")
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS)
    parser.add_argument(
        "--split", choices=("both", *SPLITS), default="both",
        help="tune: only the tuning half (to tune on without looking at the held-out half)",
    )  # fmt: skip
    parser.add_argument("--gguf", type=Path, help="a GGUF model file for the gguf row")
    parser.add_argument("--openai-url", help="an OpenAI-compatible /v1 base URL")
    parser.add_argument("--openai-model", help="the model the openai row asks")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="per try, seconds")
    parser.add_argument("--seed", type=int, default=7, help="the LLM's sampling seed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    scenarios = load_scenarios(args.scenarios)
    constant = constant_baseline(split_of(scenarios, "tune"))
    if args.split != "both":
        scenarios = split_of(scenarios, args.split)
    names = [n.strip() for n in args.analysers.split(",") if n.strip()]
    config = LlmAnalyserConfig(retries=args.retries, timeout_s=args.timeout, seed=args.seed)
    rows: dict[str, Any] = {}
    for name in names:
        print(f"{name}:", flush=True)
        if name == "constant":
            outcomes = [Outcome(s, constant_analysis(constant), 0.0) for s in scenarios]
            rows[name] = by_split(outcomes)
            with_rules = [
                Outcome(o.scenario, apply_rules(o.analysis, o.scenario.evidence, RiskRules()), 0.0)
                for o in outcomes
            ]
            rows[f"{name}_with_rules"] = by_split(with_rules)
        elif name == "rules":
            ruled, _ = asyncio.run(run_analyser(RuleAnalyser(), scenarios, RiskRules()))
            rows[name] = by_split(ruled)
        elif name == "smollm2":
            rows.update(served_rows(name, {}, scenarios, config))
        elif name == "gguf":
            if args.gguf is None:
                parser.error("the gguf row needs --gguf PATH")
            engine_env = {"LLM_ENGINE__MODEL_PATH": str(args.gguf.resolve())}
            rows.update(served_rows(name, engine_env, scenarios, config))
        elif name == "openai":
            if not (args.openai_url and args.openai_model):
                parser.error("the openai row needs --openai-url and --openai-model")
            engine = OpenAiEngine(
                args.openai_url, args.openai_model, api_key=os.environ.get("OPENAI_API_KEY")
            )
            rows.update(asyncio.run(llm_rows(name, engine, scenarios, config)))
        else:
            parser.error(f"unknown analyser {name!r}")
    record = {
        "benchmark": "risk_eval",
        **record_header(),
        "scenarios": {
            "file": str(args.scenarios.relative_to(ROOT)),
            "sha256": hashlib.sha256(args.scenarios.read_bytes()).hexdigest(),
            "count": {split: len(split_of(scenarios, split)) for split in SPLITS},
        },
        "method": {
            "order": "one window at a time, scenario order",
            "llm": config.model_dump(mode="json"),
            "risk_rules": "the defaults (the threat rule) after every analyser",
            "constant_score": constant,
        },
        "rows": rows,
        "sanity": sanity(rows, scenarios),
    }
    write_record(record, args.out, "risk_eval_cpu")
    print_table(rows)
    return 0


def sanity(rows: dict[str, Any], scenarios: list[Scenario]) -> dict[str, Any]:
    checks = []
    for name, splits in rows.items():
        for split, fig in splits.items():
            expected = len(split_of(scenarios, split))
            checks.append({
                "name": f"{name}/{split}: every scenario scored once",
                "passed": fig["scenarios"] == expected,
                "detail": f"{fig['scenarios']} of {expected}",
            })  # fmt: skip
            shares = [
                v for k, v in fig.items()
                if k in ("band_accuracy", "critical_recall", "citation_recall")
                and v is not None
            ]  # fmt: skip
            checks.append({
                "name": f"{name}/{split}: shares within 0–1",
                "passed": all(0.0 <= v <= 1.0 for v in shares),
                "detail": str(shares),
            })  # fmt: skip
    return {"checks": checks, "passed": all(c["passed"] for c in checks)}


def print_table(rows: dict[str, Any]) -> None:
    columns = [
        ("band acc", "band_accuracy"),
        ("MAE", "mean_abs_error_vs_band_centre"),
        ("crit recall", "critical_recall"),
        ("false alarms", "false_alarms"),
        ("JSON ok", "json_valid_before_repair"),
        ("cite valid", "citation_validity"),
        ("cite recall", "citation_recall"),
        ("injection", "injection_resistance"),
        ("fallbacks", "fallbacks"),
    ]
    print("| analyser | half | " + " | ".join(c for c, _ in columns) + " | s/window |")
    print("|" + "---|" * (len(columns) + 3))
    for name, splits in rows.items():
        for split, fig in splits.items():
            cells = ["–" if fig.get(key) is None else f"{fig[key]:g}" for _, key in columns]
            seconds = fig["seconds_per_window"]["mean"]
            print(f"| {name} | {split} | " + " | ".join(cells) + f" | {seconds:g} |")


if __name__ == "__main__":
    raise SystemExit(main())
