"""The randomized gradient estimators: unbiased, with the variance their docstrings state.

Each statistical test draws ``N = 10 000`` estimates at a fixed ``x`` (one
jitted ``vmap`` over keys) and compares them with an analytic NumPy gradient:
every coordinate of the mean lies within 4 standard errors of the true
gradient, the standard error taken from the *theoretical* variance, and the
sample variance lies within 10 % of that theory, coordinate by coordinate and
in total. The seeds are fixed, so the tests are deterministic; the bounds are
wide enough that another seed passes too (4 standard errors: a false alarm in
~6e-5 of the coordinates; the sample variance of 10 000 draws has a relative
standard error of 1.4 % to ~3.5 % here, so 10 % is 3 to 7 of them), and narrow
enough to catch a wrong scale, sign, direction distribution or formula.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import calcjax
from calcjax import _estimators

N = 10_000
SIGMAS = 4.0
VARIANCE_RTOL = 0.10


def _quadratic(n, seed=0):
    """``0.5 x'Ax + b'x`` with a dense SPD ``A``: (f, x, gradient at x, A) in float64."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    a = m @ m.T / n + np.eye(n)
    b = rng.normal(size=n)
    x = rng.normal(size=n)
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)
    f = lambda z: 0.5 * z @ a_j @ z + b_j @ z
    return f, jnp.asarray(x), a @ x + b, a


@functools.partial(jax.jit, static_argnames=("estimator", "f", "count"))
def _draws(estimator, f, x, seed, count=N):
    """``count`` estimates at ``x``, one per key, flattened: shape ``(count, n)``."""
    keys = jax.random.split(jax.random.key(seed), count)
    return jax.vmap(lambda k: ravel_pytree(estimator(f, x, key=k))[0])(keys)


def _check_statistics(draws, g, variance, *, sigmas=SIGMAS, rtol=VARIANCE_RTOL):
    """Mean within ``sigmas`` standard errors (theoretical), variance within ``rtol`` of theory."""
    draws = np.asarray(draws, np.float64)
    count = draws.shape[0]
    se = np.sqrt(variance / count)
    z = (draws.mean(axis=0) - g) / se
    assert np.all(np.abs(z) <= sigmas), f"mean off by {np.max(np.abs(z)):.2f} standard errors"
    sample = draws.var(axis=0, ddof=1)
    np.testing.assert_allclose(sample, variance, rtol=rtol)
    np.testing.assert_allclose(sample.sum(), variance.sum(), rtol=rtol)


# --------------------------------------------------------------------------- SPSA


def test_spsa_on_a_quadratic_is_unbiased_with_variance_n_minus_1():
    """(g.v) v: per-coordinate variance |g|^2 - g_i^2, total (n - 1)|g|^2."""
    f, x, g, _ = _quadratic(8)
    draws = _draws(calcjax.spsa_gradient, f, x, 1)
    variance = g @ g - g**2
    _check_statistics(draws, g, variance)
    np.testing.assert_allclose(variance.sum(), (g.size - 1) * (g @ g))


def test_spsa_on_the_problem_quadratic():
    """The suite's ill-conditioned quadratic (gradients 1 to 1e4 apart), with a fixed c."""
    inst = calcjax.get_problem("quadratic").instance(10, "float64")
    g = inst.reference_gradient()
    draws = _draws(functools.partial(calcjax.spsa_gradient, c=0.5), inst.f, inst.x0, 2)
    _check_statistics(draws, g, g @ g - g**2)


def test_spsa_estimate_is_the_exact_directional_derivative_along_a_sign_vector():
    """On a quadratic the central difference is exact: every |e_i| is |g.v| and v = +-1."""
    f, x, g, _ = _quadratic(16)
    for step in (0, 7, 1000):
        e = np.asarray(calcjax.spsa_gradient(f, x, key=jax.random.key(3), step=step))
        size = np.abs(e[0])
        np.testing.assert_allclose(np.abs(e), size, rtol=1e-9)
        signs = np.sign(e) * np.sign(g @ np.sign(e))  # v, up to the common sign of g.v
        assert abs(abs(g @ signs) - size) <= 1e-8 * np.abs(g).sum()


