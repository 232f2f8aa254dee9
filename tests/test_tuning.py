"""The tuner's choice rule, the knee search it runs per configuration, the tuned file the
server loads, and a real sweep end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import Server

from hearthwatch.cli import main
from hearthwatch.config import load_settings
from hearthwatch.tuning.choice import SweepPoint, choose
from hearthwatch.tuning.method import Method, Point, find_knee
from hearthwatch.tuning.tuner import SweepPlan, sweep_point


def knees(
    *rows: tuple[int, float, float | None], memory_total: int | None = None
) -> list[SweepPoint]:
    """Sweep points from (batch, delay, knee) rows; batch b holds b × 100 bytes."""
    return [
        SweepPoint(
            batch_size=b,
            queue_delay_ms=d,
            knee_rps=k,
            knee_offered_rps=None if k is None else k * 1.02,
            lowest_failing_rps=None if k is None else k * 1.06,
            p95_ms=None if k is None else 40.0,
            samples=0 if k is None else 300,
            peak_memory_bytes=b * 100,
            memory_total_bytes=memory_total,
        )
        for b, d, k in rows
    ]


SATURATING = [(1, 5.0, 100.0), (2, 5.0, 180.0), (4, 5.0, 230.0), (8, 5.0, 262.0),
              (16, 5.0, 265.0), (32, 5.0, 266.0)]  # fmt: skip


def test_the_highest_knee_wins_and_knees_within_the_resolution_go_to_the_smaller_batch() -> None:
    choice = choose(knees(*SATURATING), resolution=0.05)
    assert choice.point is not None and choice.point.batch_size == 8  # 262 >= 0.95 * 266 > 230
    assert "highest knee 266/s" in choice.reason and "5%" in choice.reason
    finer = choose(knees(*SATURATING), resolution=0.01)  # 265 >= 0.99 * 266 > 262
    assert finer.point is not None and finer.point.batch_size == 16


def test_a_tie_goes_to_the_shorter_delay_but_a_clearly_higher_knee_beats_it() -> None:
    tie = choose(knees((4, 10.0, 200.0), (4, 2.0, 196.0), (8, 2.0, 150.0)), resolution=0.05)
    assert tie.point is not None and (tie.point.batch_size, tie.point.queue_delay_ms) == (4, 2.0)
    clear = choose(knees((4, 10.0, 220.0), (4, 2.0, 196.0), (2, 2.0, 150.0)), resolution=0.05)
    assert clear.point is not None and clear.point.queue_delay_ms == 10.0


def test_configurations_without_a_knee_or_outside_the_memory_reserve_are_out() -> None:
    no_knee = knees((1, 5.0, None), (2, 5.0, 120.0), (4, 5.0, None))
    chosen = choose(no_knee, resolution=0.05).point
    assert chosen is not None and chosen.batch_size == 2
    nothing = choose(knees((1, 5.0, None), (2, 5.0, None)), resolution=0.05)
    assert nothing.point is None and "knee rule" in nothing.reason
    tight = knees(*SATURATING, memory_total=700)  # 10 % reserve: 630 bytes, batch 8 and up out
    kept = choose(tight, resolution=0.05, memory_reserve_percent=10)
    assert kept.point is not None and kept.point.batch_size == 4  # the highest knee is now 230
    assert choose(tight, resolution=0.05, memory_reserve_percent=0).point is not None
    assert choose(knees((8, 5.0, 10.0), memory_total=700), resolution=0.05).point is None
    with pytest.raises(ValueError, match="resolution"):
        choose(tight, resolution=0)
    with pytest.raises(ValueError, match="memory_reserve_percent"):
        choose(tight, memory_reserve_percent=100)


def test_a_knee_that_was_never_bracketed_is_called_a_lower_bound() -> None:
    (point,) = knees((2, 5.0, 50.0))
    unbracketed = SweepPoint(**{**point.__dict__, "lowest_failing_rps": None})
    assert "lower bound" in choose([unbracketed]).reason
    assert "lower bound" not in choose([point]).reason


def synthetic_point(rate: float, capacity: float, window: float = 20.0) -> Point:
    """What a server of ``capacity`` requests/s answers at ``rate``: everything below it, with
    a P95 that grows as it fills; at most its capacity above it, with a queue that grows."""
    arrived = round(rate * window)
    served = min(arrived, round(capacity * window))
    p95 = 20.0 / max(1e-3, 1 - min(rate, capacity) / capacity) if rate < capacity else 5000.0
    latency = {"samples": served, "p50": p95 / 2, "p95": p95, "p99": None, "mean": p95 / 2,
               "max": p95}  # fmt: skip
    return Point(
        offered_rps=rate, window_s=window, scheduled_in_window=arrived, served_from_window=served,
        errors=0, statuses={"200": arrived}, achieved_rps=served / window, latency_ms=latency,
        lateness_ms={"samples": arrived, "p50": 0.5}, client_cpu_share=0.1, machine_busy=0.5,
    )  # fmt: skip


def test_each_configuration_is_summed_up_by_its_knee_found_by_bisection() -> None:
    method = Method(window_s=20, warmup_s=1, sla_p95_ms=200.0, resolution=0.05, max_probes=12)
    capacity = 80.0  # the P95 passes 200 ms at 90 % of it: the knee is the SLA's, near 72/s
    search = find_knee(lambda rate: synthetic_point(rate, capacity), 10.0, method)
    point = sweep_point(4, 2.0, search, peak_memory_bytes=123, memory_total_bytes=1000)
    assert point.knee_offered_rps is not None and point.lowest_failing_rps is not None
    assert point.knee_offered_rps < 72.0 < point.lowest_failing_rps
    assert point.lowest_failing_rps - point.knee_offered_rps <= 0.05 * point.lowest_failing_rps
    assert point.knee_rps == pytest.approx(round(point.knee_offered_rps * 20) / 20)
    assert point.p95_ms is not None and point.p95_ms <= 200.0 and point.samples >= 200
    assert (point.batch_size, point.queue_delay_ms, point.probes) == (4, 2.0, len(search.probes))
    assert (point.peak_memory_bytes, point.memory_total_bytes) == (123, 1000)
    nothing = find_knee(lambda rate: synthetic_point(rate, 0.01), 10.0, method)
    assert sweep_point(1, 2.0, nothing).knee_rps is None


def test_the_served_fraction_is_judged_against_the_arrivals_in_the_window() -> None:
    """Poisson arrivals at 10/s may put 173 requests in a 20 s window, not 200: a server that
    answered every one of them passes; one that left 27 of 200 unanswered does not."""
    method = Method(window_s=20, served_fraction=0.95)
    lucky = synthetic_point(10.0, 100.0)
    all_served = Point(**{**lucky.as_dict(), "scheduled_in_window": 173, "served_from_window": 173,
                          "achieved_rps": 173 / 20})  # fmt: skip
    behind = Point(**{**lucky.as_dict(), "scheduled_in_window": 200, "served_from_window": 173,
                      "achieved_rps": 173 / 20})  # fmt: skip
    assert all_served.passes(method) and not behind.passes(method)


def test_a_p95_sla_needs_windows_that_can_hold_a_p95() -> None:
    with pytest.raises(ValueError, match="min_requests >= 200"):
        SweepPlan((1,), (5.0,), Method(sla_p95_ms=100, min_requests=50))
    SweepPlan((1,), (5.0,), Method(sla_p95_ms=None, min_requests=50))
    with pytest.raises(ValueError, match="batch sizes"):
        SweepPlan((), (5.0,), Method())


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


def test_tune_finds_each_configurations_knee_on_the_real_server_and_writes_the_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two configurations of the HOG server, each searched with tiny windows; small frames keep
    it fast."""
    monkeypatch.setenv("USE_GPU", "false")
    monkeypatch.setenv("DETECTOR__TYPE", "hog")  # the fastest detector: the tuner is the subject
    monkeypatch.delenv("TUNED_CONFIG_FILE", raising=False)
    tuned, report = tmp_path / "tuned.yml", tmp_path / "report"
    sla = 5000.0
    argv = ["tune", "--batch-sizes", "1,2", "--window", "0.5", "--warmup", "0.2"]
    argv += ["--max-probes", "3", "--p95-sla-ms", str(sla), "--width", "128", "--height", "128"]
    argv += ["--output", str(tuned), "--report", str(report)]
    assert main(argv) == 0
    written = yaml.safe_load(tuned.read_text())["models"]["detector"]
    assert written["method"]["arrivals"] == "poisson" and written["method"]["window_s"] == 0.5
    assert f"P95 <= {sla:g} ms" in written["method"]["knee_rule"]
    sweep = written["sweep"]
    assert [(p["batch_size"], p["queue_delay_ms"]) for p in sweep] == [(1, 5.0), (2, 5.0)]
    for point in sweep:  # every configuration met the rule somewhere: it is generous
        assert point["knee_rps"] > 0 and 2 <= point["probes"] <= 3
        assert point["samples"] >= 200 and point["p95_ms"] <= sla
        assert point["peak_memory_bytes"] > 0
    best = max(p["knee_rps"] for p in sweep)
    ties = [p for p in sweep if p["knee_rps"] >= 0.95 * best]
    assert written["max_batch_size"] == min(p["batch_size"] for p in ties)
    assert written["measured"]["knee_rps"] == pytest.approx(
        next(p["knee_rps"] for p in sweep if p["batch_size"] == written["max_batch_size"]), 1e-3
    )
    record = json.loads((report / "tune_report.json").read_text())
    assert record["choice"]["batch_size"] == written["max_batch_size"]
    for search, point in zip(record["searches"], sweep, strict=True):
        assert len(search["probes"]) == point["probes"]
        knee = search["knee"]
        assert knee["offered_rps"] == pytest.approx(point["knee_offered_rps"])
        assert knee["errors"] == 0 and knee["window_s"] >= 0.5
        assert knee["achieved_rps"] >= 0.95 * knee["scheduled_in_window"] / knee["window_s"]
    assert record["sanity"]["checks"] and "passed" in record["sanity"]
    assert (report / "tune.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["tune", "--show", "--output", str(tuned)]) == 0
    shown = capsys.readouterr().out
    assert "knee_rps" in shown
    batch = written["max_batch_size"]
    assert f"max_batch_size = {batch}  (tuned:{tuned})" in shown


def test_a_configuration_whose_lone_request_misses_the_sla_is_not_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USE_GPU", "false")
    monkeypatch.setenv("DETECTOR__TYPE", "hog")  # the fastest detector: the tuner is the subject
    monkeypatch.delenv("TUNED_CONFIG_FILE", raising=False)
    tuned, report = tmp_path / "tuned.yml", tmp_path / "report"
    argv = ["tune", "--batch-sizes", "1", "--p95-sla-ms", "0.01", "--width", "128"]
    argv += ["--height", "128", "--output", str(tuned), "--report", str(report)]
    started = time.monotonic()
    assert main(argv) == 1  # nothing met the rule: nothing is written
    assert time.monotonic() - started < 60  # no windows were measured
    assert not tuned.exists()
    record = json.loads((report / "tune_report.json").read_text())
    assert record["choice"] is None and record["sweep"][0]["knee_rps"] is None
    assert record["sweep"][0]["probes"] == 0 and record["sweep"][0]["lone_request_ms"] > 0.01
    assert "a lone request takes" in record["searches"][0]["note"]
    assert (report / "tune.png").stat().st_size > 10_000
    assert "nothing written" in capsys.readouterr().err


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
    argv += ["--duration", "3", "--warmup", "0.5", "--arrival", "constant", "--p95-sla-ms", "5000"]
    argv += ["--width", "320", "--height", "240"]  # 12 requests 0.25 s apart, each inside
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 3
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["profile"] for p in report["profiles"]] == ["single", "burst", "sustained"]
    assert report["profiles"][1]["scheduled_in_window"] == 4
    assert report["method"]["window_s"] == 3 and report["sanity"]["checks"]
    for name in (
        "percentiles.png",
        "latency_distribution.png",
        "timeline.png",
        "report.md",
        "report.html",
    ):
        assert (tmp_path / name).stat().st_size > 500, name
    assert "![percentiles](percentiles.png)" in (tmp_path / "report.md").read_text()
