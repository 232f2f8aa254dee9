"""Failure isolation for a batch that failed as a whole: bisect it so that only the items at
fault get an error and every other item its result.

For one failing item in a batch of n this costs at most ceil(log2 n) + 1 runs: each step runs
one half of the items still suspected; a half that succeeds is answered, a half that fails
becomes the new suspect set and the other half waits, and everything that waited runs together
once at the end. An item left alone in the suspect set is at fault: it gets the error of the
smallest failing run it was part of. The runs are bounded by what finding two failing items
costs, so a fault that is not any item's (a broken model fails every run) stops there and the
items not yet answered share the last error. A pure function: it runs ``run`` on the calling
thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _attempt(
    run: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]
) -> Sequence[R] | BaseException:
    try:
        outputs = run(items)
    except Exception as exc:
        return exc
    if len(outputs) != len(items):
        return RuntimeError(f"run returned {len(outputs)} results for {len(items)} inputs")
    return outputs


def isolate_failures(
    run: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T], error: BaseException
) -> list[R | BaseException]:
    """Per item of ``items`` (whose run as one batch raised ``error``), its result or the error
    that belongs to it. ``run`` raises on failure."""
    results: list[R | BaseException] = [error] * len(items)
    runs_left = 2 * (math.ceil(math.log2(len(items))) + 1) if items else 0
    suspects, suspect_error = list(range(len(items))), error  # known to fail together
    waiting: list[int] = []  # not run since their batch failed
    while suspects and runs_left > 0:
        if len(suspects) == 1:
            results[suspects[0]] = suspect_error
            log.warning("batch item %d failed on its own: %r", suspects[0], suspect_error)
            group, rest, suspects, waiting = waiting, [], [], []
            if not group:
                break
        else:
            half = len(suspects) // 2
            group, rest = suspects[:half], suspects[half:]
        runs_left -= 1
        outcome = _attempt(run, [items[i] for i in group])
        if isinstance(outcome, BaseException):
            waiting.extend(rest)
            suspects, suspect_error = group, outcome
        else:
            for i, value in zip(group, outcome, strict=True):
                results[i] = value
            suspects = rest
    if suspects or waiting:
        log.warning(
            "bisection stopped; %d items share %r", len(suspects) + len(waiting), suspect_error
        )
        for i in suspects + waiting:
            results[i] = suspect_error
    return results
