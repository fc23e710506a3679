"""Second derivatives by finite differences: Hessians, Hessian-vector products, Hessian diagonals.

Every function here evaluates ``f`` (or a gradient of it) through JAX code from one
entry point, :func:`_evaluable`, so a wrapper that makes a non-JAX ``f`` callable from
JAX is one call there. Settings that change the program are static; loops are
``lax.map``; memory grows like ``batch_size * n`` for the perturbed points, plus the
``n x n`` result of a full Hessian, which is refused, with the figure, when it would
not fit in memory.

Stencils. On the diagonal, a second-difference stencil
(:data:`SECOND_STENCILS`); off it, the tensor product of the first-derivative stencil
of :func:`calcjax.stencil` with itself -- for central order 2 the standard four-point
mixed stencil ``(f(x+h_i e_i+h_j e_j) - f(x+h_i e_i-h_j e_j) - f(x-h_i e_i+h_j e_j)
+ f(x-h_i e_i-h_j e_j)) / (4 h_i h_j)``.

Step. Rounding in a second difference grows like ``eps/h**2`` and truncation like
``h**order``, so the automatic step is ``4 * eps**(1/(order+2)) * max(1, |x|)`` (a quarter
of it for orders 4 and 6, as for first derivatives), made representable.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from calcjax import _blackbox
from calcjax import _complex_step as cs
from calcjax import _finite_diff as fd
from calcjax import _richardson as rich
from calcjax import _validate as val
from calcjax._complex_safety import check_complex_step

__all__ = [
    "HVP_METHODS",
    "SECOND_STENCILS",
    "complex_step_hessian",
    "hessian",
    "hessian_diagonal",
    "hessian_vector_product",
    "ravel_hessian",
    "richardson_hessian",
    "richardson_hessian_vector_product",
    "second_default_step",
]

#: Offsets (in units of h) and weights of each (scheme, order) second-difference stencil:
#: ``f''(x) ~ sum(weights * f(x + offsets*h)) / h**2``.
SECOND_STENCILS: dict[tuple[str, int], tuple[tuple[float, ...], tuple[float, ...]]] = {
    ("forward", 1): ((0.0, 1.0, 2.0), (1.0, -2.0, 1.0)),
    ("forward", 2): ((0.0, 1.0, 2.0, 3.0), (2.0, -5.0, 4.0, -1.0)),
    ("backward", 1): ((-2.0, -1.0, 0.0), (1.0, -2.0, 1.0)),
    ("backward", 2): ((-3.0, -2.0, -1.0, 0.0), (-1.0, 4.0, -5.0, 2.0)),
    ("central", 2): ((-1.0, 0.0, 1.0), (1.0, -2.0, 1.0)),
    ("central", 4): ((-2.0, -1.0, 0.0, 1.0, 2.0), (-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12)),
    ("central", 6): (
        (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
        (1 / 90, -3 / 20, 3 / 2, -49 / 18, 3 / 2, -3 / 20, 1 / 90),
    ),
}

#: The automatic second-difference step is this multiple of ``eps**(1/(order+2)) * max(1, |x|)``.
#: Central second differences err by ``4 eps |f| / h**2`` (rounding) plus ``h**2 |f^(4)| / 12``
#: (truncation), least at ``h = (48 eps |f| / |f^(4)|)**(1/4)``: ``2.6 eps**(1/4)`` when ``f`` and
#: ``f^(4)`` are of one size. Functions that vary more slowly than the unit scale (logistic
#: regression's loss along a coordinate) want more, so the factor is 4: a compromise from a one-off
#: sweep of factors 1, 2, 4, 8 on the four test problems at n = 100 in float64 (no committed run
#: records it), in which the quadratic and logistic regression did best at 8, Rosenbrock and the
#: MLP at 1.
SECOND_STEP_FACTOR = 4.0

#: HVP methods of :func:`hessian_vector_product`.
HVP_METHODS = ("fd-grad", "fd", "complex-grad")

#: A full Hessian and its working arrays may take at most this share of the memory of the device.
HESSIAN_MEMORY_SHARE = 0.5


# --------------------------------------------------------------------------- inputs


def _evaluable(f: Callable[..., Any]) -> Callable[..., Any]:
    """The one entry point of ``f``: every evaluation below goes through what this returns.

    A JAX function is returned as it is; wrapping a NumPy ``f`` for JAX (options
    ``traceable``, ``vectorized``, ``workers``) belongs here.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__} {f!r}")
    return f


