"""Finite differences against analytic derivatives: plain, under ``jax.jit`` and ``jax.vmap``, in both dtypes.

References are analytic (``cos`` for ``sin``, the problems' hand-written
gradients), never ``jax.grad``. Tolerances come from the table in ``conftest.py``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import calcjax
from calcjax._schema import DTYPES

SCHEME_ORDERS = [
    ("forward", 1),
    ("forward", 2),
    ("backward", 1),
    ("backward", 2),
    ("central", 2),
    ("central", 4),
    ("central", 6),
]
MODES = ("plain", "jit", "vmap")
SCALABLE = ("quadratic", "rosenbrock", "logistic", "mlp")

#: Smooth functions with their analytic derivatives, on domains where the
#: higher derivatives stay moderate (what the order-6 stencil's truncation sees).
FUNCTIONS = {
    "sin": (jnp.sin, np.cos),
    "exp": (jnp.exp, np.exp),
    "tanh": (jnp.tanh, lambda t: 1.0 - np.tanh(t) ** 2),
    "cubic": (lambda t: t**3 - 2.0 * t, lambda t: 3.0 * t**2 - 2.0),
    "log1p": (jnp.log1p, lambda t: 1.0 / (1.0 + t)),
}
POINTS = np.linspace(0.0, 2.0, 9) - 0.25


def _mixture(t):
    """All of :data:`FUNCTIONS` added up: one compiled program checks them all."""
    return sum(f(t) for f, _ in FUNCTIONS.values())


def _mixture_derivative(t):
    return sum(df(t) for _, df in FUNCTIONS.values())


def _mixture_scale(t):
    """Size of the terms and their derivatives: FD rounding is relative to ``|f|``, truncation to ``f'``."""
    return 1.0 + sum(np.abs(np.asarray(f(t))) + np.abs(df(t)) for f, df in FUNCTIONS.values())


def _apply(mode, fn, x):
    """``fn(x)`` plain, under ``jax.jit``, or under ``jax.vmap`` over the leading axis of ``x``.

    The vmapped function is compiled (``jit(vmap(fn))``): op-by-op batching would
    compile every primitive on its own and cost seconds per test.
    """
    if mode == "plain":
        return fn(x)
    if mode == "jit":
        return jax.jit(fn)(x)
    return _vmap(fn)(x)


def _vmap(fn, **kwargs):
    return jax.jit(jax.vmap(fn, **kwargs))


# --------------------------------------------------------------------------- stencil


def test_stencil_table_is_the_documented_one():
    """calcjax's stencil table (which the benchmark suite iterates over) holds exactly these."""
    from calcjax._finite_diff import _STENCILS

    assert list(_STENCILS) == SCHEME_ORDERS


@pytest.mark.parametrize(("scheme", "order"), SCHEME_ORDERS)
def test_stencil_moments(scheme, order):
    """``sum w c**k`` is 1 for k=1, 0 for every other k <= order, and not 0 at k = order+1."""
    st_ = calcjax.stencil(scheme, order)
    assert isinstance(st_, calcjax.Stencil)
    c = np.asarray(st_.offsets)
    w = np.asarray(st_.weights)
    assert c.shape == w.shape
    for k in range(order + 1):
        assert np.sum(w * c**k) == pytest.approx(1.0 if k == 1 else 0.0, abs=1e-13), k
    assert abs(np.sum(w * c ** (order + 1))) > 1e-3, "the stencil is more accurate than it says"


@pytest.mark.parametrize(("scheme", "order"), SCHEME_ORDERS)
def test_stencil_sides(scheme, order):
    offsets = calcjax.stencil(scheme, order).offsets
    if scheme == "forward":
        assert min(offsets) == 0.0
    elif scheme == "backward":
        assert max(offsets) == 0.0
    else:
        assert sorted(offsets) == sorted(-c for c in offsets)
        assert 0.0 not in offsets


def test_stencil_default_is_central_2():
    assert calcjax.stencil() == calcjax.stencil("central", 2) == ((-1.0, 1.0), (-0.5, 0.5))


# --------------------------------------------------------------------------- default_step


@pytest.mark.parametrize(
    ("scheme", "order", "mode"),
    [(s, o, "plain") for s, o in SCHEME_ORDERS] + [("central", 2, "jit"), ("forward", 1, "vmap")],
)
def test_default_step_rule(dtype, tol, scheme, order, mode):
    x = jnp.asarray([-300.0, -2.5, -1.0, -0.1, 0.0, 1e-30, 0.7, 1.0, 3.0, 1e6], dtype)
    h = _apply(mode, functools.partial(calcjax.default_step, scheme=scheme, order=order), x)
    assert h.dtype == x.dtype
    assert h.shape == x.shape
    # representable: the step actually taken is h, exactly
    np.testing.assert_array_equal((x + h) - x, h)
    eps = tol.eps(dtype)
    x64 = np.asarray(x, np.float64)
    # orders 4 and 6 take a quarter of the balanced step (short length scales, see default_step)
    factor = 0.25 if order >= 4 else 1.0
    expected = factor * eps ** (1.0 / (order + 1)) * np.maximum(1.0, np.abs(x64))
    # rounding (x + h) - x moves h by at most half an ulp of x
    np.testing.assert_allclose(
        np.asarray(h, np.float64), expected, rtol=eps ** (order / (order + 1)) / factor
    )


