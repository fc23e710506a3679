"""``h="adaptive"`` for the plain schemes: a step search that follows f, not only x.

References are analytic derivatives. The hard points are where the automatic step
``eps**(1/3) * max(1, |x|)`` assumes f varies on the scale of ``max(1, |x|)`` and it
does not: log near 0 (the step nearly leaves the domain), exp at +-700 (f varies on a
scale of 1, the step is 4e-3).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _finite_diff as fd

HARD = [
    ("log at 1e-5", jnp.log, 1e-5, lambda x: 1 / x),
    ("log at 1e-3", jnp.log, 1e-3, lambda x: 1 / x),
    ("exp at 700", jnp.exp, 700.0, np.exp),
    ("exp at -700", jnp.exp, -700.0, np.exp),
]
EASY = [
    ("sin at 1", jnp.sin, 1.0, np.cos),
    ("exp at 1", jnp.exp, 1.0, np.exp),
    ("x**2 at 3", lambda t: t**2, 3.0, lambda x: 2 * x),
    ("tanh at 0.5", jnp.tanh, 0.5, lambda x: 1 / np.cosh(x) ** 2),
]


def _rel(value, exact):
    return abs(float(value) - exact) / abs(exact)


@pytest.mark.parametrize(("name", "f", "x", "df"), HARD, ids=[h[0] for h in HARD])
def test_adaptive_fixes_the_points_where_the_default_step_is_wrong(name, f, x, df):
    with jax.enable_x64(True):
        xa = jnp.float64(x)
        plain = _rel(calcjax.derivative(f, xa), df(x))
        adaptive = _rel(calcjax.derivative(f, xa, h="adaptive"), df(x))
    assert plain > 1e-6  # the case is hard for the default step
    assert adaptive < 1e-9


@pytest.mark.parametrize(("name", "f", "x", "df"), EASY, ids=[e[0] for e in EASY])
def test_adaptive_does_not_hurt_unit_scale_points(name, f, x, df):
    with jax.enable_x64(True):
        xa = jnp.float64(x)
        plain = _rel(calcjax.derivative(f, xa), df(x))
        adaptive = _rel(calcjax.derivative(f, xa, h="adaptive"), df(x))
    assert adaptive <= max(3 * plain, 1e-12)


def test_adaptive_gradient_and_directional_follow_each_coordinate():
    # coordinate 0 is log near 0, coordinate 1 exp at 700 scaled down: the default step fails on both
    f = lambda w: jnp.log(w[0]) + jnp.exp(w[1]) * 1e-300
    x = np.array([1e-5, 700.0])
    exact = np.array([1 / x[0], np.exp(700.0) * 1e-300])
    with jax.enable_x64(True):
        g = np.asarray(calcjax.gradient(f, jnp.asarray(x), h="adaptive"))
        g_plain = np.asarray(calcjax.gradient(f, jnp.asarray(x)))
        # along a direction the search starts from the step of max|x|: keep the points near 1
        fd2 = lambda w: jnp.log(w[0]) + jnp.sin(w[1])
        x2, v = jnp.array([1e-5, 0.5]), jnp.array([1.0, 0.5])
        dd = calcjax.directional_derivative(fd2, x2, v, h="adaptive")
        dd_plain = calcjax.directional_derivative(fd2, x2, v)
    # f ~ 1e4 here, so each coordinate's rounding is larger than on the single functions
    assert np.max(np.abs(g - exact) / exact) < 1e-7
    assert np.max(np.abs(g_plain - exact) / exact) > 1e-3
    exact_dd = 1e5 + 0.5 * np.cos(0.5)
    assert _rel(dd, exact_dd) < 1e-9
    assert _rel(dd_plain, exact_dd) > 1e-3


def test_adaptive_pytree_and_one_sided_schemes():
    with jax.enable_x64(True):
        x = {"a": jnp.float64(1e-4), "b": jnp.array([0.3, 2.0])}
        f = lambda p: jnp.log(p["a"]) + jnp.sum(jnp.sin(p["b"]))
        for scheme, order in (("forward", 1), ("backward", 2), ("central", 4)):
            g = calcjax.gradient(f, x, h="adaptive", scheme=scheme, order=order)
            assert _rel(g["a"], 1e4) < 1e-5, scheme
            np.testing.assert_allclose(np.asarray(g["b"]), np.cos([0.3, 2.0]), rtol=1e-6)


def test_adaptive_under_jit_and_vmap_matches_eager(dtype):
    x = jnp.asarray([1e-3, 0.5, 3.0], dtype)
    eager = calcjax.derivative(jnp.log, x, h="adaptive")
    jitted = jax.jit(lambda z: calcjax.derivative(jnp.log, z, h="adaptive"))(x)
    mapped = jax.vmap(lambda z: calcjax.derivative(jnp.log, z, h="adaptive"))(x)
    assert eager.dtype == x.dtype
    # compiled and eager float32 round differently (fusion), and may keep neighbouring steps
    same = 1e-4 if dtype == "float32" else 1e-8
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=same)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(eager), rtol=same)
    rtol = 1e-2 if dtype == "float32" else 1e-8
    np.testing.assert_allclose(np.asarray(eager, np.float64), 1 / np.asarray(x, np.float64), rtol=rtol)


def test_adaptive_cost_in_evaluations():
    x = np.array([0.2, 0.7])
    assert fd._adaptive_evaluations("central", 2) == 2 * fd.ADAPTIVE_STEPS
    assert fd._adaptive_evaluations("forward", 1) == fd.ADAPTIVE_STEPS + 1
    count = [0]

    def counted(w):
        count[0] += 1
        return float(np.sum(np.sin(w)))

    with jax.enable_x64(True):
        calcjax.gradient(counted, x, h="adaptive", traceable=False)
    # f evaluated once per point: 2 coordinates x the search; the shape probe may add one call
    assert count[0] - 2 * fd._adaptive_evaluations() in (0, 1)


def test_adaptive_at_a_domain_edge_goes_one_sided():
    f = lambda t: jnp.where(t >= 0, jnp.exp(t), jnp.nan)
    with jax.enable_x64(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = calcjax.derivative(f, jnp.float64(0.0), h="adaptive")
    assert abs(float(d) - 1.0) < 1e-6
    assert any(issubclass(w.category, calcjax.DomainWarning) for w in caught)


def test_unknown_step_word_is_refused():
    with pytest.raises(TypeError, match=r"h must be a real number .*got h='auto'.*'adaptive'"):
        calcjax.derivative(jnp.sin, 1.0, h="auto")
    with pytest.raises(TypeError, match="'auto'"):
        calcjax.gradient(jnp.sum, jnp.ones(2), h="auto")
