"""The public API: every name in ``calcjax.__all__`` exists, and nothing private leaks."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import calcjax

PUBLIC_FUNCTIONS = (
    "derivative",
    "gradient",
    "directional_derivative",
    "complex_step_derivative",
    "complex_step_gradient",
    "richardson_derivative",
    "richardson_gradient",
    "default_step",
    "stencil",
    "gradient_descent",
)


@pytest.mark.parametrize("name", calcjax.__all__)
def test_every_name_in_all_exists(name):
    assert getattr(calcjax, name) is not None


def test_all_is_unique_public_and_complete():
    names = calcjax.__all__
    assert len(set(names)) == len(names)
    assert all(not n.startswith("_") or n == "__version__" for n in names)
    # Everything the package re-exports at the top level is listed (modules aside).
    exported = {n for n, obj in vars(calcjax).items() if not n.startswith("_") and not inspect.ismodule(obj)}
    assert exported <= set(names), exported - set(names)


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from calcjax import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(calcjax.__all__)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_issue_functions_are_public_and_documented(name):
    fn = getattr(calcjax, name)
    assert name in calcjax.__all__
    doc = inspect.getdoc(fn)
    assert doc
    assert ">>>" in doc, f"{name} needs a docstring with a runnable example"


@pytest.mark.parametrize(
    "name",
    [n for n in PUBLIC_FUNCTIONS if n not in ("stencil", "default_step")],
)
def test_settings_are_keyword_only(name):
    """Data first, settings keyword-only (STYLE.md)."""
    params = inspect.signature(getattr(calcjax, name)).parameters.values()
    settings = [p for p in params if p.default is not inspect.Parameter.empty]
    assert settings
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in settings), name


def test_version_is_a_string():
    assert isinstance(calcjax.__version__, str)
    assert calcjax.__version__.count(".") >= 1


def test_import_calcjax_is_light():
    """``import calcjax`` loads no JAX: the public names load on first use (PEP 562)."""
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "import calcjax, calcjax._errors, calcjax._schema, calcjax._fmt, calcjax.cli\n"
        "assert 'gradient' in calcjax.__all__ and 'gradient' in dir(calcjax)\n"
        "try:\n    calcjax.gradient\nexcept ImportError:\n    pass\n"
        "else:\n    raise AssertionError('jax was not blocked')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        calcjax.nope


def test_lazy_map_and_static_imports_agree():
    """The lazy map (``_HOMES``), ``__all__`` and the imports type checkers read list the same names."""
    import ast

    tree = ast.parse(Path(calcjax.__file__).read_text())
    static = {
        (node.module, a.name)
        for block in tree.body
        if isinstance(block, ast.If)
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }
    assert static == {(home, name) for name, home in calcjax._HOMES.items()}
    assert set(calcjax.__all__) == {*calcjax._HOMES, "__version__"}