def test_default_step_one_sided_and_central_exponents():
    eps = float(jnp.finfo(jnp.float64).eps)
    one = jnp.float64(1.0)
    assert float(calcjax.default_step(one, scheme="forward", order=1)) == pytest.approx(eps**0.5)
    assert float(calcjax.default_step(one)) == pytest.approx(eps ** (1 / 3))
    quarter = 0.25  # orders 4 and 6: a quarter of the balanced step
    for order in (4, 6):
        step = float(calcjax.default_step(one, scheme="central", order=order))
        assert step == pytest.approx(quarter * eps ** (1 / (order + 1)))


def test_default_step_python_float_is_float64_under_x64():
    assert calcjax.default_step(2.0).dtype == jnp.float64


# --------------------------------------------------------------------------- derivative


@pytest.mark.parametrize("mode", MODES)
def test_derivative_matches_analytic(dtype, tol, mode):
    """Every stencil jitted and vmapped; the two first ones plain (op by op) too."""
    x = jnp.asarray(POINTS, dtype)
    x64 = np.asarray(x, np.float64)
    stencils = [("forward", 1), ("central", 2)] if mode == "plain" else SCHEME_ORDERS
    every = lambda x: {(s, o): calcjax.derivative(_mixture, x, scheme=s, order=o) for s, o in stencils}
    for (scheme, order), d in _apply(mode, every, x).items():
        assert d.dtype == x.dtype
        assert d.shape == x.shape
        err = np.abs(np.asarray(d, np.float64) - _mixture_derivative(x64))
        assert np.all(err <= tol.fd(dtype, order) * _mixture_scale(x64)), (scheme, order, err)


def test_derivative_keeps_shape_of_x(dtype, tol):
    x = jnp.asarray(np.linspace(-1.0, 1.0, 6).reshape(2, 3), dtype)
    d = calcjax.derivative(jnp.sin, x)
    assert d.shape == (2, 3)
    assert d.dtype == x.dtype
    np.testing.assert_allclose(d, np.cos(np.asarray(x, np.float64)), atol=tol.fd(dtype, 2) * 2)


def test_derivative_scalar_python_float():
    d = calcjax.derivative(lambda t: t**2, 3.0)
    assert d.shape == ()
    assert d.dtype == jnp.float64
    assert float(d) == pytest.approx(6.0, rel=1e-9)


@pytest.mark.parametrize("h", [1e-3, 1e-4])
@pytest.mark.parametrize("mode", ["plain", "jit"])
def test_derivative_explicit_step(h, mode):
    """A given h is the step taken: the truncation error of sin is h**2/6 * cos, to leading order."""
    x = jnp.asarray([0.3, 1.0], jnp.float64)
    d = _apply(mode, lambda x: calcjax.derivative(jnp.sin, x, h=h), x)
    expected = np.cos(x) * np.sin(h) / h  # exact central difference of sin
    np.testing.assert_allclose(d, expected, rtol=1e-15 / h * 4)


def test_derivative_per_point_step_array():
    x = jnp.asarray([0.5, 1.0, 2.0])
    h = jnp.asarray([1e-1, 1e-2, 1e-3])
    d = calcjax.derivative(jnp.sin, x, h=h)
    np.testing.assert_allclose(d, np.cos(x) * np.sin(h) / h, rtol=1e-12)


def test_derivative_traced_step_under_jit():
    d = jax.jit(lambda x, h: calcjax.derivative(jnp.sin, x, h=h))(jnp.asarray([1.0]), 1e-2)
    np.testing.assert_allclose(d, np.cos(1.0) * np.sin(1e-2) / 1e-2, rtol=1e-12)


# --------------------------------------------------------------------------- polynomials are exact


def _abs_poly(coeffs, t):
    """``sum |a_i| |t|**i``: the size of the terms Horner's rule adds (its rounding scale)."""
    return sum(abs(a) * np.abs(t) ** i for i, a in enumerate(coeffs))


def _derivative_coeffs(coeffs, k=1):
    out = list(coeffs)
    for _ in range(k):
        out = [i * a for i, a in enumerate(out)][1:]
    return out or [0.0]


