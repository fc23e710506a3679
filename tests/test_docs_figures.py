"""Figures in the code and docs are tied to runs or tests (issue 16): none measured by hand in a docstring.

A docstring or comment in ``calcjax/`` may explain a rule, give a setting or show
a doctest, but a timing or a measured error belongs to a benchmark run (and the
README names that committed run) or to a test that asserts it. This test scans
the prose (docstrings less their doctest lines, comments, less quoted text) for
the shapes such figures take. The README's one accuracy claim about the step
rule is asserted below.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import calcjax

PACKAGE = Path(calcjax.__file__).resolve().parent
#: A time (``0.18 s``, ``70 ms``, ``25 us``), a measured error (``2.6e-13``), a measured speed-up.
MEASURED = [
    re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|min)\b(?!\w)"),
    re.compile(r"(?<![\w.])\d\.\d+e-\d+"),
    re.compile(r"\bmeasured (?:on|at)\b.*\d", re.IGNORECASE),
    re.compile(r"\d(?:\.\d+)?\s?[x×] (?:slower|faster)"),
]
#: Quoted text (a format example, a literal) is not a claim.
_QUOTED = re.compile(r"``[^`]*``|\"[^\"]*\"|'[^']*'")


def _prose(path: Path):
    """``(line, text)`` of every docstring line outside doctests and every comment of ``path``."""
    src = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc:
            continue
        in_doctest = False
        for k, line in enumerate(doc.splitlines()):
            text = line.strip()
            if text.startswith((">>>", "...")):
                in_doctest = True
            elif not text:
                in_doctest = False
            elif not in_doctest:  # a doctest's expected output is not prose
                yield node.body[0].lineno + k, text
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string


def measured_figures(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, text in _prose(path):
            bare = _QUOTED.sub("", text)
            if any(p.search(bare) for p in MEASURED):
                found.append(f"{path.relative_to(root.parent)}:{line}: {text}")
    return found


def test_no_docstring_or_comment_holds_a_measured_figure():
    found = measured_figures(PACKAGE)
    assert not found, "measured figures in the code (move them to a run or a test):\n" + "\n".join(found)


def test_the_scan_finds_the_figures_it_was_written_for(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        '"""Fast: 0.18 s instead of 10.6 s on a 2-core EPYC."""\n'
        "X = 1  # fourth order: 1.0e-10 to 2.6e-13\n"
        "Y = 2  # measured on a 2-core EPYC at n = 1e3, 1 MiB was 2x slower\n"
        'def f():\n    """Format.\n\n    >>> fmt(0.5)\n    \'500 ms\'\n    """\n'
    )
    assert [s.split(":")[1] for s in measured_figures(pkg)] == ["1", "2", "3"]


# The README's claim about the quarter step of orders 4 and 6 (Details, "Automatic step"),
# measured here rather than written down: fourth-order central, float64, at x = 1.
_UNIT_SCALE = [
    (lambda t: t**2, lambda t: 2 * t),
    (jnp.sin, np.cos),
    (jnp.exp, np.exp),
]


def _error(f, df, h=None) -> float:
    x = jnp.float64(1.0)
    return abs(float(calcjax.derivative(f, x, order=4, h=h)) - df(1.0)) / abs(df(1.0))


def test_the_quarter_step_gains_over_100x_on_exp10x():
    f, df = (lambda t: jnp.exp(10 * t)), (lambda t: 10 * np.exp(10 * t))
    full = float(np.finfo(np.float64).eps) ** (1 / 5)  # the step without the quarter
    assert _error(f, df) * 100 < _error(f, df, h=full)


@pytest.mark.parametrize(("f", "df"), _UNIT_SCALE, ids=["x**2", "sin", "exp"])
def test_the_quarter_step_keeps_unit_scale_functions_within_1e_12(f, df):
    assert _error(f, df) <= 1e-12
