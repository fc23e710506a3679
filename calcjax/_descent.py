"""Gradient descent as one jit-compiled ``lax.scan``, with any registry gradient or optax optimizer."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from calcjax import _blackbox
from calcjax import _estimators as est
from calcjax import _finite_diff as fd
from calcjax import _validate as v
from calcjax._methods import GradientMethod, get_method

__all__ = ["MAX_STEPS", "DescentResult", "gradient_descent"]

#: Below this many parameters the loop body is unrolled: the step is so cheap
#: that the loop's own bookkeeping would dominate.
_UNROLL_BELOW = 64
_UNROLL = 8


class DescentResult(NamedTuple):
    """Result of :func:`gradient_descent`.

    Attributes:
      x: the final point ``x_steps``, with ``x0``'s structure; where the loss
        became non-finite, the point at which it did (see ``stopped_at``).
      losses: ``f(x_k)`` at the recorded steps ``loss_steps``: every step with
        ``loss_every=1`` (``steps + 1`` values, the start and the end included).
      loss_steps: the step ``k`` of each entry of ``losses`` (int32): ``0,
        loss_every, 2 loss_every, ...`` and ``steps``.
      stopped_at: the first recorded step whose loss was not finite (int32
        scalar), or -1 when every recorded loss was finite. From that step on
        ``x`` (and an optimizer's state) stays as it was, so the later entries of
        ``losses`` repeat the non-finite loss; the history before it is kept.
    """

    x: Any
    losses: jax.Array
    loss_steps: jax.Array
    stopped_at: jax.Array


def _host_gradient(method: GradientMethod, f: Callable[..., Any], x: Any) -> Any:
    """A non-traceable method (NumPy/SciPy) called from inside the scan via ``pure_callback``."""
    shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)

    def host_f(x_np: Any) -> float:
        return float(f(x_np))

    def call(x_np: Any) -> Any:
        g = method.fn(host_f, jax.tree_util.tree_map(np.asarray, x_np))
        return jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), g, shapes)

    return jax.pure_callback(call, shapes, x)


@functools.partial(
    jax.jit, static_argnames=("f", "grad", "steps", "unroll", "loss_every", "optimizer", "stochastic")
)
def _run(
    x0: Any,
    lr: Any,
    key: Any,
    *,
    f: Callable[..., Any],
    grad: Callable[..., Any] | None,
    steps: int,
    unroll: int,
    loss_every: int,
    optimizer: Any,
    stochastic: bool,
) -> DescentResult:
    v.check_scalar_function(f, x0)  # at trace time only: no cost on cached calls
    tree_map = jax.tree_util.tree_map

    def gradient(x: Any, k: jax.Array) -> Any:
        if grad is None:
            return jax.grad(f)(x)
        return grad(x, key=key, step=k) if stochastic else grad(x)

    def value_and_grad(x: Any, k: jax.Array) -> tuple[jax.Array, Any]:
        if grad is None:  # reverse-mode AD: the loss comes free with the gradient
            return jax.value_and_grad(f)(x)
        # f(x) is traced twice where an estimator evaluates it too (a forward
        # difference, a JVP's primal): XLA merges the two (common subexpressions).
        return f(x), gradient(x, k)

    def update(x: Any, state: Any, g: Any) -> tuple[Any, Any]:
        if optimizer is None:
            rate = jnp.asarray(lr)
            return tree_map(lambda a, b: a - rate.astype(a.dtype) * b.astype(a.dtype), x, g), state
        updates, state = optimizer.update(g, state, x)
        return tree_map(lambda a, u: a + u.astype(a.dtype), x, updates), state

    def advance(carry: tuple, g: Any) -> tuple:
        x, state, k, stop = carry
        x_new, state_new = update(x, state, g)
        running = stop < 0  # after a non-finite loss x and the state stay where they are
        keep = lambda new, old: jnp.where(running, new, old)
        return tree_map(keep, x_new, x), tree_map(keep, state_new, state), k + 1, stop

    def recorded_step(carry: tuple, _: None) -> tuple[tuple, jax.Array]:
        x, state, k, stop = carry
        loss, g = value_and_grad(x, k)
        stop = jnp.where((stop < 0) & ~jnp.isfinite(loss), k, stop)
        return advance((x, state, k, stop), g), loss

    def plain_step(carry: tuple, _: None) -> tuple[tuple, None]:
        return advance(carry, gradient(carry[0], carry[2])), None

    state = None if optimizer is None else optimizer.init(x0)
    carry = (x0, state, jnp.int32(0), jnp.int32(-1))
    if loss_every == 1:
        carry, losses = lax.scan(recorded_step, carry, None, length=steps, unroll=unroll)
    else:

        def chunk(carry: tuple, _: None) -> tuple[tuple, jax.Array]:
            carry, loss = recorded_step(carry, None)
            carry, _ = lax.scan(plain_step, carry, None, length=loss_every - 1, unroll=unroll)
            return carry, loss

        chunks, rest = divmod(steps, loss_every)
        carry, losses = lax.scan(chunk, carry, None, length=chunks)
        if rest:
            carry, loss = recorded_step(carry, None)
            carry, _ = lax.scan(plain_step, carry, None, length=rest - 1, unroll=unroll)
            losses = jnp.concatenate([losses, loss[None]])
    x, _, _, stop = carry
    final = f(x).astype(losses.dtype)
    stop = jnp.where((stop < 0) & ~jnp.isfinite(final), steps, stop)
    losses = jnp.concatenate([losses, final[None]])
    index = jnp.arange(losses.shape[0], dtype=jnp.int32)
    loss_steps = jnp.where(index == losses.shape[0] - 1, steps, index * loss_every)
    return DescentResult(x, losses, loss_steps, stop)


#: Largest number of steps: the step counter inside the loop is an int32.
MAX_STEPS = 2**31 - 2
#: A loss history may take at most this share of the memory available on the device.
HISTORY_MEMORY_SHARE = 0.5
#: Histories below this size are not checked (reading the free memory costs a system call).
_HISTORY_CHECK_BYTES = 64 * 2**20


def _available_bytes(device: jax.Device) -> int | None:
    """Memory free on ``device`` now: the accelerator's allocator, or the host's ``MemAvailable``."""
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _fmt_bytes(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def _check_history(steps: int, loss_every: int, itemsize: int, leaves: list[Any]) -> None:
    """``ValueError`` with the figures when the loss history would not fit in memory."""
    per_entry = itemsize + 4  # the loss and its int32 step number
    recorded = -(-steps // loss_every) + 1
    nbytes = recorded * per_entry
    if nbytes <= _HISTORY_CHECK_BYTES:
        return
    first = leaves[0]
    devices = getattr(first, "devices", None)
    device = next(iter(devices())) if callable(devices) and v.is_concrete(first) else jax.devices()[0]
    free = _available_bytes(device)
    if free is None or nbytes <= HISTORY_MEMORY_SHARE * free:
        return
    fits = max(int(HISTORY_MEMORY_SHARE * free) // per_entry - 1, 1)
    suggest = 10 ** math.ceil(math.log10(max(steps / fits, 1.0)))
    raise ValueError(
        f"the loss history of steps={steps} with loss_every={loss_every} holds {recorded} losses, "
        f"{_fmt_bytes(nbytes)}, more than {HISTORY_MEMORY_SHARE:.0%} of the {_fmt_bytes(free)} available "
        f"on {device.platform}:{device.id}; record fewer, e.g. loss_every={suggest} "
        f"({_fmt_bytes((-(-steps // suggest) + 1) * per_entry)})"
    )


def _check_optimizer(optimizer: Any, lr: Any) -> None:
    if optimizer is None:
        if lr is None:
            raise ValueError("lr is required (a learning rate), unless an optax optimizer= is given")
        v.check_finite(lr, "lr")
        return
    if lr is not None:
        raise ValueError(
            f"give lr= or optimizer=, not both (got lr={lr!r}): the optax optimizer has its own "
            "learning rate, e.g. optax.sgd(lr) or optax.adam(lr)"
        )
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            "optimizer must be an optax GradientTransformation (with init and update; pip install "
            "'calcjax[optax]'), e.g. "
            f"optax.adam(1e-3), got {type(optimizer).__name__}"
        )


def _check_count(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")
    return int(value)


@_blackbox.accepts_blackbox(jit=False)
def gradient_descent(
    f: Callable[[Any], jax.Array],
    x0: Any,
    *,
    lr: Any = None,
    steps: int,
    method: str | Callable[..., Any] | GradientMethod = "ad-reverse",
    key: Any = None,
    optimizer: Any = None,
    loss_every: int = 1,
) -> DescentResult:
    """Gradient descent ``x <- x - lr * grad f(x)``, or an optax optimizer, as one compiled loop.

    The whole loop, loss history included, is one XLA program (``lax.scan``):
    a second call with the same ``f``, ``method``, ``optimizer``, ``steps``,
    ``loss_every`` and shapes does not recompile (``lr``, ``x0`` and ``key``
    are traced, so changing them does not recompile either). ``f`` and
    ``optimizer`` are static arguments: pass the same objects, not new ones, to
    reuse the compiled loop. With ``"ad-reverse"`` the loss comes free from
    ``jax.value_and_grad``; other methods evaluate ``f(x)`` once more at each
    recorded step (shared by XLA where the method evaluates ``f(x)`` too).
    NumPy/SciPy methods run inside the loop through ``jax.pure_callback``.

    Stochastic methods (``zo-spsa``, ``zo-gaussian``, ``zo-gaussian-k10``,
    ``fwd-gradient``; ``calcjax.METHODS[name].stochastic``) need ``key``: step
    ``k`` uses the estimate ``method(f, x_k, key=key, step=k)``, whose
    directions come from ``jax.random.fold_in(key, k)``. The same key gives the
    same run bit for bit; nothing random is stored between steps. A plain
    ``lr`` is a constant step for every method; Spall's decaying SPSA gain is
    ``optimizer=optax.sgd(calcjax.spall_gain(a, A=A))`` (SPSA's perturbation
    ``c_k`` decays inside the estimator).

    The loss is recorded every ``loss_every`` steps and at the end; between
    recorded steps only the gradient is computed. At each recorded step a
    non-finite loss stops the descent: ``x`` stays at that point, ``stopped_at``
    says which step it was, and the history before it is kept. A history that
    would take more than half of the device's free memory is refused.

    Args:
      f: scalar loss of ``x``, traceable by JAX.
      x0: start point, an array or pytree of floating arrays.
      lr: learning rate, finite (an array of ``x0``'s shape scales each coordinate).
        Required unless ``optimizer`` is given.
      steps: number of steps, an integer from 0 to :data:`MAX_STEPS`.
      method: a registry name (see ``calcjax.METHODS``), a ``GradientMethod`` or
        a callable ``grad(f, x)``.
      key: a ``jax.random`` key, required by stochastic methods (ignored by the others).
      optimizer: an optax ``GradientTransformation`` (``pip install 'calcjax[optax]'``),
        e.g. ``optax.adam(1e-3)``, used instead of ``lr``: ``x <- x + updates``.
      loss_every: record ``f(x_k)`` every this many steps (and at the end), an
        integer >= 1.

    Returns:
      ``DescentResult(x, losses, loss_steps, stopped_at)`` with
      ``losses[j] = f(x_{loss_steps[j]})``.

    Raises:
      TypeError: ``x0`` is not floating, ``key`` is not a ``jax.random`` key,
        ``optimizer`` is not a ``GradientTransformation``.
      ValueError: ``steps`` or ``loss_every`` out of range or not an integer,
        ``lr`` not finite, both or neither of ``lr`` and ``optimizer``, a
        stochastic method without ``key``, a loss history that does not fit in
        memory, unknown method, non-scalar ``f``.

    Example:
      >>> res = calcjax.gradient_descent(lambda x: x**2, 5.0, lr=0.1, steps=10)
      >>> round(float(res.x), 5), round(5 * 0.8**10, 5)
      (0.53687, 0.53687)
      >>> res = calcjax.gradient_descent(lambda x: x**2, 5.0, lr=0.1, steps=10, loss_every=4)
      >>> res.loss_steps.tolist(), int(res.stopped_at)
      ([0, 4, 8, 10], -1)
    """
    steps = _check_count(steps, "steps", 0)
    loss_every = _check_count(loss_every, "loss_every", 1)
    _check_optimizer(optimizer, lr)
    m = get_method(method)
    reason = m.unavailable()
    if reason:
        raise RuntimeError(reason)
    if m.stochastic:
        if not m.traceable:
            raise ValueError(f"{m.name} is stochastic and not traceable: gradient_descent cannot run it")
        est.check_key(key)
    else:
        key = None  # not used: one compiled loop whether a key is given or not
    leaves = fd._leaves_floating(x0)
    v.check_nonempty(x0, "x0")
    if optimizer is None:
        v.check_rate_shape(lr, leaves)
    loss_every = min(loss_every, max(steps, 1))  # more than steps records the start and the end
    itemsize = max(np.dtype(leaf.dtype if hasattr(leaf, "dtype") else float).itemsize for leaf in leaves)
    _check_history(steps, loss_every, itemsize, leaves)
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be at most {MAX_STEPS} (an int32 step counter), got steps={steps}")
    if m.name == "ad-reverse":
        grad = None
    elif m.traceable:
        grad = _Static(functools.partial(m.fn, f))
    else:
        grad = _Static(functools.partial(_host_gradient, m, f))
    n = sum(getattr(leaf, "size", 1) for leaf in leaves)
    unroll = _UNROLL if n < _UNROLL_BELOW else 1
    return _run(
        x0,
        lr,
        key,
        f=f,
        grad=grad,
        steps=steps,
        unroll=unroll,
        loss_every=loss_every,
        optimizer=optimizer,
        stochastic=m.stochastic,
    )


class _Static:
    """Hashable by the wrapped callable's identity *and* its partial args, so a
    fresh ``functools.partial(m.fn, f)`` for the same ``(m, f)`` hits the jit cache."""

    def __init__(self, fn: functools.partial) -> None:
        self.fn = fn
        self.key = (fn.func, fn.args, tuple(sorted(fn.keywords.items())))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self.key == other.key