def _fd_rounding_bound(coeffs, x, h, scheme, order, eps):
    """Rounding error bound of a stencil on a polynomial: no truncation, only ``eps``-sized errors.

    Each ``f(x + c h)`` is off by about ``deg * eps`` times its terms' size
    (Horner), and the point ``x + c h`` by ``eps |x + c h|`` (through ``f'``);
    the stencil divides by ``h``.
    """
    deg = len(coeffs) - 1
    dp = _derivative_coeffs(coeffs)
    total = 0.0
    for c, w in zip(*calcjax.stencil(scheme, order), strict=True):
        t = x + c * h
        total += abs(w) * (_abs_poly(coeffs, t) + _abs_poly(dp, t) * (abs(t) + abs(c * h)))
    return 4.0 * (deg + 2) * eps * (total / h + _abs_poly(dp, x))


def _poly(coeffs):
    """Horner's rule; ``coeffs`` a sequence (Python floats or the entries of an array)."""

    def p(t):
        acc = jnp.zeros_like(t)
        for i in reversed(range(len(coeffs))):
            acc = acc * t + coeffs[i]
        return acc

    return p


def _exact_poly_derivative(coeffs, x):
    return float(np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(coeffs)))


MAX_DEGREE = 6
# No subnormal coefficients: XLA on a CPU flushes float32 subnormals to zero, so a derivative of
# 1e-45 comes out as 0 (a property of the hardware mode, not of the stencil).
coefficient = st.floats(-4.0, 4.0, width=32).filter(lambda c: c == 0.0 or abs(c) >= 2.0**-100)


@jax.jit
def _poly_derivatives(coeffs, x, h):
    """Every stencil on the polynomial cut to its degree (<= order), in one compiled program.

    The coefficients are data, so each hypothesis example reuses the program.
    """
    degree = jnp.arange(coeffs.shape[0])
    return {
        (s, o): calcjax.derivative(_poly(jnp.where(degree <= o, coeffs, 0.0)), x, h=h, scheme=s, order=o)
        for s, o in SCHEME_ORDERS
    }


@settings(max_examples=20, deadline=None)
@given(
    coeffs=st.lists(coefficient, min_size=1, max_size=MAX_DEGREE + 1),
    x=st.floats(-3.0, 3.0, width=32),
    h=st.floats(2.0**-10, 1.0, width=32),
)
@example(coeffs=[0.0, 0.0, 1.0], x=5.0, h=0.5)  # the tutorial's x**2, a big step: still exact
@example(coeffs=[1.0, -3.0, 3.0, -1.0, 0.5, 0.25, 2.0], x=-2.75, h=1.0)
@example(coeffs=[3.0], x=0.0, h=2.0**-10)  # a constant: derivative 0
@example(coeffs=[0.0, 2.0**-100], x=0.0, h=1.0)  # the smallest coefficient the strategy draws
def test_derivative_exact_on_polynomials_of_degree_up_to_order(dtype, tol, coeffs, x, h):
    coeffs = [float(np.asarray(a, dtype)) for a in coeffs]
    x = float(np.asarray(x, dtype))
    padded = jnp.asarray(coeffs + [0.0] * (MAX_DEGREE + 1 - len(coeffs)), dtype)
    results = _poly_derivatives(padded, jnp.asarray(x, dtype), jnp.asarray(h, dtype))
    for (scheme, order), d in results.items():
        cut = coeffs[: order + 1]
        err = abs(float(d) - _exact_poly_derivative(cut, x))
        assert err <= _fd_rounding_bound(cut, x, h, scheme, order, tol.eps(dtype)), (scheme, order)


@pytest.mark.parametrize(("scheme", "order"), SCHEME_ORDERS)
def test_polynomial_bound_catches_truncation_one_degree_up(scheme, order):
    """The exactness test can fail: one degree more and the truncation error exceeds the rounding bound."""
    coeffs = [0.0] * (order + 1) + [1.0]  # x**(order+1)
    x, h = 0.5, 0.5
    d = calcjax.derivative(_poly(coeffs), jnp.float64(x), h=h, scheme=scheme, order=order)
    err = abs(float(d) - _exact_poly_derivative(coeffs, x))
    assert err > 1e3 * _fd_rounding_bound(coeffs, x, h, scheme, order, 2.0**-52)


def _quartic_terms(order, a, c):
    """The quadratic and quartic terms a stencil of ``order`` is exact on (zero above its degree)."""
    return a * (order >= 2), c * (order >= 4)


