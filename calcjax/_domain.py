"""The one rule for non-finite values of ``f``: go one-sided where a stencil point is not finite, and say so.

A coordinate whose stencil has a non-finite value of ``f`` (outside ``f``'s domain,
an overflow) switches to a one-sided stencil of the same order; where no stencil
gives a finite value the entry is NaN. :class:`DomainWarning` reports both, outside
``jax.jit`` (under ``jit`` the NaN is the signal). The plain schemes
(:mod:`calcjax._finite_diff`) and Richardson (:mod:`calcjax._richardson`) share it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from calcjax import _validate as v

__all__ = ["DomainWarning"]


class DomainWarning(RuntimeWarning):
    """f was not finite at some stencil points: calcjax went one-sided there, or returned NaN."""


def _combine(vals: jax.Array, weights: Sequence[float], dtype: Any) -> jax.Array:
    """``sum_j weights[j] * vals[:, j]`` as an elementwise sum (no matmul: exact on GPUs too)."""
    total = jnp.zeros(vals.shape[:1], dtype)
    for j, w in enumerate(weights):
        total = total + jnp.asarray(w, dtype) * vals[:, j].astype(dtype)
    return total


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
