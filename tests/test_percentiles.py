"""The one percentile summary: plain for live statistics, tails withheld below the sample
counts that support them for benchmark records."""

from __future__ import annotations

import numpy as np

from hearthwatch.percentiles import P95_MIN_SAMPLES, P99_MIN_SAMPLES, percentiles


def test_no_samples_reports_nothing_but_the_count() -> None:
    assert percentiles([]) == {
        "samples": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None,
    }  # fmt: skip


def test_percentiles_of_whatever_there_is() -> None:
    summary = percentiles(iter(range(1, 101)))  # any iterable
    assert summary["samples"] == 100
    assert summary["p50"] == 50.5 and summary["max"] == 100 and summary["mean"] == 50.5
    assert summary["p95"] == np.percentile(np.arange(1, 101), 95)
    assert summary["p99"] == np.percentile(np.arange(1, 101), 99)


def test_supported_only_withholds_the_tails_the_count_cannot_support() -> None:
    few = percentiles(np.ones(P95_MIN_SAMPLES - 1), supported_only=True)
    assert few["p50"] == 1.0 and few["p95"] is None and few["p99"] is None
    some = percentiles(np.ones(P95_MIN_SAMPLES), supported_only=True)
    assert some["p95"] == 1.0 and some["p99"] is None
    many = percentiles(np.ones(P99_MIN_SAMPLES), supported_only=True)
    assert many["p95"] == 1.0 and many["p99"] == 1.0
