"""What every analyser is: the :class:`Analyser` protocol, the errors an analysis may raise,
and :func:`check_citations`, the check the pipeline runs on every answer.

An analyser turns a closed window's :class:`~hearthwatch.security.evidence.WindowEvidence` into
an :class:`~hearthwatch.security.evidence.Analysis` whose every reason cites detection ids of
that evidence. Plain definitions and a pure function: thread-safe.
"""

from __future__ import annotations

from typing import Protocol

from hearthwatch.security.evidence import Analysis, WindowEvidence


class Analyser(Protocol):
    """Turns one closed window into an analysis; ``name`` is its key in the registry
    (:func:`hearthwatch.security.analysis.build_analyser`) and the ``analyser`` of its
    answers."""

    name: str

    async def analyse(self, evidence: WindowEvidence) -> Analysis: ...


class AnalysisError(Exception):
    """Base of the errors an analyser or the analysis checks raise on purpose."""


class EvidenceError(AnalysisError, ValueError):
    """Evidence an analyser cannot use (a window without detections, an unknown time zone)."""


class CitationError(AnalysisError, ValueError):
    """An analysis with a reason that cites no detection, or one the evidence does not hold:
    a bug of the analyser that produced it."""


def check_citations(analysis: Analysis, evidence: WindowEvidence) -> None:
    """Raise :class:`CitationError` unless every reason of ``analysis`` cites at least one
    detection id and only ids of ``evidence``'s detections."""
    known = {detection.id for detection in evidence.detections}
    for index, reason in enumerate(analysis.reasons):
        if not reason.detection_ids:
            raise CitationError(
                f"{analysis.analyser}: reason {index} ({reason.text!r}) cites no detection"
            )
        unknown = sorted(set(reason.detection_ids) - known)
        if unknown:
            raise CitationError(
                f"{analysis.analyser}: reason {index} ({reason.text!r}) cites detection ids "
                f"{unknown} not in window {evidence.window_id}"
            )
