"""calcjax._finite_diff's accuracy targets, asserted case by case (from the issues that set them).

Float64 unless said; scalar cases x**2 at x in {-3..3}, sin(1), exp(1), exp(10x) at x = 1.
The error is relative (absolute where the exact derivative is 0, i.e. x**2 at 0):

- central differences with the automatic step: <= 1e-9 (float32: <= 5e-4);
- fourth-order central differences (automatic step): <= 1e-12;
- Richardson extrapolation: <= 1e-13, and its error estimate honest (true error <= 10x estimate);
- complex step: <= 2e-16.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax

_square = lambda t: t**2

#: (name, f, exact derivative in NumPy float64, x)
CASES = [
    *[(f"x**2 at {x}", _square, lambda t: 2 * t, float(x)) for x in range(-3, 4)],
    ("sin at 1", jnp.sin, np.cos, 1.0),
    ("exp at 1", jnp.exp, np.exp, 1.0),
    ("exp(10x) at 1", lambda t: jnp.exp(10 * t), lambda t: 10 * np.exp(10 * t), 1.0),
]
IDS = [c[0] for c in CASES]

#: The targets: (method, dtype) -> largest relative error allowed.
TARGETS = {
    ("central", "float64"): 1e-9,
    ("central", "float32"): 5e-4,
    ("central4", "float64"): 1e-12,
    ("richardson", "float64"): 1e-13,
    ("complex", "float64"): 2e-16,
}

#: An error estimate is honest when the true error is at most this many times the estimate.
HONEST_FACTOR = 10.0


def _params(method: str):
    return [pytest.param(*case, id=case[0]) for case in CASES]


def _error(value, exact: float) -> float:
    err = abs(float(value) - exact)
    return err / abs(exact) if exact != 0 else err


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "f", "df", "x"), _params("central"))
def test_central_automatic_step(name, f, df, x, dtype):
    d = calcjax.derivative(f, jnp.asarray(x, dtype))
    assert d.dtype == jnp.dtype(dtype)
    assert _error(d, float(df(x))) <= TARGETS[("central", dtype)]


@pytest.mark.parametrize(("name", "f", "df", "x"), _params("central4"))
def test_fourth_order_central(name, f, df, x):
    d = calcjax.derivative(f, jnp.float64(x), order=4)
    assert _error(d, float(df(x))) <= TARGETS[("central4", "float64")]


@pytest.mark.parametrize(("name", "f", "df", "x"), _params("richardson"))
def test_richardson(name, f, df, x):
    est = calcjax.richardson_derivative(f, jnp.float64(x))
    assert _error(est.value, float(df(x))) <= TARGETS[("richardson", "float64")]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "f", "df", "x"), _params("estimate"))
def test_richardson_estimate_is_honest(name, f, df, x, dtype):
    est = calcjax.richardson_derivative(f, jnp.asarray(x, dtype))
    true_error = abs(float(est.value) - float(df(x)))
    assert true_error <= HONEST_FACTOR * float(est.error)


@pytest.mark.parametrize(("name", "f", "df", "x"), _params("complex"))
def test_complex_step(name, f, df, x):
    d = calcjax.complex_step_derivative(f, jnp.float64(x))
    assert _error(d, float(df(x))) <= TARGETS[("complex", "float64")]


def test_targets_hold_under_jit_and_vectorised():
    """The x**2 cases as one array of points, under jax.jit: the same errors as one by one."""
    xs = jnp.arange(-3.0, 4.0, dtype=jnp.float64)
    central = jax.jit(calcjax.derivative, static_argnums=0)(_square, xs)
    rich = jax.jit(lambda t: calcjax.richardson_derivative(_square, t))(xs)
    cs = jax.jit(lambda t: calcjax.complex_step_derivative(_square, t))(xs)
    exact = 2 * np.arange(-3.0, 4.0)
    for x, exact_i, c, r, z in zip(np.asarray(xs), exact, central, rich.value, cs, strict=True):
        assert _error(c, exact_i) <= TARGETS[("central", "float64")], x
        assert _error(r, exact_i) <= TARGETS[("richardson", "float64")], x
        assert _error(z, exact_i) <= TARGETS[("complex", "float64")], x


# ------------------------------------------------------------------- the first issue's targets (float64)


def test_first_issue_derivative_of_sin():
    d = calcjax.derivative(jnp.sin, 1.0)
    assert d.dtype == jnp.float64
    assert abs(float(d) - np.cos(1.0)) / np.cos(1.0) <= 1e-9


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_first_issue_gradient_of_each_scalable_problem_at_n_1000(flatten, problem):
    inst = calcjax.get_problem(problem).instance(1000, "float64")
    g = jax.jit(calcjax.gradient, static_argnums=0)(inst.f, inst.x0)
    ref = inst.reference_gradient()
    assert np.linalg.norm(flatten(g) - ref) / np.linalg.norm(ref) <= 1e-7


def test_first_issue_richardson_at_sin_1():
    est = calcjax.richardson_derivative(jnp.sin, 1.0)
    assert abs(float(est.value) - np.cos(1.0)) <= 1e-12
    assert abs(float(est.value) - np.cos(1.0)) <= float(est.error)


def test_first_issue_complex_step_at_sin_1():
    d = calcjax.complex_step_derivative(jnp.sin, 1.0)
    assert abs(float(d) - np.cos(1.0)) / np.cos(1.0) <= 2e-16
