"""The one percentile summary every part reports: server statistics, the LLM's measured
targets, the load generator, the tuner and the benchmarks.

A leaf module (numpy only) below every layer, so the runtime, the LLM service and the
client-side tools can all use it. A pure function: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

P95_MIN_SAMPLES = 200
"""The fewest samples a P95 is reported from where tails must be supported."""
P99_MIN_SAMPLES = 1000
"""The fewest samples a P99 is reported from where tails must be supported."""

Percentiles = dict[str, float | int | None]
"""``samples`` (the count) and ``p50``, ``p95``, ``p99``, ``mean``, ``max`` (None without
samples, or a tail the count cannot support)."""


def percentiles(
    values: Iterable[float] | np.ndarray, *, supported_only: bool = False
) -> Percentiles:
    """P50, P95, P99, mean and max of ``values`` with their count.

    With ``supported_only`` (what a benchmark record reports) a tail percentile the count
    cannot support is None: P95 under :data:`P95_MIN_SAMPLES` samples, P99 under
    :data:`P99_MIN_SAMPLES`. Without it (live statistics over a recent window) every
    percentile is reported from whatever there is.
    """
    data = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    samples = int(data.size)
    if samples == 0:
        return {"samples": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = (float(v) for v in np.percentile(data, [50, 95, 99]))
    return {
        "samples": samples,
        "p50": p50,
        "p95": p95 if not supported_only or samples >= P95_MIN_SAMPLES else None,
        "p99": p99 if not supported_only or samples >= P99_MIN_SAMPLES else None,
        "mean": float(data.mean()),
        "max": float(data.max()),
    }