@jax.jit
def _quartic_gradients(x, a, b, c, h):
    """FD gradients of ``b.x + x.Ax/2 + sum(c0 x**3 + c1 x**4)``, cut to each stencil's degree."""
    out = {}
    for scheme, order in SCHEME_ORDERS:
        a_o, c_o = _quartic_terms(order, a, c)
        f = lambda z, a_o=a_o, c_o=c_o: b @ z + 0.5 * z @ (a_o @ z) + jnp.sum(c_o[0] * z**3 + c_o[1] * z**4)
        out[scheme, order] = calcjax.gradient(f, x, h=h, scheme=scheme, order=order)
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.floats(1e-2, 0.5))
@example(seed=0, h=0.5)
def test_gradient_exact_on_polynomials_of_degree_up_to_order(dtype, tol, seed, h):
    n = 4
    rng = np.random.default_rng(seed)
    x, b = (rng.uniform(-2.0, 2.0, n).astype(dtype) for _ in range(2))
    a = rng.uniform(-2.0, 2.0, (n, n))
    a = ((a + a.T) / 2).astype(dtype)
    c = rng.uniform(-1.0, 1.0, (2, n)).astype(dtype)
    grads = _quartic_gradients(x, a, b, c, jnp.asarray(h, dtype))
    x64, b64 = np.asarray(x, np.float64), np.asarray(b, np.float64)
    for (scheme, order), g in grads.items():
        a64, c64 = (np.asarray(t, np.float64) for t in _quartic_terms(order, a, c))
        exact = b64 + a64 @ x64 + 3 * c64[0] * x64**2 + 4 * c64[1] * x64**3
        # rounding scale: the terms of f at the farthest stencil point, through the stencil's 1/h
        reach = np.abs(x64).max() + 3 * h
        terms = np.abs(b64).sum() * reach + np.abs(a64).sum() * reach**2 + np.abs(c64).sum() * reach**4
        weights = np.abs(calcjax.stencil(scheme, order).weights).sum()
        bound = 64 * tol.eps(dtype) * (terms * weights / h + np.abs(exact).max())
        np.testing.assert_allclose(
            np.asarray(g, np.float64), exact, rtol=0, atol=bound, err_msg=f"{scheme} {order}"
        )


@settings(max_examples=15, deadline=None)
@given(coeffs=st.lists(coefficient, min_size=1, max_size=12), x=st.floats(-2.0, 2.0))
@example(coeffs=[0.0] * 11 + [1.0], x=2.0)
@example(coeffs=[0.0, 0.0, 0.0, 1.0], x=0.0)  # f'(0) = 0: only the complex step's h**2 term is left
@example(coeffs=[0.0, 0.0, 0.0, 0.0, 0.0, 1.0], x=0.0)  # ... or its h**4 term
def test_complex_step_exact_on_polynomials_of_any_degree(tol, coeffs, x):
    d = calcjax.complex_step_derivative(_poly(coeffs), jnp.float64(x))
    err = abs(float(d) - _exact_poly_derivative(coeffs, x))
    # rounding, plus the complex step's own truncation: sum_k h**(2k) |f^(2k+1)| / (2k+1)!, h = 1e-20
    rounding = tol.rounding(jnp.float64, ulps=4 * len(coeffs)) * _abs_poly(_derivative_coeffs(coeffs), x)
    truncation = sum(1e-40**k * _abs_poly(_derivative_coeffs(coeffs, 2 * k + 1), x) for k in range(1, 7))
    assert err <= rounding + truncation


@pytest.mark.parametrize("num_steps", [2, 5])
@settings(max_examples=8, deadline=None)
@given(coeffs=st.lists(coefficient, min_size=1, max_size=11), x=st.floats(-2.0, 2.0))
def test_richardson_exact_on_polynomials_of_degree_up_to_twice_the_steps(num_steps, coeffs, x):
    """Neville's tableau removes h**2 .. h**(2 num_steps - 2): exact up to degree 2 * num_steps."""
    coeffs = coeffs[: 2 * num_steps + 1]
    est = calcjax.richardson_derivative(_poly(coeffs), jnp.float64(x), num_steps=num_steps)
    err = abs(float(est.value) - _exact_poly_derivative(coeffs, x))
    assert err <= float(est.error)
    # no truncation left: only rounding, amplified by 1/h (first step 0.1) and the tableau
    assert err <= 1e-12 * (1 + _abs_poly(coeffs, abs(x) + 0.1))


# --------------------------------------------------------------------------- gradient on the problems


@functools.lru_cache
def _instance(name, dtype, n=12):
    return calcjax.get_problem(name).instance(n, dtype)


def _fd_scale(inst, x_flat64, g_ref):
    """FD error scale at a point: the gradient's size plus ``f``'s (rounding is ``eps |f| / h``)."""
    return np.linalg.norm(g_ref) + np.sqrt(inst.n) * abs(float(inst.f_np(x_flat64)))


def _point_batch(x0):
    """Two points: ``x0`` and a nearby one, stacked leaf by leaf for ``jax.vmap``."""
    return jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.9 * a + 0.05]), x0)


def _unstack(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _check_gradient(inst, x, g, rtol, flatten):
    """``g`` has ``x``'s structure and dtypes and is within ``rtol`` of the analytic gradient (FD scale)."""
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(x)
    for got, want in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(x), strict=True):
        assert got.shape == want.shape
        assert got.dtype == want.dtype
    ref = inst.reference_gradient(x)
    err = np.linalg.norm(flatten(g) - ref)
    scale = _fd_scale(inst, flatten(x), ref)
    assert err <= rtol * scale, f"relative error {err / scale:.3g} > {rtol:.3g}"


