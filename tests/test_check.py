"""calcjax.check_gradient: planted bugs caught and located, correct gradients pass, bad input refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _gradcheck_corpus as corpus

DTYPES = ("float32", "float64")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_planted_bugs_are_caught_with_the_culprit_leaf_named(dtype):
    cases = corpus.bug_cases(dtype)
    assert len({c.name for c in cases}) >= 25
    missed = []
    for case in cases:
        # the buggy gradient passed as a hand-written function: the FD programs then compile once per
        # problem, not once per bug (the custom_vjp route is the table's and test_custom_vjp_...'s)
        res = calcjax.check_gradient(case.f, case.x, case.grad)
        fd_errors = [r.fd_error for r in res.rows if r.kind == "direction"]
        # each bug is sized to stand at least 10x above the FD error estimate at its point
        assert corpus.effect_ratio(case, fd_errors) >= 10, case.name
        named = any(c == case.culprit or c.startswith(case.culprit) for c in res.culprits)
        if res.passed or not named:
            missed.append((case.name, res.passed, res.culprits))
        assert res.f_evals - res.locate_evals <= 30
    assert not missed, missed


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_smooth_correct_functions_never_fail(dtype):
    # Every 5th of the corpus's 200 functions (5 and the 6 families are coprime: every family at
    # both its sizes, n from 1 to 10 000). The whole corpus runs in the gradcheck suite
    # (calcjax bench --full -- -k gradcheck), whose table is committed.
    every = corpus.correct_cases(dtype, 200)
    cases = every[::5]
    size = lambda c: sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(c.x))
    sizes = [size(c) for c in cases]
    assert set(sizes) == {size(c) for c in every}
    assert min(sizes) == 1
    assert max(sizes) == 10_000
    failures, worst = [], 0.0
    for case in cases:
        res = calcjax.check_gradient(case.f, case.x)
        worst = max(worst, max(r.ratio for r in res.rows))
        if not res.passed:
            failures.append(str(res))
        assert res.f_evals <= 30, case.name
        assert res.grad_evals == 1
    assert not failures, failures[0]
    assert worst < 1


def test_a_pytree_bug_names_leaf_and_coordinate():
    def loss(p):
        h = jnp.tanh(jnp.arange(3.0) @ p["layer1"]["W"] + p["layer1"]["b"])
        return (h @ p["layer2"]["W"] + p["layer2"]["b"] - 1.0) ** 2

    p = {
        "layer1": {"W": jnp.full((3, 2), 0.3), "b": jnp.zeros(2)},
        "layer2": {"W": jnp.ones(2), "b": jnp.zeros(())},
    }
    g = jax.grad(loss)(p)
    g["layer1"]["W"] = g["layer1"]["W"].at[2, 1].add(0.5)
    res = calcjax.check_gradient(loss, p, g)
    assert not res.passed
    assert res.culprits == ("x['layer1']['W']", "x['layer1']['W'][2, 1]")
    assert "x['layer1']['W'][2, 1]" in str(res)
    full = calcjax.check_gradient(loss, p, g, mode="full")
    assert [r.where for r in full.rows if not r.passed] == ["x['layer1']['W'][2, 1]"]
    assert full.culprits == ("x['layer1']['W']", "x['layer1']['W'][2, 1]")
    assert full.f_evals == 2 * calcjax._check.DEFAULT_NUM_STEPS * 11 + 1


def test_numpy_function_and_numpy_gradient():
    """A black-box f (NumPy only) and a hand-written NumPy gradient."""

    def f(x):
        x = np.asarray(x, dtype=float)
        return float(np.sum(np.cos(x) ** 2) + np.sum(x[1:] * x[:-1]))

    def grad(x):
        g = -2 * np.sin(x) * np.cos(x)
        g[1:] += x[:-1]
        g[:-1] += x[1:]
        return g

    x = np.linspace(-1.0, 2.0, 30)
    res = calcjax.check_gradient(f, x, grad)
    assert res.passed, str(res)

    def bad(x):
        g = grad(x)
        g[11] *= -1
        return g

    res = calcjax.check_gradient(f, x, bad)
    assert not res.passed
    assert "x[11]" in res.culprits
    with pytest.raises(ValueError, match="not JAX-traceable"):
        calcjax.check_gradient(f, x)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_differenced_in_float32(dtype):
    x = jnp.linspace(-1, 1, 8).astype(dtype)
    f = lambda w: jnp.sum(jnp.sin(w.astype(jnp.float32)))
    res = calcjax.check_gradient(f, x)
    assert res.passed, str(res)
    assert res.fd_dtype == "float32"
    assert res.dtype == dtype
    assert any("float32" in n and dtype in n for n in res.notes)
    bad = calcjax.check_gradient(f, x, lambda w: np.asarray(-np.cos(np.asarray(w, np.float32)), dtype))
    assert not bad.passed


def test_wrong_forward_rule_shows_in_the_jvp_rows():
    @jax.custom_jvp
    def cube(x):
        return x**3

    cube.defjvp(lambda p, t: (p[0] ** 3, 2 * p[0] ** 2 * t[0]))  # should be 3 x^2
    f = lambda x: jnp.sum(cube(x))
    x = jnp.linspace(0.5, 1.5, 4)
    res = calcjax.check_gradient(f, x, lambda w: 3 * w**2)
    assert not res.passed
    assert all(r.passed for r in res.rows if r.kind == "direction")
    assert not any(r.passed for r in res.rows if r.kind == "jvp")
    assert any("forward rule" in n for n in res.notes)


def test_custom_vjp_is_checked_and_its_jvp_skipped_with_a_note():
    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(0.0, x)

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, ct: (ct * jax.nn.sigmoid(x),))
    loss = lambda w: jnp.sum(softplus(w))
    x = jnp.linspace(-2.0, 2.0, 9)
    res = calcjax.assert_gradient(loss, x)
    assert any("custom_vjp" in n for n in res.notes)
    softplus.defvjp(lambda x: (softplus(x), x), lambda x, ct: (ct * jax.nn.sigmoid(-x),))
    with pytest.raises(AssertionError, match=r"(?s)gradient check FAILED.*culprits: x"):
        calcjax.assert_gradient(lambda w: jnp.sum(softplus(w)), x)


def test_overrides_and_cost_independent_of_n():
    f = lambda w: jnp.sum(jnp.sin(w))
    for n in (1, 10, 10_000):
        res = calcjax.check_gradient(f, jnp.linspace(0.0, 1.0, n))
        assert res.passed
        assert res.f_evals == 28
    res = calcjax.check_gradient(f, jnp.ones(4), lambda w: np.cos(w) + 1e-3, atol=1e-2, rtol=0.0)
    assert res.passed
    assert all(r.allowed == 1e-2 for r in res.rows)
    assert not calcjax.check_gradient(f, jnp.ones(4), lambda w: np.cos(w) + 1e-3).passed
    gaussian = calcjax.check_gradient(f, jnp.ones(4), distribution="gaussian", directions=5, seed=3)
    assert gaussian.passed
    assert sum(r.kind == "direction" for r in gaussian.rows) == 5


def test_non_finite_values_fail_and_say_where():
    f = lambda w: jnp.sum(jnp.log(w))
    res = calcjax.check_gradient(f, jnp.array([1.0, -1.0, 2.0]))
    assert not res.passed
    g = lambda w: np.array([1.0, np.nan, 0.5])
    res = calcjax.check_gradient(f, jnp.array([1.0, 1.0, 2.0]), g)
    assert not res.passed
    assert "x[1]" in res.culprits
    assert any(r.kind == "gradient" and r.where == "x[1]" for r in res.rows)


def test_bad_input_is_refused_with_clear_messages():
    f = lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"])
    p = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match=r"grad\['b'\] has shape \(4,\) but x\['b'\] has shape \(2, 2\)"):
        calcjax.check_gradient(f, p, {"a": jnp.ones(3), "b": jnp.ones(4)})
    with pytest.raises(ValueError, match="structure of x"):
        calcjax.check_gradient(f, p, {"a": jnp.ones(3)})
    with pytest.raises(ValueError, match="must return a scalar"):
        calcjax.check_gradient(lambda w: w**2, jnp.ones(3))
    with pytest.raises(TypeError, match="floating"):
        calcjax.check_gradient(jnp.sum, jnp.arange(3))
    with pytest.raises(ValueError, match="directions must be an integer >= 1, got directions=0"):
        calcjax.check_gradient(jnp.sum, jnp.ones(3), directions=0)
    with pytest.raises(ValueError, match="unknown mode 'all'"):
        calcjax.check_gradient(jnp.sum, jnp.ones(3), mode="all")
    with pytest.raises(ValueError, match="atol"):
        calcjax.check_gradient(jnp.sum, jnp.ones(3), atol=-1.0)


def test_table_rows_side_by_side_with_check_grads():
    rows = corpus.table_rows(("float64",), count=2, bug_limit=3)
    tools = {(r["tool"], r["kind"]) for r in rows}
    assert tools == {(t, k) for t in ("calcjax", "check_grads") for k in ("bug", "correct")}
    ours = next(r for r in rows if r["tool"] == "calcjax" and r["kind"] == "bug")
    assert ours["detected"] == ours["resolvable"] == ours["culprit_named"] == 3
    assert ours["rate"] == 1.0
    assert ours["f_evals_per_check"] <= 30
    correct = next(r for r in rows if r["tool"] == "calcjax" and r["kind"] == "correct")
    assert correct["false_failures"] == 0
    assert correct["cases"] == 2
    theirs = next(r for r in rows if r["tool"] == "check_grads" and r["kind"] == "correct")
    assert theirs["f_evals_per_check"] == 3  # f(x) and a two-point central difference


def _bound_loss(scale, w):
    return jnp.sum(scale * jnp.cos(w))


def test_no_retrace_for_a_function_bound_to_new_arrays():
    """A ``Partial(loss, params)`` compiles once for all parameter values."""
    from jax.tree_util import Partial

    from calcjax import _check

    x = jnp.linspace(0.0, 1.0, 7)
    calcjax.check_gradient(Partial(_bound_loss, jnp.ones(7)), x)
    sizes = (_check._fd_directions._cache_size(), _check._value_and_grad._cache_size())
    res = calcjax.check_gradient(Partial(_bound_loss, 2 * jnp.ones(7)), x + 0.5)
    assert res.passed
    assert (_check._fd_directions._cache_size(), _check._value_and_grad._cache_size()) == sizes


def test_numpy_function_of_a_pytree_with_traceable_false():
    def f(p):
        return float(np.sum(p["w"] ** 2 * p["s"]) + np.sin(p["s"]))

    def grad(p):
        return {"s": np.sum(p["w"] ** 2) + np.cos(p["s"]), "w": 2 * p["w"] * p["s"]}

    p = {"s": np.float64(0.7), "w": np.linspace(-1.0, 1.0, 6)}
    assert calcjax.check_gradient(f, p, grad, traceable=False).passed
    wrong = lambda q: {**grad(q), "s": grad(q)["s"] + 0.1}
    res = calcjax.check_gradient(f, p, wrong, traceable=False)
    assert res.culprits == ("x['s']",)


def test_black_box_vectorized_and_on_workers():
    """The black-box evaluation strategies of calcjax._blackbox serve the check too."""
    from concurrent.futures import ThreadPoolExecutor

    def f(p):
        return float(np.sum(p["w"] ** 2 * p["s"]) + np.sin(p["s"]))

    def f_batch(p):  # a leading batch axis on every leaf: (k, 6) and (k,)
        return np.sum(p["w"] ** 2, axis=1) * p["s"] + np.sin(p["s"])

    def grad(p):
        return {"s": np.sum(p["w"] ** 2) + np.cos(p["s"]), "w": 2 * p["w"] * p["s"]}

    p = {"s": np.float64(0.7), "w": np.linspace(-1.0, 1.0, 6)}
    wrong = lambda q: {**grad(q), "w": grad(q)["w"] * np.r_[1.0, 1.0, 1.0, 1.1, 1.0, 1.0]}
    assert calcjax.check_gradient(f_batch, p, grad, traceable=False, vectorized=True).passed
    res = calcjax.check_gradient(f_batch, p, wrong, traceable=False, vectorized=True)
    assert "x['w'][3]" in res.culprits
    with ThreadPoolExecutor(2) as pool:
        assert calcjax.check_gradient(f, p, grad, traceable=False, workers=pool.map).passed