def _second_stencil(scheme: str, order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    fd.stencil(scheme, order)  # the same schemes and orders as first derivatives, same messages
    return SECOND_STENCILS[(scheme, order)]


def second_default_step(x: ArrayLike, *, scheme: str = "central", order: int = 2) -> jax.Array:
    """The automatic step of second differences: ``4 * eps**(1/(order+2)) * max(1, |x|)``, representable.

    Rounding in a second difference grows like ``eps/h**2`` and truncation like
    ``h**order``; the step balances them (the factor 4 is :data:`SECOND_STEP_FACTOR`,
    explained there). Orders 4 and 6 take a quarter of it, as
    :func:`calcjax.default_step` does for first derivatives.

    Args:
      x: the point(s), a floating array.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: the stencil's accuracy order.

    Returns:
      An array like ``x`` with ``(x + h) - x == h`` exactly.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     h = calcjax.second_default_step(jnp.float64(1.0))  # eps**(1/4)
      >>> bool(4.8e-4 < float(h) < 4.9e-4)
      True
    """
    x = val.as_float_array(x)
    _second_stencil(scheme, order)
    base = SECOND_STEP_FACTOR * float(jnp.finfo(x.dtype).eps) ** (1.0 / (order + 2))
    if order >= 4:
        base *= fd.HIGH_ORDER_STEP_FACTOR
    return fd._representable(x, base * jnp.maximum(1.0, jnp.abs(x)).astype(x.dtype))


def _flat_second_step(x: Any, flat: jax.Array, h: Any, scheme: str, order: int) -> jax.Array:
    """Per-coordinate steps, flat: the automatic second-difference step, or ``h`` checked."""
    if h is None:
        leaf_step = lambda leaf: second_default_step(jnp.asarray(leaf), scheme=scheme, order=order)
        steps = ravel_pytree(jax.tree_util.tree_map(leaf_step, x))[0].astype(flat.dtype)
    else:
        steps = fd._flat_step(x, h, scheme, order).astype(flat.dtype)
    fd._check_resolution(flat, steps)
    return steps


def _prepare(
    f: Callable[..., Any], x: Any
) -> tuple[Callable, Callable[[jax.Array], jax.Array], jax.Array, Callable]:
    """``f`` made evaluable, ``f`` of the flat ``x`` (checked to be scalar), the flat ``x``, its unravel."""
    f = _evaluable(f)
    flat, unravel = fd._flatten(x)
    val.check_nonempty(flat, "x")
    f_flat = lambda z: f(unravel(z))
    val.check_scalar_function(f_flat, flat)
    return f, f_flat, flat, unravel


def _same_structure(u: Any, x: Any, name: str) -> jax.Array:
    """``u`` flattened, after checking it has ``x``'s structure, shapes and a floating dtype."""
    sx, su = jax.tree_util.tree_structure(x), jax.tree_util.tree_structure(u)
    if sx != su:
        raise ValueError(f"{name} must have the structure of x: x is {sx}, {name} is {su}")
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(x), jax.tree_util.tree_leaves(u), strict=True
    ):
        where = name + jax.tree_util.keystr(path)
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{where} must have the shape of x there, {jnp.shape(a)}, got {jnp.shape(b)}")
        val.check_floating_leaf(b, where)
    return ravel_pytree(jax.tree_util.tree_map(jnp.asarray, u))[0]


def _check_hessian_fits(n: int, itemsize: int, matrices: int = 1) -> None:
    """Refuse a Hessian whose ``matrices`` arrays of ``n x n`` and working arrays would not fit in memory."""
    need = _hessian_bytes(n, itemsize, matrices)
    platform = jax.default_backend()
    have = _device_memory(platform)
    if have and need > HESSIAN_MEMORY_SHARE * have:
        raise ValueError(
            f"a Hessian at n = {n} needs about {_human(need)} ({n}**2 values of {itemsize} bytes, "
            f"with its working arrays) but the {platform} has {_human(have)} of memory; use "
            "calcjax.hessian_vector_product (memory ~ n per product) or calcjax.hessian_diagonal"
        )


def _hessian_bytes(n: int, itemsize: int, matrices: int = 1) -> int:
    """``matrices`` arrays of ``n**2`` (the result, and Richardson's tables) and the pairs' differences."""
    return (matrices * n * n + n * (n - 1) // 2) * itemsize


def _device_memory(platform: str) -> int | None:
    if platform == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return None
    try:
        stats = jax.local_devices(backend=platform)[0].memory_stats() or {}
    except (RuntimeError, AttributeError):  # pragma: no cover - backend without stats
        return None
    return stats.get("bytes_limit")


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} PB"  # pragma: no cover


# --------------------------------------------------------------------------- Hessian layout


def _unravel_hessian(h_flat: jax.Array, x: Any) -> Any:
    """An ``n x n`` matrix as ``jax.hessian`` lays it out: a pytree (of ``x``) of pytrees (of ``x``)."""
    leaves, treedef = jax.tree_util.tree_flatten(x)
    shapes = [jnp.shape(leaf) for leaf in leaves]
    dtypes = [jnp.asarray(leaf).dtype for leaf in leaves]
    starts = np.concatenate([[0], np.cumsum([math.prod(s) for s in shapes])]).tolist()
    rows = []
    for a, (sa, da) in enumerate(zip(shapes, dtypes, strict=True)):
        inner = [
            h_flat[starts[a] : starts[a + 1], starts[b] : starts[b + 1]]
            .reshape(sa + sb)
            .astype(jnp.promote_types(da, db))
            for b, (sb, db) in enumerate(zip(shapes, dtypes, strict=True))
        ]
        rows.append(jax.tree_util.tree_unflatten(treedef, inner))
    return jax.tree_util.tree_unflatten(treedef, rows)


def ravel_hessian(hess: Any, x: Any) -> jax.Array:
    """A pytree-of-pytrees Hessian (as :func:`hessian` and ``jax.hessian`` return it) as ``n x n``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = {"a": jnp.ones(2), "b": jnp.ones(())}
      >>> calcjax.ravel_hessian(jax.hessian(lambda p: jnp.sum(p["a"] ** 2) * p["b"])(x), x).shape
      (3, 3)
    """
    leaves, treedef = jax.tree_util.tree_flatten(x)
    sizes = [math.prod(jnp.shape(leaf)) for leaf in leaves]
    outer = treedef.flatten_up_to(hess)
    rows = [
        jnp.concatenate(
            [
                jnp.reshape(block, (sa, sb))
                for block, sb in zip(treedef.flatten_up_to(row), sizes, strict=True)
            ],
            axis=1,
        )
        for row, sa in zip(outer, sizes, strict=True)
    ]
    return jnp.concatenate(rows, axis=0)