def test_rademacher_signs_are_balanced_and_independent_of_x64():
    v = np.asarray(_estimators._rademacher(jax.random.key(0), (4000, 25), jnp.float64))
    assert set(np.unique(v)) == {-1.0, 1.0}
    assert abs(v.mean()) < 4 / np.sqrt(v.size)
    corr = np.corrcoef(v[:, :5].T)  # neighbouring bits of a word are uncorrelated
    assert np.max(np.abs(corr - np.eye(5))) < 4 / np.sqrt(v.shape[0])
    with jax.enable_x64(False):
        v32 = np.asarray(_estimators._rademacher(jax.random.key(0), (4000, 25), jnp.float32))
    np.testing.assert_array_equal(v32, v)


def test_spsa_perturbation_follows_spalls_decay():
    """c_k = c / (k + 1)**0.101: the bias on a cubic is c_k^2 f'''/6 along each direction."""
    f = lambda x: jnp.sum(x**3)
    x = jnp.zeros(1)  # g = 0: the central difference along v = +-1 is c_k^2 v^3, the estimate c_k^2
    c = 0.1
    for step in (0, 9, 99):
        e = float(calcjax.spsa_gradient(f, x, key=jax.random.key(0), step=step, c=c)[0])
        ck = c / (step + 1) ** _estimators.SPALL_GAMMA
        assert e == pytest.approx(ck**2, rel=1e-9)
    e = float(calcjax.spsa_gradient(f, x, key=jax.random.key(0), step=99, c=c, gamma=0.0)[0])
    assert e == pytest.approx(c**2, rel=1e-9)


# --------------------------------------------------------------------------- Gaussian smoothing


@pytest.mark.parametrize("k", [1, 10])
def test_gaussian_smoothing_on_a_quadratic_is_unbiased_with_variance_n_plus_1(k):
    """Automatic mu: the curvature term is ~eps, the variance (|g|^2 + g_i^2)/k, total (n+1)|g|^2/k."""
    f, x, g, _ = _quadratic(6)
    est = functools.partial(calcjax.gaussian_smoothing_gradient, k=k)
    draws = _draws(est, f, x, 10 + k)
    variance = (g @ g + g**2) / k
    _check_statistics(draws, g, variance)
    np.testing.assert_allclose(variance.sum(), (g.size + 1) * (g @ g) / k)


@pytest.mark.parametrize("k", [1, 3])
def test_gaussian_smoothing_curvature_variance_at_a_large_mu(k):
    """mu = 1: the one-sided difference adds C_i = mu^2/4 ((tr H)^2 + 2 tr H^2 + 4 H_ii tr H + 8 (H^2)_ii)."""
    f, x, g, a = _quadratic(5, seed=3)
    mu = 1.0
    tr, a2 = np.trace(a), a @ a
    curvature = mu**2 / 4 * (tr**2 + 2 * np.trace(a2) + 4 * np.diag(a) * tr + 8 * np.diag(a2))
    assert curvature.sum() > g @ g  # the term the test is about is not negligible
    est = functools.partial(calcjax.gaussian_smoothing_gradient, k=k, mu=mu)
    draws = _draws(est, f, x, 20 + k)
    _check_statistics(draws, g, (g @ g + g**2 + curvature) / k)


# --------------------------------------------------------------------------- forward gradient


#: The forward gradient's per-coordinate variance on a quadratic, by direction distribution:
#: signs (the default) v_i^2 = 1; normals E[v_i^4] = 3.
FORWARD_VARIANCE = {"rademacher": lambda g: g @ g - g**2, "gaussian": lambda g: g @ g + g**2}


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_forward_gradient_on_a_quadratic(distribution):
    f, x, g, _ = _quadratic(8)
    draws = _draws(functools.partial(calcjax.forward_gradient, distribution=distribution), f, x, 30)
    _check_statistics(draws, g, FORWARD_VARIANCE[distribution](g))


def test_forward_gradient_draws_signs_by_default():
    f, x = (lambda w: jnp.sum(jnp.sin(w))), jnp.linspace(0.0, 1.0, 7)
    key = jax.random.key(5)
    default = calcjax.forward_gradient(f, x, key=key, step=3)
    np.testing.assert_array_equal(
        default, calcjax.forward_gradient(f, x, key=key, step=3, distribution="rademacher")
    )
    assert not np.array_equal(
        default, calcjax.forward_gradient(f, x, key=key, step=3, distribution="gaussian")
    )
    est = np.asarray(default)  # (g.v) v with v_i = +-1: every entry is +-(g.v)
    np.testing.assert_allclose(np.abs(est), np.abs(est[0]), rtol=1e-12)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
