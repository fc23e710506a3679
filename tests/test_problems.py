"""Test problems: their JAX function, NumPy twin, start point and analytic reference gradient.

The references are checked against a complex-step gradient of the NumPy twin:
NumPy only, no JAX and no finite-difference cancellation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _problems

SCALABLE = ("quadratic", "rosenbrock", "logistic", "mlp")
TUTORIAL = ("square", "linear", "tutorial-quadratic")


@functools.lru_cache
def _instance(name, dtype="float64", n=12):
    return calcjax.get_problem(name).instance(n, dtype)


def _complex_step_np(f_np, x):
    """``Im f(x + i h e_k) / h`` for each k, in NumPy complex128: independent of JAX."""
    h = 1e-20
    z = x.astype(np.complex128)
    return np.array([np.imag(f_np(z + 1j * h * e)) / h for e in np.eye(x.size)])


def test_the_registry_holds_the_issue_problems():
    assert set(SCALABLE) | set(TUTORIAL) <= set(calcjax.PROBLEMS)
    assert set(_problems.SCALABLE) == set(SCALABLE)
    assert set(_problems.TUTORIAL) == set(TUTORIAL)


@pytest.mark.parametrize("name", calcjax.PROBLEMS)
def test_reference_gradient_is_the_derivative_of_the_numpy_twin(name):
    inst = _instance(name)
    ref = inst.reference_gradient()
    np.testing.assert_allclose(ref, _complex_step_np(inst.f_np, inst.x0_np), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", calcjax.PROBLEMS)
def test_reference_gradient_at_another_point(flatten, name):
    """reference_gradient(x) takes a pytree like x0 and is evaluated there, not at x0."""
    inst = _instance(name)
    x = jax.tree_util.tree_map(lambda a: 0.7 * a - 0.1, inst.x0)
    x_flat = flatten(x)
    np.testing.assert_allclose(
        inst.reference_gradient(x), _complex_step_np(inst.f_np, x_flat), rtol=1e-13, atol=1e-15
    )


@pytest.mark.parametrize("name", calcjax.PROBLEMS)
def test_jax_function_agrees_with_the_twin_and_the_reference(tol, flatten, dtype, name):
    inst = _instance(name, dtype)
    f_jax, g = jax.jit(jax.value_and_grad(inst.f))(inst.x0)
    f_np = float(inst.f_np(inst.x0_np))
    assert float(f_jax) == pytest.approx(f_np, rel=tol.rounding(dtype, ulps=64), abs=tol.rounding(dtype))
    # and jax.grad of the JAX function agrees with the analytic reference (both ways independent)
    g = flatten(g)
    ref = inst.reference_gradient()
    assert np.linalg.norm(g - ref) <= tol.rounding(dtype, ulps=256) * (np.linalg.norm(ref) + abs(f_np))


@pytest.mark.parametrize("name", calcjax.PROBLEMS)
def test_instance_fields(flatten, dtype, name):
    inst = _instance(name, dtype)
    assert inst.name == name
    assert inst.dtype == dtype
    leaves = jax.tree_util.tree_leaves(inst.x0)
    assert all(leaf.dtype == jnp.dtype(dtype) for leaf in leaves)
    assert all(leaf.dtype == jnp.dtype(dtype) for leaf in jax.tree_util.tree_leaves(inst.data))
    assert inst.n == sum(leaf.size for leaf in leaves) == inst.x0_np.size
    assert inst.x0_np.dtype == np.dtype(dtype)
    assert inst.x0_np.ndim == 1
    np.testing.assert_array_equal(flatten(inst.x0), inst.x0_np.astype(np.float64))
    # f is f_data with the data bound
    assert inst.f.func is inst.f_data
    assert inst.f.keywords == {"data": inst.data}
    # the NumPy unflatten gives x0's structure back
    back = inst.unflatten_np(inst.x0_np)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(inst.x0)
    assert inst.reference_gradient().dtype == np.float64


@pytest.mark.parametrize("name", SCALABLE)
def test_instances_are_deterministic(flatten, name):
    a = calcjax.get_problem(name).instance(20, "float64")
    b = calcjax.get_problem(name).instance(20, "float64")
    np.testing.assert_array_equal(a.x0_np, b.x0_np)
    for da, db in zip(jax.tree_util.tree_leaves(a.data), jax.tree_util.tree_leaves(b.data), strict=True):
        np.testing.assert_array_equal(da, db)
    assert a.f_np(a.x0_np) == b.f_np(b.x0_np)


@pytest.mark.parametrize("name", SCALABLE)
@pytest.mark.parametrize("n", [12, 40])
def test_scalable_problems_scale(name, n):
    inst = calcjax.get_problem(name).instance(n, "float64")
    if name == "mlp":  # hidden width round((n - 1) / (inputs + 2)): about n parameters
        hidden = round((n - 1) / (_problems.MLP_INPUTS + 2))
        assert inst.n == hidden * (_problems.MLP_INPUTS + 2) + 1
        assert abs(inst.n - n) <= _problems.MLP_INPUTS + 2
    else:
        assert inst.n == n


def test_mlp_parameters_are_a_dict():
    inst = _instance("mlp")
    assert isinstance(inst.x0, dict)
    assert set(inst.x0) == {"W1", "b1", "W2", "b2"}
    hidden = inst.x0["b1"].shape[0]
    assert inst.x0["W1"].shape == (_problems.MLP_INPUTS, hidden)
    assert inst.x0["W2"].shape == (hidden,)
    assert inst.x0["b2"].shape == ()


def test_quadratic_is_ill_conditioned():
    inst = calcjax.get_problem("quadratic").instance(30, "float64")
    d = np.asarray(inst.data["d"])
    assert d.min() == pytest.approx(1.0)
    assert d.max() / d.min() == pytest.approx(_problems.QUADRATIC_CONDITION)
    # the gradient is d * x
    np.testing.assert_allclose(inst.reference_gradient(), d * inst.x0_np)


def test_rosenbrock_minimum_has_zero_gradient():
    inst = calcjax.get_problem("rosenbrock").instance(6, "float64")
    np.testing.assert_array_equal(inst.reference_gradient(np.ones(6)), np.zeros(6))
    assert float(inst.f(jnp.ones(6))) == 0.0
    np.testing.assert_array_equal(inst.x0_np, np.tile([-1.2, 1.0], 3))


def test_logistic_data_shape():
    inst = calcjax.get_problem("logistic").instance(7, "float64")
    assert inst.data["a"].shape == (_problems.LOGISTIC_ROWS, 7)
    assert set(np.unique(np.asarray(inst.data["y"]))) == {-1.0, 1.0}
    assert calcjax.get_problem("logistic").data_bytes(7) == 8 * _problems.LOGISTIC_ROWS * 7


@pytest.mark.parametrize(
    ("name", "x0", "grad"),
    [
        ("square", [5.0], [10.0]),
        ("linear", [2.0, 1.0], [3.0, 1.0]),  # d(w x + b)/dw = x = 3, d/db = 1
        ("tutorial-quadratic", [1.0, -2.0], [2.0, -8.0]),
    ],
)
def test_tutorial_problems(name, x0, grad):
    problem = calcjax.get_problem(name)
    assert not problem.scalable
    inst = problem.instance(dtype="float64")
    assert inst.n == len(x0)
    np.testing.assert_array_equal(inst.x0_np, x0)
    np.testing.assert_array_equal(inst.reference_gradient(), grad)
    assert inst.n == problem.fixed_n


def test_fixed_size_problems_ignore_n():
    assert calcjax.get_problem("linear").instance(1000, "float32").n == 2


# --------------------------------------------------------------------------- errors


def test_unknown_problem_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown problem 'himmelblau'; valid: square, linear, .*mlp"):
        calcjax.get_problem("himmelblau")


@pytest.mark.parametrize(
    ("name", "n", "message"),
    [
        ("rosenbrock", 7, "the extended Rosenbrock problem needs an even n, got n=7"),
        ("rosenbrock", 0, "n must be an integer >= 2 for problem 'rosenbrock', got 0"),
        ("quadratic", None, "n must be an integer >= 1 for problem 'quadratic', got None"),
        ("quadratic", 4.0, "n must be an integer >= 1 for problem 'quadratic', got 4.0"),
        ("quadratic", True, "n must be an integer >= 1 for problem 'quadratic', got True"),
        ("mlp", 10, "n must be an integer >= 11 for problem 'mlp', got 10"),
    ],
)
def test_bad_n_is_refused(name, n, message):
    with pytest.raises(ValueError, match=message):
        calcjax.get_problem(name).instance(n, "float64")


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex128"])
def test_bad_dtype_is_refused(dtype):
    with pytest.raises(TypeError, match=f"dtype must be float32 or float64, got {dtype}"):
        calcjax.get_problem("quadratic").instance(4, dtype)


def test_float64_problem_without_x64_says_how_to_switch_it_on():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r"float64 problems need jax\.config\.update"):
            calcjax.get_problem("quadratic").instance(4, "float64")
