"""The randomized estimators in gradient_descent on a black-box (NumPy) f, and the descent race's rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from bench import test_descent as race
from tests import blackbox_helpers as bh

X0 = np.linspace(-1.0, 1.5, 10)
STEPS, EVERY = 200, 50


def _rosen_jax(x):
    a, b = x[0::2], x[1::2]
    return jnp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)


def _counting(f):
    calls = []

    def counted(x):
        if isinstance(x, np.ndarray):  # not the one traceability probe with a tracer
            calls.append(x.copy())
        return f(x)

    return counted, calls


@pytest.mark.parametrize("method", ["zo-spsa", "zo-gaussian", "zo-gaussian-k10"])
def test_numpy_f_runs_the_zeroth_order_estimators(method):
    key = jax.random.key(3)
    f, calls = _counting(bh.rosen)
    res = calcjax.gradient_descent(f, X0, lr=1e-4, steps=STEPS, method=method, key=key, loss_every=EVERY)
    assert isinstance(res.x, np.ndarray)
    assert int(res.stopped_at) == -1
    # The same estimator on the JAX twin of f, same key: the same path (the directions come from the
    # key), up to the two f's rounding, which a forward difference's 1/mu ~ 1/sqrt(eps) magnifies.
    twin = calcjax.gradient_descent(
        _rosen_jax, jnp.asarray(X0), lr=1e-4, steps=STEPS, method=method, key=key, loss_every=EVERY
    )
    np.testing.assert_allclose(res.x, twin.x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.losses, twin.losses, rtol=1e-6)
    # The losses are f's own values at the recorded steps, and they fall.
    assert res.loss_steps.tolist() == [0, 50, 100, 150, 200]
    assert float(res.losses[0]) == bh.rosen(X0)
    assert float(res.losses[-1]) == pytest.approx(bh.rosen(res.x), rel=1e-12)
    assert res.losses[-1] < 0.1 * res.losses[0]
    # f-evaluations as the race counts them: evals(n) per step plus one per recorded loss.
    evals = calcjax.METHODS[method].evals(X0.size)
    assert sum(len(x) if x.ndim == 2 else 1 for x in calls) == STEPS * evals + len(res.losses)


def test_numpy_f_same_key_same_path_other_key_other_path():
    run = lambda key: calcjax.gradient_descent(bh.rosen, X0, lr=1e-4, steps=30, method="zo-spsa", key=key)
    a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert np.max(np.abs(a.x - c.x)) > 1e-6


def test_numpy_f_with_fwd_gradient_says_autodiff_cannot_go_there():
    with pytest.raises(TypeError, match="not JAX-traceable"):
        calcjax.gradient_descent(bh.rosen, X0, lr=1e-4, steps=3, method="fwd-gradient", key=jax.random.key(0))


def test_numpy_f_estimator_without_key_is_refused():
    with pytest.raises(ValueError, match="key="):
        calcjax.gradient_descent(bh.rosen, X0, lr=1e-4, steps=3, method="zo-spsa")


# --------------------------------------------------------------------------- the race's rules


def test_the_lr_grid_is_the_same_for_every_method_and_reaches_one_over_n_l():
    grid = race.race_lr_grid(4.0, 1000)
    assert grid == pytest.approx([0.25, 0.025, 0.0025, 0.00025])
    assert race.race_lr_grid(4.0, 10_000)[-1] <= 1 / (10_000 * 4.0)
    assert race.race_lr_grid(4.0, 10)[-1] <= 1 / (10 * 4.0)


def test_the_budget_is_the_same_f_evaluations_for_every_method():
    budget = race.RACE_STEPS * 2 * 1000  # 100 central-difference gradients at n = 1000
    assert race.race_budget("fd-central", 1000) == (race.RACE_STEPS, 1)
    for m in ("ad-reverse", "zo-spsa", "zo-gaussian", "zo-gaussian-k10", "fwd-gradient"):
        steps, every = race.race_budget(m, 1000)
        assert steps == race.RACE_MAX_STEPS  # the cap, far below the budget at n = 1000
        assert steps * race.race_evals_per_step(m, 1000) <= budget
        assert steps // every == race.RACE_STEPS  # histories of the same length for every method
    # At n = 10 the budget binds: 2000 evaluations whatever the method.
    assert race.race_budget("zo-spsa", 10) == (1000, 10)
    assert race.race_budget("zo-gaussian-k10", 10) == (181, 1)
    assert race.race_budget("ad-reverse", 10) == (2000, 20)
    assert race.race_evals_per_step("fd-central", 1000) == 2000
    assert race.race_evals_per_step("zo-spsa", 1000) == 2
    assert race.race_evals_per_step("zo-gaussian-k10", 1000) == 11
    assert race.race_evals_per_step("fwd-gradient", 1000) == 1  # one JVP
    assert race.race_evals_per_step("ad-reverse", 1000) == 1  # one VJP


def test_largest_curvature_is_the_top_hessian_eigenvalue():
    d = jnp.asarray(np.logspace(0, 3, 50))
    assert race._largest_curvature(lambda x: 0.5 * jnp.sum(d * x * x), jnp.ones(50)) == pytest.approx(
        1000.0, rel=1e-3
    )
