"""The one rule for non-finite values of ``f``: go one-sided where a stencil point is not finite, and say so.

A coordinate whose stencil has a non-finite value of ``f`` (outside ``f``'s domain,
an overflow) switches to a one-sided stencil of the same order; where no stencil
gives a finite value the entry is NaN. :class:`DomainWarning` reports both, outside
``jax.jit`` (under ``jit`` the NaN is the signal). The plain schemes
(:mod:`calcjax._finite_diff`) and Richardson (:mod:`calcjax._richardson`) share it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from calcjax import _validate as v

__all__ = ["DomainWarning"]


class DomainWarning(RuntimeWarning):
    """f was not finite at some stencil points: calcjax went one-sided there, or returned NaN."""


def array_module(a: Any) -> Any:
    """The array module of ``a``: NumPy for a NumPy array (the host path of a black-box ``f``), else JAX."""
    return np if isinstance(a, np.ndarray) else jnp


def _quiet(xp: Any, needed: Any = True) -> Any:
    """NumPy's warnings off for calcjax's own arithmetic on values of ``f`` (``inf - inf`` is NaN there,
    as in JAX, and the domain rule reports it); never around an evaluation of ``f``. ``needed``:
    false when every value is known finite (the context costs microseconds)."""
    return np.errstate(all="ignore") if xp is np and needed else contextlib.nullcontext()


def _combine(vals: jax.Array, weights: Sequence[float], dtype: Any, finite: bool = False) -> jax.Array:
    """``sum_j weights[j] * vals[:, j]`` as an elementwise sum (no matmul: exact on GPUs too).

    In NumPy for NumPy ``vals``: the same operations in the same order, so the
    host path of a black-box ``f`` rounds as the JAX path does (``finite``: the
    caller knows every value is finite).
    """
    xp = array_module(vals)
    total = xp.zeros(vals.shape[:1], dtype)
    with _quiet(xp, not finite):
        for j, w in enumerate(weights):
            total = total + xp.asarray(w, dtype) * vals[:, j].astype(dtype)
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
    (``lax.cond``; a Python ``if`` for NumPy arrays, the host path of a black-box
    ``f``). Returns the derivative, and masks of the coordinates that switched and
    of those left NaN.
    """
    xp = array_module(d)
    sides = {"central": (1.0, -1.0), "forward": (-1.0,), "backward": (1.0,)}[scheme]
    w = _one_sided_weights(order)
    offs = [side * k for side in sides for k in range(order + 1)]

    def one_sided() -> tuple[jax.Array, jax.Array]:
        vals = evaluate(offs)
        with _quiet(xp):
            est = [
                _combine(vals[:, i * (order + 1) : (i + 1) * (order + 1)], w, dtype) * side / steps
                for i, side in enumerate(sides)
            ]
        ok = [
            xp.all(xp.isfinite(vals[:, i * (order + 1) : (i + 1) * (order + 1)]), axis=1)
            for i in range(len(sides))
        ]
        value = est[-1]
        for e, o in zip(est[-2::-1], ok[-2::-1], strict=True):
            value = xp.where(o, e, value)
        return xp.where(xp.any(xp.stack(ok), axis=0), value, xp.nan), xp.any(xp.stack(ok), axis=0)

    nothing = lambda: (xp.full_like(d, xp.nan), xp.zeros(d.shape, bool))
    if xp is np:
        if not bad.any():  # the common case: every value finite
            return d, bad, bad
        alt, alt_ok = one_sided()
    else:
        alt, alt_ok = lax.cond(jnp.any(bad), one_sided, nothing)
    switched, failed = bad & alt_ok, bad & ~alt_ok
    return xp.where(bad, alt, d), switched, failed


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stacklevel() -> int:
    """``warnings.warn``'s ``stacklevel`` (for a warning issued by the caller) that names the first
    frame outside calcjax (and ``contextlib``): the user's line, however deep the call went."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR) or frame.f_code.co_filename == contextlib.__file__
    ):
        frame, level = frame.f_back, level + 1
    return level


#: The program calcjax compiles around a black-box ``f`` takes a call number (a traced integer,
#: set here while it is traced: :func:`tracing_call`); a report under that trace becomes a
#: callback carrying the number, so its counts reach the call that ran the program (XLA runs
#: the callback on its own thread) and the warnings come when that call returns.
_DEFER = threading.local()
_PENDING: dict[int, list[tuple[Any, ...]]] = {}
_PENDING_LOCK = threading.Lock()
_CALLS = itertools.count()


def _report_domain(what: str, switched: jax.Array, failed: jax.Array, fix: str | None = None) -> None:
    """Warn about coordinates that went one-sided or got no estimate; the warning names the user's line.

    Under the user's own ``jax.jit`` nothing is said (the NaN is the signal).
    Under the program calcjax compiles around a black-box ``f``
    (:func:`deferred_reports`) the counts leave the program through a callback
    and the warnings come when the call returns.
    """
    if not (v.is_concrete(switched) and v.is_concrete(failed)):
        call = getattr(_DEFER, "call", None)
        if call is not None:
            jax.debug.callback(
                functools.partial(_record, what, fix),
                call,
                jnp.count_nonzero(switched),
                jnp.count_nonzero(failed),
            )
        return
    _warn_domain(what, int(np.count_nonzero(switched)), int(np.count_nonzero(failed)), fix)


def _record(what: str, fix: str | None, call: Any, n_switched: Any, n_failed: Any) -> None:
    counts = (what, int(n_switched), int(n_failed), fix)
    with _PENDING_LOCK:
        pending = _PENDING.get(int(call))
        if pending is not None:
            pending.append(counts)
            return
    _warn_domain(*counts)  # pragma: no cover - the program ran outside a calcjax call


@contextlib.contextmanager
def tracing_call(call: Any) -> Iterator[None]:
    """While the program around a black-box ``f`` is traced: ``call`` is its call-number argument."""
    outer = getattr(_DEFER, "call", None)
    _DEFER.call = call
    try:
        yield
    finally:
        _DEFER.call = outer


@contextlib.contextmanager
def deferred_reports() -> Iterator[np.int32]:
    """Around one calcjax call of a black-box ``f`` compiled by calcjax: yields the call's number (pass
    it to the program); its domain reports are issued at the end, naming the user's line."""
    call = next(_CALLS) % 2**31  # an int32 argument, with or without x64
    mine: list[tuple[Any, ...]] = []
    with _PENDING_LOCK:
        _PENDING[call] = mine
    try:
        yield np.int32(call)
        jax.effects_barrier()
    finally:
        with _PENDING_LOCK:
            del _PENDING[call]
    for counts in mine:
        _warn_domain(*counts)


def _warn_domain(what: str, n_switched: int, n_failed: int, fix: str | None = None) -> None:
    if not (n_switched or n_failed):
        return
    stacklevel = _user_stacklevel()
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
