"""Evaluate ``f(x + d*e_i)`` for many coordinates ``i`` without redoing ``f``'s matrix products of ``x``.

A finite-difference gradient evaluates ``f`` at ``x + d*e_i`` for every
coordinate. When ``f`` multiplies ``x`` by a matrix that does not depend on
``x`` (logistic regression's ``A @ w``, a linear layer whose weights are ``x``),
every one of those products is the same product plus one column:

    A @ (x + d*e_i) = A @ x + d * A[:, i]

so ``A @ x`` is computed once and each perturbed point costs a column instead
of a matrix-vector product. This module reads ``f``'s jaxpr and evaluates it
per point with that identity:

* the value at ``x`` itself of every variable (the *base*) is computed once;
* ``x + d*e_i`` is carried as a one-hot perturbation ``(base, i, d)`` through
  ``split`` and ``reshape`` (how a pytree is unravelled), and through a
  ``dot_general`` with an operand that does not depend on ``x`` it becomes
  ``base + d * column``, a dense per-point value;
* any other operation receives the perturbed array, built in full, and runs as
  in ``f``.

The identity is exact; only rounding differs from evaluating ``f`` at the
perturbed point (the product's rounding no longer hides the step). Functions
whose jaxpr has no such product, or has side effects, are not handled here
(:func:`point_function` returns ``None``) and are evaluated as written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

__all__ = ["call_body", "keeps_one_hot", "point_function", "shared_side"]


class _OneHot(NamedTuple):
    """``base`` with ``delta`` added at flat index ``idx`` (``delta`` may be 0)."""

    base: jax.Array
    idx: jax.Array
    delta: jax.Array


def _materialize(value: Any) -> Any:
    if not isinstance(value, _OneHot):
        return value
    flat = value.base.reshape(-1)
    # delta == 0 (a part of x that this point leaves alone) keeps base bit for bit (-0.0 too).
    hit = (jnp.arange(flat.size) == value.idx) & (value.delta != 0)
    return jnp.where(hit, flat + value.delta.astype(flat.dtype), flat).reshape(value.base.shape)


def _bind(eqn: Any, invals: Sequence[Any]) -> list[Any]:
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: Sequence[Any] = ()
    if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def keeps_one_hot(eqn: Any, ndim: int) -> bool:
    """Whether ``eqn`` maps a one-hot perturbation of its ``ndim``-d input to one-hot outputs.

    ``split`` of a vector (a pytree's unravelling) and row-major ``reshape``
    keep the flat index; everything else sees the perturbed array in full.
    """
    name = eqn.primitive.name
    if name == "split":
        return ndim == 1 and eqn.params["axis"] == 0
    if name == "reshape":
        dims = eqn.params.get("dimensions")
        return dims is None or tuple(dims) == tuple(range(ndim))
    return False


def _split(eqn: Any, value: _OneHot, bases: list[jax.Array]) -> list[Any]:
    outs, start = [], 0
    for size, base in zip(eqn.params["sizes"], bases, strict=True):
        inside = (value.idx >= start) & (value.idx < start + size)
        local = jnp.clip(value.idx - start, 0, size - 1)
        outs.append(_OneHot(base, local, jnp.where(inside, value.delta, jnp.zeros_like(value.delta))))
        start += size
    return outs


def _reshape(eqn: Any, value: _OneHot, bases: list[jax.Array]) -> list[Any]:
    return [_OneHot(bases[0], value.idx, value.delta)]


def shared_side(eqn: Any, onehot: Sequence[bool], fixed: Sequence[bool]) -> int | None:
    """The operand (0 or 1) of a ``dot_general`` that is a one-hot ``x`` times an ``x``-free other one."""
    (_, _), (lb, rb) = eqn.params["dimension_numbers"]
    if lb or rb:
        return None
    return next((side for side in (1, 0) if onehot[side] and fixed[1 - side]), None)


def _dot(eqn: Any, invals: Sequence[Any], fixed: Sequence[bool], bases: list[jax.Array]) -> list[Any] | None:
    """``dot(O, P)`` for a one-hot ``P`` and an ``x``-free ``O``: ``base + delta * (slice of O)``."""
    side = shared_side(eqn, [isinstance(val, _OneHot) for val in invals], fixed)
    if side is None:
        return None
    pert, other = invals[side], invals[1 - side]
    if pert.base.size == 0:
        return None  # an empty leaf: nothing to index
    contract = eqn.params["dimension_numbers"][0]
    c_pert, c_other, pert_is_rhs = contract[side], contract[1 - side], side == 1
    shape = pert.base.shape
    where = [jnp.asarray(w) for w in jnp.unravel_index(pert.idx, shape)] if shape else []
    column = jnp.asarray(other)
    # Index the other operand's contracted axes at the perturbed entry's position,
    # highest axis first so the lower axis numbers stay valid.
    for ax_other, ax_pert in sorted(zip(c_other, c_pert, strict=True), reverse=True):
        column = jnp.take(column, where[ax_pert], axis=ax_other, mode="clip")
    free = [ax for ax in range(len(shape)) if ax not in c_pert]
    if free:
        free_shape = tuple(shape[ax] for ax in free)
        pos = jnp.ravel_multi_index(tuple(where[ax] for ax in free), free_shape, mode="clip")
        onehot = (jnp.arange(math.prod(free_shape)) == pos).reshape(free_shape)
        # The column placed at the perturbed entry's free position, zeros elsewhere: a select,
        # not a product (a dot could round through TF32 on a GPU; inf * 0 would be NaN).
        if pert_is_rhs:
            column = jnp.where(onehot, column.reshape(column.shape + (1,) * len(free_shape)), 0)
        else:
            column = jnp.where(onehot.reshape(free_shape + (1,) * column.ndim), column, 0)
    base = bases[0]
    delta = pert.delta.astype(base.dtype)
    # delta == 0 keeps base as is: 0 * inf in the other operand must not make a NaN.
    return [jnp.where(delta == 0, base, base + delta * column.astype(base.dtype))]


_RULES_ONE = {"split": _split, "reshape": _reshape}
#: Call primitives whose body is read too (a jitted helper).
CALLS = ("pjit", "jit", "closed_call")


def call_body(eqn: Any) -> Any:
    """The closed jaxpr a call equation runs (``jax.jit``'s ``pjit``, ``closed_call``), else ``None``."""
    if eqn.primitive.name not in CALLS:
        return None
    body = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if not isinstance(body, jcore.ClosedJaxpr) or len(body.jaxpr.invars) != len(eqn.invars):
        return None
    return body


def _is_var(var: Any) -> bool:
    return not isinstance(var, jcore.Literal)


def _shares_a_product(jaxpr: Any, onehot: set[Any], dependent: set[Any]) -> bool:
    """Whether a one-hot input reaches a ``dot_general`` with an ``x``-free operand (decided statically)."""
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if _is_var(v)]
        if not any(v in dependent for v in ins):
            continue
        dependent.update(eqn.outvars)
        name = eqn.primitive.name
        if len(ins) == 1 and ins[0] in onehot and keeps_one_hot(eqn, len(ins[0].aval.shape)):
            onehot.update(eqn.outvars)
        elif call_body(eqn) is not None:
            inner = call_body(eqn).jaxpr
            pairs = list(zip(eqn.invars, inner.invars, strict=True))
            sub_onehot = {w for v, w in pairs if _is_var(v) and v in onehot}
            sub_dependent = {w for v, w in pairs if _is_var(v) and v in dependent}
            if _shares_a_product(inner, sub_onehot, sub_dependent):
                return True
        elif name == "dot_general":
            operands = [v if _is_var(v) else None for v in eqn.invars]
            is_onehot = [v is not None and v in onehot for v in operands]
            if shared_side(eqn, is_onehot, [v is None or v not in dependent for v in operands]) is not None:
                return True
    return False


class _Base:
    """Every variable's value at ``x`` itself, for one jaxpr and (recursively) the jitted calls in it."""

    def __init__(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> None:
        self.env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
        self.env.update(zip(jaxpr.invars, args, strict=True))
        self.calls: dict[int, _Base] = {}
        for k, eqn in enumerate(jaxpr.eqns):
            invals = [self.read(v) for v in eqn.invars]
            inner = call_body(eqn)
            if inner is not None:
                self.calls[k] = _Base(inner.jaxpr, inner.consts, invals)
                outs = [self.calls[k].read(v) for v in inner.jaxpr.outvars]
            else:
                outs = _bind(eqn, invals)
            self.env.update(zip(eqn.outvars, outs, strict=True))

    def read(self, var: Any) -> Any:
        return var.val if isinstance(var, jcore.Literal) else self.env[var]


def _evaluate(jaxpr: Any, base: _Base, live_in: dict[Any, Any]) -> list[Any]:
    """Evaluate ``jaxpr`` for one point: ``live_in`` holds the inputs that depend on ``x``."""
    env = dict(live_in)
    read = lambda var: env[var] if _is_var(var) and var in env else base.read(var)
    for k, eqn in enumerate(jaxpr.eqns):
        live = [_is_var(v) and v in env for v in eqn.invars]
        if not any(live):
            continue  # does not depend on x: its base value serves every point
        invals = [read(v) for v in eqn.invars]
        bases = [base.read(v) for v in eqn.outvars]
        outs = None
        name = eqn.primitive.name
        if len(invals) == 1 and isinstance(invals[0], _OneHot) and keeps_one_hot(eqn, invals[0].base.ndim):
            outs = _RULES_ONE[name](eqn, invals[0], bases)
        elif name == "dot_general":
            outs = _dot(eqn, invals, [not flag for flag in live], bases)
        elif call_body(eqn) is not None:
            inner = call_body(eqn).jaxpr
            sub_in = {w: val for w, val, flag in zip(inner.invars, invals, live, strict=True) if flag}
            outs = _evaluate(inner, base.calls[k], sub_in)
        if outs is None:
            outs = _bind(eqn, [_materialize(val) for val in invals])
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def point_function(
    f: Callable[[jax.Array], jax.Array], x: jax.Array
) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
    """``point(i, d) = f(x + d*e_i)`` sharing ``f``'s products of ``x``; ``None`` if ``f`` has none.

    ``x`` is a flat vector (it may be a tracer). The returned function is meant
    for ``jax.vmap`` over ``i`` and ``d``; the values at ``x`` it closes over are
    computed once, here.
    """
    closed = jax.make_jaxpr(f)(x)
    jaxpr = closed.jaxpr
    (xvar,) = jaxpr.invars
    if jaxpr.effects or not _shares_a_product(jaxpr, {xvar}, {xvar}):
        return None
    base = _Base(jaxpr, closed.consts, [x])

    def point(i: jax.Array, delta: jax.Array) -> jax.Array:
        (out,) = _evaluate(jaxpr, base, {xvar: _OneHot(x, i, delta)})
        return _materialize(out)

    return point