# --------------------------------------------------------------------------- evaluation


def _pairs_per_batch(
    pairs: int, f_flat: Callable, flat: jax.Array, points: int, batch_size: int | None
) -> int:
    """Pairs per batch: each pair moves ``points`` copies of ``x``, sized as :func:`calcjax.gradient` does."""
    if batch_size is None:
        n, itemsize = flat.shape[0], flat.dtype.itemsize
        largest, shared = fd._evaluation_bytes(f_flat, flat)
        # auto_batch_size sizes batches of "coordinates", each a copy of an n-vector; there are more
        # pairs than coordinates, so count pairs and take the n-vector's bytes off the largest intermediate.
        batch_size = fd.auto_batch_size(
            pairs, points, itemsize, point_bytes=largest + (n - pairs) * itemsize, shared_bytes=shared
        )
    return max(1, min(batch_size, pairs))


def _pair_map(
    f_flat: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    steps: jax.Array,
    terms: Sequence[tuple[float, float, float]],
    batch_size: int | None,
) -> tuple[jax.Array, jax.Array]:
    """For every pair ``i < j``: ``sum_k w_k f(x + a_k h_i e_i + b_k h_j e_j)`` and ``sum_k |w_k f(...)|``.

    ``terms`` are ``(a_k, b_k, w_k)`` with ``a_k, b_k != 0``. Pairs are taken a batch
    at a time (``lax.map`` over batches, one ``vmap`` per batch), so at most
    ``batch_size * len(terms)`` perturbed copies of ``x`` exist at once.
    Returns two ``(n*(n-1)/2,)`` arrays in ``np.triu_indices(n, 1)`` order.
    """
    n = flat.shape[0]
    rows, cols = np.triu_indices(n, 1)
    pairs = rows.size
    m = len(terms)
    b = _pairs_per_batch(pairs, f_flat, flat, m, batch_size)
    chunks = math.ceil(pairs / b)
    pad = chunks * b - pairs
    rows = jnp.asarray(np.concatenate([rows, np.zeros(pad, rows.dtype)]), jnp.int32).reshape(chunks, b)
    cols = jnp.asarray(np.concatenate([cols, np.ones(pad, cols.dtype)]), jnp.int32).reshape(chunks, b)
    a = jnp.asarray([t[0] for t in terms], flat.dtype)[:, None]
    c = jnp.asarray([t[1] for t in terms], flat.dtype)[:, None]
    w = jnp.asarray([t[2] for t in terms], flat.dtype)[:, None]
    index = jnp.arange(n)

    def one_batch(ij: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        i, j = ij
        xi = (flat[i][None, :] + a * steps[i][None, :]).reshape(-1)
        xj = (flat[j][None, :] + c * steps[j][None, :]).reshape(-1)
        ii, jj = jnp.tile(i, m), jnp.tile(j, m)
        pts = jnp.where(
            index[None, :] == ii[:, None],
            xi[:, None],
            jnp.where(index[None, :] == jj[:, None], xj[:, None], flat[None, :]),
        )
        vals = w * jax.vmap(f_flat)(pts).astype(flat.dtype).reshape(m, -1)
        return jnp.sum(vals, axis=0), jnp.sum(jnp.abs(vals), axis=0)

    total, size = lax.map(one_batch, (rows, cols))
    return total.reshape(-1)[:pairs], size.reshape(-1)[:pairs]


def _second_differences(
    f_flat: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    steps: jax.Array,
    scheme: str,
    order: int,
    batch_size: int | None,
    *,
    full: bool,
) -> tuple[jax.Array, jax.Array]:
    """The FD Hessian (``full``) or its diagonal, and the same sums of ``|w f|`` (for rounding estimates)."""
    offs1, w1 = fd.stencil(scheme, order)
    offs2, w2 = _second_stencil(scheme, order)
    dtype = flat.dtype
    n = flat.shape[0]
    # f at x moved along one coordinate: the diagonal's points, and the mixed stencil's with one zero offset.
    single = sorted({c for c in offs2 if c} | ({c for c in offs1 if c} if full and 0.0 in offs1 else set()))
    f0 = f_flat(flat).astype(dtype)
    vals = fd._coordinate_values(f_flat, flat, steps, single, batch_size).astype(dtype)
    col = {c: vals[:, k] for k, c in enumerate(single)}

    def at(c: float) -> jax.Array:
        return col[c] if c else jnp.broadcast_to(f0, (n,))

    diag = sum(jnp.asarray(w, dtype) * at(c) for c, w in zip(offs2, w2, strict=True))
    diag_size = sum(jnp.abs(jnp.asarray(w, dtype) * at(c)) for c, w in zip(offs2, w2, strict=True))
    diag, diag_size = diag / steps**2, diag_size / steps**2
    if not full or n == 1:
        return (diag, diag_size) if not full else (diag[:, None], diag_size[:, None])
    terms = [
        (ca, cb, wa * wb)
        for ca, wa in zip(offs1, w1, strict=True)
        for cb, wb in zip(offs1, w1, strict=True)
        if ca and cb
    ]
    rows, cols = np.triu_indices(n, 1)
    mixed, mixed_size = _pair_map(f_flat, flat, steps, terms, batch_size)
    # Terms of the tensor-product stencil with a zero offset: one coordinate moved, or none.
    for ca, wa in zip(offs1, w1, strict=True):
        for cb, wb in zip(offs1, w1, strict=True):
            if ca and cb:
                continue
            val = jnp.asarray(wa * wb, dtype) * (
                at(ca)[rows] if ca else at(cb)[cols] if cb else jnp.broadcast_to(f0, rows.shape)
            )
            mixed, mixed_size = mixed + val, mixed_size + jnp.abs(val)
    scale = steps[rows] * steps[cols]
    mixed, mixed_size = mixed / scale, mixed_size / scale
    hess = jnp.zeros((n, n), dtype).at[rows, cols].set(mixed).at[cols, rows].set(mixed)
    size = jnp.zeros((n, n), dtype).at[rows, cols].set(mixed_size).at[cols, rows].set(mixed_size)
    idx = jnp.arange(n)
    return hess.at[idx, idx].set(diag), size.at[idx, idx].set(diag_size)


@functools.partial(jax.jit, static_argnames=("f", "scheme", "order", "batch_size", "full", "sizes"))
def _second_differences_jit(
    f: Callable[..., Any],
    x: Any,
    steps: jax.Array,
    scheme: str,
    order: int,
    batch_size: int | None,
    full: bool,
    sizes: bool,
) -> tuple[jax.Array, jax.Array | None]:
    flat, unravel = ravel_pytree(x)
    value, size = _second_differences(
        lambda z: f(unravel(z)), flat, steps, scheme, order, batch_size, full=full
    )
    return value, size if sizes else None  # unused sizes are not computed (nor their n x n array kept)


def _run_second_differences(
    f: Callable[..., Any],
    x: Any,
    f_flat: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    steps: jax.Array,
    scheme: str,
    order: int,
    batch_size: int | None,
    *,
    full: bool,
    sizes: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
    """:func:`_second_differences`, compiled once per ``f`` and shape when ``f`` is hashable.

    Run op by op, the few dozen small operations around the ``lax.map`` each
    compile on their own, every call; compiled as one program, a second call with
    the same ``f`` and shapes reuses it.
    """
    try:
        hash(f)
    except TypeError:
        return _second_differences(f_flat, flat, steps, scheme, order, batch_size, full=full)
    x = jax.tree_util.tree_map(jnp.asarray, x)
    return _second_differences_jit(f, x, steps, scheme, order, batch_size, full, sizes)


@_blackbox.accepts_blackbox
def hessian(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: Any = None,
    scheme: str = "central",
    order: int = 2,
    batch_size: int | None = None,
) -> Any:
    """Finite-difference Hessian of a scalar ``f`` at ``x`` (an array or a pytree), from ``f`` alone.

    Off the diagonal, the tensor product of the first-derivative stencil with
    itself (for central order 2 the four-point mixed stencil, ``4`` evaluations
    per pair ``i < j``); on it, a second difference (:data:`SECOND_STENCILS`).
    Central order 2 costs ``2 n**2 + 1`` evaluations of ``f``. The perturbed
    points are evaluated ``batch_size`` pairs at a time (one ``vmap`` per batch,
    batches in a ``lax.map``), so they take memory ``~ batch_size * n``; the
    ``n x n`` result is refused, with the figure, when it would not fit.

    Args:
      f: scalar function of ``x``, traceable by JAX.
      x: an array or a pytree of floating arrays.
      h: ``None`` for the automatic step (:func:`second_default_step`, per
        coordinate), a positive scalar, or a pytree like ``x``.
      scheme: ``"forward"``, ``"backward"`` or ``"central"``.
      order: 1, 2 (one-sided); 2, 4, 6 (central).
      batch_size: pairs (and, for the diagonal, coordinates) per batch; ``None``
        sizes a batch like :func:`calcjax.gradient` does.

    Returns:
      The Hessian laid out as ``jax.hessian`` does: for an array ``x`` of shape
      ``s`` an array of shape ``s + s``; for a pytree, a pytree (of ``x``) of
      pytrees (of ``x``) whose block ``[a][b]`` has shape ``shape(a) + shape(b)``.

    Raises:
      TypeError: a leaf of ``x`` is not floating.
      ValueError: ``f`` is not scalar; ``h`` is not positive, or (for concrete
        ``x``) below ``x``'s resolution; a bad scheme, order or batch size; the
        Hessian would not fit in memory.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     H = calcjax.hessian(lambda w: w[0] ** 2 * w[1] + jnp.sin(w[1]), jnp.array([1.0, 0.0]))
      >>> [[round(float(t), 6) for t in row] for row in H]
      [[0.0, 2.0], [2.0, 0.0]]
    """
    _second_stencil(scheme, order)
    fd._check_batch_size(batch_size)
    f, f_flat, flat, _ = _prepare(f, x)
    _check_hessian_fits(flat.shape[0], flat.dtype.itemsize)
    steps = _flat_second_step(x, flat, h, scheme, order)
    hess, _ = _run_second_differences(f, x, f_flat, flat, steps, scheme, order, batch_size, full=True)
    return _unravel_hessian(hess, x)


@_blackbox.accepts_blackbox
def hessian_diagonal(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: Any = None,
    scheme: str = "central",
    order: int = 2,
    batch_size: int | None = None,
) -> Any:
    """The diagonal of the Hessian by second differences: ``2n + 1`` evaluations of ``f`` (central order 2).

    Batched like :func:`calcjax.gradient` (memory ``~ batch_size * n``); ``h``,
    ``scheme`` and ``order`` as for :func:`hessian`.

    Returns:
      ``d2f/dx_i**2`` with ``x``'s structure, shapes and dtypes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     d = calcjax.hessian_diagonal(lambda w: jnp.sum(w**3), jnp.array([1.0, 2.0]))
      >>> [round(float(t), 6) for t in d]
      [6.0, 12.0]
    """
    _second_stencil(scheme, order)
    fd._check_batch_size(batch_size)
    f, f_flat, flat, unravel = _prepare(f, x)
    steps = _flat_second_step(x, flat, h, scheme, order)
    diag, _ = _run_second_differences(f, x, f_flat, flat, steps, scheme, order, batch_size, full=False)
    return unravel(diag)


# --------------------------------------------------------------------------- Richardson


def _neville(diffs: Sequence[jax.Array], sizes: Sequence[jax.Array], ratio: float, dtype: Any) -> fd.Estimate:
    """Neville's tableau over differences at steps ``h/ratio**k`` whose errors are even powers of ``h``.

    The error estimate is the last tableau correction (truncation) plus the
    rounding of every value, ``sizes[k]`` (sums of ``|weight * f|`` over the step
    squared), amplified by the extrapolation weights; as in
    :func:`calcjax.richardson_gradient`.
    """
    eps = float(jnp.finfo(dtype).eps)
    row, diag = list(diffs), [diffs[0]]
    for level in range(1, len(diffs)):
        factor = ratio ** (2 * level) - 1.0
        row = [row[k] + (row[k] - row[k - 1]) / factor for k in range(1, len(row))]
        diag.append(row[0])
    best = diag[-1]
    truncation = jnp.abs(diag[-1] - diag[-2]) if len(diag) > 1 else jnp.abs(best)
    weights = rich._neville_weights(len(diffs), ratio)
    rounding = sum(abs(float(weights[k])) * sizes[k] for k in range(len(diffs)))
    error = truncation + 4 * eps * rounding + eps * jnp.abs(best)
    return fd.Estimate(best.astype(dtype), error.astype(dtype))


def _richardson_select(
    diffs: Sequence[jax.Array], sizes: Sequence[jax.Array], num_steps: int, ratio: float, dtype: Any
) -> fd.Estimate:
    """Neville over every run of ``num_steps`` consecutive steps; each entry keeps the smallest estimate.

    A first step too large for ``f`` (truncation) or too small (rounding) shows in
    its error estimate, so trying several first steps and keeping, entry by entry,
    the extrapolation with the smallest estimate adapts the step to ``f``.
    """
    ests = [
        _neville(diffs[s : s + num_steps], sizes[s : s + num_steps], ratio, dtype)
        for s in range(len(diffs) - num_steps + 1)
    ]
    values, errors = jnp.stack([e.value for e in ests]), jnp.stack([e.error for e in ests])
    best = jnp.argmin(jnp.where(jnp.isnan(errors), jnp.inf, errors), axis=0)[None]
    return fd.Estimate(
        jnp.take_along_axis(values, best, axis=0)[0], jnp.take_along_axis(errors, best, axis=0)[0]
    )


#: Richardson second derivatives: the largest first step, relative to ``max(1, |x|)``, and how many
#: first steps (``h, h/r, ...``) are tried. At n = 100 (float64) no single first step served all four
#: test problems: logistic regression wanted 1 (6e-11; 6e-9 at 0.1), the MLP 0.1 (2e-11; 2e-4 at 1).
RICHARDSON_FIRST_STEP = 1.0
RICHARDSON_STARTS = 5


@_blackbox.accepts_blackbox
def richardson_hessian(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    h: Any = None,
    num_steps: int = rich.RICHARDSON_STEPS,
    step_ratio: float = rich.RICHARDSON_RATIO,
    num_starts: int = RICHARDSON_STARTS,
    batch_size: int | None = None,
) -> fd.Estimate:
    """Richardson-extrapolated central-difference Hessian with an error estimate per entry.

    Central second differences (on the diagonal) and four-point mixed differences
    (off it) at ``num_steps`` consecutive steps of ``h, h/r, h/r**2, ...`` are
    combined by Neville's tableau, which removes their ``h**2, h**4, ...`` error
    terms. This is done from ``num_starts`` first steps (``h`` to
    ``h/r**(num_starts-1)``), and each entry keeps the extrapolation with the
    smallest error estimate: the larger of the last two tableau corrections plus
    the rounding of every ``f`` value through the extrapolation weights. Costs
    ``(num_steps + num_starts - 1) * (2 n**2 + 1)`` evaluations.

    Args:
      f: scalar function of ``x``.
      x: an array or pytree of floating arrays.
      h: the largest first step: ``None`` (``max(1, |x|)`` per coordinate,
        :data:`RICHARDSON_FIRST_STEP`), a positive scalar or a pytree like ``x``.
      num_steps: step sizes per extrapolation (2 to 12).
      step_ratio: ``r > 1``.
      num_starts: how many first steps to try (1 to 12).
      batch_size: as for :func:`hessian`.

    Returns:
      ``Estimate(value, error)``, each laid out like :func:`hessian`'s result.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     est = calcjax.richardson_hessian(lambda w: jnp.exp(w[0]) * w[1], jnp.array([0.0, 2.0]))
      >>> [[round(float(t), 10) for t in row] for row in est.value]
      [[2.0, 1.0], [1.0, 0.0]]
    """
    rich._check_richardson(num_steps, step_ratio)
    _check_starts(num_starts)
    fd._check_batch_size(batch_size)
    f, f_flat, flat, _ = _prepare(f, x)
    steps_total = num_steps + num_starts - 1
    # per step a Hessian and its rounding sizes; per start an estimate's value and error; the choice
    _check_hessian_fits(flat.shape[0], flat.dtype.itemsize, 2 * steps_total + 2 * num_starts + 2)
    if h is None:
        h0 = fd._representable(
            flat, RICHARDSON_FIRST_STEP * jnp.maximum(1.0, jnp.abs(flat)).astype(flat.dtype)
        )
    else:
        h0 = fd._flat_step(x, h, "central", 2).astype(flat.dtype)
    diffs, sizes = [], []
    for k in range(steps_total):
        steps = fd._representable(flat, h0 / step_ratio**k)
        fd._check_resolution(flat, steps, f"the Richardson step h / {step_ratio}**{k}")
        hess, size = _run_second_differences(
            f, x, f_flat, flat, steps, "central", 2, batch_size, full=True, sizes=True
        )
        diffs.append(hess)
        sizes.append(size)
    est = _richardson_select(diffs, sizes, num_steps, step_ratio, flat.dtype)
    return fd.Estimate(_unravel_hessian(est.value, x), _unravel_hessian(est.error, x))


def _check_starts(num_starts: Any) -> None:
    if isinstance(num_starts, bool) or not isinstance(num_starts, int) or not 1 <= num_starts <= 12:
        raise ValueError(f"num_starts must be an integer from 1 to 12, got {num_starts!r}")


# --------------------------------------------------------------------------- Hessian-vector products


def _needs_autodiff(f: Callable[..., Any], what: str) -> None:
    """A clear error when ``what`` would take ``jax.grad`` of a function JAX cannot trace."""
    if isinstance(f, _blackbox.BlackBox):
        raise _blackbox.NotDifferentiableError(
            f"f is not JAX-traceable ({f.reason}), and {what} differentiates jax.grad(f): use "
            "hessian_vector_product(f, x, v, method='fd') or calcjax.hessian(f, x), which need only "
            "values of f (or pass grad=, a gradient of f that JAX can trace)"
        )


def _gradient_function(f: Callable[..., Any], x: Any, grad: Callable[..., Any] | None, what: str) -> Callable:
    """``g(flat) -> flat gradient``: ``jax.grad`` of ``f``, or the user's ``grad`` checked against ``x``."""
    _, unravel = fd._flatten(x)
    if grad is None:
        _needs_autodiff(f, what)
        f = _evaluable(f)
        g = jax.grad(lambda z: f(unravel(z)))
    else:
        grad = _evaluable(grad)

        def g(z: jax.Array) -> jax.Array:
            return ravel_pytree(grad(unravel(z)))[0]

        out = jax.eval_shape(grad, x)
        if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(x) or any(
            jnp.shape(a) != jnp.shape(b)
            for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(x), strict=True)
        ):
            raise ValueError(
                "grad must return an array or pytree with the structure and shapes of x, got "
                f"{jax.tree_util.tree_map(lambda a: a.shape, out)} for x of "
                f"{jax.tree_util.tree_map(jnp.shape, x)}"
            )
    return g


def _direction_step(flat: jax.Array, vflat: jax.Array, h: Any, base: Callable[[jax.Array], jax.Array]):
    """The step ``t`` along ``v``: ``base(max|x|) / max|v|`` or the user's scalar ``h``, checked."""
    if h is None:
        scale = jnp.max(jnp.abs(vflat))
        scale = jnp.where(scale > 0, scale, 1.0)
        t = base(jnp.max(jnp.abs(flat))) / scale
    else:
        if jnp.ndim(h) != 0:
            raise ValueError(f"h must be a scalar (a step along v), got shape {jnp.shape(h)}")
        val.check_positive_finite(h, "h")
        t = jnp.asarray(h, flat.dtype)
    if val.is_concrete(flat) and val.is_concrete(vflat) and val.is_concrete(t):
        moved = np.asarray((flat + t * vflat) - flat)
        if np.any(np.asarray(vflat) != 0) and not np.any(moved != 0):
            i = int(np.argmax(np.abs(np.asarray(vflat))))
            raise ValueError(
                f"h: the step along v, {float(t):.3g}, is below the resolution of x "
                f"(x + h*v == x; largest |v| at coordinate {i}, x[{i}] = {float(flat[i])!r}, {flat.dtype}); "
                "use a larger h, or h=None for the automatic step"
            )
    return t


def _fd_along(
    g: Callable[[jax.Array], jax.Array],
    flat: jax.Array,
    vflat: jax.Array,
    t: jax.Array,
    scheme: str,
    order: int,
) -> jax.Array:
    """``sum_c w_c g(x + c t v) / t``: the first-derivative stencil of ``g`` along ``v``."""
    offsets, weights = fd.stencil(scheme, order)
    dtype = flat.dtype
    total = jnp.zeros_like(flat)
    for c, w in zip(offsets, weights, strict=True):
        total = total + jnp.asarray(w, dtype) * g(flat + jnp.asarray(c, dtype) * t * vflat).astype(dtype)
    return total / t


def _complex_gradient(f: Callable[..., Any], x: Any, grad: Callable[..., Any] | None, what: str) -> Callable:
    """``g(z)`` at complex flat ``z``: the holomorphic ``jax.grad`` of ``f``, or ``grad`` at complex input."""
    cs._require_x64(what)
    _, unravel_c = ravel_pytree(jax.tree_util.tree_map(lambda a: jnp.zeros(jnp.shape(a), jnp.complex128), x))
    example = jax.ShapeDtypeStruct((fd._flatten(x)[0].size,), jnp.complex128)
    if grad is None:
        _needs_autodiff(f, what)
        f = _evaluable(f)
        f_c = lambda z: f(unravel_c(z))
        cs._check_complex_output(val.check_scalar_function(f_c, example), what)
        check_complex_step(f, x, what=what)
        return jax.grad(f_c, holomorphic=True)
    grad = _evaluable(grad)
    g = lambda z: ravel_pytree(grad(unravel_c(z)))[0]
    out = jax.eval_shape(g, example)
    if not jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise ValueError(
            f"{what}: grad returned dtype {out.dtype} for complex input, so it drops the imaginary part; "
            "the complex step of the gradient needs a gradient that accepts complex input"
        )
    return g


@_blackbox.accepts_blackbox
def hessian_vector_product(
    f: Callable[[Any], jax.Array],
    x: Any,
    v: Any,
    *,
    method: str = "fd-grad",
    grad: Callable[[Any], Any] | None = None,
    h: ArrayLike | None = None,
    scheme: str = "central",
    order: int = 2,
    batch_size: int | None = None,
) -> Any:
    """The Hessian of a scalar ``f`` at ``x`` times ``v``, without forming the Hessian.

    Methods:

    - ``"fd-grad"`` (default): the first-derivative stencil of the gradient
      along ``v``, ``(g(x + t v) - g(x - t v)) / 2t`` for central order 2 (two
      gradient evaluations, memory ``~ n``); ``g`` is ``jax.grad(f)`` or the
      user's ``grad`` (a hand-written gradient or a simulator's adjoint).
      Automatic step: :func:`calcjax.default_step` of ``max|x|`` over ``max|v|``.
    - ``"fd"``: ``f`` alone: finite-difference gradients at ``x +- t v``,
      differenced along ``v`` (the mixed stencil along ``v`` and each ``e_i``;
      ``4n`` evaluations for central order 2, batched like
      :func:`calcjax.gradient`). Steps from :func:`second_default_step`.
    - ``"complex-grad"``: the complex step of the gradient,
      ``Im g(x + i t v) / t`` with ``t = 1e-20 / max|v|``: one gradient
      evaluation in complex128, exact to rounding for an analytic ``f`` (needs
      x64; ``g`` is the holomorphic ``jax.grad`` of ``f`` or ``grad`` called at
      complex input).

    Args:
      f: scalar function of ``x``.
      x: an array or pytree of floating arrays.
      v: the vector, with ``x``'s structure and shapes.
      method: one of :data:`HVP_METHODS`.
      grad: ``grad(x) -> gradient like x``, used instead of ``jax.grad(f)``.
      h: a scalar step along ``v`` (``None``: automatic); ignored by ``"complex-grad"``.
      scheme: the stencil's scheme (``"fd-grad"``, ``"fd"``).
      order: the stencil's accuracy order.
      batch_size: coordinates per batch (``"fd"`` only).

    Returns:
      ``H v`` with ``x``'s structure and dtypes.

    Raises:
      TypeError: a leaf of ``x`` or ``v`` is not floating.
      ValueError: ``v`` or ``grad``'s output does not match ``x``; ``grad`` with
        ``method="fd"``; ``f`` is not
        scalar; an unknown method, scheme or order; a step below ``x``'s
        resolution; ``f`` or ``grad`` drops the imaginary part (``"complex-grad"``).
      RuntimeError: ``"complex-grad"`` with x64 off.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     f = lambda w: w[0] ** 2 * w[1]
      ...     w, v = jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])
      ...     hv = calcjax.hessian_vector_product(f, w, v)  # column 0 of [[2 w1, 2 w0], [2 w0, 0]]
      >>> [round(float(t), 8) for t in hv]
      [4.0, 2.0]
    """
    val.check_choice(method, HVP_METHODS, "hessian_vector_product method")
    if method == "fd" and grad is not None:
        raise ValueError(
            "method='fd' uses f alone and would ignore grad: use method='fd-grad' with a gradient"
        )
    fd.stencil(scheme, order)
    f, f_flat, flat, unravel = _prepare(f, x)
    vflat = _same_structure(v, x, "v").astype(flat.dtype)
    if method == "complex-grad":
        g = _complex_gradient(f, x, grad, "hessian_vector_product(method='complex-grad')")
        scale = jnp.max(jnp.abs(vflat))
        t = cs.COMPLEX_STEP / jnp.where(scale > 0, scale, 1.0)
        z = flat.astype(jnp.complex128) + 1j * t * vflat.astype(jnp.complex128)
        return unravel((jnp.imag(g(z)) / t).astype(flat.dtype))
    if method == "fd-grad":
        g = _gradient_function(f, x, grad, "hessian_vector_product(method='fd-grad')")
        t = _direction_step(flat, vflat, h, lambda a: fd.default_step(a, scheme=scheme, order=order))
        return unravel(_fd_along(g, flat, vflat, t, scheme, order))
    # "fd": f alone; FD gradients at the points along v, with the second-difference steps.
    base = lambda a: second_default_step(a, scheme=scheme, order=order)
    t = _direction_step(flat, vflat, h, base)
    steps = _flat_second_step(x, flat, None, scheme, order)
    fd._check_batch_size(batch_size)

    def fd_gradient(z: jax.Array) -> jax.Array:
        return fd._fd_flat(f_flat, z, fd._representable(z, steps), scheme, order, batch_size, None)

    return unravel(_fd_along(fd_gradient, flat, vflat, t, scheme, order))


@_blackbox.accepts_blackbox
def richardson_hessian_vector_product(
    f: Callable[[Any], jax.Array],
    x: Any,
    v: Any,
    *,
    grad: Callable[[Any], Any] | None = None,
    h: ArrayLike | None = None,
    num_steps: int = rich.RICHARDSON_STEPS,
    step_ratio: float = rich.RICHARDSON_RATIO,
    num_starts: int = RICHARDSON_STARTS,
) -> fd.Estimate:
    """Richardson-extrapolated central differences of the gradient along ``v``, with an error estimate.

    Gradients (``jax.grad(f)`` or ``grad``) at ``x +- t v / r**k``, ``2 * (num_steps
    + num_starts - 1)`` of them; Neville's tableau removes the ``t**2, t**4, ...``
    terms, from ``num_starts`` first steps, and each entry keeps the
    extrapolation with the smallest error estimate, as in :func:`richardson_hessian`.

    Args:
      f: scalar function of ``x``.
      x: an array or pytree of floating arrays.
      v: the vector, like ``x``.
      grad: ``grad(x) -> gradient like x``, used instead of ``jax.grad(f)``.
      h: the largest first step along ``v`` (default ``max(1, max|x|) / max|v|``).
      num_steps: step sizes per extrapolation (2 to 12).
      step_ratio: ``r > 1``.
      num_starts: how many first steps to try (1 to 12).

    Returns:
      ``Estimate(value, error)``, each with ``x``'s structure.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     est = calcjax.richardson_hessian_vector_product(
      ...         lambda w: jnp.sum(jnp.sin(w)), jnp.zeros(2), jnp.ones(2))
      >>> [round(float(t), 12) for t in est.value]
      [0.0, 0.0]
    """
    rich._check_richardson(num_steps, step_ratio)
    _check_starts(num_starts)
    _, _, flat, unravel = _prepare(f, x)
    vflat = _same_structure(v, x, "v").astype(flat.dtype)
    g = _gradient_function(f, x, grad, "richardson_hessian_vector_product")
    first = lambda a: RICHARDSON_FIRST_STEP * jnp.maximum(1.0, a)
    t0 = _direction_step(flat, vflat, h, first)
    dtype = flat.dtype
    diffs, sizes = [], []
    for k in range(num_steps + num_starts - 1):
        t = t0 / step_ratio**k
        plus, minus = g(flat + t * vflat).astype(dtype), g(flat - t * vflat).astype(dtype)
        diffs.append((plus - minus) / (2 * t))
        sizes.append((jnp.abs(plus) + jnp.abs(minus)) / (2 * t))
    est = _richardson_select(diffs, sizes, num_steps, step_ratio, dtype)
    return fd.Estimate(unravel(est.value), unravel(est.error))


@_blackbox.accepts_blackbox
def complex_step_hessian(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    grad: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
) -> Any:
    """The Hessian column by column as complex steps of the gradient: ``H e_k = Im g(x + i h e_k) / h``.

    ``n`` gradient evaluations in complex128 (``batch_size`` columns at a time in
    a ``lax.map``), exact to rounding for an analytic ``f``; needs x64. ``g`` is
    the holomorphic ``jax.grad`` of ``f``, or ``grad`` called at complex input.

    Returns:
      The Hessian laid out like :func:`hessian`'s result.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     H = calcjax.complex_step_hessian(lambda w: jnp.exp(w[0]) * w[1], jnp.array([0.0, 2.0]))
      >>> [[float(t) for t in row] for row in H]
      [[2.0, 1.0], [1.0, 0.0]]
    """
    _, _, flat, _ = _prepare(f, x)
    n = flat.shape[0]
    _check_hessian_fits(n, flat.dtype.itemsize)
    g = _complex_gradient(f, x, grad, "complex_step_hessian")
    fd._check_batch_size(batch_size)
    b = min(n, batch_size or fd.auto_batch_size(n, 2, 16))
    chunks = math.ceil(n / b)
    idx = jnp.minimum(jnp.arange(chunks * b), n - 1).reshape(chunks, b)
    z0, hstep = flat.astype(jnp.complex128), cs.COMPLEX_STEP

    def columns(k: jax.Array) -> jax.Array:
        pts = z0[None, :] + 1j * hstep * (jnp.arange(n)[None, :] == k[:, None])
        return jnp.imag(jax.vmap(g)(pts)) / hstep

    cols = lax.map(columns, idx).reshape(-1, n)[:n]
    return _unravel_hessian(cols.T.astype(flat.dtype), x)
