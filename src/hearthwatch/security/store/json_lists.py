"""A SQL test on JSON list columns that reads the same on SQLite and PostgreSQL:
``json_list_has(Event.labels, "person")`` is true where the list holds that text.

Compiled per dialect (``json_each`` on SQLite, ``jsonb`` containment on PostgreSQL); any other
dialect refuses to compile it. Stateless: safe on any thread.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class json_list_has(FunctionElement[bool]):  # lower case: it reads as a SQL function
    """``json_list_has(column, text)``: the JSON list in ``column`` holds ``text``."""

    type = Boolean()
    name = "json_list_has"
    inherit_cache = True


@compiles(json_list_has)
def _elsewhere(element: json_list_has, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"json_list_has is not written for {compiler.dialect.name}")


@compiles(json_list_has, "sqlite")
def _on_sqlite(element: json_list_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {value})"


@compiles(json_list_has, "postgresql")
def _on_postgresql(element: json_list_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST({column} AS JSONB) @> jsonb_build_array(CAST({value} AS TEXT)))"
