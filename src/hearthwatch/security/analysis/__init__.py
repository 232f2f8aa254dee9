"""Analysers, which turn a closed window's evidence into a scored, explained analysis, and
their registry: :data:`ANALYSERS` maps each analyser's name (the ``ANALYSER`` setting) to the
factory that builds it from its options.

The protocol and the citation check are in :mod:`.base`, the rule-based analyser in
:mod:`.rules`. The registry is a read-only mapping built once at import: thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hearthwatch.security.analysis.base import Analyser, AnalysisError
from hearthwatch.security.analysis.rules import RuleAnalyser

AnalyserFactory = Callable[[Mapping[str, Any]], Analyser]
"""Builds an analyser from its options (a mapping its own config validates; empty: defaults)."""

ANALYSERS: Mapping[str, AnalyserFactory] = MappingProxyType({
    RuleAnalyser.name: RuleAnalyser.from_options,
})  # fmt: skip


class UnknownAnalyserError(AnalysisError, LookupError):
    """An analyser name the registry does not hold."""


def build_analyser(name: str, options: Mapping[str, Any] | None = None) -> Analyser:
    """The analyser registered as ``name``, built with ``options``.

    Raises :class:`UnknownAnalyserError` for a name not in :data:`ANALYSERS`, and the
    analyser's own validation error (pydantic's ``ValidationError``) for bad options.
    """
    factory = ANALYSERS.get(name)
    if factory is None:
        raise UnknownAnalyserError(
            f"unknown analyser {name!r}; known: {', '.join(sorted(ANALYSERS))}"
        )
    return factory(options if options is not None else {})