def test_gradient_every_stencil_under_jit(dtype, tol, flatten):
    inst = _instance("logistic", dtype)
    every = lambda x: {(s, o): calcjax.gradient(inst.f, x, scheme=s, order=o) for s, o in SCHEME_ORDERS}
    results = jax.jit(every)(inst.x0)
    for (scheme, order), g in results.items():
        _check_gradient(inst, inst.x0, g, tol.fd(dtype, order), flatten)


@pytest.mark.parametrize(
    ("problem", "mode", "dtype"),
    [("rosenbrock", mode, dtype) for mode in MODES for dtype in DTYPES]
    + [("mlp", mode, dtype) for mode in ("jit", "vmap") for dtype in DTYPES]
    + [("mlp", "plain", "float64")],
)
def test_gradient_transforms(tol, flatten, problem, mode, dtype):
    """gradient plain at x0, jitted at two points (one compile), vmapped over the two points."""
    inst = _instance(problem, dtype)
    points = _point_batch(inst.x0)
    fn = functools.partial(calcjax.gradient, inst.f)
    if mode == "plain":
        pairs = [(inst.x0, fn(inst.x0))]
    elif mode == "jit":
        jitted = jax.jit(fn)
        pairs = [(_unstack(points, i), jitted(_unstack(points, i))) for i in range(2)]
    else:
        grads = _vmap(fn)(points)
        pairs = [(_unstack(points, i), _unstack(grads, i)) for i in range(2)]
    for x, g in pairs:
        _check_gradient(inst, x, g, tol.fd(dtype, 2), flatten)


def _chunking_atol(inst, dtype, tol, scheme, order):
    """Chunking changes how XLA sums inside ``f``, by an ulp of ``f``; the stencil divides that by h."""
    steps = np.asarray(calcjax.default_step(jnp.asarray(inst.x0_np), scheme=scheme, order=order), np.float64)
    weights = np.abs(calcjax.stencil(scheme, order).weights).sum()
    f0 = abs(float(inst.f_np(inst.x0_np.astype(np.float64))))
    return tol.rounding(dtype, ulps=8) * f0 * weights / steps


@pytest.mark.parametrize("problem", SCALABLE)
def test_gradient_chunking_on_every_problem(tol, flatten, problem):
    """batch_size 1, 3 and automatic give the unchunked (batch_size = n) gradient to rounding."""
    inst = _instance(problem, "float64", n=50)
    sizes = (inst.n, 1, 3, None)
    grads = jax.jit(lambda x: [calcjax.gradient(inst.f, x, batch_size=b) for b in sizes])(inst.x0)
    full = flatten(grads[0])
    atol = _chunking_atol(inst, "float64", tol, "central", 2)
    for batch_size, g in zip(sizes[1:], grads[1:], strict=True):
        diff = np.abs(flatten(g) - full)
        assert np.all(diff <= atol), (batch_size, np.max(diff / atol))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("problem", SCALABLE)
def test_shared_products_equal_black_box_on_every_problem(tol, flatten, problem, dtype):
    """share_products (the default) gives f-as-written's gradient to rounding, every scheme family."""
    inst = _instance(problem, dtype, n=50)

    def both(x, share):
        return [
            calcjax.gradient(inst.f, x, share_products=share),
            calcjax.gradient(inst.f, x, scheme="forward", order=1, share_products=share),
            calcjax.gradient(inst.f, x, scheme="central", order=4, share_products=share),
        ]

    shared, plain = (jax.jit(both, static_argnums=1)(inst.x0, s) for s in (True, False))
    stencils = [("central", 2), ("forward", 1), ("central", 4)]
    for (scheme, order), a, b in zip(stencils, shared, plain, strict=True):
        diff = np.abs(flatten(a) - flatten(b))
        atol = _chunking_atol(inst, dtype, tol, scheme, order)
        assert np.all(diff <= atol), (scheme, order, np.max(diff / atol))
        _check_gradient(inst, inst.x0, a, tol.fd(dtype, order), flatten)


def test_gradient_chunking_with_every_stencil(tol, flatten):
    inst = _instance("quadratic", "float64", n=50)

    def every(x):
        return {
            (s, o, b): calcjax.gradient(inst.f, x, scheme=s, order=o, batch_size=b)
            for s, o in SCHEME_ORDERS
            for b in (inst.n, 3)
        }

    grads = jax.jit(every)(inst.x0)
    for scheme, order in SCHEME_ORDERS:
        diff = np.abs(flatten(grads[scheme, order, 3]) - flatten(grads[scheme, order, inst.n]))
        assert np.all(diff <= _chunking_atol(inst, "float64", tol, scheme, order)), (scheme, order)


