"""Shared matrix products (``share_products``): ``f(x + d*e_i)`` without redoing ``A @ x``.

Each case checks the per-point function against ``f`` evaluated at the
perturbed point, that the shortcut is really taken (no matrix product of the
full size left per point), and the gradient against its black-box twin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import calcjax
from calcjax._shared_eval import point_function

RNG = np.random.default_rng(7)
A = jnp.asarray(RNG.standard_normal((6, 5)))
B = jnp.asarray(RNG.standard_normal((3, 2, 4)))
X5 = jnp.asarray(RNG.standard_normal(5))


def _dot_shapes(fn, *args):
    """Shapes of every ``dot_general`` operand in ``fn``'s jaxpr, nested jaxprs included."""
    shapes = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                shapes.append(tuple(tuple(v.aval.shape) for v in eqn.invars))
            for value in eqn.params.values():
                if isinstance(value, jax.extend.core.ClosedJaxpr):
                    walk(value.jaxpr)
                elif isinstance(value, jax.extend.core.Jaxpr):
                    walk(value)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return shapes


@jax.jit
def _jitted_logistic(w):
    return jnp.mean(jnp.log1p(jnp.exp(A @ w)))


def _reshaped(w):  # x reshaped to a matrix and contracted over both axes (tensordot)
    return jnp.sum(jnp.sin(jnp.tensordot(B, w.reshape(2, 4), axes=2)))


