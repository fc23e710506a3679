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


# --------------------------------------------------------------------------- stochastic methods


def _python_loop(method, f, x0, key, lr, steps):
    """The documented rule, step by step: x_{k+1} = x_k - lr * method(f, x_k, key=key, step=k)."""
    m = calcjax.METHODS[method]
    x, losses = x0, []
    for k in range(steps):
        losses.append(float(f(x)))
        x = x - lr * m(f, x, key=key, step=k)
    losses.append(float(f(x)))
    return x, np.asarray(losses)


def sphere(x):
    return 0.5 * jnp.sum((x - 1.0) ** 2)


@pytest.mark.parametrize("method", STOCHASTIC)
def test_stochastic_descent_is_the_estimator_at_each_step(tol, method):
    """Step k uses method(f, x_k, key=key, step=k): the loop against a Python loop of the estimator.

    Compiled and op by op, the finite differences round differently (by ~eps/h), hence the
    method's FD tolerance; another direction would differ by O(1).
    """
    x0 = jnp.linspace(-1.0, 2.0, 7)
    key = jax.random.key(4)
    res = calcjax.gradient_descent(sphere, x0, lr=0.05, steps=6, method=method, key=key)
    x, losses = _python_loop(method, sphere, x0, key, 0.05, 6)
    rtol = tol.method(calcjax.METHODS[method], "float64")
    np.testing.assert_allclose(res.x, x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(res.losses, losses, rtol=rtol)
    assert int(res.stopped_at) == -1


@pytest.mark.parametrize("method", STOCHASTIC)
def test_same_key_same_run_bit_for_bit_other_key_other_path(method):
    x0 = jnp.linspace(-1.0, 2.0, 50)
    run = lambda key: calcjax.gradient_descent(sphere, x0, lr=0.01, steps=40, method=method, key=key)
    a, b = run(jax.random.key(1)), run(jax.random.key(1))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.losses, b.losses)
    c = run(jax.random.key(2))
    assert not np.array_equal(a.x, c.x)
    assert not np.array_equal(a.losses[1:], c.losses[1:])
    assert a.losses[-1] < 0.9 * a.losses[0]  # a descent: on average each step goes downhill


def test_spsa_reproduces_the_tutorial():
    """n = 1: v = +-1, so (g.v) v = g, and the central difference is exact on x**2."""
    res = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=STEPS, method="zo-spsa", key=jax.random.key(0))
    _, losses = _expected(5.0, 0.1, STEPS)
    np.testing.assert_allclose(res.losses, losses, rtol=1e-9)


def test_stochastic_descent_under_vmap_over_keys():
    """One compiled program, a batch of keys: each run equals its own call."""
    x0 = jnp.linspace(-1.0, 2.0, 5)
    keys = jax.random.split(jax.random.key(0), 3)
    run = lambda k: calcjax.gradient_descent(sphere, x0, lr=0.1, steps=5, method="zo-spsa", key=k)
    batched = jax.jit(jax.vmap(run))(keys)
    for i in range(3):
        np.testing.assert_allclose(batched.x[i], run(keys[i]).x, rtol=1e-13)
    assert batched.losses.shape == (3, 6)


def test_stochastic_method_without_key_is_refused():
    with pytest.raises(ValueError, match=r"needs key=, a jax.random key: e.g. key=jax.random.key\(0\)"):
        calcjax.gradient_descent(square, 5.0, lr=0.1, steps=3, method="zo-spsa")
    with pytest.raises(TypeError, match=r"key must be one jax\.random key"):
        calcjax.gradient_descent(square, 5.0, lr=0.1, steps=3, method="fwd-gradient", key=3)


def test_deterministic_method_ignores_key():
    a = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=3, method="fd-central")
    compiled = _descent._run._cache_size()
    b = calcjax.gradient_descent(square, 5.0, lr=0.1, steps=3, method="fd-central", key=jax.random.key(9))
    np.testing.assert_array_equal(a.losses, b.losses)
    assert _descent._run._cache_size() == compiled


# --------------------------------------------------------------------------- optax


