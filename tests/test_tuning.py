"""The tuner's choice rule, the tuned file the server loads, and a real sweep end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import Server

from hearthwatch.cli import main
from hearthwatch.config import load_settings
from hearthwatch.tuning.choice import SweepPoint, choose


def curve(sla_breaks_at: int | None = None, memory_total: int | None = None) -> list[SweepPoint]:
    """Throughput that saturates (100, 180, 230, 260, 265, 266) and latency that grows;
    batch b holds b × 100 bytes."""
    rows = [(1, 100, 12), (2, 180, 15), (4, 230, 22), (8, 260, 40), (16, 265, 75), (32, 266, 140)]
    return [
        SweepPoint(
            b,
            5.0,
            tp,
            p95 * 0.6,
            p95,
            p95 * 1.2,
            0,
            peak_memory_bytes=b * 100,
            memory_total_bytes=memory_total,
        )
        for b, tp, p95 in rows
    ]


def test_smallest_batch_within_ten_percent_of_the_peak() -> None:
    choice = choose(curve(), p95_sla_ms=100)
    assert choice.point is not None and choice.point.batch_size == 8  # 260 >= 0.9 * 266 > 230
    assert "within 10%" in choice.reason


def test_the_sla_excludes_fast_but_slow_to_answer_configurations() -> None:
    choice = choose(curve(), p95_sla_ms=30)
    assert choice.point is not None and choice.point.batch_size == 4
    assert "the fastest that does" in choice.reason
    assert choose(curve(), p95_sla_ms=5).point is None


def test_memory_reserve_and_errors_rule_points_out() -> None:
    points = curve(memory_total=700)  # 10 % reserve leaves 630 bytes: batches 8 and up are out
    choice = choose(points, p95_sla_ms=200, memory_reserve_percent=10)
    assert choice.point is not None and choice.point.batch_size == 4  # the peak is now 230
    broken = [SweepPoint(1, 5, 10, 1, 2, 3, errors=3)]
    assert choose(broken, 100).point is None
    with pytest.raises(ValueError, match="p95_sla_ms"):
        choose(points, 0)


def test_the_server_applies_the_tuned_file_under_file_and_environment(tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.yml"
    tuned.write_text(
        yaml.safe_dump({"models": {"detector": {"max_batch_size": 12, "max_queue_delay_ms": 3.5}}})
    )
    loaded = load_settings(environ={"TUNED_CONFIG_FILE": str(tuned)})
    assert (loaded.settings.max_batch_size, loaded.settings.max_queue_delay_ms) == (12, 3.5)
    assert {r.name: r.source for r in loaded.describe()}["max_batch_size"] == f"tuned:{tuned}"
    env = load_settings(environ={"TUNED_CONFIG_FILE": str(tuned), "MAX_BATCH_SIZE": "2"})
    assert env.settings.max_batch_size == 2 and env.settings.max_queue_delay_ms == 3.5
    other = load_settings(environ={"TUNED_CONFIG_FILE": str(tuned), "MODEL_NAME": "other"})
    assert other.settings.max_batch_size == 8  # the entry is for another model


def test_tune_sweeps_the_real_server_writes_the_file_and_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USE_GPU", "false")
    monkeypatch.delenv("TUNED_CONFIG_FILE", raising=False)
    tuned, report = tmp_path / "tuned.yml", tmp_path / "report"
    argv = [
        "tune",
        "--batch-sizes",
        "1,2",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--p95-sla-ms",
        "5000",
    ]
    argv += ["--width", "320", "--height", "240", "--output", str(tuned), "--report", str(report)]
    assert main(argv) == 0
    written = yaml.safe_load(tuned.read_text())["models"]["detector"]
    assert written["max_batch_size"] in (1, 2) and written["max_queue_delay_ms"] == 5.0
    assert len(written["sweep"]) == 2 and all(p["throughput_rps"] > 0 for p in written["sweep"])
    assert all(p["peak_memory_bytes"] > 0 for p in written["sweep"])
    assert json.loads((report / "tune_report.json").read_text())["choice"] is not None
    assert (report / "tune.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["tune", "--show", "--output", str(tuned)]) == 0
    shown = capsys.readouterr().out
    assert "measured" in shown
    batch = written["max_batch_size"]
    assert f"max_batch_size = {batch}  (tuned:{tuned})" in shown


def test_loadtest_command_writes_a_report_against_the_server(
    hog_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["loadtest", "--url", hog_server.url, "--route", "v2", "--out", str(tmp_path)]
    argv += [
        "--profiles",
        "single,burst,sustained",
        "--single-count",
        "3",
        "--burst",
        "4",
        "--rate",
        "4",
    ]
    argv += ["--duration", "1.5", "--p95-sla-ms", "5000", "--width", "320", "--height", "240"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 3
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["profile"] for p in report["profiles"]] == ["single", "burst", "sustained"]
    assert report["profiles"][1]["sent"] == 4
    for name in (
        "percentiles.png",
        "latency_distribution.png",
        "timeline.png",
        "report.md",
        "report.html",
    ):
        assert (tmp_path / name).stat().st_size > 500, name
    assert "![percentiles](percentiles.png)" in (tmp_path / "report.md").read_text()
