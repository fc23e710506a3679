"""A second call with the same shapes does not trace or compile again.

``f`` counts its own traces (a Python side effect runs only while JAX traces);
the jitted wrapper's ``_cache_size()`` counts compiled programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import calcjax
from calcjax import _descent


class Traced:
    """``sum(sin(x))`` that counts how often JAX traces it (not its host calls by NumPy methods)."""

    def __init__(self):
        self.traces = 0

    def __call__(self, x):
        if isinstance(x, jax.core.Tracer):
            self.traces += 1
        return jnp.sum(jnp.sin(x))


CALLS = {
    "derivative": lambda f, x: calcjax.derivative(f, x),
    "derivative-forward2": lambda f, x: calcjax.derivative(f, x, scheme="forward", order=2),
    "gradient": lambda f, x: calcjax.gradient(f, x),
    "gradient-chunked": lambda f, x: calcjax.gradient(f, x, batch_size=2, scheme="central", order=4),
    "directional_derivative": lambda f, x: calcjax.directional_derivative(f, x, jnp.ones_like(x)),
    "complex_step_derivative": lambda f, x: calcjax.complex_step_derivative(f, x),
    "complex_step_gradient": lambda f, x: calcjax.complex_step_gradient(f, x),
    "richardson_derivative": lambda f, x: calcjax.richardson_derivative(f, x),
    "richardson_gradient": lambda f, x: calcjax.richardson_gradient(f, x),
    "default_step": lambda f, x: calcjax.default_step(x),
}


@pytest.mark.parametrize(
    ("call", "dtype"),
    [pytest.param(c, "float64", id=name) for name, c in CALLS.items()]
    + [pytest.param(CALLS["gradient"], "float32", id="gradient-float32")],
)
def test_second_call_does_not_retrace(call, dtype):
    f = Traced()
    fn = jax.jit(lambda x: call(f, x))
    x = jnp.linspace(0.1, 0.9, 5, dtype=dtype)
    jax.block_until_ready(fn(x))
    traces = f.traces
    assert fn._cache_size() == 1
    jax.block_until_ready(fn(2 * x))  # new values, same shape and dtype
    jax.block_until_ready(fn(x - 1))
    assert f.traces == traces
    assert fn._cache_size() == 1


def test_a_new_shape_does_compile_again():
    """The counter does see retraces: a new shape is one."""
    f = Traced()
    fn = jax.jit(lambda x: calcjax.gradient(f, x))
    fn(jnp.ones(3))
    traces = f.traces
    fn(jnp.ones(4))
    assert f.traces > traces
    assert fn._cache_size() == 2


@pytest.mark.parametrize("method", ["ad-reverse", "fd-central", "fd-forward", "numpy-loop"])
def test_gradient_descent_compiles_once(method):
    f = Traced()
    calcjax.gradient_descent(f, jnp.ones(3), lr=0.1, steps=5, method=method)
    traces, compiled = f.traces, _descent._run._cache_size()
    for x0, lr in [(jnp.zeros(3), 0.2), (jnp.full(3, 2.0, jnp.float64), 0.05)]:
        calcjax.gradient_descent(f, x0, lr=lr, steps=5, method=method)
    assert f.traces == traces
    assert _descent._run._cache_size() == compiled


def test_gradient_descent_compiles_again_for_other_steps():
    """steps is static: the cache does grow when it changes (the check above can fail)."""
    f = Traced()
    calcjax.gradient_descent(f, jnp.ones(3), lr=0.1, steps=5)
    compiled = _descent._run._cache_size()
    calcjax.gradient_descent(f, jnp.ones(3), lr=0.1, steps=6)
    assert _descent._run._cache_size() == compiled + 1


def test_descent_on_a_problem_instance_compiles_once():
    """inst.f is one object per instance, so the static f of the compiled loop is found again."""
    inst = calcjax.get_problem("quadratic").instance(10, "float64")
    assert inst.f is inst.f
    calcjax.gradient_descent(inst.f, inst.x0, lr=1e-5, steps=3)
    compiled = _descent._run._cache_size()
    calcjax.gradient_descent(inst.f, inst.x0, lr=2e-5, steps=3)
    assert _descent._run._cache_size() == compiled


@pytest.mark.parametrize("method", ["zo-spsa", "zo-gaussian-k10", "fwd-gradient"])
def test_stochastic_descent_compiles_once_for_any_key(method):
    """The key is traced: a new key, start or rate reuses the compiled loop (loss_every too)."""
    f = Traced()
    run = lambda x0, lr, key: calcjax.gradient_descent(
        f, x0, lr=lr, steps=7, method=method, key=key, loss_every=3
    )
    run(jnp.ones(3), 0.1, jax.random.key(0))
    traces, compiled = f.traces, _descent._run._cache_size()
    for seed, (x0, lr) in enumerate([(jnp.zeros(3), 0.2), (jnp.full(3, 2.0, jnp.float64), 0.05)], 1):
        run(x0, lr, jax.random.key(seed))
    assert f.traces == traces
    assert _descent._run._cache_size() == compiled


def test_optax_descent_compiles_once_with_the_same_optimizer():
    optax = pytest.importorskip("optax")
    f = Traced()
    adam = optax.adam(0.01)
    calcjax.gradient_descent(f, jnp.ones(3), optimizer=adam, steps=5)
    traces, compiled = f.traces, _descent._run._cache_size()
    calcjax.gradient_descent(f, jnp.zeros(3), optimizer=adam, steps=5)
    assert f.traces == traces
    assert _descent._run._cache_size() == compiled