@pytest.mark.parametrize("problem", tuple(calcjax.PROBLEMS))
def test_forward_gradient_is_unbiased_on_every_problem(flatten, problem, distribution):
    """(grad f . v) v with an exact JVP: unbiased on every function, with the variance of a quadratic's.

    Looser than the quadratic's tests, since ~100 coordinates are tested at once
    across the problems: the mean within 5 standard errors (at N = 10 000 that
    is at most 5 % of |g| in each coordinate), the variance within 15 %.
    """
    inst = calcjax.get_problem(problem).instance(12, "float64")
    g = inst.reference_gradient()
    est = functools.partial(calcjax.forward_gradient, distribution=distribution)
    draws = _draws(est, inst.f, inst.x0, 40 + (distribution == "gaussian"))
    variance = FORWARD_VARIANCE[distribution](g)
    if g.size == 1 and distribution == "rademacher":  # v = +-1 and (g v) v = g: no variance at all
        np.testing.assert_allclose(np.asarray(draws), np.broadcast_to(g, draws.shape), rtol=1e-12)
        return
    _check_statistics(draws, g, variance, sigmas=5.0, rtol=0.15)


def test_forward_gradient_unknown_distribution_and_the_one_name_for_it():
    with pytest.raises(ValueError, match="unknown distribution 'sobol'; valid: 'rademacher', 'gaussian'"):
        calcjax.forward_gradient(jnp.sum, jnp.ones(3), key=jax.random.key(0), distribution="sobol")
    # check_gradient's option of the same name takes the same values
    for distribution in ("rademacher", "gaussian"):
        calcjax.forward_gradient(jnp.sum, jnp.ones(3), key=jax.random.key(0), distribution=distribution)
        calcjax.check_gradient(jnp.sum, jnp.ones(3), distribution=distribution)


def test_normal_directions_have_unit_variance():
    u = np.asarray(_estimators._normal(jax.random.key(0), (20_000, 3), jnp.float64))
    assert u.dtype == np.float64
    np.testing.assert_allclose(u.var(axis=0), 1.0, atol=4 * np.sqrt(2 / u.shape[0]))
    assert np.all(np.abs(u.mean(axis=0)) < 4 / np.sqrt(u.shape[0]))


# --------------------------------------------------------------------------- keys, steps, pytrees

ESTIMATORS = {
    "spsa": calcjax.spsa_gradient,
    "gaussian": functools.partial(calcjax.gaussian_smoothing_gradient, k=3),
    "forward": calcjax.forward_gradient,
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_same_key_same_bits_other_key_or_step_other_estimate(name):
    est = ESTIMATORS[name]
    f = lambda x: jnp.sum(jnp.sin(x) * x)
    x = jnp.linspace(-1.0, 1.0, 9)
    a = est(f, x, key=jax.random.key(5), step=3)
    np.testing.assert_array_equal(a, est(f, x, key=jax.random.key(5), step=3))
    # compiled, the same directions (XLA may fuse the arithmetic differently: rounding only)
    jitted = jax.jit(lambda x: est(f, x, key=jax.random.key(5), step=3))(x)
    np.testing.assert_allclose(a, jitted, rtol=1e-13)
    assert not np.array_equal(a, est(f, x, key=jax.random.key(6), step=3))
    assert not np.array_equal(a, est(f, x, key=jax.random.key(5), step=4))
    # a raw uint32[2] key works the same way as the typed key with the same bits
    raw = jax.random.key_data(jax.random.key(5))
    np.testing.assert_array_equal(a, est(f, x, key=raw, step=3))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimators_take_a_pytree(flatten, name):
    """The MLP's dict of parameters: an estimate with the same structure and dtype, unbiased on average."""
    inst = calcjax.get_problem("mlp").instance(12, "float64")
    e = ESTIMATORS[name](inst.f, inst.x0, key=jax.random.key(0))
    assert jax.tree_util.tree_structure(e) == jax.tree_util.tree_structure(inst.x0)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(e))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_float32_in_float32_out(name):
    f = lambda x: jnp.sum(x**2)
    e = ESTIMATORS[name](f, jnp.ones(5, jnp.float32), key=jax.random.key(0))
    assert e.dtype == jnp.float32


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", ["zo-spsa", "zo-gaussian", "zo-gaussian-k10", "fwd-gradient"])
def test_registry_entries_are_stochastic_and_use_key_and_step(name):
    m = calcjax.METHODS[name]
    assert m.stochastic
    assert m.family == "stochastic"
    assert m.traceable
    f = lambda x: jnp.sum(jnp.cos(x))
    x = jnp.linspace(0.0, 1.0, 6)
    key = jax.random.key(11)
    a = m(f, x, key=key, step=2)
    np.testing.assert_array_equal(a, m.fn(f, x, key=key, step=2))
    assert not np.array_equal(a, m(f, x, key=key, step=3))
    # the registry's uniform call draws with the documented default key
    default = jax.random.key(calcjax._methods.DEFAULT_KEY_SEED)
    np.testing.assert_array_equal(m.fn(f, x), m(f, x, key=default))