CASES = {
    # name: (f, x); every f has a matrix product of x with an x-free operand
    "rhs": (lambda w: jnp.sum(jnp.tanh(A @ w)), X5),
    "lhs": (lambda w: jnp.sum(jnp.cos(w @ A.T)), X5),
    "also elsewhere": (lambda w: jnp.sum(jnp.exp(A @ w)) + 0.5 * jnp.sum(w**3), X5),
    "jitted f": (_jitted_logistic, X5),
    "two axes": (_reshaped, jnp.asarray(RNG.standard_normal(8))),
    "pytree weights": (
        lambda p: jnp.sum(jnp.tanh(A.T @ p["W"] + p["b"]) ** 2),
        {"W": jnp.asarray(RNG.standard_normal((6, 3))), "b": jnp.asarray(RNG.standard_normal(3))},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_point_function_is_f_at_the_perturbed_point(name):
    f, x = CASES[name]
    flat, unravel = ravel_pytree(x)
    f_flat = lambda z: f(unravel(z))
    point = point_function(f_flat, flat)
    assert point is not None, f"{name}: the product of x was not found"
    idx = jnp.arange(flat.size)
    deltas = jnp.asarray(RNG.uniform(-1e-3, 1e-3, flat.size))
    got = jax.jit(jax.vmap(point))(idx, deltas)
    want = jax.vmap(lambda i, d: f_flat(flat.at[i].add(d)))(idx, deltas)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["rhs", "lhs", "jitted f", "two axes"])
def test_no_full_product_is_left_per_point(name):
    """Per point, the product of x is gone: no dot_general reads the full x-free operand."""
    f, x = CASES[name]
    point = point_function(f, x)
    per_point = _dot_shapes(jax.vmap(point), jnp.arange(2), jnp.full(2, 1e-3))
    assert not per_point, per_point
    assert _dot_shapes(jax.vmap(f), jnp.stack([x, x])), "the black box has the product"


def test_functions_without_a_product_of_x_are_evaluated_as_written():
    assert point_function(lambda w: jnp.sum(w**2), X5) is None
    assert point_function(lambda w: w @ w, X5) is None  # both operands depend on x
    assert point_function(lambda w: jnp.sum(A @ jnp.sin(w)), X5) is None  # not linear in x


def test_functions_with_side_effects_are_evaluated_as_written():
    def f(w):
        jax.debug.callback(lambda v: None, w)
        return jnp.sum(A @ w)

    assert point_function(f, X5) is None


@pytest.mark.parametrize("name", CASES)
def test_gradient_equals_black_box(name):
    f, x = CASES[name]
    shared = ravel_pytree(calcjax.gradient(f, x))[0]
    plain = ravel_pytree(calcjax.gradient(f, x, share_products=False))[0]
    np.testing.assert_allclose(shared, plain, rtol=1e-7, atol=1e-9)


def test_complex_step_and_richardson_share_too():
    f, x = CASES["rhs"]
    exact = A.T @ (1.0 - jnp.tanh(A @ x) ** 2)  # analytic gradient of sum(tanh(A @ w))
    cs = calcjax.complex_step_gradient(f, x)
    np.testing.assert_allclose(cs, exact, rtol=1e-13)
    if jax.default_backend() == "gpu":  # a batched complex product is refused there (test_compare)
        with pytest.raises(ValueError, match="complex matrix product on GPU"):
            calcjax.complex_step_gradient(f, x, share_products=False)
    else:
        cs_plain = calcjax.complex_step_gradient(f, x, share_products=False)
        np.testing.assert_allclose(cs, cs_plain, rtol=1e-14, atol=1e-15)
    rg = calcjax.richardson_gradient(f, x).value
    rg_plain = calcjax.richardson_gradient(f, x, share_products=False).value
    np.testing.assert_allclose(rg, rg_plain, rtol=1e-9, atol=1e-11)


def test_float32_shared_gradient():
    f, x = CASES["rhs"]
    x32 = x.astype(jnp.float32)
    g = calcjax.gradient(f, x32)
    assert g.dtype == jnp.float32
    exact = np.asarray(A.T @ (1.0 - jnp.tanh(A @ x) ** 2))
    np.testing.assert_allclose(g, exact, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_share_products_must_be_a_bool(bad):
    for fn in (calcjax.gradient, calcjax.richardson_gradient, calcjax.complex_step_gradient):
        with pytest.raises(TypeError, match=f"share_products must be True or False, got {bad!r}"):
            fn(lambda w: jnp.sum(w), X5, share_products=bad)


# ------------------------------------------------------------------ edge cases (from review)


def test_empty_leaf_falls_back():
    p = {"E": jnp.zeros((0, 3)), "W": jnp.asarray(RNG.standard_normal((2, 3)))}
    z0, y = jnp.zeros((4, 0)), jnp.asarray(RNG.standard_normal((4, 2)))
    f = lambda q: jnp.sum(jnp.tanh(z0 @ q["E"] + y @ q["W"]))
    shared, plain = (ravel_pytree(calcjax.gradient(f, p, share_products=s))[0] for s in (True, False))
    np.testing.assert_allclose(shared, plain, rtol=1e-8, atol=1e-10)


def test_untouched_leaves_stay_bit_for_bit():
    """Points that perturb another leaf see this one unchanged: no 0 * inf NaN, no -0.0 -> +0.0."""
    a_inf = A.at[2, 0].set(jnp.inf)
    p = {"W": X5, "b": jnp.asarray([0.5, 1.5])}
    f = lambda q: jnp.sum(jnp.tanh(a_inf @ q["W"])) + jnp.sum(q["b"] ** 2)
    with pytest.warns(calcjax.DomainWarning):  # W's row met by the inf: inf - inf there (documented)
        g = calcjax.gradient(f, p)
    np.testing.assert_allclose(g["b"], 2 * p["b"], rtol=1e-8)
    np.testing.assert_allclose(g["W"][1:], calcjax.gradient(f, p, share_products=False)["W"][1:], rtol=1e-7)

    q = {"a": X5, "z": jnp.asarray([-0.0])}
    h = lambda q: jnp.sum(jnp.sin(A @ q["a"])) + jnp.arctan2(q["z"][0], -1.0)
    got = calcjax.gradient(h, q, scheme="forward")["a"]
    want = calcjax.gradient(h, q, scheme="forward", share_products=False)["a"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@jax.jit
def _helper(a, w):
    return 2.0 * a, jnp.sin(w)


A2 = jnp.asarray(RNG.standard_normal((6, 5)))
NOT_SHARED = {
    # each has a product of x that the evaluator runs batched, so on a GPU it stays a culprit
    "side effect": lambda w: (jax.debug.callback(lambda: None), jnp.sum(jnp.exp(A @ w / 10)))[1],
    "x-free output of a call fed x": lambda w: (
        jnp.sum(jnp.exp(_helper(A, w)[0] @ w / 10)) + jnp.sum(_helper(A, w)[1])
    ),
    "cond on x": lambda w: jnp.sum(jnp.exp(jax.lax.cond(w[0] > 0, lambda: A, lambda: A2) @ w / 10)),
}


@pytest.mark.parametrize("name", NOT_SHARED)
def test_gpu_rule_exempts_only_what_is_shared(monkeypatch, name):
    from calcjax import _complex_safety

    monkeypatch.setattr(_complex_safety, "_platform", lambda x: "gpu")
    found = calcjax.complex_step_culprits(NOT_SHARED[name], X5, shared_products=True)
    assert any(c.startswith("a complex matrix product on GPU") for c in found), found


def test_inf_in_a_weight_matrix_column_stays_in_its_column():
    """x a weight matrix, data with an inf: the product's other columns keep their values (no inf * 0)."""
    data = jnp.asarray(RNG.standard_normal((4, 3))).at[1, 0].set(jnp.inf)
    w = jnp.asarray(RNG.standard_normal((3, 2))).at[0, 1].set(0.5)
    f = lambda v: jnp.sum(jnp.tanh(data @ v))
    point = point_function(lambda z: f(z.reshape(3, 2)), w.reshape(-1))
    # perturb W[0, 1] (flat 1) upwards: its column of data holds the inf, which the
    # perturbation must add to column 1 of the product only (inf + inf there, as in f)
    got = point(jnp.asarray(1), jnp.asarray(1e-3))
    want = f(w.at[0, 1].add(1e-3))
    assert np.isfinite(want)
    np.testing.assert_allclose(got, want, rtol=1e-12)
