"""Load-test and tuning reports: JSON, PNG plots and a Markdown and HTML summary that embeds
them. Plots: latency distribution, percentile bars per profile, latency and throughput over
time, the throughput-versus-latency curve of a sweep, and the tuner's knee and P95 at the knee
per configuration. Functions of their arguments, run on the caller's thread."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hearthwatch.tuning.choice import Choice, SweepPoint  # noqa: E402
from hearthwatch.tuning.loadtest import ProfileResult  # noqa: E402


def _latencies(result: ProfileResult) -> np.ndarray:
    return np.array([(r.done_s - r.scheduled_s) * 1000 for r in result.records if r.status == 200])


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_distribution(results: Sequence[ProfileResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for result in results:
        values = _latencies(result)
        if values.size:
            ax.hist(values, bins=40, alpha=0.55, label=result.name)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title("Latency distribution by profile")
    ax.legend()
    return _save(fig, path)


def plot_percentiles(results: Sequence[ProfileResult], sla_ms: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [r.name for r in results]
    x = np.arange(len(names))
    for offset, key in zip((-0.25, 0, 0.25), ("p50", "p95", "p99"), strict=True):
        values = [r.summary.latency_ms[key] or 0.0 for r in results]
        ax.bar(x + offset, values, width=0.25, label=key.upper())
    ax.axhline(sla_ms, color="red", linestyle="--", label=f"P95 SLA {sla_ms:g} ms")
    ax.set_xticks(x, names)
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency percentiles by profile")
    ax.legend()
    return _save(fig, path)


def plot_timeline(results: Sequence[ProfileResult], path: Path) -> Path:
    fig, (lat_ax, rate_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for result in results:
        ok = [r for r in result.records if r.status == 200]
        if not ok:
            continue
        lat_ax.plot(
            [r.sent_s for r in ok], [(r.done_s - r.sent_s) * 1000 for r in ok], ".", ms=3,
            label=result.name,
        )  # fmt: skip
        done = np.array([r.done_s for r in ok])
        edges = np.arange(0, done.max() + 1.0, 1.0)
        counts, _ = np.histogram(done, edges)
        rate_ax.step(edges[:-1], counts, where="post", label=result.name)
    lat_ax.set_ylabel("latency (ms)")
    lat_ax.set_title("Latency and throughput over time")
    lat_ax.legend()
    rate_ax.set_xlabel("seconds since the profile started")
    rate_ax.set_ylabel("responses / s")
    return _save(fig, path)


def plot_sweep(sweep: ProfileResult, sla_ms: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = sweep.steps
    throughput = [s.summary.achieved_rps for s in steps]
    p95 = [s.summary.latency_ms["p95"] or np.nan for s in steps]
    ax.plot(throughput, p95, "o-")
    for step, x, y in zip(steps, throughput, p95, strict=True):
        ax.annotate(
            f"{step.summary.offered_rps:.3g}/s", (x, y), textcoords="offset points", xytext=(4, 4)
        )
    ax.axhline(sla_ms, color="red", linestyle="--", label=f"P95 SLA {sla_ms:g} ms")
    ax.set_xlabel("achieved throughput (responses / s)")
    ax.set_ylabel("P95 latency (ms)")
    ax.set_title("Sweep: throughput against latency (labels: offered rate)")
    ax.legend()
    return _save(fig, path)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _p95(latency: Mapping[str, Any]) -> str:
    """The P95, or where too few samples withhold it, the slowest request the verdict took."""
    if latency.get("p95") is not None:
        return _fmt(latency["p95"])
    return f"– (max {_fmt(latency.get('max'))})" if latency.get("samples") else "–"


TABLE_HEADER = (
    "profile", "verdict", "measured", "200", "other statuses", "throughput/s", "P50 ms", "P95 ms",
    "P99 ms", "TTFT P50 / P99 ms", "output tok/s", "client late P95 (max) ms",
)  # fmt: skip


def _table(results: Sequence[ProfileResult]) -> list[list[str]]:
    rows = [list(TABLE_HEADER)]
    for r in results:
        s = r.summary
        llm = s.extra.get("llm")
        others = {k: v for k, v in s.statuses.items() if k != "200"}
        ttft = f"{_fmt(llm['ttft_ms']['p50'])} / {_fmt(llm['ttft_ms']['p99'])}" if llm else "–"
        rows.append([
            r.name, "PASS" if r.passed else "FAIL", str(s.scheduled_in_window),
            str(s.statuses.get("200", 0)), json.dumps(others) if others else "none",
            f"{s.achieved_rps:.2f}", _fmt(s.latency_ms["p50"]), _p95(s.latency_ms),
            _fmt(s.latency_ms["p99"]), ttft, _fmt(llm["output_tokens_per_s_total"]) if llm else "–",
            _fmt(s.lateness_ms.get("p95") or s.lateness_ms.get("max")),
        ])  # fmt: skip
    return rows


def write_load_report(
    results: Sequence[ProfileResult], out_dir: Path, sla_ms: float, meta: Mapping[str, Any]
) -> dict[str, Path]:
    """report.json, the plots and report.md / report.html in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "distribution": plot_distribution(results, out_dir / "latency_distribution.png"),
        "percentiles": plot_percentiles(results, sla_ms, out_dir / "percentiles.png"),
        "timeline": plot_timeline(results, out_dir / "timeline.png"),
    }
    sweeps = [r for r in results if r.steps]
    if sweeps:
        files["sweep"] = plot_sweep(sweeps[0], sla_ms, out_dir / "sweep.png")
    behind = [r.name for r in results if r.summary.fell_behind] + [
        s.name for r in results for s in r.steps if s.summary.fell_behind
    ]
    report = {
        **dict(meta),
        "p95_sla_ms": sla_ms,
        "load_generator_fell_behind": behind,
        "profiles": [r.as_dict() for r in results],
    }
    files["json"] = out_dir / "report.json"
    files["json"].write_text(json.dumps(report, indent=2) + "\n")
    summary = _summary(results, sla_ms, meta, behind, files)
    files["markdown"] = _write_markdown(summary, out_dir)
    files["html"] = _write_html(summary, out_dir)
    return files


