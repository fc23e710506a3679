"""Richardson extrapolation over a search of steps, with an error estimate per coordinate.

The steps run down a geometric sequence from a first step that follows ``|x|``;
every window of consecutive steps is extrapolated by Neville's tableau and the
window with the smallest error estimate is kept. Non-finite values of ``f`` follow
the one rule of :mod:`calcjax._domain`, built from the same evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from calcjax import _blackbox
from calcjax import _validate as v
from calcjax._domain import _report_domain
from calcjax._finite_diff import (
    Estimate,
    _coordinate_values,
    _flat_problem,
    _flat_step,
    _scalar_fn_check,
)

__all__ = ["richardson_derivative", "richardson_gradient"]

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
    _report_domain(what, switched, failed)
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
    devs, flat, unravel, f_flat = _flat_problem(f, x, batch_size, share_products, devices)
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
