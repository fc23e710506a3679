"""Finite-difference derivatives and gradients in JAX: the stencils, their steps, batched evaluation.

Richardson extrapolation lives in :mod:`calcjax._richardson`, the complex step in
:mod:`calcjax._complex_step`, the rule for non-finite values of ``f`` in
:mod:`calcjax._domain`; all of them evaluate ``f`` through the batching here.

Everything here is a pure function of JAX arrays: settings that change the
program (scheme, order, batch size, devices) are static Python values, loops are
``lax.map``, so a call under ``jax.jit`` compiles once per shape.
"""

from __future__ import annotations

import math
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
from calcjax._domain import _PLAIN_FALLBACK, _combine, _domain_fallback, _quiet, _report_domain, array_module
from calcjax._shared_eval import point_function

__all__ = [
    "SCHEMES",
    "Estimate",
    "Stencil",
    "auto_batch_size",
    "default_step",
    "derivative",
    "directional_derivative",
    "gradient",
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
    if type(scheme) is str and type(order) is int and (scheme, order) in _STENCILS:
        return Stencil(*_STENCILS[(scheme, order)])  # the common case, checked without building messages
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
    return _auto_step(x, scheme, order)


def _auto_step(x: Any, scheme: str, order: int) -> Any:
    """:func:`default_step` of a checked floating array: JAX, or NumPy for a NumPy ``x`` (the same rule
    and the same operations, so the host path of a black-box ``f`` takes the JAX path's steps)."""
    xp = array_module(x)
    eps = xp.finfo(x.dtype).eps
    base = float(eps) ** (1.0 / (order + 1))
    if order >= 4:
        base *= HIGH_ORDER_STEP_FACTOR
    h = base * xp.maximum(1.0, xp.abs(x)).astype(x.dtype)
    return _representable(x, h)


def _resolve_step(x: jax.Array, h: ArrayLike | None, scheme: str, order: int) -> jax.Array:
    """``h`` (scalar or like ``x``) checked and made representable, or the default step.

    NumPy in, NumPy out (the host path of a black-box ``f``); else JAX arrays.
    """
    if h is None:
        stencil(scheme, order)
        return _auto_step(x if isinstance(x, np.ndarray) else v.as_float_array(x), scheme, order)
    xp = array_module(x)
    v.check_positive_finite(h, "h")
    h = xp.asarray(h, dtype=x.dtype)
    if h.shape not in ((), x.shape):
        raise ValueError(f"h must be a scalar or have the shape of x {x.shape}, got shape {h.shape}")
    taken = _representable(x, xp.broadcast_to(h, x.shape))
    _check_resolution(x, taken)
    return taken


#: ``h="adaptive"``: the plain schemes try ``ADAPTIVE_STEPS`` steps, from the automatic step down by
#: ``ADAPTIVE_RATIO`` each, and keep the one whose difference changes least (see :func:`derivative`).
ADAPTIVE_STEPS = 10
ADAPTIVE_RATIO = 4.0


def _is_adaptive(h: Any) -> bool:
    """``h == "adaptive"``; any other string is a ``TypeError`` naming it."""
    if not isinstance(h, str):
        return False
    if h != "adaptive":
        raise TypeError(
            f"h must be a real number or an array of real numbers, got h={h!r} (the one word is 'adaptive')"
        )
    return True


def _adaptive_evaluations(scheme: str = "central", order: int = 2) -> int:
    """f-evaluations per coordinate of ``h="adaptive"``: ``ADAPTIVE_STEPS`` stencils (``f(x)`` once)."""
    offsets = stencil(scheme, order).offsets
    moved = sum(1 for c in offsets if c != 0.0)
    return ADAPTIVE_STEPS * moved + (0.0 in offsets)


def _adaptive_difference(
    moved_values: Callable[[Sequence[float], jax.Array], jax.Array],
    f0: Callable[[], jax.Array] | None,
    x: jax.Array,
    h0: jax.Array,
    scheme: str,
    order: int,
    dtype: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The difference at the step (of ``ADAPTIVE_STEPS``, ``h0 / ADAPTIVE_RATIO**k``) that changes least.

    ``moved_values(offsets, steps)`` gives ``f(x_i + c*steps_i)`` (``n x len(offsets)``)
    and ``f0()`` gives ``f(x)``, shared by every step. Step ``k`` is scored by the
    change to the next smaller step, ``|D_k - D_{k+1}|`` (its truncation error, as
    the error of a smaller step is ``ADAPTIVE_RATIO**order`` times less), at least
    the previous change scaled down by that factor (a lucky agreement of two
    differences is not trusted), plus the rounding ``eps * sum|w_j f_j| / h_k``. A
    step where ``f`` is not finite is never chosen. Returns the difference, the
    chosen steps and a mask of the coordinates with no finite difference.
    """
    offsets, weights = stencil(scheme, order)
    moved = [c for c in offsets if c != 0.0]
    base = None if f0 is None or len(moved) == len(offsets) else f0().astype(dtype)
    fulls, steps = [], []
    for k in range(ADAPTIVE_STEPS):
        hk = _representable(x, h0 / jnp.asarray(ADAPTIVE_RATIO**k, dtype))
        vals = moved_values(moved, hk).astype(dtype)
        cols, it = [], iter(range(len(moved)))
        for c in offsets:
            cols.append(jnp.broadcast_to(base, x.shape) if c == 0.0 else vals[:, next(it)])
        fulls.append(jnp.stack(cols, axis=1))
        steps.append(hk)
    # In units of a power of two near |f|: the changes between differences of a tiny f (exp at -700)
    # would be flushed to 0 as subnormals, and every step would look exact.
    finite_abs = [jnp.where(jnp.isfinite(v), jnp.abs(v), 0.0) for v in fulls]
    size = jnp.max(jnp.stack([jnp.max(a, axis=1) for a in finite_abs], 1), axis=1)
    scale = jnp.where(size > 0, jnp.exp2(jnp.floor(jnp.log2(jnp.where(size > 0, size, 1.0)))), 1.0)
    fulls = [v / scale[:, None] for v in fulls]
    d = jnp.stack([_combine(v, weights, dtype) / hk for v, hk in zip(fulls, steps, strict=True)], 1)
    rounding = jnp.stack(
        [
            _combine(jnp.abs(v), [abs(w) for w in weights], dtype) / hk
            for v, hk in zip(fulls, steps, strict=True)
        ],
        1,
    )
    h = jnp.stack(steps, 1)
    eps = float(jnp.finfo(dtype).eps)
    change = jnp.abs(d[:, :-1] - d[:, 1:])
    earlier = jnp.concatenate([jnp.zeros_like(change[:, :1]), change[:, :-1] / ADAPTIVE_RATIO**order], 1)
    score = jnp.maximum(change, earlier) + eps * rounding[:, :-1]
    score = jnp.concatenate([score, jnp.full_like(score[:, :1], jnp.inf)], 1)
    finite = jnp.isfinite(d) & (h > 0)
    big = float(jnp.finfo(dtype).max)
    score = jnp.where(finite, jnp.where(jnp.isfinite(score), score, big), jnp.inf)
    k = jnp.argmin(score, axis=1)
    take = lambda a: jnp.take_along_axis(a, k[:, None], axis=1)[:, 0]
    return take(d) * scale, take(h), ~jnp.any(finite, axis=1)


def _check_resolution(x: jax.Array, taken: jax.Array, what: str = "h") -> None:
    """``ValueError`` where a concrete step is below ``x``'s resolution (``(x + h) - x == 0``).

    The one rule for every FD routine (first and second derivatives); ``what``
    names the step in the message.

    Under ``jax.jit`` the values are not known: such a coordinate's derivative is
    NaN (0/0), as documented in :func:`derivative`.
    """
    if not (v.is_concrete(x) and v.is_concrete(taken)):
        return
    zero = np.asarray(taken) == 0
    if np.any(zero):
        i = int(np.flatnonzero(zero.reshape(-1))[0])
        xi = np.asarray(x).reshape(-1)[i]
        with np.errstate(invalid="ignore"):  # x[i] = nan or inf: spacing is nan, the error still names it
            smallest = float(np.spacing(np.abs(xi).astype(x.dtype)))
        index = ", ".join(str(int(k)) for k in np.unravel_index(i, x.shape))
        where = f"x[{index}]" if x.ndim else "x"
        raise ValueError(
            f"{what} is below the resolution of {where} = {float(xi)!r} ({x.dtype}): (x + h) - x == 0 "
            f"there ({int(zero.sum())} coordinate(s)); the smallest step that moves it is {smallest!r} "
            "(or pass h=None for the automatic step)"
        )


def _scalar_fn_check(f: Callable[..., Any], x: jax.Array) -> None:
    v.check_scalar_function(f, jax.ShapeDtypeStruct((), x.dtype))


@v.array_input("derivative")
@_blackbox.accepts_blackbox
def derivative(
    f: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    *,
    h: ArrayLike | str | None = None,
    scheme: str = "central",
    order: int = 2,
) -> jax.Array:
    """Finite-difference derivative of a scalar function, elementwise over ``x``.

    Args:
      f: a function of one scalar returning a scalar, traceable by JAX.
      x: a point or an array of points (any shape); float32 or float64.
      h: the step: ``None`` for the automatic step (see :func:`default_step`), a
        positive scalar, an array of ``x``'s shape, or ``"adaptive"``: the
        stencil at :data:`ADAPTIVE_STEPS` steps, from the automatic one down by
        :data:`ADAPTIVE_RATIO` each, keeping per point the step whose difference
        changes least from the next (the smallest sum of truncation and rounding
        estimates; steps where ``f`` is not finite are skipped). It follows ``f``
        where ``f`` varies faster than ``max(1, |x|)`` (``log`` near 0, ``exp`` at
        700) at ``ADAPTIVE_STEPS`` times the stencil's points off ``x`` f-evaluations per
        point (plus ``f(x)`` once for one-sided schemes): 20 for central order
        2, against 2 for ``None``. It works under ``jax.jit``. The search reaches
        ``ADAPTIVE_RATIO**-(ADAPTIVE_STEPS - 1)`` (4e-6) of the automatic step,
        and never above it.
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
    flat = x.reshape(-1)

    def at(offs: Sequence[float], steps: jax.Array) -> jax.Array:  # (n, len(offs)): f at x + c*h
        pts = flat[:, None] + jnp.asarray(list(offs), x.dtype)[None, :] * steps[:, None]
        return jax.vmap(f)(pts.reshape(-1)).reshape(pts.shape).astype(x.dtype)

    if _is_adaptive(h):
        h0 = default_step(flat, scheme=scheme, order=order)
        d, hf, bad = _adaptive_difference(at, lambda: jax.vmap(f)(flat), flat, h0, scheme, order, x.dtype)
        hf = jnp.where(bad, h0, hf)
    else:
        hf = _resolve_step(x, h, scheme, order).reshape(-1)
        vals = at(offsets, hf)
        d = _combine(vals, weights, x.dtype) / hf
        bad = ~jnp.all(jnp.isfinite(vals), axis=1)
    evaluate = lambda offs: at(offs, hf)
    d, switched, failed = _domain_fallback(d, bad, evaluate, hf, scheme, order, x.dtype)
    _report_domain("derivative", switched, failed, _PLAIN_FALLBACK)
    return d.reshape(x.shape)


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


def _flat_step(x: Any, h: Any, scheme: str, order: int, host: bool = False) -> jax.Array:
    """The flattened steps for a pytree ``x``: ``h`` is ``None``, a scalar, or a pytree like ``x``.

    Each leaf's step is taken (and made representable) in that leaf's own dtype,
    so a float32 leaf of a mixed float32/float64 pytree gets a float32 step.
    ``host``: ``x``'s leaves are NumPy arrays and so are the steps (the host path
    of a black-box ``f``).
    """
    leaves, treedef = jax.tree_util.tree_flatten(x)
    is_leaf = jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(h))
    if h is None or (is_leaf and np.ndim(h) == 0):
        hs = [h] * len(leaves)
    elif jax.tree_util.tree_structure(h) != treedef:
        raise ValueError("h must be a scalar or have the structure and shapes of x")
    else:
        hs = jax.tree_util.tree_leaves(h)
    xp = np if host else jnp
    steps = [
        _resolve_step(xp.asarray(a), hl, scheme, order).reshape(-1) for a, hl in zip(leaves, hs, strict=True)
    ]
    return steps[0] if len(steps) == 1 else xp.concatenate(steps)


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


def _fd_flat(
    f_flat: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    steps: jax.Array,
    scheme: str,
    order: int,
    batch_size: int | None,
    devices: tuple[jax.Device, ...] | None,
    share: bool = True,
    adaptive: bool = False,
) -> jax.Array:
    """The gradient at ``steps`` (with ``adaptive``: the first of the adaptive search's steps)."""
    values = lambda offs, hk: _coordinate_values(f_flat, flat, hk, list(offs), batch_size, devices, share)
    f0 = lambda: f_flat(flat).astype(flat.dtype)
    if adaptive:
        h0 = steps
        g, steps, bad = _adaptive_difference(values, f0, flat, h0, scheme, order, flat.dtype)
        steps = jnp.where(bad, h0, steps)
        problem = _Points(lambda offs: values(offs, steps), f0, flat, steps, scheme, order)
        return _with_domain_rule(g, bad, problem)
    return _plain_gradient(_Points(lambda offs: values(offs, steps), f0, flat, steps, scheme, order))


class _Points(NamedTuple):
    """A gradient's evaluations: ``values(offsets)`` gives ``F[i, j] = f(x + offsets[j]*steps[i]*e_i)``,
    ``f0()`` gives ``f(x)``; JAX arrays, or NumPy arrays in the host path of a black-box ``f``
    (:func:`_gradient_host`), where the same operations then run in NumPy."""

    values: Callable[[Sequence[float]], jax.Array]
    f0: Callable[[], jax.Array]
    flat: jax.Array
    steps: jax.Array
    scheme: str
    order: int


def _plain_gradient(p: _Points) -> jax.Array:
    """The stencil's gradient, with the domain rule."""
    flat = p.flat
    xp = array_module(flat)
    offsets, weights = stencil(p.scheme, p.order)
    moved = [(c, w) for c, w in zip(offsets, weights, strict=True) if c != 0.0]
    vals = p.values([c for c, _ in moved]).astype(flat.dtype)
    bad = ~xp.all(xp.isfinite(vals), axis=1)
    w0 = sum(w for c, w in zip(offsets, weights, strict=True) if c == 0.0)
    fx = p.f0() if w0 else None
    some_bad = xp is jnp or bool(bad.any()) or (fx is not None and not np.isfinite(fx))
    g = _combine(vals, [w for _, w in moved], flat.dtype, finite=not some_bad)
    with _quiet(xp, some_bad):
        if fx is not None:
            g = g + xp.asarray(w0, flat.dtype) * fx
            bad = bad | ~xp.isfinite(fx)
    with _quiet(xp):  # a finite difference over a tiny step may overflow: inf, silently, as in JAX
        g = g / p.steps
    return _with_domain_rule(g, bad, p)


def _with_domain_rule(g: jax.Array, bad: jax.Array, p: _Points) -> jax.Array:
    """``g`` with the one-sided fallback where ``bad`` (:func:`~calcjax._domain._domain_fallback`),
    reported."""
    flat, values, f0 = p.flat, p.values, p.f0
    xp = array_module(flat)
    if xp is np and not bad.any():
        return g  # every value finite: nothing to fall back on or report

    def evaluate(offs: Sequence[float]) -> jax.Array:
        fx = f0()
        moved = [c for c in offs if c != 0.0]
        vals = values(moved).astype(flat.dtype)
        cols, it = [], iter(range(len(moved)))
        for c in offs:
            cols.append(xp.broadcast_to(fx, flat.shape) if c == 0.0 else vals[:, next(it)])
        return xp.stack(cols, axis=1)

    g, switched, failed = _domain_fallback(g, bad, evaluate, p.steps, p.scheme, p.order, flat.dtype)
    _report_domain("gradient", switched, failed, _PLAIN_FALLBACK)
    return g


def _flat_problem(
    f: Callable[[Any], jax.Array], x: Any, batch_size: Any, share_products: Any, devices: Any
) -> tuple[tuple[jax.Device, ...] | None, jax.Array, Callable[[jax.Array], Any], Callable[[jax.Array], Any]]:
    """The checks every FD gradient starts with, then ``(devices, flat x, unravel, f of flat x)``."""
    _check_batch_size(batch_size)
    _check_share(share_products)
    devs = _resolve_devices(devices)
    flat, unravel = _flatten(x)
    v.check_nonempty(flat, "x")
    f_flat = lambda z: f(unravel(z))
    v.check_scalar_function(f_flat, flat)
    return devs, flat, unravel, f_flat


def _gradient_host(box: _blackbox.BlackBox, x: Any, **settings: Any) -> Any:
    """:func:`gradient` of a black-box ``f`` at a NumPy ``x``, computed on the host without XLA.

    The same steps, points, combination and domain rule as the JAX path -- the
    same functions, run with NumPy arrays -- so the results agree with it to
    rounding. No XLA program runs around the evaluations: one adds a fixed cost
    per call, larger after a long host callback, enough to make a cheap ``f``
    at small n slower than the tutorial's loop (``bench/nonjax_targets.py``
    measures both). ``NotImplemented`` for what only the JAX path does: an
    adaptive step, ``devices``, leaves of several dtypes.
    """
    h, scheme, order, batch_size = (settings[k] for k in ("h", "scheme", "order", "batch_size"))
    stencil(scheme, order)
    _check_batch_size(batch_size)
    _check_share(settings["share_products"])
    leaves, treedef = jax.tree_util.tree_flatten(x)
    dtype = leaves[0].dtype
    if (
        settings["devices"] is not None
        or _is_adaptive(h)
        or dtype not in v.NUMPY_FLOATS  # bfloat16: NumPy has no finfo for it, and XLA rounds it
        or any(a.dtype != dtype for a in leaves)
    ):
        return NotImplemented
    flat = leaves[0].reshape(-1) if len(leaves) == 1 else np.concatenate([a.reshape(-1) for a in leaves])
    v.check_nonempty(flat, "x")
    with np.errstate(all="ignore"):  # an inf in x: its step is NaN, silently, as in JAX
        steps = _flat_step(x, h, scheme, order, host=True)
    spec = _blackbox.flat_spec(leaves, treedef)
    values = lambda offs: box.coordinate_values_host(flat, steps, offs, spec, batch_size)
    f0 = lambda: box.value_host(flat, spec)
    g = _plain_gradient(_Points(values, f0, flat, steps, scheme, order))
    return _blackbox.unflatten(g, leaves, treedef)


@_blackbox.accepts_blackbox(host=_gradient_host)
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
      h: ``None`` (automatic, per coordinate), a positive scalar, a pytree
        like ``x``, or ``"adaptive"`` (a step search per coordinate, as for
        :func:`derivative`: 20 f-evaluations per coordinate for central
        order 2).
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
    devs, flat, unravel, f_flat = _flat_problem(f, x, batch_size, share_products, devices)
    adaptive = _is_adaptive(h)
    steps = _flat_step(x, None if adaptive else h, scheme, order).astype(flat.dtype)
    return unravel(_fd_flat(f_flat, flat, steps, scheme, order, batch_size, devs, share_products, adaptive))


@_blackbox.accepts_blackbox
def directional_derivative(
    f: Callable[[Any], jax.Array],
    x: Any,
    direction: Any,
    *,
    h: ArrayLike | str | None = None,
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
      h: the step in ``t``, ``None`` for automatic, or ``"adaptive"`` (a step
        search along ``v`` as for :func:`derivative`: 20 f-evaluations for
        central order 2).
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
    adaptive = _is_adaptive(h)
    if h is None or adaptive:
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
    along = lambda offs, tk: jnp.stack(
        [f_flat(flat + (jnp.asarray(c, dtype) * tk[0]) * vflat).astype(dtype) for c in offs]
    )[None, :]
    if adaptive:
        t = jnp.reshape(t, (1,)).astype(dtype)
        return _adaptive_difference(along, lambda: f_flat(flat), t * 0, t, scheme, order, dtype)[0][0]
    return jnp.sum(jnp.asarray(weights, dtype) * along(offsets, jnp.reshape(t, (1,)))[0]) / t
