"""Finite-difference derivatives and gradients in JAX.

Everything here is a pure function of JAX arrays: settings that change the
program (scheme, order, batch size, devices) are static Python values, loops are
``lax.map``, so a call under ``jax.jit`` compiles once per shape.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from calcjax import _batching, _blackbox
from calcjax import _validate as v
from calcjax._complex_safety import check_complex_step, complex_input_error
from calcjax._shared_eval import point_function

__all__ = [
    "SCHEMES",
    "DomainWarning",
    "Estimate",
    "Stencil",
    "auto_batch_size",
    "complex_step_derivative",
    "complex_step_gradient",
    "default_step",
    "derivative",
    "directional_derivative",
    "gradient",
    "richardson_derivative",
    "richardson_gradient",
    "stencil",
]

SCHEMES = ("forward", "backward", "central")

#: Offsets (in units of h) and weights of each (scheme, order) stencil.
_STENCILS: dict[tuple[str, int], tuple[tuple[float, ...], tuple[float, ...]]] = {
    ("forward", 1): ((0.0, 1.0), (-1.0, 1.0)),
    ("forward", 2): ((0.0, 1.0, 2.0), (-1.5, 2.0, -0.5)),
    ("backward", 1): ((-1.0, 0.0), (-1.0, 1.0)),
    ("backward", 2): ((-2.0, -1.0, 0.0), (0.5, -2.0, 1.5)),
    ("central", 2): ((-1.0, 1.0), (-0.5, 0.5)),
    ("central", 4): ((-2.0, -1.0, 1.0, 2.0), (1 / 12, -2 / 3, 2 / 3, -1 / 12)),
    ("central", 6): (
        (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0),
        (-1 / 60, 3 / 20, -3 / 4, 3 / 4, -3 / 20, 1 / 60),
    ),
}

#: The automatic step of orders 4 and 6 is this share of ``eps**(1/(order+1)) * max(1, |x|)``.
HIGH_ORDER_STEP_FACTOR = 0.25

#: Step of the complex-step method: far below rounding, it has no truncation error.
COMPLEX_STEP = 1e-20

#: Bytes the perturbed points of one batch may take, by default, per platform.
#: On a CPU the batch should stay in the last-level cache (a few MiB): each
#: perturbed point is written once and read once by ``f``, so a batch that
#: spills to DRAM costs a memory round trip per point; but a batch too small
#: pays the loop's per-batch cost and starves a matrix product (logistic
#: regression's batched evaluation is one) of columns. 4 MiB came from a one-off
#: sweep of batch sizes on a 2-core CPU at n = 1e3 and 1e4 (no committed run records
#: it: sweep again before changing it). On an accelerator the automatic batch
#: comes from the compiled program's memory (:mod:`calcjax._batching`); this
#: budget, capped by a share of its memory, is the fallback where it cannot.
DEFAULT_BATCH_BYTES = {"cpu": 4 * 2**20, "gpu": 128 * 2**20, "tpu": 128 * 2**20}
#: A batch may hold a quarter of the bytes all its evaluations share, up to 64 MiB.
_SHARED_REUSE = 4
_SHARED_MAX_BYTES = 64 * 2**20


class Stencil(NamedTuple):
    """A finite-difference stencil: ``f'(x) ~ sum(weights * f(x + offsets*h)) / h``."""

    offsets: tuple[float, ...]
    weights: tuple[float, ...]


class Estimate(NamedTuple):
    """A derivative with an estimate of its absolute error (same structure as ``value``)."""

    value: Any
    error: Any


def _orders(scheme: str) -> tuple[int, ...]:
    return tuple(order for (s, order) in _STENCILS if s == scheme)


def stencil(scheme: str = "central", order: int = 2) -> Stencil:
    """The offsets and weights of a first-derivative stencil.

    Args:
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: accuracy order: 1 or 2 one-sided, 2, 4 or 6 central.

    Returns:
      A :class:`Stencil`.

    Raises:
      ValueError: for an unknown scheme or an order the scheme does not have.

    Example:
      >>> calcjax.stencil("central", 2)
      Stencil(offsets=(-1.0, 1.0), weights=(-0.5, 0.5))
    """
    v.check_choice(scheme, SCHEMES, "scheme")
    if isinstance(order, bool):
        raise ValueError(f"order must be an integer, got {order!r}")
    v.check_choice(order, _orders(scheme), f"order for scheme {scheme!r}")
    return Stencil(*_STENCILS[(scheme, order)])


def _representable(x: jax.Array, h: jax.Array) -> jax.Array:
    """The step actually taken in floating point: ``(x + h) - x``."""
    return (x + h) - x


def default_step(x: ArrayLike, *, scheme: str = "central", order: int = 2) -> jax.Array:
    """The automatic step for ``x``: ``eps**(1/(order+1)) * max(1, |x|)``, made representable.

    ``eps`` is the machine epsilon of ``x``'s dtype. This balances truncation
    (``~h**order``) against rounding (``~eps/h``): ``eps**(1/2)`` for first-order
    one-sided differences, ``eps**(1/3)`` for second-order central ones.

    Orders 4 and 6 take a quarter of that (:data:`HIGH_ORDER_STEP_FACTOR`). The
    rule assumes ``f`` varies on a length scale of ``max(1, |x|)``; when it
    varies faster, on a scale ``L``, truncation grows like ``(h/L)**order``,
    which a high order feels most, while rounding grows only like ``1/h``. In
    float64 the quarter step makes fourth-order central on ``exp(10x)`` at
    ``x = 1`` over 100 times more accurate and keeps ``x**2``, ``sin`` and
    ``exp`` at ``x = 1`` within 1e-12 (``tests/test_docs_figures.py`` checks both).

    Args:
      x: the point(s), a floating array.
      scheme: the stencil's scheme.
      order: the stencil's order.

    Returns:
      An array like ``x`` with ``(x + h) - x == h`` exactly.

    Example:
      >>> import jax.numpy as jnp
      >>> h = calcjax.default_step(jnp.float32(2.0))  # about 2 * eps**(1/3)
      >>> bool(9e-3 < float(h) < 1e-2)
      True
    """
    x = v.as_float_array(x)
    stencil(scheme, order)
    eps = jnp.finfo(x.dtype).eps
    base = float(eps) ** (1.0 / (order + 1))
    if order >= 4:
        base *= HIGH_ORDER_STEP_FACTOR
    h = base * jnp.maximum(1.0, jnp.abs(x)).astype(x.dtype)
    return _representable(x, h)


def _resolve_step(x: jax.Array, h: ArrayLike | None, scheme: str, order: int) -> jax.Array:
    """``h`` (scalar or like ``x``) checked and made representable, or the default step."""
    if h is None:
        return default_step(x, scheme=scheme, order=order)
    v.check_positive_finite(h, "h")
    h = jnp.asarray(h, dtype=x.dtype)
    if h.shape not in ((), x.shape):
        raise ValueError(f"h must be a scalar or have the shape of x {x.shape}, got shape {h.shape}")
    taken = _representable(x, jnp.broadcast_to(h, x.shape))
    _check_resolution(x, taken)
    return taken