def test_optax_sgd_is_plain_descent():
    optax = pytest.importorskip("optax")
    inst = calcjax.get_problem("mlp").instance(21, "float64")
    plain = calcjax.gradient_descent(inst.f, inst.x0, lr=0.05, steps=5)
    sgd = calcjax.gradient_descent(inst.f, inst.x0, optimizer=optax.sgd(0.05), steps=5)
    np.testing.assert_allclose(sgd.losses, plain.losses, rtol=1e-15)


def _numpy_adam(grad, x, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
    m = v = np.zeros_like(x)
    for k in range(1, steps + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + eps)
    return x


@pytest.mark.parametrize("method", ["ad-reverse", "fd-central"])
def test_optax_adam_against_a_numpy_adam(flatten, method):
    """Adam on the MLP's pytree against Adam's formulas in NumPy on its hand-written gradient."""
    optax = pytest.importorskip("optax")
    inst = calcjax.get_problem("mlp").instance(21, "float64")
    res = calcjax.gradient_descent(inst.f, inst.x0, optimizer=optax.adam(0.01), steps=8, method=method)
    x = _numpy_adam(lambda w: inst.reference_gradient(inst.unflatten_np(w)), inst.x0_np.copy(), 0.01, 8)
    rtol = 1e-10 if method == "ad-reverse" else 1e-6
    np.testing.assert_allclose(flatten(res.x), x, rtol=rtol, atol=rtol)


def test_optax_with_a_stochastic_method_and_spalls_gain(tol):
    """SPSA with a_k = a / (A + k + 1)**0.602: optax.sgd(calcjax.spall_gain(a, A))."""
    optax = pytest.importorskip("optax")
    a, big_a, steps = 0.2, 2.0, 6
    x0 = jnp.linspace(-1.0, 2.0, 7)
    key = jax.random.key(3)
    gain = optax.sgd(calcjax.spall_gain(a, A=big_a))
    res = calcjax.gradient_descent(sphere, x0, optimizer=gain, steps=steps, method="zo-spsa", key=key)
    m = calcjax.METHODS["zo-spsa"]
    x = x0
    for k in range(steps):
        x = x - a / (big_a + k + 1) ** 0.602 * m(sphere, x, key=key, step=k)
    np.testing.assert_allclose(res.x, x, rtol=tol.method(m, "float64"))


def test_optax_bad_input():
    optax = pytest.importorskip("optax")
    with pytest.raises(ValueError, match="give lr= or optimizer=, not both"):
        calcjax.gradient_descent(square, 5.0, lr=0.1, optimizer=optax.sgd(0.1), steps=3)
    with pytest.raises(ValueError, match="lr is required"):
        calcjax.gradient_descent(square, 5.0, steps=3)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation"):
        calcjax.gradient_descent(square, 5.0, optimizer="adam", steps=3)


# --------------------------------------------------------------------------- loss_every


@pytest.mark.parametrize(("steps", "every"), [(10, 1), (10, 5), (10, 3), (10, 10), (10, 25), (0, 4), (1, 2)])
def test_loss_every_records_every_kth_loss_and_the_last(steps, every):
    f = lambda x: jnp.sum(jnp.sin(x) + x**2)
    x0 = jnp.asarray([0.5, -1.5])
    full = calcjax.gradient_descent(f, x0, lr=0.05, steps=steps)
    res = calcjax.gradient_descent(f, x0, lr=0.05, steps=steps, loss_every=every)
    want = sorted({*range(0, steps + 1, every), steps})
    assert res.loss_steps.tolist() == want
    assert res.loss_steps.dtype == jnp.int32
    np.testing.assert_allclose(res.losses, full.losses[np.asarray(want)], rtol=1e-14)
    np.testing.assert_allclose(res.x, full.x, rtol=1e-14)


def test_loss_every_with_a_stochastic_method_keeps_the_path():
    x0 = jnp.linspace(-1.0, 2.0, 9)
    key = jax.random.key(7)
    kw = dict(lr=0.05, steps=11, method="zo-gaussian-k10", key=key)
    full = calcjax.gradient_descent(sphere, x0, **kw)
    sparse = calcjax.gradient_descent(sphere, x0, loss_every=4, **kw)
    np.testing.assert_allclose(sparse.x, full.x, rtol=1e-13)
    np.testing.assert_allclose(sparse.losses, full.losses[np.asarray([0, 4, 8, 11])], rtol=1e-13)


@pytest.mark.parametrize("every", [0, -1, 1.5, True, None])
def test_loss_every_must_be_a_positive_integer(every):
    with pytest.raises(ValueError, match="loss_every must be an integer >= 1"):
        calcjax.gradient_descent(square, 5.0, lr=0.1, steps=3, loss_every=every)


def test_a_history_that_does_not_fit_is_refused_with_the_figure():
    with pytest.raises(
        ValueError, match=r"holds 10000000001 losses, 120\.0 GB, more than 50% of the"
    ) as info:
        calcjax.gradient_descent(square, 5.0, lr=0.1, steps=10**10)
    assert "record fewer, e.g. loss_every=" in str(info.value)


def test_the_history_limit_follows_the_free_memory(monkeypatch):
    """Against a pretend 100 MB free: 1e7 float64 losses (120 MB) refused, loss_every=10 fits."""
    monkeypatch.setattr(_descent, "_available_bytes", lambda device: 100 * 10**6)
    leaves = [jnp.zeros(3)]
    with pytest.raises(
        ValueError, match=r"120\.0 MB, more than 50% of the 100\.0 MB .* e\.g\. loss_every=10 "
    ):
        _descent._check_history(10**7, 1, 8, leaves)
    _descent._check_history(10**7, 10, 8, leaves)  # 12 MB: fits


def test_free_memory_is_read_from_the_device_or_the_host():
    free = _descent._available_bytes(jax.devices()[0])
    assert isinstance(free, int)
    assert free > 0


def test_steps_beyond_the_int32_counter_are_refused():
    with pytest.raises(ValueError, match=r"steps must be at most 2147483646 \(an int32 step counter\)"):
        calcjax.gradient_descent(square, 5.0, lr=0.1, steps=2**31, loss_every=2**30)


# --------------------------------------------------------------------------- non-finite losses


def test_descent_stops_at_the_first_overflowing_loss():
    """x <- -2x in float32: the loss 25 * 4**k overflows at k = 62, while x is still finite."""
    x0 = jnp.float32(5.0)
    res = calcjax.gradient_descent(square, x0, lr=1.5, steps=100)
    assert int(res.stopped_at) == 62
    assert float(res.x) == 5.0 * (-2.0) ** 62  # frozen where the loss overflowed, not x_100
    k = np.arange(62)
    np.testing.assert_allclose(res.losses[:62], 25.0 * 4.0**k, rtol=1e-6)
    assert np.all(np.isinf(res.losses[62:]))


def test_non_finite_loss_is_checked_at_recorded_steps():
    res = calcjax.gradient_descent(square, jnp.float32(5.0), lr=1.5, steps=100, loss_every=10)
    assert int(res.stopped_at) == 70  # the first recorded step at or after 62
    assert float(res.x) == 5.0 * (-2.0) ** 70
    np.testing.assert_allclose(res.losses[:7], 25.0 * 4.0 ** np.arange(0, 70, 10), rtol=1e-6)
    assert res.loss_steps[7] == 70


def test_nan_loss_stops_and_freezes_the_optimizer_too():
    optax = pytest.importorskip("optax")
    f = lambda x: jnp.sqrt(x) ** 4  # x**2 for x >= 0, NaN below
    res = calcjax.gradient_descent(f, 5.0, optimizer=optax.sgd(0.6), steps=5)  # x1 = 5 - 0.6 * 10 = -1
    assert int(res.stopped_at) == 1
    assert float(res.x) == pytest.approx(-1.0)
    assert float(res.losses[0]) == pytest.approx(25.0)
    assert np.all(np.isnan(res.losses[1:]))


def test_a_non_finite_final_loss_is_reported_at_steps():
    res = calcjax.gradient_descent(square, jnp.float32(5.0), lr=1.5, steps=62, loss_every=100)
    assert int(res.stopped_at) == 62
    assert res.loss_steps.tolist() == [0, 62]
