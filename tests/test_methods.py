"""The method registry: every method on every problem against the analytic reference, and its metadata."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import baselines

PROBLEM_NAMES = tuple(calcjax.PROBLEMS)
#: Deterministic JAX methods; the stochastic ones are graded in tests/test_estimators.py.
TRACEABLE = tuple(name for name, m in calcjax.METHODS.items() if m.traceable and not m.stochastic)
HOST = tuple(name for name, m in calcjax.METHODS.items() if not m.traceable)
FD_METHODS = ("fd-forward", "fd-central", "fd-central-blackbox", "fd-central4", "fd-richardson", "fd-complex")

#: float64 on every problem, float32 on one.
CASES = [(p, "float64") for p in PROBLEM_NAMES] + [("rosenbrock", "float32")]


def _available(names):
    return [calcjax.METHODS[n] for n in names if not calcjax.METHODS[n].unavailable()]


@functools.lru_cache
def _instance(problem, dtype):
    return calcjax.get_problem(problem).instance(12, dtype)


def _check(inst, method, g, tol, flatten):
    ref = inst.reference_gradient()
    # FD rounding is eps |f| / h per coordinate: the error scale has f's size in it as well as g's
    f0 = abs(float(inst.f_np(inst.x0_np.astype(np.float64))))
    scale = np.linalg.norm(ref) + np.sqrt(inst.n) * f0
    err = np.linalg.norm(flatten(g) - ref)
    limit = tol.method(method, inst.dtype)
    assert err <= limit * scale, (
        f"{method.name} on {inst.name} ({inst.dtype}): {err / scale:.3g} > {limit:.3g}"
    )


@pytest.mark.parametrize(("problem", "dtype"), CASES)
def test_traceable_methods_match_the_reference(tol, flatten, problem, dtype):
    """Every JAX method on inst.f and inst.x0, all in one compiled program (one compile per problem)."""
    inst = _instance(problem, dtype)
    methods = _available(TRACEABLE)
    grads = jax.jit(lambda x: {m.name: m(inst.f, x) for m in methods})(inst.x0)
    for m in methods:
        g = grads[m.name]
        assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(inst.x0), m.name
        assert all(a.dtype == jnp.dtype(dtype) for a in jax.tree_util.tree_leaves(g)), m.name
        _check(inst, m, g, tol, flatten)


@pytest.mark.parametrize(("problem", "dtype"), CASES)
@pytest.mark.parametrize("name", HOST)
def test_host_methods_match_the_reference(tol, flatten, problem, dtype, name):
    """NumPy/SciPy methods on the NumPy twin f_np and the flat x0_np."""
    method = calcjax.METHODS[name]
    if method.unavailable():
        pytest.skip(method.unavailable())
    inst = _instance(problem, dtype)
    g = method(inst.f_np, inst.x0_np)
    assert isinstance(g, np.ndarray)
    assert g.shape == inst.x0_np.shape
    assert g.dtype == inst.x0_np.dtype
    _check(inst, method, g, tol, flatten)


@pytest.mark.parametrize("name", ["fd-forward", "fd-complex", "jax-lax-map"])
def test_traceable_methods_plain(tol, flatten, name):
    """JAX methods called op by op (no jit): fd-complex's numeric probe runs only then."""
    method = calcjax.METHODS[name]
    if method.unavailable():
        pytest.skip(method.unavailable())
    inst = _instance("tutorial-quadratic", "float64")
    _check(inst, method, method(inst.f, inst.x0), tol, flatten)


@pytest.mark.parametrize("name", HOST)
def test_host_methods_take_a_pytree(tol, flatten, name):
    """A NumPy method given a dict of NumPy arrays calls f on a dict and returns one."""
    method = calcjax.METHODS[name]
    if method.unavailable():
        pytest.skip(method.unavailable())
    x = {"w": np.asarray([[0.5, -1.0]]), "b": np.asarray(2.0)}
    f = lambda p: float(np.sum(p["w"] ** 2) * p["b"])
    g = method(f, x)
    assert set(g) == {"w", "b"}
    assert g["w"].shape == (1, 2)
    assert np.shape(g["b"]) == ()
    expected = {"w": 2 * x["w"] * x["b"], "b": np.sum(x["w"] ** 2)}
    np.testing.assert_allclose(flatten(g), flatten(expected), rtol=tol.method(method, "float64") * 10)


# --------------------------------------------------------------------------- metadata


def _counting_f(counter):
    """``sum(x**2)`` plus a host callback that counts evaluations (one per point, even under vmap)."""

    def count(x):
        counter[0] += 1
        return np.zeros((), x.dtype)

    def f(x):
        tick = jax.pure_callback(count, jax.ShapeDtypeStruct((), x.dtype), x[0], vmap_method="sequential")
        return jnp.sum(x**2) + tick

    return f


