"""The issue's "Done when" numbers, as tests (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax


def test_derivative_of_sin():
    d = calcjax.derivative(jnp.sin, 1.0)
    assert d.dtype == jnp.float64
    assert abs(float(d) - np.cos(1.0)) / np.cos(1.0) <= 1e-9


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_gradient_of_each_scalable_problem_at_n_1000(flatten, problem):
    inst = calcjax.get_problem(problem).instance(1000, "float64")
    g = jax.jit(calcjax.gradient, static_argnums=0)(inst.f, inst.x0)
    ref = inst.reference_gradient()
    assert np.linalg.norm(flatten(g) - ref) / np.linalg.norm(ref) <= 1e-7


def test_richardson_at_sin_1():
    est = calcjax.richardson_derivative(jnp.sin, 1.0)
    assert abs(float(est.value) - np.cos(1.0)) <= 1e-12
    assert abs(float(est.value) - np.cos(1.0)) <= float(est.error)


def test_complex_step_at_sin_1():
    d = calcjax.complex_step_derivative(jnp.sin, 1.0)
    assert abs(float(d) - np.cos(1.0)) / np.cos(1.0) <= 2e-16