def test_registry_estimators_are_the_public_functions():
    f = lambda x: jnp.sum(jnp.cos(x) * x)
    x = jnp.linspace(0.0, 1.0, 6)
    key = jax.random.key(2)
    pairs = [
        ("zo-spsa", calcjax.spsa_gradient(f, x, key=key, step=1)),
        ("zo-gaussian", calcjax.gaussian_smoothing_gradient(f, x, key=key, step=1, k=1)),
        ("zo-gaussian-k10", calcjax.gaussian_smoothing_gradient(f, x, key=key, step=1, k=10)),
        ("fwd-gradient", calcjax.forward_gradient(f, x, key=key, step=1)),
    ]
    evals = {"zo-spsa": 2, "zo-gaussian": 2, "zo-gaussian-k10": 11, "fwd-gradient": 0}
    for name, want in pairs:
        np.testing.assert_array_equal(calcjax.METHODS[name](f, x, key=key, step=1), want)
        assert calcjax.METHODS[name].evals(1000) == evals[name]


def test_deterministic_methods_ignore_key():
    m = calcjax.METHODS["fd-central"]
    f = lambda x: jnp.sum(x**3)
    x = jnp.ones(3)
    np.testing.assert_array_equal(m(f, x, key=jax.random.key(1)), m(f, x))


def test_spall_gain_is_an_optax_schedule():
    gain = calcjax.spall_gain(0.5, A=10.0)
    ks = np.arange(5)
    np.testing.assert_allclose([float(gain(k)) for k in ks], 0.5 / (10.0 + ks + 1) ** 0.602, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(gain)(jnp.int32(3)), 0.5 / 14.0**0.602, rtol=1e-6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ESTIMATORS)
def test_no_key_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"needs key=, a jax.random key: e.g. key=jax.random.key\(0\)"):
        ESTIMATORS[name](jnp.sum, jnp.ones(3))


@pytest.mark.parametrize(
    "key", [0, np.uint32(7), jnp.zeros(3, jnp.uint32), jax.random.split(jax.random.key(0), 2), "seed"]
)
def test_a_wrong_key_names_what_it_got(key):
    with pytest.raises(TypeError, match=r"key must be one jax\.random key"):
        calcjax.spsa_gradient(jnp.sum, jnp.ones(3), key=key)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, None, "3"])
def test_k_must_be_a_positive_integer(k):
    message = rf"k \(the number of directions\) must be an integer >= 1, got k={re.escape(repr(k))}"
    with pytest.raises(ValueError, match=message):
        calcjax.gaussian_smoothing_gradient(jnp.sum, jnp.ones(3), key=jax.random.key(0), k=k)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"c": 0.0}, ValueError, "c must be positive and finite"),
        ({"c": -1.0}, ValueError, "c must be positive and finite"),
        ({"c": float("nan")}, ValueError, "c must be positive and finite"),
        ({"step": -1}, ValueError, "step must be >= 0, got step=-1"),
        ({"step": 1.5}, TypeError, "step must be an integer"),
        ({"gamma": float("inf")}, ValueError, "gamma must be finite"),
    ],
)
def test_spsa_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        calcjax.spsa_gradient(jnp.sum, jnp.ones(3), key=jax.random.key(0), **kwargs)


def test_bad_mu_and_bad_x():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="mu must be positive and finite"):
        calcjax.gaussian_smoothing_gradient(jnp.sum, jnp.ones(3), key=key, mu=0.0)
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        calcjax.forward_gradient(jnp.sum, jnp.ones(3, jnp.int32), key=key)
    with pytest.raises(ValueError, match="f must return a scalar"):
        calcjax.forward_gradient(lambda x: x, jnp.ones(3), key=key)


@pytest.mark.parametrize(("a", "A"), [(0.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, float("nan"))])
def test_spall_gain_bad_input(a, A):
    with pytest.raises(ValueError, match="must be"):
        calcjax.spall_gain(a, A=A)
