"""Input checks shared by every public function.

Every check uses static information only (shapes, dtypes, Python values), so it
also fires under ``jax.jit``; a value that is a tracer is not inspected.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
    """True when ``value`` is a Python or NumPy value or a non-traced JAX array."""
    return not isinstance(value, jax.core.Tracer)


def check_floating(x: jax.Array, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` has a real floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a real floating dtype (float32 or float64), got "
            f"dtype {x.dtype}; cast it first, e.g. jnp.asarray({name}, jnp.float32)"
        )


def as_float_array(x: Any, name: str = "x") -> jax.Array:
    """``jnp.asarray(x)`` for floating input; ``TypeError`` for anything else.

    Python floats become the default float dtype (float32 unless x64 is on).
    """
    if isinstance(x, (bool, int)):
        raise TypeError(
            f"{name} must be floating, got the Python {type(x).__name__} {x!r}; write {float(x)!r} instead"
        )
    arr = jnp.asarray(x)
    check_floating(arr, name)
    return arr


#: The floating dtypes NumPy itself has (not ml_dtypes' bfloat16 and friends).
NUMPY_FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def has_floating_dtype(x: Any) -> bool:
    """True when ``x`` is an array or NumPy scalar with a real floating dtype."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and (dtype in NUMPY_FLOATS or jnp.issubdtype(dtype, jnp.floating))


def check_floating_leaf(x: Any, name: str = "x") -> None:
    """Like :func:`as_float_array` but without converting (no device transfer): static checks only."""
    if isinstance(x, bool | int):
        as_float_array(x, name)
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a real floating dtype (float32 or float64), got "
            f"dtype {dtype}; cast it first, e.g. jnp.asarray({name}, jnp.float32)"
        )


def check_nonempty(x: Any, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` (an array, or the leaves of a pytree) has no entries.

    The one rule for empty input, in every public function that differentiates,
    checks, compares or minimises: there is nothing to do, so it is an error
    rather than an empty result. (The step rules ``default_step`` and
    ``second_default_step`` are elementwise maps and return an empty array.)
    """
    leaves = [x] if hasattr(x, "shape") else jax.tree_util.tree_leaves(x)
    if not leaves:
        raise ValueError(f"{name} must hold at least one array, got an empty pytree")
    if sum(math.prod(np.shape(leaf)) for leaf in leaves) == 0:
        what = f"shape {np.shape(x)}" if hasattr(x, "shape") else "a pytree whose arrays are all empty"
        raise ValueError(
            f"{name} is empty ({what}): there is nothing to differentiate; pass at least one coordinate"
        )


def check_step_shape(h: Any, shape: tuple[int, ...], name: str = "h", what: str = "x") -> None:
    """Raise ``ValueError`` unless ``h`` is a scalar or has ``shape``, naming both shapes.

    ``what`` says what ``shape`` is the shape of (``"x"``, ``"x flattened"``).
    """
    got = np.shape(h)
    if got not in ((), tuple(shape)):
        raise ValueError(
            f"{name} must be a scalar or have the shape of {what}, {tuple(shape)}; got {name} of shape {got}"
        )


def check_array_input(x: Any, what: str, instead: str = "calcjax.gradient") -> None:
    """``TypeError`` when ``x`` is a pytree (a dict, or a list/tuple of arrays) where one array is meant.

    A (nested) list of numbers is an array and passes. ``what`` names the
    function, ``instead`` the one that takes pytrees.
    """
    if hasattr(x, "shape") or isinstance(x, int | float | complex | np.generic):
        return
    leaves, treedef = jax.tree_util.tree_flatten(x)
    numbers = all(isinstance(leaf, int | float | np.generic) for leaf in leaves)
    if isinstance(x, list | tuple) and numbers and leaves:
        try:
            np.asarray(x, dtype=float)
        except ValueError:  # ragged
            pass
        else:
            return
    raise TypeError(
        f"{what} takes one array x (a point or an array of points), got a {type(x).__name__} "
        f"(pytree {treedef}); for a function of a pytree use {instead}"
    )


def array_input(what: str, instead: str = "calcjax.gradient") -> Callable[[Callable], Callable]:
    """Decorator for ``fn(f, x, ...)`` taking one array ``x``: :func:`check_array_input` first, then a
    (nested) list of numbers becomes a NumPy array, before anything calls ``f``.

    Outermost, above :func:`calcjax._blackbox.accepts_blackbox`, whose trace probe calls ``f(x)``.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(f: Callable[..., Any], x: Any, *args: Any, **kwargs: Any) -> Any:
            check_array_input(x, what, instead)
            if isinstance(x, list | tuple):
                x = np.asarray(x)  # float64 for Python floats, as NumPy; ints stay ints (a TypeError later)
            return fn(f, x, *args, **kwargs)

        return wrapper

    return decorate


def check_rate_shape(lr: Any, leaves: Sequence[Any], name: str = "lr") -> None:
    """Raise ``ValueError`` unless a learning rate broadcasts to every leaf's shape without changing it.

    ``lr`` is a scalar or an array that scales each coordinate (``x0``'s shape,
    or any shape that broadcasts to it, e.g. ``(1,)``).
    """
    got = np.shape(lr)
    if got == ():
        return
    for leaf in leaves:
        shape = np.shape(leaf)
        try:
            ok = np.broadcast_shapes(got, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} must be a scalar or an array that broadcasts to x0's shape {shape}; "
                f"got {name} of shape {got}"
            )


def check_choice(value: Any, valid: Sequence[Any], name: str) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid choices."""
    if value not in valid:
        choices = ", ".join(repr(v) for v in valid)
        raise ValueError(f"unknown {name} {value!r}; valid: {choices}")


def _real_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)``, or ``TypeError`` naming ``value`` unless it holds real numbers."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged or otherwise not an array
        arr = np.asarray(None)
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {name}={value!r}")
    return arr


def check_positive_finite(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``value`` has an entry <= 0 or non-finite.

    ``TypeError`` if it is not real numbers (a string, ``None`` inside a list, a
    complex number, a bool).
    """
    if value is None or not is_concrete(value):
        return
    arr = _real_array(value, name)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if np.any(bad):
        shown = arr if arr.ndim == 0 else arr[bad][:5]
        raise ValueError(f"{name} must be positive and finite, got {name}={shown!r}")


def check_finite(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not finite, ``TypeError`` if not real numbers."""
    if type(value) in (int, float):  # the common case, without NumPy (much slower per call)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {name}={value!r}")
        return
    if not is_concrete(value):
        return
    arr = _real_array(value, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")


def check_scalar_function(f: Callable[..., Any], *example: Any, name: str = "f") -> Any:
    """Raise ``ValueError`` unless ``f(*example)`` is a floating scalar; returns its shape/dtype.

    Uses :func:`jax.eval_shape`, so nothing is computed.
    """
    out = jax.eval_shape(f, *example)
    shape = getattr(out, "shape", None)
    if shape is None:
        raise ValueError(f"{name} must return a scalar array, got {type(out).__name__}")
    if shape != ():
        raise ValueError(
            f"{name} must return a scalar, got an output of shape {shape}; "
            f"reduce it (e.g. jnp.sum or jnp.mean) or differentiate one output at a time"
        )
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.complexfloating)):
        raise TypeError(f"{name} must return a floating scalar, got dtype {out.dtype}")
    return out