def _check_resolution(x: jax.Array, taken: jax.Array) -> None:
    """``ValueError`` where a concrete step is below ``x``'s resolution (``(x + h) - x == 0``).

    Under ``jax.jit`` the values are not known: such a coordinate's derivative is
    NaN (0/0), as documented in :func:`derivative`.
    """
    if not (v.is_concrete(x) and v.is_concrete(taken)):
        return
    zero = np.asarray(taken) == 0
    if np.any(zero):
        i = int(np.flatnonzero(zero.reshape(-1))[0])
        xi = np.asarray(x).reshape(-1)[i]
        smallest = float(np.spacing(np.abs(xi).astype(x.dtype)))
        index = ", ".join(str(int(k)) for k in np.unravel_index(i, x.shape))
        where = f"x[{index}]" if x.ndim else "x"
        raise ValueError(
            f"h is below the resolution of {where} = {float(xi)!r} ({x.dtype}): (x + h) - x == 0 there "
            f"({int(zero.sum())} coordinate(s)); the smallest step that moves it is {smallest!r}"
        )


def _scalar_fn_check(f: Callable[..., Any], x: jax.Array) -> None:
    v.check_scalar_function(f, jax.ShapeDtypeStruct((), x.dtype))


@v.array_input("derivative")
@_blackbox.accepts_blackbox
def derivative(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    h: ArrayLike | None = None,
    scheme: str = "central",
    order: int = 2,
) -> jax.Array:
    """Finite-difference derivative of a scalar function, elementwise over ``x``.

    Args:
      f: a function of one scalar returning a scalar, traceable by JAX.
      x: a point or an array of points (any shape); float32 or float64.
      h: the step: ``None`` for the automatic step (see :func:`default_step`), a
        positive scalar, or an array of ``x``'s shape.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: accuracy order: 1, 2 for one-sided schemes; 2, 4, 6 for central.

    Returns:
      ``f'(x)`` with ``x``'s shape and dtype.

    Raises:
      TypeError: ``x`` is not floating.
      ValueError: ``f`` is not scalar, ``x`` is empty, ``h`` is not positive and
        finite, has a wrong shape or (for concrete ``x``) is below ``x``'s
        resolution (``(x + h) - x == 0``; the message names the coordinate and the
        smallest step that works), or the scheme/order is unknown. Under
        ``jax.jit`` such a step cannot be seen: that entry is NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> d = calcjax.derivative(lambda t: t**2, jnp.linspace(-3.0, 3.0, 7))
      >>> [round(float(t), 3) for t in d]
      [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]
    """
    offsets, weights = stencil(scheme, order)
    x = v.as_float_array(x)
    v.check_nonempty(x, "x")
    _scalar_fn_check(f, x)
    h = _resolve_step(x, h, scheme, order)
    flat, hf = x.reshape(-1), h.reshape(-1)

    def evaluate(offs: Sequence[float]) -> jax.Array:  # (n, len(offs)): f at x + c*h
        pts = flat[:, None] + jnp.asarray(list(offs), x.dtype)[None, :] * hf[:, None]
        return jax.vmap(f)(pts.reshape(-1)).reshape(pts.shape).astype(x.dtype)

    vals = evaluate(offsets)
    d = _combine(vals, weights, x.dtype) / hf
    bad = ~jnp.all(jnp.isfinite(vals), axis=1)
    d, switched, failed = _domain_fallback(d, bad, evaluate, hf, scheme, order, x.dtype)
    _report_domain("derivative", switched, failed, _PLAIN_FALLBACK)
    return d.reshape(x.shape)


_PLAIN_FALLBACK = "a one-sided stencil of the same order was used there (pass scheme='forward' or 'backward')"


@functools.lru_cache
def _one_sided_weights(order: int) -> tuple[float, ...]:
    """Weights of the forward stencil on offsets ``0, 1, ..., order`` (accuracy ``order``)."""
    offs = np.arange(order + 1, dtype=np.float64)
    rhs = np.zeros(order + 1)
    rhs[1] = 1.0
    return tuple(np.linalg.solve(np.vander(offs, increasing=True).T, rhs).tolist())