@pytest.mark.parametrize(
    "name",
    [
        *(n for n in FD_METHODS if n != "fd-complex"),
        "fd-complex",
        "jax-vmap-naive",
        "jax-lax-map",
        "zo-spsa",
        "zo-gaussian",
        "zo-gaussian-k10",
    ],
)
def test_evals_is_the_number_of_f_evaluations(name):
    n = 5
    method = calcjax.METHODS[name]
    if method.unavailable():
        pytest.skip(method.unavailable())
    counter = [0]
    jax.block_until_ready(jax.jit(functools.partial(method, _counting_f(counter)))(jnp.ones(n)))
    assert counter[0] == method.evals(n)


@pytest.mark.parametrize("name", ["numpy-loop", "scipy-approx-fprime"])
def test_evals_of_host_baselines(name):
    method = calcjax.METHODS[name]
    calls = []
    method(lambda x: calls.append(1) or float(np.sum(x**2)), np.ones(5))
    assert len(calls) == method.evals(5)


@pytest.mark.parametrize("name", calcjax.METHODS)
def test_metadata_is_consistent(name):
    m = calcjax.METHODS[name]
    assert m.name == name
    assert m.family in ("fd", "ad", "baseline", "peer", "stochastic")
    assert m.stochastic == (m.family == "stochastic")
    assert m.description
    assert m.evals(10) >= 0
    if m.family == "ad":
        assert m.evals(10) == 0
        assert m.scheme is None
    if m.family == "fd":
        assert m.traceable
        assert m.evals(10) >= 10
    if m.scheme not in (None, "complex") and m.order is not None:
        if m.scheme == "central" and m.name != "scipy-differentiate" and m.name != "fd-richardson":
            calcjax.stencil(m.scheme, m.order)  # a real stencil
    if m.memory is not None:
        assert m.memory(100, 8) > 0


def test_registry_has_the_issue_methods():
    required = {
        "fd-forward",
        "fd-central",
        "fd-central4",
        "fd-richardson",
        "fd-complex",
        "ad-reverse",
        "ad-forward",
        "numpy-loop",
        "scipy-approx-fprime",
    }
    assert required <= set(calcjax.METHODS)


@pytest.mark.parametrize(
    ("name", "scheme", "order", "share"),
    [
        ("fd-forward", "forward", 1, True),
        ("fd-central", "central", 2, True),
        ("fd-central-blackbox", "central", 2, False),
        ("fd-central4", "central", 4, True),
    ],
)
def test_fd_methods_are_calcjax_gradient(name, scheme, order, share):
    """The registry entry is exactly calcjax.gradient with its scheme, order and sharing."""
    a = jnp.linspace(-1.0, 2.0, 15).reshape(3, 5)
    f = lambda x: jnp.sum(jnp.sin(a @ x)) * jnp.sum(x**2)
    x = jnp.linspace(-1.0, 1.0, 5)
    m = calcjax.METHODS[name]
    assert (m.scheme, m.order) == (scheme, order)
    kw = dict(scheme=scheme, order=order, share_products=share)
    got, want = jax.jit(lambda x: (m(f, x), calcjax.gradient(f, x, **kw)))(x)
    np.testing.assert_array_equal(got, want)


def test_numpy_loop_is_the_tutorials_loop():
    f = lambda w: float(np.sum(np.sin(w)))
    w = np.asarray([0.1, 0.7, -1.3])
    np.testing.assert_array_equal(calcjax.METHODS["numpy-loop"](f, w), baselines.numpy_loop_gradient(f, w))


# ------------------------------------------------------------------ get_method, register, unavailable


def test_get_method_by_name_and_object():
    m = calcjax.METHODS["fd-central"]
    assert calcjax.get_method("fd-central") is m
    assert calcjax.get_method(m) is m


def test_get_method_wraps_a_callable():
    def my_grad(f, x):
        return 2 * x

    m = calcjax.get_method(my_grad)
    assert isinstance(m, calcjax.GradientMethod)
    assert m.name == "my_grad"
    assert m.family == "custom"
    np.testing.assert_array_equal(m(None, jnp.asarray([1.0, 2.0])), [2.0, 4.0])
    assert m.unavailable() is None


def test_get_method_unknown_lists_every_name():
    with pytest.raises(ValueError, match="unknown gradient method 'fd-nope'") as info:
        calcjax.get_method("fd-nope")
    for name in calcjax.METHODS:
        assert name in str(info.value)


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="a gradient method called 'fd-central' is already registered"):
        calcjax.register(calcjax.METHODS["fd-central"])


def test_register_adds_a_method():
    m = calcjax.GradientMethod("test-double", lambda f, x: 2 * x, "custom", "twice x", evals=lambda n: 0)
    try:
        assert calcjax.register(m) is m
        assert calcjax.get_method("test-double") is m
    finally:
        del calcjax.METHODS["test-double"]


def test_unavailable_names_the_missing_package():
    m = calcjax.GradientMethod(
        "needs-pkg", lambda f, x: x, "peer", "x", evals=lambda n: 0, requires="calcjax_no_such_package"
    )
    assert m.unavailable() == (
        "needs-pkg needs the optional package 'calcjax_no_such_package' (pip install calcjax_no_such_package)"
    )


def test_unavailable_without_x64():
    m = calcjax.METHODS["fd-complex"]
    assert m.unavailable() is None
    with jax.enable_x64(False):
        assert "needs x64" in m.unavailable()
