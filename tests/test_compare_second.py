"""``calcjax.compare_second_order`` and ``calcjax compare --order 2``: references, the reference row, the CLI.

References are hand-written Hessians or complex steps of the gradient (the
function's own choice); the row that computes the reference is labelled, not
graded against itself.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _compare_second
from calcjax._bench.tolerances import Tolerances
from calcjax._timing import time_call
from calcjax.cli import main

TOL = Tolerances()
FAST = [
    "fd-hessian",
    "jax-hessian",
    "complex-of-grad-hessian",
    "fd-hessdiag",
    "fd-of-grad",
    "hvp-forward-over-reverse",
]


def f(w):
    return jnp.sum(jnp.exp(w[:-1]) * w[1:] ** 2) + jnp.sum(w**3)


def hessian_np(w):
    w = np.asarray(w, np.float64)
    n = w.size
    h = np.diag(6.0 * w)
    for i in range(n - 1):
        e = np.exp(w[i])
        h[i, i] += e * w[i + 1] ** 2
        h[i, i + 1] += 2 * e * w[i + 1]
        h[i + 1, i] += 2 * e * w[i + 1]
        h[i + 1, i + 1] += 2 * e
    return h


X = np.linspace(-1.0, 1.0, 8)


@pytest.fixture(autouse=True)
def _fast_timing(monkeypatch):
    monkeypatch.setattr(
        _compare_second, "time_call", functools.partial(time_call, min_time=0.0, min_repeats=1)
    )


def _by_method(df):
    return {r["method"]: r for r in df.to_dict("records")}


def test_against_the_users_hessian_every_row_is_graded():
    df = calcjax.compare_second_order(f, X, methods=FAST, reference=hessian_np)
    rows = _by_method(df)
    assert df.attrs["reference"] == "analytic"
    assert not df["is_reference"].any()
    assert rows["fd-hessian"]["rel_error"] <= TOL.second_difference("float64")
    assert rows["fd-hessdiag"]["rel_error"] <= TOL.second_difference("float64")
    assert rows["fd-of-grad"]["rel_error"] <= TOL.fd("float64", 2)
    for name in ("jax-hessian", "complex-of-grad-hessian", "hvp-forward-over-reverse"):
        assert rows[name]["rel_error"] <= TOL.rounding("float64", ulps=64), name
    assert rows["fd-hessian"]["f_evals"] == 2 * 8 * 8 + 1
    assert rows["fd-of-grad"]["grad_evals"] == 2
    assert set(df.attrs["recommended"]) == {"hessian", "diagonal", "hvp"}


def test_a_wrong_reference_shows_in_every_error():
    df = calcjax.compare_second_order(f, X, methods=["jax-hessian"], reference=lambda w: 2 * hessian_np(w))
    assert df["rel_error"].iloc[0] == pytest.approx(0.5)


def test_complex_step_reference_labels_its_own_method():
    df = calcjax.compare_second_order(f, X, methods=FAST)
    assert df.attrs["reference"] == "complex-step"
    rows = _by_method(df)
    assert rows["complex-of-grad-hessian"]["is_reference"]
    assert not rows["jax-hessian"]["is_reference"]
    # the complex-step reference agrees with the hand-written Hessian
    assert rows["jax-hessian"]["rel_error"] <= TOL.rounding("float64", ulps=64)
    assert df.attrs["recommended"]["hessian"] != "complex-of-grad-hessian"  # the yardstick is no candidate
    text = _compare_second.format_second_table(df)
    line = next(li for li in text.splitlines() if li.startswith("complex-of-grad-hessian "))
    assert " reference " in line


def test_in_float32_the_reference_method_is_graded_too():
    df = calcjax.compare_second_order(f, X.astype(np.float32), methods=["complex-of-grad-hessian"])
    assert not df["is_reference"].iloc[0]
    assert df["rel_error"].iloc[0] <= TOL.rounding("float32", ulps=64)


def test_a_function_unsafe_for_complex_steps_falls_back_to_jax_hessian(capsys):
    g = lambda w: jnp.sum(jax.nn.softplus(w) * w)  # softplus drops the imaginary part
    df = calcjax.compare_second_order(g, X, methods=["jax-hessian", "fd-hessian"])
    assert df.attrs["reference"] == "jax.hessian-float64"
    assert _by_method(df)["jax-hessian"]["is_reference"]
    assert "not independent" in capsys.readouterr().err


def test_bad_input():
    with pytest.raises(ValueError, match="second-order method"):
        calcjax.compare_second_order(f, X, methods=["fd-central"])
    with pytest.raises(ValueError, match="8 x 8 Hessian"):
        calcjax.compare_second_order(f, X, methods=["jax-hessian"], reference=np.eye(3))
    with pytest.raises(ValueError, match="scalar"):
        calcjax.compare_second_order(lambda w: w**2, X)


USER_FILE = textwrap.dedent(
    """
    import jax.numpy as jnp

    def loss(w):
        return jnp.sum(jnp.exp(w[:-1]) * w[1:] ** 2) + jnp.sum(w**3)
    """
)


def test_cli_order_2(capsys, tmp_path: Path):
    path = tmp_path / "userloss.py"
    path.write_text(USER_FILE)
    argv = ["compare", f"{path}:loss", "--order", "2", "--n", "6", "--dtype", "float64", "--device", "cpu"]
    rc = main([*argv, "--methods", "fd-hessian,complex-of-grad-hessian,fd-of-grad"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "[3/3] fd-of-grad" in err
    assert "reference: complex steps of the gradient" in out
    assert "recommended for hessian: fd-hessian" in out
    assert "recommended for hvp: fd-of-grad" in out
    rc = main([*argv, "--methods", "fd-central"])
    assert rc != 0
    assert "valid: fd-hessian" in capsys.readouterr().err
