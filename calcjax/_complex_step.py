"""The complex-step derivative and gradient: ``Im f(x + ih) / h``, exact to rounding for analytic ``f``.

Before any evaluation, :func:`calcjax.check_complex_step` refuses an ``f`` that
would give a wrong derivative (:mod:`calcjax._complex_safety`); where ``f(x)`` is
NaN because ``x`` is outside ``f``'s real domain the result stays NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from calcjax import _validate as v
from calcjax._complex_safety import check_complex_step, complex_input_error
from calcjax._finite_diff import (
    _check_batch_size,
    _check_share,
    _coordinate_values,
    _flatten,
    _resolve_devices,
)

__all__ = ["COMPLEX_STEP", "complex_step_derivative", "complex_step_gradient"]

#: Step of the complex-step method: far below rounding, it has no truncation error.
COMPLEX_STEP = 1e-20


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
