"""The record schema (calcjax._schema) against the registries and the benchmark suite that writes it."""

import ast
from pathlib import Path

import calcjax
from calcjax import _schema

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_method_order_is_the_registry():
    assert len(set(_schema.METHOD_ORDER)) == len(_schema.METHOD_ORDER)
    assert set(_schema.METHOD_ORDER) == set(calcjax.METHODS)


def test_problem_order_is_the_registry():
    assert _schema.PROBLEM_ORDER == tuple(calcjax.PROBLEMS)


def _suites_written_by_the_bench() -> set[str]:
    suites = set()
    for path in BENCH.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "suite" and isinstance(node.value, ast.Constant):
                suites.add(node.value.value)
    return suites


def test_every_suite_the_bench_writes_is_known():
    written = _suites_written_by_the_bench()
    assert written, "found no suite= in bench/"
    assert written == set(_schema.SUITES)


def test_field_lists_are_consistent():
    assert set(_schema.BASE_FIELDS) <= set(_schema.FIELDS)
    assert set(_schema.FIELDS.values()) <= {"text", "int", "number", "step", "numbers", "any"}
    typed = (*_schema.TEXT_FIELDS, *_schema.INT_FIELDS, *_schema.NUMBER_FIELDS)
    assert len(set(typed)) == len(typed)
    assert _schema.DTYPE_ORDER == _schema.DTYPES


def test_loss_history_has_the_name_of_the_descent_result_field():
    assert _schema.LOSSES_FIELD in calcjax.DescentResult._fields


def test_schema_imports_the_standard_library_only():
    tree = ast.parse(Path(_schema.__file__).read_text())
    modules = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__"}


def _record_keywords() -> set[str]:
    """Every keyword given to ``bench.record(...)``/``record_gradient(...)`` by the suite."""
    found = set()
    paths = [*BENCH.glob("test_*.py"), Path(_schema.__file__).parent / "_bench" / "harness.py"]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("record", "record_gradient", "update"):
                    found |= {k.arg for k in node.keywords if k.arg}
    return found


def test_every_field_the_bench_writes_is_in_the_schema():
    known = set(_schema.FIELDS) | set(_schema.OTHER_FIELDS)
    arguments = {"group", "inst", "result", "case"}  # record_gradient's own arguments, not fields
    written = _record_keywords() - arguments
    assert {"suite", "problem", "rel_error", _schema.LOSSES_FIELD} <= written
    assert written <= known, written - known