@dataclass(frozen=True)
class _Summary:
    """What both the Markdown and the HTML summary say."""

    title: str
    sla_ms: float
    rows: list[list[str]]
    notes: list[str]
    images: list[Path]


def _summary(
    results: Sequence[ProfileResult],
    sla_ms: float,
    meta: Mapping[str, Any],
    behind: list[str],
    files: Mapping[str, Path],
) -> _Summary:
    notes = [f"{r.name}: {r.note}" for r in results if r.note]
    if behind:
        notes.append(f"the load generator fell behind its schedule in: {', '.join(behind)}")
    images = [files[k] for k in ("percentiles", "distribution", "timeline", "sweep") if k in files]
    return _Summary(f"Load test: {meta.get('target', '')}", sla_ms, _table(results), notes, images)


def _write_markdown(summary: _Summary, out_dir: Path) -> Path:
    rows = summary.rows
    lines = [f"# {summary.title}", "", f"P95 SLA: {summary.sla_ms:g} ms.", ""]
    lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    lines += ["", *(f"- {note}" for note in summary.notes), ""] if summary.notes else [""]
    lines += [f"![{p.stem}]({p.name})" for p in summary.images]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_html(summary: _Summary, out_dir: Path) -> Path:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in summary.rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in summary.rows[1:]
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in summary.notes)
    images = "".join(f'<p><img src="{p.name}" alt="{p.stem}"></p>' for p in summary.images)
    title = html.escape(summary.title)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>P95 SLA: {summary.sla_ms:g} ms.</p>"
        f"<table border='1' cellpadding='4'><tr>{head}</tr>{body}</table><ul>{notes}</ul>{images}"
        "</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page)
    return path


def plot_tuning(points: Sequence[SweepPoint], choice: Choice, sla_ms: float, path: Path) -> Path:
    """Each configuration's knee (left) and the P95 in its window (right) against the batch
    size, one line per queue delay; a configuration without a knee is left out."""
    fig, (tp_ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    with_knee = any(p.knee_rps is not None for p in points)
    if not with_knee:
        tp_ax.text(
            0.5, 0.5, "no configuration met the rule", ha="center", transform=tp_ax.transAxes
        )
    for delay in sorted({p.queue_delay_ms for p in points}):
        pts = sorted(
            (p for p in points if p.queue_delay_ms == delay and p.knee_rps is not None),
            key=lambda p: p.batch_size,
        )
        sizes = [p.batch_size for p in pts]
        tp_ax.plot(sizes, [p.knee_rps for p in pts], "o-", label=f"delay {delay:g} ms")
        lat_ax.plot(
            sizes, [np.nan if p.p95_ms is None else p.p95_ms for p in pts], "o-",
            label=f"delay {delay:g} ms",
        )  # fmt: skip
    chosen = choice.point
    if chosen is not None:
        tp_ax.plot([chosen.batch_size], [chosen.knee_rps], "r*", ms=14, label="chosen")
        p95 = np.nan if chosen.p95_ms is None else chosen.p95_ms
        lat_ax.plot([chosen.batch_size], [p95], "r*", ms=14, label="chosen")
    lat_ax.axhline(sla_ms, color="red", linestyle="--", label=f"SLA {sla_ms:g} ms")
    for ax, label in (
        (tp_ax, "knee: achieved at the highest rate meeting the rule (/s)"),
        (lat_ax, "P95 at the knee, from the scheduled send (ms)"),
    ):
        if with_knee:
            ax.set_xscale("log", base=2)
        ax.set_xlabel("max batch size")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("Batch-size sweep on the real server path: open-loop Poisson knees")
    return _save(fig, path)