def _domain_fallback(
    d: jax.Array,
    bad: jax.Array,
    evaluate: Callable[[Sequence[float]], jax.Array],
    steps: jax.Array,
    scheme: str,
    order: int,
    dtype: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The one rule for non-finite values of ``f``: a coordinate with one at a stencil point goes one-sided.

    ``evaluate(offsets)`` gives ``f`` at ``x + c*h_i*e_i`` for every coordinate (``n x len``).
    A central stencil of order ``p`` falls back to the forward, else the backward
    stencil of order ``p`` (``p + 1`` points, ``f(x)`` included); a one-sided one to
    the other side. The extra evaluations run only when some coordinate needs them
    (``lax.cond``). Returns the derivative, and masks of the coordinates that
    switched and of those left NaN.
    """
    sides = {"central": (1.0, -1.0), "forward": (-1.0,), "backward": (1.0,)}[scheme]
    w = _one_sided_weights(order)
    offs = [side * k for side in sides for k in range(order + 1)]

    def one_sided() -> tuple[jax.Array, jax.Array]:
        vals = evaluate(offs)
        est = [
            _combine(vals[:, i * (order + 1) : (i + 1) * (order + 1)], w, dtype) * side / steps
            for i, side in enumerate(sides)
        ]
        ok = [
            jnp.all(jnp.isfinite(vals[:, i * (order + 1) : (i + 1) * (order + 1)]), axis=1)
            for i in range(len(sides))
        ]
        value = est[-1]
        for e, o in zip(est[-2::-1], ok[-2::-1], strict=True):
            value = jnp.where(o, e, value)
        return jnp.where(jnp.any(jnp.stack(ok), axis=0), value, jnp.nan), jnp.any(jnp.stack(ok), axis=0)

    nothing = lambda: (jnp.full_like(d, jnp.nan), jnp.zeros(d.shape, bool))
    alt, alt_ok = lax.cond(jnp.any(bad), one_sided, nothing)
    switched, failed = bad & alt_ok, bad & ~alt_ok
    return jnp.where(bad, alt, d), switched, failed


def _leaves_floating(x: Any) -> list[Any]:
    """``x``'s leaves, after checking each is floating (the error names the bad leaf's path)."""
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves:
        raise ValueError("x must hold at least one array, got an empty pytree")
    if all(type(leaf) is float or v.has_floating_dtype(leaf) for leaf in leaves):
        return leaves  # the fast path: no key paths built (gradient_descent is called in loops)
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        v.check_floating_leaf(leaf, "x" + jax.tree_util.keystr(path))
    return leaves


def _flatten(x: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    _leaves_floating(x)
    flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, x))
    return flat, unravel


def _flat_step(x: Any, h: Any, scheme: str, order: int) -> jax.Array:
    """The flattened steps for a pytree ``x``: ``h`` is ``None``, a scalar, or a pytree like ``x``.

    Each leaf's step is taken (and made representable) in that leaf's own dtype,
    so a float32 leaf of a mixed float32/float64 pytree gets a float32 step.
    """
    leaf_step = lambda leaf, hl: _resolve_step(jnp.asarray(leaf), hl, scheme, order)
    is_leaf = jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(h))
    if h is None or (is_leaf and jnp.ndim(h) == 0):
        steps = jax.tree_util.tree_map(lambda leaf: leaf_step(leaf, h), x)
    elif jax.tree_util.tree_structure(h) != jax.tree_util.tree_structure(x):
        raise ValueError("h must be a scalar or have the structure and shapes of x")
    else:
        steps = jax.tree_util.tree_map(leaf_step, x, h)
    return ravel_pytree(steps)[0]


def _batch_budget(platform: str | None) -> int:
    platform = platform or jax.default_backend()
    budget = DEFAULT_BATCH_BYTES.get(platform, DEFAULT_BATCH_BYTES["gpu"])
    if platform != "cpu":
        try:
            limit = _batching.device_memory(jax.local_devices(backend=platform)[0])
        except RuntimeError:  # pragma: no cover - backend not started
            limit = None
        if limit:
            budget = min(budget, int(limit * _batching.ACCELERATOR_MEMORY_SHARE))
    return budget


def auto_batch_size(
    n: int,
    points: int,
    itemsize: int,
    *,
    budget_bytes: int | None = None,
    platform: str | None = None,
    point_bytes: int | None = None,
    shared_bytes: int | None = None,
) -> int:
    """How many coordinates one batch perturbs so its points fit in ``budget_bytes``.

    A batch of ``b`` coordinates evaluates ``f`` at ``b * points`` vectors of
    ``n`` entries, so its perturbed points take ``b * points * n * itemsize``
    bytes: memory grows like ``batch_size * n``, never ``n * n``. Each
    evaluation also holds ``f``'s largest intermediate (``point_bytes``; an
    MLP's activations, say), which is counted with its point. The default budget
    depends on the platform (:data:`DEFAULT_BATCH_BYTES`): 4 MiB on a CPU, to
    stay in cache; 128 MiB on an accelerator (at most 1/16 of its memory).
    On an accelerator :func:`gradient` uses this rule only where the compiled
    program's memory analysis is unavailable: it takes all ``n`` coordinates in
    one batch when that program fits 1/16 of the device's memory and 1 GiB,
    else the largest power of two whose compiled batch does.

    When every evaluation reads a large operand that all points share
    (``shared_bytes``: logistic regression's data matrix, say) and it does not
    fit the budget, each batch streams it from memory once, so the batch may
    grow to a quarter of its size (at most 64 MiB): a 1000 x 10 000
    data matrix then serves 128 points per pass instead of 32.

    The batch is all ``n`` coordinates when they fit, else the largest power
    of two that fits: batched matrix products have fast paths for such column
    counts (on XLA CPU a batch one column past a power of two can be much slower).

    Example:
      >>> calcjax.auto_batch_size(10_000, 2, 8, platform="cpu")
      16
    """
    budget = _batch_budget(platform) if budget_bytes is None else budget_bytes
    if shared_bytes:
        budget = max(budget, min(shared_bytes // _SHARED_REUSE, _SHARED_MAX_BYTES))
    per_point = max(n * itemsize + (point_bytes or 0), 1)
    fits = budget // (points * per_point)
    if fits >= n:
        return int(n)
    return 1 << max(0, int(fits).bit_length() - 1)


def _evaluation_bytes(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> tuple[int, int]:
    """Bytes of the largest array ``f`` makes at ``x``, and of the arrays it closes over.

    From its jaxpr (traced, not run): the intermediates are the outputs of its
    equations; the shared operands are its constants, closed-over data included
    (every perturbed point reads the same ones).
    """
    jaxpr = jax.make_jaxpr(f)(x).jaxpr

    def nbytes(var: Any) -> int:
        aval = var.aval
        if not (hasattr(aval, "shape") and hasattr(aval, "dtype")):
            return 0
        return math.prod(aval.shape) * jnp.dtype(aval.dtype).itemsize

    largest = max((nbytes(var) for eqn in jaxpr.eqns for var in eqn.outvars), default=0)
    return largest, sum(nbytes(var) for var in jaxpr.constvars)


def _check_batch_size(batch_size: Any) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def _check_share(share_products: Any) -> None:
    if not isinstance(share_products, bool):
        raise TypeError(f"share_products must be True or False, got {share_products!r}")


def _resolve_devices(devices: Any) -> tuple[jax.Device, ...] | None:
    """``None``, ``"all"``, an int (the first k local devices) or a sequence of devices."""
    if devices is None:
        return None
    local = jax.local_devices()
    if devices == "all":
        chosen = tuple(local)
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices={devices} but {len(local)} local device(s) are available: {local}")
        chosen = tuple(local[:devices])
    elif isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
        chosen = tuple(devices)
    else:
        raise ValueError(
            f"devices must be None, 'all', a device count or a sequence of jax devices, got {devices!r}"
        )
    return chosen


def _auto_batch(
    f_flat: Callable[[jax.Array], jax.Array],
    xw: jax.Array,
    points: int,
    devices: tuple[jax.Device, ...] | None,
    share: bool,
    one_batch: Callable[..., jax.Array],
) -> int:
    """The automatic batch: the byte rule on a CPU, the compiled program's memory on an accelerator.

    ``one_batch(idx, xw, hw, point)`` evaluates the points of the coordinates
    ``idx``; on an accelerator its program is compiled (not run) for candidate
    batch sizes and its memory analysis decides (:mod:`calcjax._batching`).
    """
    n = xw.shape[0]
    itemsize = jnp.dtype(xw.dtype).itemsize
    largest, shared = _evaluation_bytes(f_flat, xw)
    device = devices[0] if devices else _batching.default_device()
    nominal = lambda budget: auto_batch_size(
        n,
        points,
        itemsize,
        budget_bytes=budget,
        platform=device.platform,
        point_bytes=largest,
        shared_bytes=shared,
    )
    count = math.ceil(n / (len(devices) if devices else 1))  # coordinates per device
    on = jax.sharding.SingleDeviceSharding(device)

    def measure(b: int) -> float | None:
        spec = jax.ShapeDtypeStruct(xw.shape, xw.dtype, sharding=on)
        idx = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=on)
        program = lambda x, h, i: one_batch(i, x, h, point_function(f_flat, x) if share else None)
        return _batching.compiled_bytes(program, (spec, spec, idx))

    return _batching.choose_batch(
        count, device=device, nominal=nominal, measure=measure, fixed_bytes=count * points * itemsize
    )


def _coordinate_values(
    f_flat: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    steps: jax.Array,
    offsets: Sequence[complex],
    batch_size: int | None,
    devices: tuple[jax.Device, ...] | None = None,
    share: bool = True,
) -> jax.Array:
    """``F[i, j] = f(x + offsets[j] * steps[i] * e_i)`` for every coordinate ``i``.

    Coordinates are taken ``batch_size`` at a time (``lax.map`` over batches, each
    batch one ``vmap``), so at most ``batch_size * len(offsets)`` perturbed copies
    of ``x`` exist at once. With ``devices``, the coordinates are split evenly
    across them with ``shard_map`` and each device runs its own batches.
    """
    host = _blackbox.coordinate_values(f_flat, x, steps, offsets, batch_size)
    if host is not None:  # f is evaluated outside JAX: x once, one buffer perturbed in place
        return host
    n = x.shape[0]
    work_dtype = jnp.result_type(x.dtype, *(jnp.asarray(c).dtype for c in offsets if isinstance(c, complex)))
    m = len(offsets)
    offs = jnp.asarray(list(offsets), work_dtype)
    ndev = 1 if devices is None else len(devices)

    def one_batch(idx: jax.Array, xw: jax.Array, hw: jax.Array, point: Any) -> jax.Array:
        # All m*b perturbed points of the batch in one vmap (one kernel on a GPU).
        i = jnp.minimum(idx, n - 1)
        moved_to = (xw[i][None, :] + offs[:, None] * hw[i][None, :]).reshape(-1)
        which = jnp.tile(i, m)
        if point is not None:  # f's products of x are shared: pass the step actually taken
            return jax.vmap(point)(which, moved_to - xw[which]).reshape(m, -1).T
        moved = jnp.where(jnp.arange(n)[None, :] == which[:, None], moved_to[:, None], xw[None, :])
        return jax.vmap(f_flat)(moved).reshape(m, -1).T

    if batch_size is None:
        batch_size = _auto_batch(f_flat, x.astype(work_dtype), m, devices, share, one_batch)
    b = batch_size
    b = min(b, math.ceil(n / ndev))  # every device gets work
    chunks_per_device = math.ceil(math.ceil(n / b) / ndev)
    per_device = chunks_per_device * b

    def run(xw: jax.Array, hw: jax.Array) -> jax.Array:
        first = 0 if devices is None else lax.axis_index("fd") * per_device
        idx = first + jnp.arange(per_device, dtype=jnp.int32).reshape(-1, b)
        point = point_function(f_flat, xw) if share else None
        return lax.map(lambda i: one_batch(i, xw, hw, point), idx).reshape(-1, m)

    xw, hw = x.astype(work_dtype), steps.astype(work_dtype)
    if devices is None:
        out = run(xw, hw)
    else:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("fd",))
        spec, replicated = jax.sharding.PartitionSpec("fd"), jax.sharding.PartitionSpec()
        out = jax.shard_map(
            run, mesh=mesh, in_specs=(replicated, replicated), out_specs=spec, check_vma=False
        )(xw, hw)
    return out[:n]


def _combine(vals: jax.Array, weights: Sequence[float], dtype: Any) -> jax.Array:
    """``sum_j weights[j] * vals[:, j]`` as an elementwise sum (no matmul: exact on GPUs too)."""
    total = jnp.zeros(vals.shape[:1], dtype)
    for j, w in enumerate(weights):
        total = total + jnp.asarray(w, dtype) * vals[:, j].astype(dtype)
    return total


def _fd_flat(
    f_flat: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    steps: jax.Array,
    scheme: str,
    order: int,
    batch_size: int | None,
    devices: tuple[jax.Device, ...] | None,
    share: bool = True,
) -> jax.Array:
    offsets, weights = stencil(scheme, order)
    moved = [(c, w) for c, w in zip(offsets, weights, strict=True) if c != 0.0]
    vals = _coordinate_values(f_flat, flat, steps, [c for c, _ in moved], batch_size, devices, share)
    g = _combine(vals, [w for _, w in moved], flat.dtype)
    w0 = sum(w for c, w in zip(offsets, weights, strict=True) if c == 0.0)
    bad = ~jnp.all(jnp.isfinite(vals), axis=1)
    if w0:
        f0 = f_flat(flat).astype(flat.dtype)
        g = g + jnp.asarray(w0, flat.dtype) * f0
        bad = bad | ~jnp.isfinite(f0)
    g = g / steps

    def evaluate(offs: Sequence[float]) -> jax.Array:
        f0 = f_flat(flat).astype(flat.dtype)
        moved = [c for c in offs if c != 0.0]
        vals = _coordinate_values(f_flat, flat, steps, moved, batch_size, devices, share).astype(flat.dtype)
        cols, it = [], iter(range(len(moved)))
        for c in offs:
            cols.append(jnp.broadcast_to(f0, flat.shape) if c == 0.0 else vals[:, next(it)])
        return jnp.stack(cols, axis=1)

    g, switched, failed = _domain_fallback(g, bad, evaluate, steps, scheme, order, flat.dtype)
    _report_domain("gradient", switched, failed, _PLAIN_FALLBACK, stacklevel=4)
    return g


@_blackbox.accepts_blackbox
def gradient(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: Any = None,
    scheme: str = "central",
    order: int = 2,
    batch_size: int | None = None,
    devices: Any = None,
    share_products: bool = True,
) -> Any:
    """Finite-difference gradient of ``f: R^n -> R`` at ``x`` (an array or a pytree).

    Each coordinate ``i`` is perturbed on its own (``x + c*h_i*e_i`` for each
    offset ``c`` of the stencil); the perturbed points are evaluated in batches
    of ``batch_size`` coordinates with ``vmap``, batches run one after another
    in a ``lax.map``, so peak memory grows like ``batch_size * n``. The forward
    and backward first-order schemes share one ``f(x)``: ``n + 1`` evaluations;
    central order ``p`` takes ``p * n``.

    Args:
      f: scalar function of ``x``, traceable by JAX.
      x: an array or a pytree of floating arrays (e.g. a dict of parameters).
      h: ``None`` (automatic, per coordinate), a positive scalar, or a pytree
        like ``x``.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: 1, 2 (one-sided); 2, 4, 6 (central).
      batch_size: coordinates per batch; ``None`` picks it from ``n``, the dtype,
        ``f``'s largest intermediate and the platform (:func:`auto_batch_size`):
        4 MiB per batch on a CPU; on an accelerator, all ``n`` at once when the
        compiled batch fits 1/16 of its memory and 1 GiB, else the largest
        power of two that does.
      devices: ``None`` (the default device), ``"all"`` (every local device),
        a device count, or a sequence of devices: the coordinates are split
        across the devices with ``jax.shard_map``; the result is the same.
      share_products: when ``f`` multiplies ``x`` by a matrix ``A`` that does
        not depend on ``x`` (a linear model, a layer whose weights are ``x``),
        compute ``A @ x`` once and each perturbed point's product as
        ``A @ x + c*h_i * A[:, i]`` -- the same value up to rounding, at the
        cost of one column instead of a matrix-vector product (for logistic
        regression at n = 10 000, see ``speed.md`` of the committed run
        ``results/20261126T144702Z-cpu-full-fd-scaling``). ``False`` evaluates
        ``f`` as written at every point.
        Read from ``f``'s jaxpr; functions without such a product are
        evaluated as written either way. A matrix with ``inf`` or ``nan``
        entries breaks the identity (``inf - inf``): use ``False`` there.

    Returns:
      The gradient, with ``x``'s structure, shapes and dtypes.

    Raises:
      TypeError: a leaf of ``x`` is not floating.
      ValueError: ``f`` is not scalar, ``x`` is empty, bad ``h`` (as for
        :func:`derivative`: below ``x``'s resolution included), ``batch_size``,
        ``devices``, scheme or order.

    Example:
      >>> import jax.numpy as jnp
      >>> g = calcjax.gradient(lambda w: w[0] ** 2 + 2 * w[1] ** 2, jnp.array([1.0, -2.0]))
      >>> [round(float(t), 3) for t in g]
      [2.0, -8.0]
    """
    stencil(scheme, order)
    _check_batch_size(batch_size)
    _check_share(share_products)
    devs = _resolve_devices(devices)
    flat, unravel = _flatten(x)
    v.check_nonempty(flat, "x")
    f_flat = lambda z: f(unravel(z))
    v.check_scalar_function(f_flat, flat)
    steps = _flat_step(x, h, scheme, order).astype(flat.dtype)
    return unravel(_fd_flat(f_flat, flat, steps, scheme, order, batch_size, devs, share_products))


@_blackbox.accepts_blackbox
def directional_derivative(
    f: Callable[[Any], jax.Array],
    x: Any,
    direction: Any,
    *,
    h: ArrayLike | None = None,
    scheme: str = "central",
    order: int = 2,
) -> jax.Array:
    """Finite-difference directional derivative ``d/dt f(x + t*v)`` at ``t = 0``.

    The finite-difference analogue of ``jax.jvp(f, (x,), (v,))[1]``: central
    order 2 costs two evaluations of ``f`` whatever ``n`` is. The automatic step
    is :func:`default_step` of ``max(|x|)`` divided by ``max(|v|)``.

    Args:
      f: scalar function of ``x``.
      x: the point, an array or a pytree.
      direction: ``v``, with the structure of ``x``.
      h: the step in ``t``, or ``None`` for automatic.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: as for :func:`derivative`.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> d = calcjax.directional_derivative(jnp.sum, jnp.ones(3), jnp.array([1.0, 2.0, 3.0]))
      >>> round(float(d), 4)
      6.0
    """
    flat, unravel = _flatten(x)
    v.check_nonempty(flat, "x")
    if jax.tree_util.tree_structure(direction) != jax.tree_util.tree_structure(x):
        raise ValueError("direction must have the structure of x")
    vflat, _ = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, direction))
    if vflat.shape != flat.shape:
        raise ValueError(f"direction has {vflat.size} entries but x has {flat.size}")
    vflat = vflat.astype(flat.dtype)
    f_flat = lambda z: f(unravel(z))
    v.check_scalar_function(f_flat, flat)
    if h is None:
        scale = jnp.max(jnp.abs(vflat))
        scale = jnp.where(scale > 0, scale, 1.0)
        t = default_step(jnp.max(jnp.abs(flat)), scheme=scheme, order=order) / scale
    else:
        if jnp.ndim(h) != 0:
            raise ValueError(f"h must be a scalar (a step along the direction), got shape {jnp.shape(h)}")
        v.check_positive_finite(h, "h")
        t = jnp.asarray(h, flat.dtype)
        stencil(scheme, order)
    offsets, weights = stencil(scheme, order)
    dtype = flat.dtype
    vals = jnp.stack([f_flat(flat + (jnp.asarray(c, dtype) * t) * vflat).astype(dtype) for c in offsets])
    return jnp.sum(jnp.asarray(weights, dtype) * vals) / t


# --------------------------------------------------------------------------- complex step


def _require_x64(what: str) -> None:
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} works in complex128 and needs 64-bit JAX: call "
            "jax.config.update('jax_enable_x64', True) at start-up"
        )


def _complex_shape(f: Callable[..., Any], example: Any, what: str) -> Any:
    """``f``'s output shape/dtype at complex input; an operation rejecting complex input is a ValueError."""
    try:
        return v.check_scalar_function(f, example)
    except TypeError as exc:
        if "complex" not in str(exc):
            raise
        raise complex_input_error(exc, what) from exc


def _check_complex_output(out: Any, what: str) -> None:
    if not jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise ValueError(
            f"{what}: f returned dtype {out.dtype} for complex input, so it drops the imaginary part "
            "(abs, max, comparisons, jnp.logaddexp, jax.nn.softplus do); the complex step would be wrong"
        )


def _outside_domain(f_real: Callable[[jax.Array], jax.Array], x: jax.Array, real: jax.Array) -> jax.Array:
    """Where ``f(x)`` is NaN because ``x`` is outside ``f``'s real domain (keep the NaN there).

    Outside the domain (``sqrt`` at -1) the complex extension is finite, so the
    complex step would invent a derivative: such entries stay NaN. A removable
    singularity (``z * (0.5 + 1/expm1(z))`` at 0: ``0 * inf``) is NaN at ``x`` only,
    and finite at ``x +- d`` (``d = eps**(1/3) * max(1, |x|)``): there the complex
    step, which never evaluates ``f`` at ``x`` itself, is kept. The two extra
    evaluations run only when ``f(x)`` is NaN somewhere (``lax.cond``).
    """
    nan = jnp.isnan(real)
    d = float(jnp.finfo(jnp.float64).eps) ** (1 / 3) * jnp.maximum(1.0, jnp.abs(x))

    def neighbours_finite() -> jax.Array:
        return jnp.isfinite(f_real(x + d)) & jnp.isfinite(f_real(x - d))

    finite_near = lax.cond(jnp.any(nan), neighbours_finite, lambda: jnp.zeros(real.shape, bool))
    return nan & ~finite_near


@v.array_input("complex_step_derivative", "calcjax.complex_step_gradient")
def complex_step_derivative(
    f: Callable[[jax.Array], jax.Array], x: ArrayLike, *, h: float = COMPLEX_STEP
) -> jax.Array:
    """Complex-step derivative ``Im f(x + i h) / h``, elementwise over ``x``.

    No subtraction, so no cancellation: exact to rounding for real-analytic ``f``
    written with complex-safe operations. Works in complex128 (needs x64).

    Args:
      f: scalar function that accepts complex input and is analytic.
      x: points, float32 or float64 (computed in complex128, returned in x's dtype).
      h: the imaginary step (default ``1e-20``).

    Raises:
      RuntimeError: x64 is off.
      ValueError: ``f`` returns a real dtype for complex input, drops the
        imaginary part on the way (``jnp.abs``, ``jnp.logaddexp``, ...; see
        :func:`calcjax.check_complex_step`: a jaxpr scan, and for concrete ``x``
        a probe against central differences at up to 16 of the points), or is
        not scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     d = calcjax.complex_step_derivative(jnp.sin, 1.0)
      >>> bool(abs(d - jnp.cos(1.0)) < 1e-15)
      True
    """
    _require_x64("complex_step_derivative")
    x = v.as_float_array(x)
    v.check_nonempty(x, "x")
    v.check_positive_finite(h, "h")
    v.check_step_shape(h, x.shape)
    out = _complex_shape(f, jax.ShapeDtypeStruct((), jnp.complex128), "complex_step_derivative")
    _check_complex_output(out, "complex_step_derivative")
    check_complex_step(f, x, elementwise=True, what="complex_step_derivative")
    z = x.astype(jnp.complex128) + 1j * h
    vals = jax.vmap(f)(z.reshape(-1)).reshape(x.shape)
    real = jax.vmap(f)(x.astype(jnp.float64).reshape(-1)).reshape(x.shape)
    outside = _outside_domain(
        lambda t: jax.vmap(f)(t.reshape(-1)).reshape(t.shape), x.astype(jnp.float64), real
    )
    return jnp.where(outside, jnp.nan, jnp.imag(vals) / h).astype(x.dtype)


def complex_step_gradient(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: float = COMPLEX_STEP,
    batch_size: int | None = None,
    devices: Any = None,
    share_products: bool = True,
) -> Any:
    """Complex-step gradient: ``n`` evaluations of ``f`` in complex128, batched like :func:`gradient`.

    Args:
      f: scalar function of ``x`` that accepts complex input and is analytic.
      x: an array or pytree of floating arrays.
      h: the imaginary step (default ``1e-20``).
      batch_size: coordinates per batch (``None``: automatic).
      devices: as for :func:`gradient`.
      share_products: as for :func:`gradient`.

    Returns:
      The gradient, with ``x``'s structure and dtypes.

    Raises:
      RuntimeError: x64 is off.
      ValueError: ``f`` drops the imaginary part (a real output dtype, a lossy
        operation in its jaxpr, or -- for concrete ``x`` -- disagreement with
        central differences along a random direction, 5 extra evaluations; see
        :func:`calcjax.check_complex_step`), or is not scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     g = calcjax.complex_step_gradient(lambda w: jnp.sum(jnp.exp(w)), jnp.zeros(3))
      >>> [float(t) for t in g]
      [1.0, 1.0, 1.0]
    """
    _require_x64("complex_step_gradient")
    _check_batch_size(batch_size)
    _check_share(share_products)
    v.check_positive_finite(h, "h")
    devs = _resolve_devices(devices)
    flat, unravel = _flatten(x)
    v.check_nonempty(flat, "x")
    v.check_step_shape(h, flat.shape, "h", "x flattened")
    f_flat = lambda z: f(unravel_complex(z))
    _, unravel_complex = ravel_pytree(
        jax.tree_util.tree_map(lambda a: jnp.zeros(jnp.shape(a), jnp.complex128), x)
    )
    example = jax.ShapeDtypeStruct(flat.shape, jnp.complex128)
    _check_complex_output(_complex_shape(f_flat, example, "complex_step_gradient"), "complex_step_gradient")
    check_complex_step(f, x, what="complex_step_gradient", shared_products=share_products)
    steps = jnp.full(flat.shape, h, jnp.float64)
    vals = _coordinate_values(f_flat, flat.astype(jnp.float64), steps, [1j], batch_size, devs, share_products)
    x64 = flat.astype(jnp.float64)
    real = f(unravel(x64))
    outside = _outside_domain(lambda t: jax.vmap(lambda p: f(unravel(p)))(t[None])[0], x64, real)
    return unravel(jnp.where(outside, jnp.nan, jnp.imag(vals[:, 0]) / h).astype(flat.dtype))


# --------------------------------------------------------------------------- Richardson

#: Richardson settings: the extrapolation window (``num_steps`` step sizes, ratio ``step_ratio``)
#: and the search: ``RICHARDSON_SEARCH`` step sizes from ``RICHARDSON_FIRST_STEP * max(1, |x|)``
#: down by the ratio, every window of ``num_steps`` consecutive ones a candidate.
RICHARDSON_FIRST_STEP = 0.5
RICHARDSON_STEPS = 5
RICHARDSON_RATIO = 2.0
RICHARDSON_SEARCH = 24
#: f-evaluations per coordinate of the default :func:`richardson_derivative` / :func:`richardson_gradient`.
RICHARDSON_EVALUATIONS = 2 * RICHARDSON_SEARCH
#: The truncation part of the error estimate is this multiple of the last tableau correction:
#: the window is chosen by its estimate, so the smallest estimates are the most optimistic.
_TRUNCATION_SAFETY = 10.0


def _neville_weights(num: int, ratio: float, power: int = 2) -> np.ndarray:
    """Static weights ``a`` with ``T_final = sum_k a_k D(h/ratio**k)`` (Neville's tableau).

    Central differences have even error terms ``h^2, h^4, ...`` (``power=2``): each
    level of the tableau removes one; one-sided ones have every power (``power=1``).
    The weights tell how much each difference's rounding is amplified.
    """
    row = list(np.eye(num))
    for level in range(1, num):
        factor = ratio ** (power * level) - 1.0
        row = [row[k] + (row[k] - row[k - 1]) / factor for k in range(1, len(row))]
    return row[0]


def _windows(
    diffs: jax.Array, noise: jax.Array, num: int, ratio: float, power: int, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    """Every window of ``num`` consecutive differences extrapolated: values and error estimates (n, W).

    ``diffs[:, k]`` is the difference at the k-th step, ``noise[:, k]`` the rounding
    of its ``f`` values divided by its step. The error estimate is the last tableau
    correction (times :data:`_TRUNCATION_SAFETY`), plus the rounding of every
    value amplified by the extrapolation weights, plus ``eps * |value|``, and at
    least the dtype's smallest normal number.
    """
    eps, tiny = float(jnp.finfo(dtype).eps), float(jnp.finfo(dtype).tiny)
    k_total = diffs.shape[1]
    num = min(num, k_total)
    last = _neville_weights(num, ratio, power)
    prev = _neville_weights(num - 1, ratio, power) if num > 1 else None
    values, errors = [], []
    for w in range(k_total - num + 1):
        best = sum(float(last[j]) * diffs[:, w + j] for j in range(num))
        rounding = sum(abs(float(last[j])) * noise[:, w + j] for j in range(num))
        if k_total == num and prev is not None:  # one window: the last correction of its tableau
            lower = sum(float(prev[j]) * diffs[:, w + j] for j in range(num - 1))
            truncation = _TRUNCATION_SAFETY * jnp.abs(best - lower)
        elif k_total == num:
            truncation = jnp.abs(best)
        else:  # several windows: the spread to the neighbours, added below
            truncation = jnp.zeros_like(best)
        values.append(best)
        # At least the smallest normal number: a smaller estimate would be flushed to 0 (XLA on
        # CPUs flushes subnormals), claiming an exact value.
        errors.append(jnp.maximum(truncation + 4 * eps * rounding + eps * jnp.abs(best), tiny))
    vals, errs = jnp.stack(values, axis=1), jnp.stack(errors, axis=1)
    if vals.shape[1] > 1:
        # The spread to the neighbouring windows: a window is chosen for its small estimate, and a
        # lucky one in the noise (small steps) or in the truncation (large ones) differs from its
        # neighbours by more than it claims.
        jump = jnp.abs(vals[:, 1:] - vals[:, :-1])
        jump = jnp.where(jnp.isfinite(jump), jump, 0.0)
        pad = jnp.zeros_like(vals[:, :1])
        spread = jnp.maximum(jnp.concatenate([pad, jump], 1), jnp.concatenate([jump, pad], 1))
        errs = errs + _TRUNCATION_SAFETY * spread
    return vals, errs


def _pick(values: jax.Array, errors: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row, the finite window with the smallest error estimate; and whether one was finite."""
    ok = jnp.isfinite(values) & jnp.isfinite(errors)
    score = jnp.where(ok, errors, jnp.inf)
    idx = jnp.argmin(score, axis=1)
    take = lambda a: jnp.take_along_axis(a, idx[:, None], axis=1)[:, 0]
    return take(values), take(errors), jnp.any(ok, axis=1)


def _richardson_select(
    vals: jax.Array, taken: jax.Array, num: int, ratio: float, direction: jax.Array, dtype: Any, what: str
) -> Estimate:
    """The Richardson estimate from ``vals[:, j] = f(x + taken[:, j])``, the steps ``+h_k, -h_k`` interleaved.

    Coordinates that went one-sided, or got no estimate, are reported (:func:`_report_domain`).
    """
    est, switched, failed = _richardson_choose(
        vals[:, 0::2], vals[:, 1::2], taken[:, 0::2], taken[:, 1::2], num, ratio, direction, dtype
    )
    _report_domain(what, switched, failed, stacklevel=4)
    return est


def _richardson_choose(
    plus: jax.Array,
    minus: jax.Array,
    hp: jax.Array,
    hm: jax.Array,
    num: int,
    ratio: float,
    direction: jax.Array,
    dtype: Any,
) -> tuple[Estimate, jax.Array, jax.Array]:
    """The Richardson estimate from f at ``x + hp[:, k]`` and ``x + hm[:, k]`` (``hm < 0``), k < K.

    Central windows first; a coordinate whose central windows are all non-finite
    (f is not finite on one side at every step) falls back to the one-sided windows
    (forward differences ``(f(x + h_{k-1}) - f(x + h_k)) / (h_{k-1} - h_k)``, no extra
    evaluations), as does every coordinate whose ``direction`` is +1 (forward) or -1
    (backward). Returns the estimate, a mask of the coordinates that went one-sided
    although central was asked for, and a mask of those with no finite estimate.
    """
    # Work in units of a power of two near the derivative's size: the tableau's corrections are far
    # below the derivative, and would be flushed to 0 as subnormals (exp at -700, log at 1e300).
    central = (plus - minus) / (hp - hm)
    finite = jnp.where(jnp.isfinite(central), jnp.abs(central), 0.0)
    size = jnp.max(finite, axis=1, keepdims=True)
    scale = jnp.where(size > 0, jnp.exp2(jnp.floor(jnp.log2(jnp.where(size > 0, size, 1.0)))), 1.0)
    plus, minus = plus / scale, minus / scale
    central = (plus - minus) / (hp - hm)
    noise_c = (jnp.abs(plus) + jnp.abs(minus)) / (hp - hm)
    cv, ce, c_ok = _pick(*_windows(central, noise_c, num, ratio, 2, dtype))
    if plus.shape[1] > 1:
        fwd = (plus[:, :-1] - plus[:, 1:]) / (hp[:, :-1] - hp[:, 1:])
        noise_f = (jnp.abs(plus[:, :-1]) + jnp.abs(plus[:, 1:])) / (hp[:, :-1] - hp[:, 1:])
        bwd = (minus[:, :-1] - minus[:, 1:]) / (hm[:, :-1] - hm[:, 1:])
        noise_b = (jnp.abs(minus[:, :-1]) + jnp.abs(minus[:, 1:])) / (hp[:, :-1] - hp[:, 1:])
        fv, fe, f_ok = _pick(*_windows(fwd, noise_f, num, ratio, 1, dtype))
        bv, be, b_ok = _pick(*_windows(bwd, noise_b, num, ratio, 1, dtype))
    else:  # a single step: no one-sided difference without f(x)
        fv = fe = bv = be = jnp.full_like(cv, jnp.nan)
        f_ok = b_ok = jnp.zeros_like(c_ok)
    # one-sided fallback for direction 0: the better finite one-sided estimate
    use_f = f_ok & (~b_ok | (fe <= be))
    sv, se, s_ok = jnp.where(use_f, fv, bv), jnp.where(use_f, fe, be), f_ok | b_ok
    value = jnp.where(direction > 0, fv, jnp.where(direction < 0, bv, jnp.where(c_ok, cv, sv)))
    error = jnp.where(direction > 0, fe, jnp.where(direction < 0, be, jnp.where(c_ok, ce, se)))
    found = jnp.where(direction > 0, f_ok, jnp.where(direction < 0, b_ok, c_ok | s_ok))
    switched = (direction == 0) & ~c_ok & s_ok
    tiny = jnp.finfo(dtype).tiny
    value = jnp.where(found, value * scale[:, 0], jnp.nan)
    error = jnp.where(found, jnp.maximum(error * scale[:, 0], tiny), jnp.nan)
    return Estimate(value.astype(dtype), error.astype(dtype)), switched, ~found


def _report_domain(
    what: str, switched: jax.Array, failed: jax.Array, fix: str | None = None, stacklevel: int = 3
) -> None:
    """Warn (outside ``jax.jit`` only) about coordinates that went one-sided or got no estimate."""
    if not (v.is_concrete(switched) and v.is_concrete(failed)):
        return
    n_switched, n_failed = int(np.sum(np.asarray(switched))), int(np.sum(np.asarray(failed)))
    if n_switched:
        warnings.warn(
            f"{what}: f is not finite at a stencil point for {n_switched} coordinate(s); "
            + (
                fix
                or "one-sided differences were used there (pass step_direction=+1 or -1 to choose the side)"
            ),
            DomainWarning,
            stacklevel=stacklevel,
        )
    if n_failed:
        warnings.warn(
            f"{what}: no finite difference of f at any step for {n_failed} coordinate(s); "
            "those entries are NaN",
            DomainWarning,
            stacklevel=stacklevel,
        )


class DomainWarning(RuntimeWarning):
    """f was not finite at some stencil points: calcjax went one-sided there, or returned NaN."""


def _richardson_steps(x: Any, flat: jax.Array, h: Any) -> jax.Array:
    """First steps, flattened: ``RICHARDSON_FIRST_STEP * max(1, |x|)``, or ``h`` checked."""
    if h is None:
        return (RICHARDSON_FIRST_STEP * jnp.maximum(1.0, jnp.abs(flat))).astype(flat.dtype)
    return _flat_step(x, h, "central", 2).astype(flat.dtype)


def _check_richardson(num_steps: Any, ratio: Any, search: Any = None) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 2 <= num_steps <= 12:
        raise ValueError(f"num_steps must be an integer from 2 to 12, got {num_steps!r}")
    if not isinstance(ratio, int | float) or not ratio > 1 or not math.isfinite(ratio):
        raise ValueError(f"step_ratio must be a finite number > 1, got {ratio!r}")
    if search is not None and (
        isinstance(search, bool) or not isinstance(search, int) or not num_steps <= search <= 64
    ):
        raise ValueError(
            f"search_steps must be an integer from num_steps ({num_steps}) to 64, got {search!r}"
        )


def _search_length(h: Any, num_steps: int, search: int | None) -> int:
    if search is not None:
        return search
    return RICHARDSON_SEARCH if h is None else num_steps


def _step_direction(direction: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """``step_direction`` (-1, 0, +1; a scalar or like ``x``) checked and broadcast, as a flat array."""
    if v.is_concrete(direction):
        arr = np.asarray(direction)
        if arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise TypeError(f"step_direction must be -1, 0 or +1 (or an array of them), got {direction!r}")
        if not np.all(np.isin(arr, (-1, 0, 1))):
            raise ValueError(f"step_direction must be -1, 0 or +1 (or an array of them), got {direction!r}")
    d = jnp.asarray(direction)
    if d.shape not in ((), shape):
        raise ValueError(
            f"step_direction must be a scalar or have the shape of x {shape}, got shape {d.shape}"
        )
    return jnp.broadcast_to(d, shape).reshape(-1).astype(dtype)


def _richardson_offsets(num: int, ratio: float) -> list[float]:
    return [s / ratio**k for k in range(num) for s in (1.0, -1.0)]


def _taken(flat: jax.Array, h0: jax.Array, offsets: Sequence[float]) -> jax.Array:
    """The steps actually taken: ``(x + c*h0) - x`` for each offset ``c``, computed as the points are."""
    offs = jnp.asarray(list(offsets), flat.dtype)
    return (flat[:, None] + offs[None, :] * h0[:, None]) - flat[:, None]


@v.array_input("richardson_derivative")
@_blackbox.accepts_blackbox
def richardson_derivative(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    h: ArrayLike | None = None,
    num_steps: int = RICHARDSON_STEPS,
    step_ratio: float = RICHARDSON_RATIO,
    search_steps: int | None = None,
    step_direction: ArrayLike = 0,
) -> Estimate:
    """Richardson-extrapolated differences over a sequence of steps, with an error estimate.

    Steps ``h_k = h0 / r**k`` for ``k < K`` (``K = search_steps``); every window of
    ``num_steps`` consecutive steps is extrapolated by Neville's tableau (central
    differences: order ``2*num_steps``), and the window with the smallest error
    estimate is kept. The estimate is 10x the last tableau correction plus the
    rounding of every ``f`` value through the extrapolation weights, so it is not
    optimistic where rounding dominates and never 0 for an inexact value.

    Domain: a window with a non-finite value is never chosen. Where every central
    window is non-finite (``f`` undefined or overflowing on one side of ``x`` at
    every step), the coordinate falls back to one-sided differences built from the
    same evaluations and a :class:`DomainWarning` says how many coordinates did;
    where nothing is finite the entry is NaN with a warning (warnings only outside
    ``jax.jit``; under ``jit`` the NaN is the signal).

    Cost: ``2*K`` evaluations of ``f`` per point; ``K`` is ``24`` by default
    (:data:`RICHARDSON_EVALUATIONS` = 48), ``num_steps`` when ``h`` is given.

    Args:
      f: scalar function of a scalar.
      x: a point or array of points.
      h: the first (largest) step; default ``0.5 * max(1, |x|)``, the sequence then
        running down 24 powers of the ratio (to ``3e-8 * max(1, |x|)``).
      num_steps: step sizes per extrapolation window (2 to 12).
      step_ratio: ``r > 1``.
      search_steps: ``K``, how many step sizes are tried (``num_steps`` to 64).
      step_direction: ``0`` central (one-sided only where ``f`` forces it), ``+1``
        forward (``f`` only at ``x + h``), ``-1`` backward; a scalar or like ``x``.

    Returns:
      ``Estimate(value, error)``, each with ``x``'s shape.

    Raises:
      TypeError: ``x`` is not floating, ``step_direction`` is not numbers.
      ValueError: bad ``num_steps``, ``step_ratio``, ``search_steps``, ``h``, an
        empty ``x``, a ``step_direction`` not in {-1, 0, 1}, or a non-scalar ``f``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     est = calcjax.richardson_derivative(jnp.sin, 1.0)
      >>> bool(abs(est.value - jnp.cos(1.0)) <= est.error < 1e-12)
      True
    """
    _check_richardson(num_steps, step_ratio, search_steps)
    x = v.as_float_array(x)
    v.check_nonempty(x, "x")
    _scalar_fn_check(f, x)
    flat = x.reshape(-1)
    direction = _step_direction(step_direction, x.shape, x.dtype)
    h0 = _richardson_steps(x, flat, h)
    offsets = _richardson_offsets(_search_length(h, num_steps, search_steps), step_ratio)
    pts = flat[:, None] + jnp.asarray(offsets, x.dtype)[None, :] * h0[:, None]
    vals = jax.vmap(f)(pts.reshape(-1)).reshape(pts.shape).astype(x.dtype)
    est = _richardson_select(
        vals, _taken(flat, h0, offsets), num_steps, step_ratio, direction, x.dtype, "richardson_derivative"
    )
    return Estimate(est.value.reshape(x.shape), est.error.reshape(x.shape))


@_blackbox.accepts_blackbox
def richardson_gradient(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: ArrayLike | None = None,
    num_steps: int = RICHARDSON_STEPS,
    step_ratio: float = RICHARDSON_RATIO,
    search_steps: int | None = None,
    step_direction: ArrayLike = 0,
    batch_size: int | None = None,
    devices: Any = None,
    share_products: bool = True,
) -> Estimate:
    """Richardson-extrapolated gradient with per-coordinate error estimates.

    The step search, window choice, domain fallback and ``step_direction`` of
    :func:`richardson_derivative`, per coordinate. Costs ``2*K`` evaluations of
    ``f`` per coordinate (48 by default), batched like :func:`gradient`
    (``batch_size``, ``devices`` and ``share_products`` as there).

    Returns:
      ``Estimate(value, error)``, both with ``x``'s structure.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     est = calcjax.richardson_gradient(lambda w: jnp.sum(jnp.sin(w)), jnp.zeros(2))
      >>> [round(float(t), 12) for t in est.value]
      [1.0, 1.0]
    """
    _check_richardson(num_steps, step_ratio, search_steps)
    _check_batch_size(batch_size)
    _check_share(share_products)
    devs = _resolve_devices(devices)
    flat, unravel = _flatten(x)
    v.check_nonempty(flat, "x")
    f_flat = lambda z: f(unravel(z))
    v.check_scalar_function(f_flat, flat)
    leaf = jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(step_direction))
    if not (leaf and jnp.ndim(step_direction) == 0):
        if jax.tree_util.tree_structure(step_direction) != jax.tree_util.tree_structure(x):
            raise ValueError("step_direction must be a scalar or have the structure and shapes of x")
        step_direction = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, step_direction))[0]
    direction = _step_direction(step_direction, flat.shape, flat.dtype)
    h0 = _richardson_steps(x, flat, h)
    offsets = _richardson_offsets(_search_length(h, num_steps, search_steps), step_ratio)
    vals = _coordinate_values(f_flat, flat, h0, offsets, batch_size, devs, share_products).astype(flat.dtype)
    est = _richardson_select(
        vals, _taken(flat, h0, offsets), num_steps, step_ratio, direction, flat.dtype, "richardson_gradient"
    )
    return Estimate(unravel(est.value), unravel(est.error))
