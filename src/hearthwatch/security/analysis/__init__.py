"""Analysers, which turn a closed window's evidence into a scored, explained analysis, and
their registry: :data:`ANALYSERS` maps each analyser's name (the ``ANALYSER`` setting) to the
factory that builds it from its options and, for those that need one, the chat engine.

The protocol and the citation check are in :mod:`.base`, the rule-based analyser in
:mod:`.rules`, the LLM analyser in :mod:`.llm` (its engines in :mod:`.engines`), the risk rules
that apply after any analyser in :mod:`.risk_rules`. The registry is a read-only mapping built
once at import: thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hearthwatch.security.analysis.base import Analyser, AnalysisError
from hearthwatch.security.analysis.engines import ChatEngine
from hearthwatch.security.analysis.llm import LlmAnalyser
from hearthwatch.security.analysis.rules import RuleAnalyser

AnalyserFactory = Callable[[Mapping[str, Any], ChatEngine | None], Analyser]
"""Builds an analyser from its options (a mapping its own config validates; empty: defaults)
and the chat engine, when the server runs one."""


class UnknownAnalyserError(AnalysisError, LookupError):
    """An analyser name the registry does not hold."""


class MissingEngineError(AnalysisError, ValueError):
    """An analyser that needs a chat engine, built without one."""


def _rules(options: Mapping[str, Any], engine: ChatEngine | None) -> Analyser:
    return RuleAnalyser.from_options(options)


def _llm(options: Mapping[str, Any], engine: ChatEngine | None) -> Analyser:
    if engine is None:
        raise MissingEngineError(
            "the llm analyser needs the LLM service: enable it (LLM_ENABLED=true) or choose "
            "ANALYSER=rules"
        )
    return LlmAnalyser.from_options(options, engine)


ANALYSERS: Mapping[str, AnalyserFactory] = MappingProxyType({
    RuleAnalyser.name: _rules,
    LlmAnalyser.name: _llm,
})  # fmt: skip


def build_analyser(
    name: str, options: Mapping[str, Any] | None = None, engine: ChatEngine | None = None
) -> Analyser:
    """The analyser registered as ``name``, built with ``options`` and ``engine``.

    Raises :class:`UnknownAnalyserError` for a name not in :data:`ANALYSERS`,
    :class:`MissingEngineError` for one that needs an engine when there is none, and the
    analyser's own validation error (pydantic's ``ValidationError``) for bad options.
    """
    factory = ANALYSERS.get(name)
    if factory is None:
        raise UnknownAnalyserError(
            f"unknown analyser {name!r}; known: {', '.join(sorted(ANALYSERS))}"
        )
    return factory(options if options is not None else {}, engine)
