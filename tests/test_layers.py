"""The import graph points downward only (DESIGN.md, "Layers"): every module's imports, those
inside functions and under ``TYPE_CHECKING`` included, are read with ``ast`` and checked
against the layer rules; the runtime's sub-packages keep their own order, two levels deep at
most; and the server's import path never reaches the client-side tools or matplotlib."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hearthwatch"

FORBIDDEN = {
    "runtime": {"api", "app", "llm", "security", "tuning", "cli"},
    "llm": {"api", "app", "runtime", "security", "tuning", "cli"},
    "security": {"api", "app", "tuning", "cli"},
    "api": {"app", "tuning", "cli"},
    "tuning": {"api", "app", "cli"},
    "app": {"tuning", "cli"},
    "weights": {"api", "app", "llm", "runtime", "security", "tuning", "cli", "evaluation"},
    "evaluation": {"api", "app", "llm", "runtime", "security", "tuning", "cli", "weights"},
}
"""Per layer (the first name under ``hearthwatch``), the layers it may not import. ``api`` is
below ``app``: the routers read the services through ``api.state.Services``, a protocol, and
never import the composition root, not even for typing."""

LEAVES = {"percentiles", "processes"}
"""Shared helpers at the bottom: they import nothing of hearthwatch."""

CONFIG_IMPORTS = {
    "hearthwatch.llm.engines.registry": "module",  # the engine plugins' settings: pydantic only
    "hearthwatch.runtime.detection.settings": "module",  # the detector plugins' settings
    "hearthwatch.runtime.accel.optimize": "lazy",
    "hearthwatch.security.analysis.risk_rules": "lazy",  # checked only with the pipeline on
}
"""What the settings module may import, and how: ``lazy`` only inside a function or under
``TYPE_CHECKING``, so importing the settings imports no torch."""

RUNTIME_ORDER = (
    "errors",
    "observability",
    "imaging",
    "accel",
    "detection",
    "serving",
    "zoo",
    "enrichment",
)
"""The runtime's parts from the bottom up: each imports only those before it (and itself)."""


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (for ``from a import b``: ``a.b`` when that is a module)
    line: int
    lazy: bool  # inside a function or under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), True)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), lazy)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    dotted = f"{base}.{alias.name}"
                    target = dotted if _is_module(dotted) else base
                    found.append(Import(module, target, child.lineno, lazy))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _layer(dotted: str) -> str | None:
    """The layer of a hearthwatch module: the first name under ``hearthwatch``, with the
    command-line modules (``cli``, ``cli_cameras`` …) all ``cli``."""
    parts = dotted.split(".")
    if parts[0] != "hearthwatch" or len(parts) < 2:
        return None
    return "cli" if parts[1].startswith("cli_") else parts[1]


ALL = [
    (path, found)
    for path in sorted(PACKAGE.rglob("*.py"))
    for found in [i for i in _imports(path) if i.target.split(".")[0] == "hearthwatch"]
]


def _where(path: Path, found: Import) -> str:
    return f"{path.relative_to(SRC.parent)}:{found.line} imports {found.target}"


def test_the_parser_sees_imports_in_functions_and_under_type_checking() -> None:
    config = {i.target: i.lazy for i in _imports(PACKAGE / "config.py")}
    assert config["hearthwatch.llm.engines.registry"] is False
    assert config["hearthwatch.runtime.accel.optimize"] is True
    cli = {i.target for i in _imports(PACKAGE / "cli.py")}
    assert {"hearthwatch.app.server", "hearthwatch.tuning.report"} <= cli  # in functions


def test_no_layer_imports_a_layer_above_it() -> None:
    wrong = [
        _where(path, found)
        for path, found in ALL
        if _layer(found.target) in FORBIDDEN.get(_layer(found.module) or "", set())
    ]
    assert not wrong, "imports pointing upward:\n" + "\n".join(wrong)


def test_the_shared_helpers_import_nothing_of_hearthwatch() -> None:
    wrong = [_where(path, found) for path, found in ALL if _layer(found.module) in LEAVES]
    assert not wrong, "\n".join(wrong)


def test_the_settings_import_the_plugin_registries_only_and_the_heavy_ones_lazily() -> None:
    wrong = []
    for path, found in ALL:
        if found.module != "hearthwatch.config":
            continue
        allowed = CONFIG_IMPORTS.get(found.target)
        if allowed is None or (allowed == "lazy" and not found.lazy):
            wrong.append(_where(path, found))
    assert not wrong, "\n".join(wrong)


def test_the_runtime_parts_import_only_those_below_them() -> None:
    def part(dotted: str) -> str | None:
        parts = dotted.split(".")
        return parts[2] if parts[:2] == ["hearthwatch", "runtime"] and len(parts) > 2 else None

    wrong = []
    for path, found in ALL:
        mine, theirs = part(found.module), part(found.target)
        if mine is None or theirs is None:
            continue
        assert mine in RUNTIME_ORDER and theirs in RUNTIME_ORDER, _where(path, found)
        if RUNTIME_ORDER.index(theirs) > RUNTIME_ORDER.index(mine):
            wrong.append(_where(path, found))
    assert not wrong, "runtime imports pointing upward:\n" + "\n".join(wrong)


def test_the_runtime_is_two_levels_deep_at_most() -> None:
    runtime = PACKAGE / "runtime"
    deep = [p for p in runtime.rglob("*.py") if len(p.relative_to(runtime).parts) > 2]
    assert not deep, deep
    packages = {p.parent.name for p in runtime.glob("*/__init__.py")}
    assert packages == set(RUNTIME_ORDER) - {"errors"}


def test_every_package_says_what_is_loop_confined_and_what_is_thread_safe() -> None:
    for init in [*(PACKAGE / "runtime").glob("*/__init__.py"), PACKAGE / "app" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Threading" in doc and ("thread-safe" in doc or "any thread" in doc), init


PROBE = """
import json, sys
import hearthwatch.cli
from hearthwatch.app.server import create_app
from hearthwatch.app.services import build_services
from hearthwatch.config import Settings

settings = Settings(use_gpu=False, warmup=False, models_dir="absent")
create_app(settings).openapi()
services = build_services(settings)
services.decoder.shutdown()
print(json.dumps(sorted(
    m for m in sys.modules if m.split(".")[0] == "matplotlib" or m.startswith("hearthwatch.tuning")
)))
"""


@pytest.mark.timeout(120)
def test_the_server_imports_neither_the_tuning_tools_nor_matplotlib(tmp_path: Path) -> None:
    """The app and its services built as ``hearthwatch serve`` builds them (LLM and
    enrichment included), in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == []


PIPELINE_OFF_PROBE = """
import json, sys
from hearthwatch.app.server import create_app
from hearthwatch.app.services import build_services
from hearthwatch.config import Settings

settings = Settings(use_gpu=False, warmup=False, models_dir="absent", pipeline_enabled=False)
create_app(settings).openapi()
services = build_services(settings)
services.decoder.shutdown()
print(json.dumps(sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("sqlalchemy", "alembic", "av", "psycopg")
    or m.startswith("hearthwatch.security")
)))
"""


@pytest.mark.timeout(120)
def test_with_the_pipeline_off_the_server_imports_none_of_its_dependencies(
    tmp_path: Path,
) -> None:
    """PIPELINE_ENABLED=false: the vision and LLM services start where SQLAlchemy, Alembic
    and PyAV are absent, because nothing imports them (nor the camera application)."""
    out = subprocess.run(
        [sys.executable, "-c", PIPELINE_OFF_PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == []
