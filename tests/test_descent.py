"""gradient_descent: the tutorial's x**2 for every registry method, pytrees, transforms, one compile.

On ``f(x) = x**2`` with ``lr = 0.1`` from ``x0 = 5``, ``x_k = 5 * 0.8**k`` and
``losses[k] = f(x_k) = 25 * 0.64**k`` exactly: that is the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _descent, baselines

STEPS = 10


def square(x):
    """The tutorial's loss; one module-level object, so the compiled loop is reused."""
    return x**2


def _expected(x0, lr, steps):
    k = np.arange(steps + 1)
    xs = x0 * (1.0 - 2.0 * lr) ** k
    return xs, xs**2


#: float32 runs a few methods (one of each kind); float64 runs the whole registry but the
#: stochastic methods (their descents are tested below, against their own estimates).
FLOAT32_METHODS = ("ad-reverse", "fd-central", "numpy-loop")
DETERMINISTIC = tuple(name for name, m in calcjax.METHODS.items() if not m.stochastic)
STOCHASTIC = tuple(name for name, m in calcjax.METHODS.items() if m.stochastic)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [("float64", name) for name in DETERMINISTIC] + [("float32", name) for name in FLOAT32_METHODS],
)
def test_every_method_reproduces_the_tutorial_and_compiles_once(tol, dtype, name):
    method = calcjax.METHODS[name]
    if method.unavailable():
        pytest.skip(method.unavailable())
    # each step's gradient error compounds over the steps (x shrinks by 0.8 a step)
    rtol = STEPS * tol.method(method, dtype)
    x0 = jnp.asarray(5.0, dtype)
    res = calcjax.gradient_descent(square, x0, lr=0.1, steps=STEPS, method=name)
    assert isinstance(res, calcjax.DescentResult)
    assert res.losses.shape == (STEPS + 1,)
    assert res.x.dtype == res.losses.dtype == jnp.dtype(dtype)
    xs, losses = _expected(5.0, 0.1, STEPS)
    np.testing.assert_allclose(np.asarray(res.losses, np.float64), losses, rtol=2 * rtol)
    assert float(res.x) == pytest.approx(xs[-1], rel=rtol)

    # a second call with another start and rate reuses the compiled loop
    compiled = _descent._run._cache_size()
    again = calcjax.gradient_descent(square, jnp.asarray(4.0, dtype), lr=0.2, steps=STEPS, method=name)
    assert _descent._run._cache_size() == compiled
    xs, losses = _expected(4.0, 0.2, STEPS)
    np.testing.assert_allclose(np.asarray(again.losses, np.float64), losses, rtol=2 * rtol)


def test_done_when_ten_steps_of_ad_reverse_and_fd_central():
    """The issue's target: 5 * 0.8**10 after 10 steps for ad-reverse and fd-central, one compile each."""
    for method, rtol in [("ad-reverse", 1e-15), ("fd-central", 1e-9)]:
        first = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=10, method=method)
        compiled = _descent._run._cache_size()
        for _ in range(3):
            res = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=10, method=method)
        assert _descent._run._cache_size() == compiled
        assert float(res.x) == pytest.approx(5 * 0.8**10, rel=rtol)
        np.testing.assert_array_equal(res.losses, first.losses)


def test_loss_history_is_f_at_each_point():
    """losses[k] = f(x_k) for k = 0..steps, the start and the end included."""
    f = lambda x: jnp.sum(jnp.sin(x) + x**2)
    x0 = jnp.asarray([0.5, -1.5])
    res = calcjax.gradient_descent(f, x0, lr=0.05, steps=4)
    x = np.asarray(x0)
    for k in range(5):
        assert float(res.losses[k]) == pytest.approx(float(np.sum(np.sin(x) + x**2)), rel=1e-14)
        if k < 4:
            x = x - 0.05 * (np.cos(x) + 2 * x)
    np.testing.assert_allclose(res.x, x, rtol=1e-14)


def test_zero_steps_returns_the_start():
    res = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=0)
    assert float(res.x) == 5.0
    np.testing.assert_array_equal(res.losses, [25.0])


