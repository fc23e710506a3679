"""Gradient descent as one jit-compiled ``lax.scan``, with any registry gradient."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from calcjax import _blackbox
from calcjax import _finite_diff as fd
from calcjax import _validate as v
from calcjax._methods import GradientMethod, get_method

__all__ = ["DescentResult", "gradient_descent"]

#: Below this many parameters the loop body is unrolled: the step is so cheap
#: that the loop's own bookkeeping would dominate.
_UNROLL_BELOW = 64
_UNROLL = 8


class DescentResult(NamedTuple):
    """Result of :func:`gradient_descent`.

    Attributes:
      x: the final point ``x_steps``, with ``x0``'s structure.
      losses: ``f(x_k)`` for ``k = 0 .. steps`` (``steps + 1`` values): the loss
        at every point visited, the start and the end included.
    """

    x: Any
    losses: jax.Array


def _host_gradient(method: GradientMethod, f: Callable[..., Any], x: Any) -> Any:
    """A non-traceable method (NumPy/SciPy) called from inside the scan via ``pure_callback``."""
    shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)

    def host_f(x_np: Any) -> float:
        return float(f(x_np))

    def call(x_np: Any) -> Any:
        g = method.fn(host_f, jax.tree_util.tree_map(np.asarray, x_np))
        return jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), g, shapes)

    return jax.pure_callback(call, shapes, x)


@functools.partial(jax.jit, static_argnames=("f", "grad", "steps", "unroll"))
def _run(
    x0: Any, lr: Any, *, f: Callable[..., Any], grad: Callable[..., Any] | None, steps: int, unroll: int
) -> DescentResult:
    v.check_scalar_function(f, x0)  # at trace time only: no cost on cached calls
    lr = jnp.asarray(lr)

    def value_and_grad(x: Any) -> tuple[jax.Array, Any]:
        if grad is None:  # reverse-mode AD: the loss comes free with the gradient
            return jax.value_and_grad(f)(x)
        return f(x), grad(x)

    def step(x: Any, _: None) -> tuple[Any, jax.Array]:
        loss, g = value_and_grad(x)
        x = jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b.astype(a.dtype), x, g)
        return x, loss

    x, losses = lax.scan(step, x0, None, length=steps, unroll=unroll)
    final = f(x)
    return DescentResult(x, jnp.concatenate([losses, final[None].astype(losses.dtype)]))


@_blackbox.accepts_blackbox(jit=False)
def gradient_descent(
    f: Callable[[Any], jax.Array],
    x0: Any,
    *,
    lr: float,
    steps: int,
    method: str | Callable[..., Any] | GradientMethod = "ad-reverse",
) -> DescentResult:
    """Plain gradient descent ``x <- x - lr * grad f(x)``, as one compiled ``lax.scan``.

    The whole loop, loss history included, is one XLA program: a second call with
    the same ``f``, ``method``, ``steps`` and shapes does not recompile (``lr`` and
    ``x0`` are traced, so changing them does not recompile either). ``f`` is a
    static argument: pass the same function object, not a new lambda, to reuse the
    compiled loop. With ``"ad-reverse"`` the loss comes free from
    ``jax.value_and_grad``; other methods evaluate ``f(x)`` once more per step.
    NumPy/SciPy methods run inside the scan through ``jax.pure_callback``.

    Args:
      f: scalar loss of ``x``, traceable by JAX.
      x0: start point, an array or pytree of floating arrays.
      lr: learning rate, finite.
      steps: number of steps, an integer >= 0.
      method: a registry name (see ``calcjax.METHODS``), a ``GradientMethod`` or
        a callable ``grad(f, x)``.

    Returns:
      ``DescentResult(x, losses)`` with ``losses[k] = f(x_k)``, ``k = 0..steps``.

    Raises:
      TypeError: ``x0`` is not floating.
      ValueError: ``steps`` < 0 or not an integer, ``lr`` not finite, unknown
        method, non-scalar ``f``.

    Example:
      >>> res = calcjax.gradient_descent(lambda x: x**2, 5.0, lr=0.1, steps=10)
      >>> round(float(res.x), 5), round(5 * 0.8**10, 5)
      (0.53687, 0.53687)
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got steps={steps!r}")
    v.check_finite(lr, "lr")
    m = get_method(method)
    reason = m.unavailable()
    if reason:
        raise RuntimeError(reason)
    leaves = fd._leaves_floating(x0)
    if m.name == "ad-reverse":
        grad = None
    elif m.traceable:
        grad = _Static(functools.partial(m.fn, f))
    else:
        grad = _Static(functools.partial(_host_gradient, m, f))
    n = sum(getattr(leaf, "size", 1) for leaf in leaves)
    unroll = _UNROLL if n < _UNROLL_BELOW else 1
    return _run(x0, lr, f=f, grad=grad, steps=int(steps), unroll=unroll)


class _Static:
    """Hashable by the wrapped callable's identity *and* its partial args, so a
    fresh ``functools.partial(m.fn, f)`` for the same ``(m, f)`` hits the jit cache."""

    def __init__(self, fn: functools.partial) -> None:
        self.fn = fn
        self.key = (fn.func, fn.args, tuple(sorted(fn.keywords.items())))

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self.key == other.key
