"""calcjax._complex_safety: functions the complex step cannot differentiate are refused, with the culprit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax._complex_safety import check_complex_step, complex_step_culprits
from tests.complex_cases import CPU, RNG, SAFE, UNSAFE, X0, logistic_grad, logistic_softplus


@pytest.fixture(autouse=True)
def _on_cpu():
    """On the CPU, also on a machine with a GPU (test_matrix_products_are_culprits_on_gpu covers that)."""
    with jax.default_device(CPU):
        yield


def test_the_failure_is_real():
    """Why the check exists: the raw complex step of softplus is 0, jax.grad says sigmoid."""
    z = jnp.asarray(0.3 + 1e-20j)
    raw = jnp.imag(jax.nn.softplus(z)) / 1e-20
    assert float(raw) == 0.0
    assert float(jax.grad(jax.nn.softplus)(0.3)) == pytest.approx(float(jax.nn.sigmoid(0.3)))


@pytest.mark.parametrize(("f", "culprit"), UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_functions_are_refused(f, culprit):
    with pytest.raises(ValueError, match=r"complex_step_gradient: .*drops the imaginary part") as info:
        calcjax.complex_step_gradient(f, X0)
    assert culprit in str(info.value)


@pytest.mark.parametrize(("f", "culprit"), UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_functions_are_refused_under_jit(f, culprit):
    """Traced x: the static checks alone still catch every one of them."""
    with pytest.raises(ValueError, match="drops the imaginary part") as info:
        jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    assert culprit in str(info.value)


@pytest.mark.parametrize("f", SAFE.values(), ids=SAFE.keys())
def test_safe_functions_pass_every_check(f):
    assert complex_step_culprits(f, X0) == []
    check_complex_step(f, X0)  # concrete x: the numeric probe runs too


@pytest.mark.parametrize(
    "name", ["sin", "exp", "polynomial", "log1p(exp(z))", "jnp.maximum alone", "tanh MLP"]
)
def test_safe_functions_match_jax_grad_under_jit(name):
    f = SAFE[name]
    g = jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    np.testing.assert_allclose(g, jax.grad(f)(X0), rtol=1e-13, atol=1e-15)


def test_safe_function_plain_call():
    g = calcjax.complex_step_gradient(SAFE["log1p(exp(z))"], X0)
    np.testing.assert_allclose(g, logistic_grad(X0), rtol=1e-14)


def test_culprit_names_the_jax_function_and_your_line():
    (culprit,) = complex_step_culprits(logistic_softplus, X0)
    assert culprit.startswith("real, imag inside softplus/logaddexp at ")
    assert "complex_cases.py" in culprit
    assert "logistic_softplus" in culprit


def test_cast_to_a_real_dtype_is_refused():
    """JAX warns about the cast at complex input; the check names it (and keeps the warning quiet)."""
    f = lambda w: jnp.sum(jnp.sin(w.astype(jnp.float32))).astype(w.dtype)
    with pytest.raises(ValueError, match=r"a cast to float32 at .*test_complex_safety.py"):
        check_complex_step(f, X0)


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_matrix_products_are_culprits_on_gpu(monkeypatch, platform):
    """On an H100 (JAX 0.11.2) complex matrix products returned imaginary part 0.

    A matrix-vector product counts: complex_step_gradient vmaps f, which makes it a
    matrix-matrix product. An inner product does not.
    """
    from calcjax import _complex_safety

    monkeypatch.setattr(_complex_safety, "_platform", lambda x: platform)
    batch = jax.device_put(RNG.standard_normal((8, 6)), CPU)
    gemm = lambda w: jnp.sum(jnp.tanh(batch @ jnp.stack([w, 2 * w], axis=1)))
    gemv = lambda w: jnp.sum(jnp.tanh(batch @ w))
    inner = lambda w: jnp.tanh(w @ w)
    for f in (gemm, gemv):
        found = complex_step_culprits(f, X0)
        if platform == "gpu":
            assert len(found) == 1
            assert found[0].startswith("a complex matrix product on GPU (dot_general) at ")
        else:
            assert found == []
    assert complex_step_culprits(inner, X0) == []


def test_shared_products_are_not_gpu_culprits(monkeypatch):
    """With shared products, x's product with an x-free matrix runs once at real x: safe on GPU.

    A product of two x-dependent values is still batched per point, so it stays a culprit.
    """
    from calcjax import _complex_safety

    monkeypatch.setattr(_complex_safety, "_platform", lambda x: "gpu")
    batch = jax.device_put(RNG.standard_normal((8, 6)), CPU)
    gemv = lambda w: jnp.sum(jnp.tanh(batch @ w))
    two = lambda w: jnp.sum(jnp.tanh(batch @ w) @ (batch * w))
    assert complex_step_culprits(gemv, X0, shared_products=True) == []
    assert len(complex_step_culprits(gemv, X0)) == 1
    (culprit,) = complex_step_culprits(two, X0, shared_products=True)
    assert culprit.startswith("a complex matrix product on GPU (dot_general) at ")
    # complex_step_gradient shares by default, so on a GPU it takes gemv and refuses it without sharing.
    g = calcjax.complex_step_gradient(gemv, X0)
    want = batch.T @ (1.0 - jnp.tanh(batch @ X0) ** 2)
    np.testing.assert_allclose(g, want, rtol=1e-13)
    with pytest.raises(ValueError, match="a complex matrix product on GPU"):
        calcjax.complex_step_gradient(gemv, X0, share_products=False)


def test_real_output_is_refused():
    with pytest.raises(ValueError, match="returned dtype float64 for complex input"):
        calcjax.complex_step_gradient(lambda w: jnp.abs(jnp.sum(w)), X0)


def _hidden_drop(z):
    """Drops the imaginary part inside a callback, where no jaxpr scan can see it."""
    return jax.pure_callback(
        lambda a: (np.real(a) + 0 * a).astype(a.dtype),
        jax.ShapeDtypeStruct(z.shape, z.dtype),
        z,
        vmap_method="sequential",
    )


def test_numeric_probe_catches_what_the_scan_cannot_see():
    f = lambda w: jnp.sum(jnp.sin(_hidden_drop(w)))
    assert complex_step_culprits(f, X0) == []
    with pytest.raises(ValueError, match=r"disagrees with central differences along a random direction"):
        calcjax.complex_step_gradient(f, X0)
    # Under jit x is a tracer: only the static checks run, so this one gets through (documented).
    g = jax.jit(lambda w: calcjax.complex_step_gradient(f, w))(X0)
    assert np.all(np.asarray(g) == 0.0)


def test_probe_flags_a_kink():
    with pytest.raises(ValueError, match="or is not differentiable at x"):
        check_complex_step(lambda w: jnp.sum(jax.nn.relu(w)), jnp.asarray([0.0, 1.0]))


def test_probe_on_pytree_and_float32_x():
    x = {"a": jnp.ones(3, jnp.float32), "b": jnp.float32(0.5)}
    check_complex_step(lambda p: jnp.sum(jnp.sin(p["a"])) * p["b"], x)
    with pytest.raises(ValueError, match="abs"):
        check_complex_step(lambda p: jnp.sum(jnp.abs(p["a"])) * p["b"], x)


def test_complex_step_derivative_is_checked_too():
    xs = jnp.linspace(-2.0, 2.0, 50)
    np.testing.assert_allclose(calcjax.complex_step_derivative(jnp.sin, xs), jnp.cos(xs), rtol=1e-15)
    with pytest.raises(ValueError, match=r"complex_step_derivative: .*softplus"):
        calcjax.complex_step_derivative(jax.nn.softplus, xs)
    with pytest.raises(ValueError, match=r"complex_step_derivative: .*disagrees .* at x\[\d+\]"):
        calcjax.complex_step_derivative(lambda t: jnp.sin(_hidden_drop(t)), xs)


def test_complex_step_derivative_under_vmap_and_jit():
    xs = jnp.linspace(-2.0, 2.0, 5)
    d = jax.vmap(lambda t: calcjax.complex_step_derivative(jnp.exp, t))(xs)
    np.testing.assert_allclose(d, jnp.exp(xs), rtol=1e-15)
    with pytest.raises(ValueError, match="softplus"):
        jax.vmap(lambda t: calcjax.complex_step_derivative(jax.nn.softplus, t))(xs)
    with pytest.raises(ValueError, match="softplus"):
        jax.jit(lambda t: calcjax.complex_step_derivative(jax.nn.softplus, t))(xs)