@pytest.mark.parametrize(("method", "rtol"), [("ad-reverse", 1e-12), ("fd-central", 1e-7)])
def test_pytree_descent_follows_the_analytic_gradient(flatten, method, rtol):
    """The MLP's dict parameters, against a NumPy loop on its hand-written backprop gradient."""
    inst = calcjax.get_problem("mlp").instance(21, "float64")
    lr, steps = 0.05, 5
    res = calcjax.gradient_descent(inst.f, inst.x0, lr=lr, steps=steps, method=method)
    assert jax.tree_util.tree_structure(res.x) == jax.tree_util.tree_structure(inst.x0)
    x = inst.x0_np.copy()
    losses = []
    for _ in range(steps):
        losses.append(inst.f_np(x))
        x = x - lr * inst.reference_gradient(inst.unflatten_np(x))
    losses.append(inst.f_np(x))
    np.testing.assert_allclose(flatten(res.x), x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(res.losses, losses, rtol=rtol)
    assert res.losses[-1] < res.losses[0]


def test_host_method_on_a_pytree():
    """A NumPy method inside the compiled loop (pure_callback) gets and returns the pytree."""
    p0 = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(3.0)}
    f = lambda p: jnp.sum(p["a"] ** 2) + p["b"] ** 2
    res = calcjax.gradient_descent(f, p0, lr=0.1, steps=3, method="numpy-loop")
    np.testing.assert_allclose(res.x["a"], np.asarray([1.0, -2.0]) * 0.8**3, rtol=1e-9)
    np.testing.assert_allclose(res.x["b"], 3.0 * 0.8**3, rtol=1e-9)


def test_method_as_a_callable_and_as_an_object():
    def exact(f, x):
        return 2 * x

    for method in (exact, calcjax.METHODS["ad-forward"]):
        res = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=STEPS, method=method)
        assert float(res.x) == pytest.approx(5 * 0.8**STEPS, rel=1e-15)


def test_descent_under_jit_with_traced_start_and_rate():
    run = jax.jit(
        lambda x0, lr: calcjax.gradient_descent(square, x0, lr=lr, steps=STEPS, method="fd-central")
    )
    for x0, lr in [(5.0, 0.1), (3.0, 0.25)]:
        res = run(x0, lr)
        _, losses = _expected(x0, lr, STEPS)
        np.testing.assert_allclose(res.losses, losses, rtol=1e-9)
    assert run._cache_size() == 1


@pytest.mark.parametrize(
    ("method", "dtype"),
    [
        ("ad-reverse", "float64"),
        ("fd-central", "float64"),
        ("fd-complex", "float64"),
        ("fd-central", "float32"),
    ],
)
def test_descent_under_vmap_over_start_points(dtype, tol, method):
    x0 = jnp.asarray([5.0, -1.0, 0.25], dtype)
    res = jax.jit(
        jax.vmap(lambda x: calcjax.gradient_descent(square, x, lr=0.1, steps=STEPS, method=method))
    )(x0)
    assert res.losses.shape == (3, STEPS + 1)
    rtol = STEPS * tol.method(calcjax.METHODS[method], dtype)
    for i, start in enumerate([5.0, -1.0, 0.25]):
        _, losses = _expected(start, 0.1, STEPS)
        np.testing.assert_allclose(np.asarray(res.losses[i], np.float64), losses, rtol=2 * rtol)


def test_lr_as_an_array_and_numpy_steps():
    res = calcjax.gradient_descent(square, 5.0, lr=jnp.asarray(0.1), steps=np.int64(3))
    assert float(res.x) == pytest.approx(5 * 0.8**3, rel=1e-15)


def test_diverging_lr_gives_growing_losses_not_an_error():
    res = calcjax.gradient_descent(square, 1.0, lr=1.5, steps=5)  # x <- -2x
    np.testing.assert_allclose(res.losses, 4.0 ** np.arange(6))


# --------------------------------------------------------------------------- the tutorial baselines


def test_tutorial_loop_reproduces_the_tutorial():
    x, losses = baselines.tutorial_gradient_descent(lambda t: 2 * t, f=lambda t: t**2)
    assert x == pytest.approx(5 * 0.8**10, rel=1e-15)
    np.testing.assert_allclose(losses, [(5 * 0.8**k) ** 2 for k in range(1, 11)], rtol=1e-14)
    assert baselines.tutorial_gradient_descent(lambda t: 2 * t)[1] == []


def test_tutorial_numerical_derivative():
    # central difference: exact on a quadratic up to rounding of eps=1e-5
    assert baselines.numerical_derivative(lambda t: t**2, 3.0) == pytest.approx(6.0, rel=1e-9)
    assert baselines.numerical_derivative(np.sin, 1.0) == pytest.approx(np.cos(1.0), rel=1e-9)
    h = 1e-2
    assert baselines.numerical_derivative(np.sin, 1.0, eps=h) == pytest.approx(np.cos(1.0) * np.sin(h) / h)


def test_tutorial_loop_gradient():
    w = np.asarray([1.0, -2.0])
    g = baselines.numpy_loop_gradient(lambda w: w[0] ** 2 + 2 * w[1] ** 2, w)
    np.testing.assert_allclose(g, [2.0, -8.0], rtol=1e-9)
    np.testing.assert_array_equal(w, [1.0, -2.0])  # not modified in place