def test_gradient_chunking_float32(tol, flatten):
    inst = _instance("logistic", "float32", n=50)
    full = flatten(calcjax.gradient(inst.f, inst.x0, batch_size=inst.n))
    g = flatten(calcjax.gradient(inst.f, inst.x0, batch_size=7))
    assert np.all(np.abs(g - full) <= _chunking_atol(inst, "float32", tol, "central", 2))


def test_complex_and_richardson_gradient_chunking(flatten):
    inst = _instance("quadratic", "float64", n=20)

    def every(x):
        cs = [calcjax.complex_step_gradient(inst.f, x, batch_size=b) for b in (1, None)]
        rg = [calcjax.richardson_gradient(inst.f, x, batch_size=b).value for b in (3, None)]
        return cs, rg

    cs, rg = jax.tree_util.tree_map(flatten, jax.jit(every)(inst.x0))
    np.testing.assert_allclose(cs[1], cs[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(rg[1], rg[0], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- pytrees


def _dict_loss(p):
    return jnp.sum(jnp.sin(p["w"]) * p["b"]) + p["s"] ** 3 + jnp.sum(p["nested"][0] ** 2)


def _dict_loss_grad(p):
    w, b, s = (np.asarray(p[k], np.float64) for k in ("w", "b", "s"))
    v = np.asarray(p["nested"][0], np.float64)
    return {"w": np.cos(w) * b, "b": np.sin(w).sum(0), "s": 3 * s**2, "nested": (2 * v,)}


def _dict_params(dtype):
    return {
        "w": jnp.asarray([[0.1, -0.4], [1.2, 0.3]], dtype),
        "b": jnp.asarray([0.5, -1.5], dtype),
        "s": jnp.asarray(0.7, dtype),
        "nested": (jnp.asarray([1.0, -2.0, 3.0], dtype),),
    }


DICT_ESTIMATORS = {
    "central": (lambda f, p: calcjax.gradient(f, p), 2),
    "forward2-chunked": (lambda f, p: calcjax.gradient(f, p, scheme="forward", order=2, batch_size=2), 2),
    "complex": (lambda f, p: calcjax.complex_step_gradient(f, p), None),
    "richardson": (lambda f, p: calcjax.richardson_gradient(f, p).value, 4),
}


@pytest.mark.parametrize(
    ("estimator", "order", "dtype"),
    [pytest.param(*e, "float64", id=f"{name}-float64") for name, e in DICT_ESTIMATORS.items()]
    + [pytest.param(*DICT_ESTIMATORS["central"], "float32", id="central-float32")],
)
def test_gradient_of_dict_params(dtype, tol, flatten, estimator, order):
    p = _dict_params(dtype)
    g = jax.jit(functools.partial(estimator, _dict_loss))(p)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(p)
    for got, want in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(p), strict=True):
        assert got.shape == want.shape
        assert got.dtype == want.dtype
    rtol = tol.rounding(dtype) if order is None else tol.fd(dtype, order)
    # |f| and |f'| are a few units here
    np.testing.assert_allclose(flatten(g), flatten(_dict_loss_grad(p)), rtol=0, atol=rtol * 10)


def test_gradient_of_dict_params_plain(tol, flatten):
    p = _dict_params("float64")
    g = calcjax.gradient(_dict_loss, p)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(p)
    np.testing.assert_allclose(
        flatten(g), flatten(_dict_loss_grad(p)), rtol=0, atol=tol.fd("float64", 2) * 10
    )


def test_gradient_with_a_step_per_leaf(flatten):
    p = {"a": jnp.asarray([0.3, -0.2]), "b": jnp.asarray(1.1)}
    h = {"a": jnp.asarray([1e-3, 1e-2]), "b": 1e-1}
    g = calcjax.gradient(lambda q: jnp.sum(jnp.sin(q["a"])) + jnp.sin(q["b"]), p, h=h)
    # the exact central differences of sin with those steps
    hs = np.asarray([1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(flatten(g), np.cos([0.3, -0.2, 1.1]) * np.sin(hs) / hs, rtol=1e-12)


def test_gradient_of_scalar_x_is_scalar(dtype, tol):
    g = calcjax.gradient(lambda t: t**3, jnp.asarray(2.0, dtype))
    assert g.shape == ()
    assert g.dtype == jnp.dtype(dtype)
    assert abs(float(g) - 12.0) <= tol.fd(dtype, 2) * (8 + 12)


def test_gradient_of_python_float():
    g = calcjax.gradient(lambda t: t**2, 3.0)
    assert g.dtype == jnp.float64
    assert float(g) == pytest.approx(6.0, rel=1e-9)


def test_gradient_of_mixed_precision_pytree_uses_each_leafs_step(tol):
    p = {"a": jnp.asarray([1.0, 2.0], jnp.float32), "b": jnp.asarray(3.0, jnp.float64)}
    g = calcjax.gradient(lambda q: jnp.sum(q["a"] ** 2) * q["b"], p)
    assert g["a"].dtype == jnp.float32
    assert g["b"].dtype == jnp.float64
    # each leaf as accurate as a gradient in its own dtype
    np.testing.assert_allclose(g["a"], [6.0, 12.0], rtol=tol.fd("float32", 2))
    np.testing.assert_allclose(g["b"], 5.0, rtol=tol.fd("float64", 2))


# --------------------------------------------------------------------------- directional derivative


def _direction(x0):
    return jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), x0)


@pytest.mark.parametrize(
    ("problem", "mode", "dtype"),
    [
        *[("rosenbrock", mode, dtype) for mode in MODES for dtype in DTYPES],
        ("mlp", "jit", "float64"),
    ],
)
def test_directional_derivative_matches_reference(dtype, tol, flatten, problem, mode):
    inst = _instance(problem, dtype)
    direction = _direction(inst.x0)
    fn = functools.partial(calcjax.directional_derivative, inst.f)
    if mode == "vmap":
        points = _point_batch(inst.x0)
        d = _vmap(fn, in_axes=(0, None))(points, direction)
        pairs = [(_unstack(points, i), d[i]) for i in range(2)]
    else:
        pairs = [(inst.x0, _apply(mode, lambda x: fn(x, direction), inst.x0))]
    v = flatten(direction)
    for x, d in pairs:
        assert d.shape == ()
        assert d.dtype == jnp.dtype(dtype)
        ref = inst.reference_gradient(x)
        scale = (np.linalg.norm(ref) + abs(float(inst.f_np(flatten(x))))) * np.linalg.norm(v)
        assert abs(float(d) - ref @ v) <= tol.fd(dtype, 2) * scale


@pytest.mark.parametrize(("scheme", "order"), SCHEME_ORDERS)
def test_directional_derivative_every_stencil(dtype, tol, scheme, order):
    x = jnp.asarray([0.3, -0.2, 0.9], dtype)
    v = jnp.asarray([1.0, 0.5, -2.0], dtype)
    d = calcjax.directional_derivative(lambda z: jnp.sum(jnp.sin(z)), x, v, scheme=scheme, order=order)
    x64, v64 = np.asarray(x, np.float64), np.asarray(v, np.float64)
    assert abs(float(d) - np.cos(x64) @ v64) <= tol.fd(dtype, order) * np.linalg.norm(v64) * 4


@pytest.mark.parametrize(("scheme", "order"), SCHEME_ORDERS)
def test_directional_derivative_evaluates_f_once_per_stencil_point(scheme, order):
    """The FD analogue of jax.jvp: as many f evaluations as the stencil has points (2 for central)."""
    jaxpr = jax.make_jaxpr(
        lambda x: calcjax.directional_derivative(
            lambda z: jnp.sum(jnp.sin(z)), x, jnp.ones(5), scheme=scheme, order=order
        )
    )(jnp.zeros(5))
    assert str(jaxpr).count("sin") == len(calcjax.stencil(scheme, order).offsets)


def test_directional_derivative_with_explicit_step():
    x = jnp.asarray([0.2, -0.4])
    v = jnp.asarray([1.0, 2.0])
    t = 1e-3
    d = calcjax.directional_derivative(lambda z: jnp.sum(jnp.sin(z)), x, v, h=t)
    # the exact central difference in t of sum(sin(x + t v))
    expected = np.sum(np.cos(x) * np.sin(t * v)) / t
    assert float(d) == pytest.approx(expected, rel=1e-10)


def test_directional_derivative_zero_direction_is_zero():
    assert float(calcjax.directional_derivative(jnp.sum, jnp.ones(3), jnp.zeros(3))) == 0.0


# --------------------------------------------------------------------------- complex step


@pytest.mark.parametrize("mode", MODES)
def test_complex_step_derivative_matches_analytic(dtype, tol, mode):
    x = jnp.asarray(POINTS, dtype)
    x64 = np.asarray(x, np.float64)
    d = _apply(mode, functools.partial(calcjax.complex_step_derivative, _mixture), x)
    assert d.dtype == x.dtype
    assert d.shape == x.shape
    # computed in complex128 from x's value, then rounded to x's dtype
    err = np.abs(np.asarray(d, np.float64) - _mixture_derivative(x64))
    assert np.all(err <= tol.rounding(dtype, ulps=4) * _mixture_scale(x64)), err


@pytest.mark.parametrize(
    ("problem", "mode", "dtype"),
    [("logistic", mode, dtype) for mode in ("jit", "vmap") for dtype in DTYPES]
    + [("mlp", "plain", "float64")],
)
def test_complex_step_gradient_matches_reference(tol, flatten, problem, mode, dtype):
    inst = _instance(problem, dtype)
    fn = functools.partial(calcjax.complex_step_gradient, inst.f)
    points = _point_batch(inst.x0)
    x = _unstack(points, 1)
    g = _unstack(_vmap(fn)(points), 1) if mode == "vmap" else _apply(mode, fn, x)
    if dtype == "float64":
        ref = inst.reference_gradient(x)
        np.testing.assert_allclose(flatten(g), ref, rtol=0, atol=1e-14 * np.abs(ref).max())
    else:  # exact for float32's x and data, rounded to float32
        _check_gradient(inst, x, g, tol.rounding(dtype, ulps=64), flatten)


def test_complex_step_gradient_keeps_float32():
    g = calcjax.complex_step_gradient(lambda w: jnp.sum(jnp.exp(w)), jnp.zeros(3, jnp.float32))
    assert g.dtype == jnp.float32
    np.testing.assert_array_equal(g, np.ones(3, np.float32))


def test_complex_step_custom_step():
    d = calcjax.complex_step_derivative(jnp.exp, jnp.float64(0.5), h=1e-10)
    assert float(d) == pytest.approx(np.exp(0.5), rel=1e-15)


# --------------------------------------------------------------------------- Richardson


MODE_DTYPES = [(mode, dtype) for mode in MODES for dtype in DTYPES]


@pytest.mark.parametrize(("mode", "dtype"), MODE_DTYPES)
def test_richardson_derivative_matches_analytic(dtype, tol, mode):
    x = jnp.asarray(POINTS, dtype)
    x64 = np.asarray(x, np.float64)
    est = _apply(mode, functools.partial(calcjax.richardson_derivative, _mixture), x)
    assert isinstance(est, calcjax.Estimate)
    assert est.value.shape == est.error.shape == x.shape
    assert est.value.dtype == est.error.dtype == x.dtype
    err = np.abs(np.asarray(est.value, np.float64) - _mixture_derivative(x64))
    assert np.all(err <= tol.fd(dtype, 4) * _mixture_scale(x64)), err


@pytest.mark.parametrize("num_steps", [3])
def test_richardson_error_estimate_is_not_optimistic(dtype, num_steps):
    """For functions evaluated without internal cancellation, |value - f'| <= error, on a grid."""
    x = jnp.linspace(-0.5, 3.0, 64, dtype=dtype)
    x64 = np.asarray(x, np.float64)
    estimates = jax.jit(
        lambda x: {
            name: calcjax.richardson_derivative(f, x, num_steps=num_steps)
            for name, (f, _) in FUNCTIONS.items()
        }
    )(x)
    for name, est in estimates.items():
        err = np.abs(np.asarray(est.value, np.float64) - FUNCTIONS[name][1](x64))
        assert np.all(err <= np.asarray(est.error, np.float64)), name


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(sorted(FUNCTIONS)), x=st.floats(-0.5, 3.0))
@example(name="sin", x=1.0)
@example(name="exp", x=3.0)
def test_richardson_error_estimate_is_not_optimistic_anywhere(name, x):
    f, df = FUNCTIONS[name]
    est = calcjax.richardson_derivative(f, jnp.float64(x))
    assert abs(float(est.value) - float(df(x))) <= float(est.error)


@pytest.mark.parametrize(("mode", "dtype"), MODE_DTYPES)
def test_richardson_gradient_matches_reference(dtype, tol, flatten, mode):
    inst = _instance("rosenbrock", dtype)
    points = _point_batch(inst.x0)
    fn = functools.partial(calcjax.richardson_gradient, inst.f)
    est = _unstack(_vmap(fn)(points), 0) if mode == "vmap" else _apply(mode, fn, inst.x0)
    assert isinstance(est, calcjax.Estimate)
    assert jax.tree_util.tree_structure(est.error) == jax.tree_util.tree_structure(inst.x0)
    assert np.all(flatten(est.error) >= 0)
    _check_gradient(inst, inst.x0, est.value, tol.fd(dtype, 4), flatten)


def test_richardson_gradient_of_mlp_params(tol, flatten):
    inst = _instance("mlp", "float64")
    est = calcjax.richardson_gradient(inst.f, inst.x0)
    _check_gradient(inst, inst.x0, est.value, tol.fd("float64", 4), flatten)
    assert jax.tree_util.tree_structure(est.error) == jax.tree_util.tree_structure(inst.x0)


@pytest.mark.parametrize(("num_steps", "step_ratio"), list(itertools.product([2, 4, 6], [1.5, 2.0, 4.0])))
def test_richardson_settings(num_steps, step_ratio):
    est = calcjax.richardson_derivative(jnp.exp, jnp.float64(0.3), num_steps=num_steps, step_ratio=step_ratio)
    assert abs(float(est.value) - np.exp(0.3)) <= float(est.error)
