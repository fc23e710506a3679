"""Is ``f`` safe for the complex step? Static and numeric checks.

The complex step ``Im f(x + i h) / h`` is exact to rounding only when every
operation in ``f`` carries the tiny imaginary part through. Some JAX functions
silently drop it -- ``jnp.abs`` (it returns a real array), ``jnp.linalg.norm``,
``jnp.var``, ``real``/``imag``/``conj``, and ``jnp.logaddexp`` (hence
``jax.nn.softplus`` and ``jax.nn.log_sigmoid``), whose branch-cut wrapping
``(imag + pi) mod 2 pi - pi`` rounds ``1e-20`` away -- and the complex step then
returns a confidently wrong derivative (0 instead of ``sigmoid(x)`` for
softplus).

Three checks, from cheapest to most telling:

1. **Output dtype**: ``f`` returns a real dtype for complex input.
2. **Jaxpr scan** (static, works under ``jax.jit``/``jax.vmap``): trace ``f`` at
   complex input and follow every value that depends on ``x``. An operation that
   turns such a complex value into a real one (``abs``, ``real``, ``imag``,
   conversion to a real dtype) or is not analytic (``conj``, complex ``sign``)
   *loses* the imaginary part; the loss is reported when it reaches ``f``'s
   output through arithmetic. It does not count when the lost value only feeds
   comparisons (``jnp.where(jnp.abs(z) < 1, ...)``), a piecewise-constant
   function (``sign``, ``floor``, ``round`` of a real value) or
   ``lax.stop_gradient`` (``jax.nn.logsumexp``'s shift), since none of those carry
   a derivative. ``max``/``min``/``where`` on complex values compare real parts
   first in JAX and keep the selected value whole, so they are safe. On GPU, a
   complex matrix product (``dot_general`` beyond an inner product) is a culprit
   too: on an H100 with JAX 0.11.2, complex128 matrix-matrix products of most
   sizes (64x25 @ 25x2, 512x512 @ 512x512) returned an imaginary part of exactly
   0, and a matrix-vector product ``A @ w`` -- exact on its own -- becomes one when
   :func:`calcjax.complex_step_gradient` batches ``f`` with ``vmap`` (a logistic
   loss at n = 100 came out 100% wrong). Measured there; the cause was not
   established, so every such product on GPU is refused.
3. **Numeric probe** (needs a concrete ``x``): along a seeded random direction
   ``v``, the complex-step directional derivative ``Im f(x + i h v) / h`` must
   agree with a float64 central difference extrapolated over two steps, within
   ten times that difference's own error estimate. It costs five evaluations of
   ``f`` (one complex, four real). It catches what the scan cannot see (a
   primitive the scan does not know), and also flags ``x`` at a kink of ``f``
   (``relu`` at 0), where the complex step's one-sided answer is as arbitrary as
   ``jax.grad``'s.

Under ``jax.jit`` or ``jax.vmap`` ``x`` is a tracer, so the probe cannot run and
only checks 1 and 2 apply.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from calcjax import _validate
from calcjax._shared_eval import call_body, keeps_one_hot, shared_side

__all__ = ["check_complex_step", "complex_input_error", "complex_step_culprits"]

#: Primitives that drop or corrupt the imaginary part of a complex operand.
_LOSSY = frozenset({"abs", "real", "imag", "conj", "sign"})

#: Primitives whose output carries no derivative when their operand is real.
_FLAT = frozenset({"sign", "floor", "ceil", "round", "stop_gradient", "is_finite", "nextafter"})

#: Functions in JAX and NumPy that drop the imaginary part, named in error messages.
_KNOWN_CULPRITS = (
    "jnp.abs, jnp.linalg.norm, jnp.var/jnp.std, jnp.real/jnp.imag/jnp.conj, "
    "jnp.logaddexp, jax.nn.softplus, jax.nn.log_sigmoid, casts to a real dtype, "
    "complex matrix products on GPU"
)

#: Relative disagreement always tolerated by the probe, whatever the FD estimate says.
PROBE_RTOL = 1e-8

#: The imaginary step of the probe.
PROBE_STEP = 1e-20

#: Points of an elementwise derivative that the probe looks at (evenly spaced).
PROBE_POINTS = 16

#: Folders whose frames are not "your code" in a culprit's location.
_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (jax.__file__, np.__file__, __file__)
)


# --------------------------------------------------------------------------- complex input refused


def complex_input_error(exc: TypeError, what: str) -> ValueError:
    """calcjax's refusal for an ``f`` with an operation that rejects complex input (``ndtr``, say).

    JAX raises a ``TypeError`` while tracing ``f`` at complex input; the refusal
    names the JAX function that raised it and the line of the user's code that
    called it, from the exception's traceback.
    """
    op, site = "", ""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = os.path.abspath(code.co_filename)
        if path.startswith(_PACKAGE_DIRS) or code.co_filename.startswith("<frozen"):
            if path.startswith(
                os.path.dirname(os.path.abspath(jax.__file__))
            ) and not code.co_name.startswith("_"):
                op = op or code.co_name
        else:
            site, op = f"{code.co_filename}:{tb.tb_lineno} ({code.co_name})", ""
        tb = tb.tb_next
    named = f"{op} " if op else "an operation "
    return ValueError(
        f"{what}: f is not complex-step safe: {named}rejects complex input"
        + (f" at {site}" if site else "")
        + f" ({exc}). The complex step needs every operation of f to accept complex numbers; "
        "use jax.grad or a finite-difference method"
    )


# --------------------------------------------------------------------------- static scan


@contextlib.contextmanager
def _quiet_casts() -> Iterator[None]:
    """Silence JAX's warnings about complex-to-real casts while *we* feed ``f`` complex input.

    The scan reports such a cast itself, with its location.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        warnings.filterwarnings("ignore", message="Casting from complex to real", category=DeprecationWarning)
        yield


def _is_complex(var: Any) -> bool:
    aval = getattr(var, "aval", None)
    return aval is not None and jnp.issubdtype(getattr(aval, "dtype", np.float32), jnp.complexfloating)


def _is_inexact(var: Any) -> bool:
    aval = getattr(var, "aval", None)
    return aval is not None and jnp.issubdtype(getattr(aval, "dtype", np.int32), jnp.inexact)


def _where(eqn: Any) -> str:
    """``file:line`` of the innermost frame outside JAX, NumPy and calcjax, or ``""``."""
    try:
        frames = eqn.source_info.traceback.frames
    except AttributeError:
        return ""
    for frame in frames:
        path = os.path.abspath(frame.file_name)
        if not path.startswith(_PACKAGE_DIRS) and not frame.file_name.startswith("<frozen"):
            return f"{frame.file_name}:{frame.line_num} ({frame.function_name})"
    return ""


def _sub_jaxprs(params: dict[str, Any]) -> list[tuple[str, Any, tuple[Any, ...]]]:
    """``(param name, jaxpr, consts)`` for each jaxpr found in an equation's params."""
    found = []
    for key, value in params.items():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jcore.ClosedJaxpr):
                found.append((key, item.jaxpr, tuple(item.consts)))
            elif isinstance(item, jcore.Jaxpr):
                found.append((key, item, ()))
    return found


def _call_name(eqn: Any, jaxpr: Any) -> str | None:
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    info = getattr(jaxpr, "debug_info", None)
    return getattr(info, "func_name", None)


class _Scan:
    """Forward dataflow over a jaxpr: which values depend on ``x``, which lost its imaginary part.

    ``pert[var]``: depends on the complex input. ``lost[var]``: a frozenset of
    culprit descriptions whose lost imaginary part flows into ``var``.
    """

    def __init__(self, platform: str, shared_products: bool = False) -> None:
        self.platform = platform
        self.shared_products = shared_products
        self.seen_culprits: list[tuple[str, str, str]] = []
        #: var -> (part, source var, culprit, real constant factors): the real or imaginary part of
        #: ``source`` times constants. ``complex(re, im)`` of the two parts of one value, scaled
        #: alike, is that value scaled: the imaginary part was carried (JAX's complex log10, log2).
        self.parts: dict[Any, tuple[str, Any, Any, tuple[Any, ...]]] = {}

    def run(
        self,
        jaxpr: Any,
        pert_in: list[bool],
        lost_in: list[frozenset[Any]],
        context: tuple[str, ...],
        site: str = "",
        onehot_in: list[bool] | None = None,
    ) -> tuple[list[bool], list[frozenset[Any]]]:
        """Propagate through ``jaxpr``; ``site`` is the caller's line (inner jaxprs may be cached).

        ``onehot_in`` marks inputs that, with shared products, are ``x`` itself
        perturbed in one entry (see :mod:`calcjax._shared_eval`).
        """
        pert: dict[Any, bool] = {}
        lost: dict[Any, frozenset[Any]] = {}
        for var, p, lo in zip(jaxpr.invars, pert_in, lost_in, strict=True):
            pert[var], lost[var] = p, lo
        flags = onehot_in or [False] * len(jaxpr.invars)
        onehot = {var for var, flag in zip(jaxpr.invars, flags, strict=True) if flag}
        # As calcjax._shared_eval counts it: every output of an equation with an x-dependent
        # input depends on x (control flow and calls included), whatever reaches it.
        dependent = {var for var, p in zip(jaxpr.invars, pert_in, strict=True) if p}

        def get(var: Any) -> tuple[bool, frozenset[Any]]:
            if isinstance(var, jcore.Literal):
                return False, frozenset()
            return pert.get(var, False), lost.get(var, frozenset())

        for eqn in jaxpr.eqns:
            ins = [get(var) for var in eqn.invars]
            is_var = [not isinstance(var, jcore.Literal) for var in eqn.invars]
            is_onehot = [v and var in onehot for v, var in zip(is_var, eqn.invars, strict=True)]
            fixed = [not (v and var in dependent) for v, var in zip(is_var, eqn.invars, strict=True)]
            if not all(fixed):
                dependent.update(eqn.outvars)
            if self.shared_products and any(is_onehot):
                outs = self._shared(eqn, ins, is_onehot, fixed, context, _where(eqn) or site)
                if len(eqn.invars) == 1 and keeps_one_hot(eqn, len(eqn.invars[0].aval.shape)):
                    onehot.update(eqn.outvars)
            else:
                outs = self._equation(eqn, ins, context, _where(eqn) or site)
            for var, (p, lo) in zip(eqn.outvars, outs, strict=True):
                pert[var], lost[var] = p, lo
        results = [get(var) for var in jaxpr.outvars]
        return [p for p, _ in results], [lo for _, lo in results]

    def _culprit(self, eqn: Any, context: tuple[str, ...], site: str) -> tuple[str, str, str]:
        prim = eqn.primitive.name
        if prim == "convert_element_type":
            prim = f"a cast to {eqn.params.get('new_dtype')}"
        elif prim == "dot_general":
            prim = "a complex matrix product on GPU (dot_general)"
        key = (prim, "/".join(context), site)
        if key not in self.seen_culprits:
            self.seen_culprits.append(key)
        return key

    def _shared(
        self,
        eqn: Any,
        ins: list[tuple[bool, frozenset[Any]]],
        is_onehot: list[bool],
        fixed: list[bool],
        context: tuple[str, ...],
        site: str,
    ) -> list[tuple[bool, frozenset[Any]]]:
        """An equation fed a one-hot ``x``: a shared product is computed once at real ``x``, never batched."""
        if eqn.primitive.name == "dot_general" and shared_side(eqn, is_onehot, fixed) is not None:
            lost_in = frozenset().union(*(lo for _, lo in ins))
            return [(True, lost_in if _is_inexact(var) else frozenset()) for var in eqn.outvars]
        body = call_body(eqn)
        if body is not None:
            jaxpr = body.jaxpr
            name = _call_name(eqn, jaxpr)
            inner = (*context, name) if name else context
            pert_in, lost_in = [p for p, _ in ins], [lo for _, lo in ins]
            out_p, out_l = self.run(jaxpr, pert_in, lost_in, inner, site, onehot_in=is_onehot)
            return list(zip(out_p, out_l, strict=True))
        return self._equation(eqn, ins, context, site)

    def _equation(
        self, eqn: Any, ins: list[tuple[bool, frozenset[Any]]], context: tuple[str, ...], site: str
    ) -> list[tuple[bool, frozenset[Any]]]:
        prim = eqn.primitive.name
        any_pert = any(p for p, _ in ins)
        lost_in = frozenset().union(*(lo for _, lo in ins)) if ins else frozenset()
        subs = _sub_jaxprs(eqn.params)
        if subs:
            return self._call(eqn, subs, ins, any_pert, lost_in, context, site)
        new: frozenset[Any] = frozenset()
        complex_pert_in = any(p and _is_complex(var) for var, (p, _) in zip(eqn.invars, ins, strict=True))
        drops = prim in _LOSSY or (
            prim == "convert_element_type"
            and not jnp.issubdtype(eqn.params.get("new_dtype", np.complex128), jnp.complexfloating)
        )
        if complex_pert_in and (drops or (self.platform == "gpu" and _is_matrix_product(eqn))):
            new = frozenset({self._culprit(eqn, context, site)})
            if prim in ("real", "imag"):
                self.parts[eqn.outvars[0]] = (prim, eqn.invars[0], next(iter(new)), ())
        rejoined = self._rejoin(eqn, ins)
        if rejoined is not None:
            return [(any_pert, rejoined)]
        self._scale_part(eqn, ins)
        flat = prim in _FLAT and not complex_pert_in
        outs = []
        for var in eqn.outvars:
            keep = _is_inexact(var) and not flat
            outs.append((any_pert, (lost_in | new) if keep else frozenset()))
        return outs

    def _scale_part(self, eqn: Any, ins: list[tuple[bool, frozenset[Any]]]) -> None:
        """A part times (or divided by) something free of ``x`` stays a part, the factor recorded."""
        if eqn.primitive.name not in ("mul", "div") or len(eqn.invars) != 2:
            return
        order = (0, 1) if eqn.primitive.name == "div" else (0, 1, 1, 0)
        for k in range(0, len(order), 2):
            part_var, other = eqn.invars[order[k]], eqn.invars[order[k + 1]]
            part = None if isinstance(part_var, jcore.Literal) else self.parts.get(part_var)
            if part is None or ins[order[k + 1]][0]:
                continue
            factor = repr(other.val) if isinstance(other, jcore.Literal) else id(other)
            kind, src, culprit, factors = part
            self.parts[eqn.outvars[0]] = (kind, src, culprit, (*factors, (eqn.primitive.name, factor)))
            return

    def _rejoin(self, eqn: Any, ins: list[tuple[bool, frozenset[Any]]]) -> frozenset[Any] | None:
        """The lost set of ``complex(re, im)`` when it rejoins the two parts of one value, else None."""
        if eqn.primitive.name != "complex" or len(eqn.invars) != 2:
            return None
        re, im = (None if isinstance(var, jcore.Literal) else self.parts.get(var) for var in eqn.invars)
        if re is None or im is None or re[0] != "real" or im[0] != "imag":
            return None
        if re[1] is not im[1] or re[3] != im[3]:
            return None
        return (ins[0][1] - {re[2]}) | (ins[1][1] - {im[2]})

    def _call(
        self,
        eqn: Any,
        subs: list[tuple[str, Any, tuple[Any, ...]]],
        ins: list[tuple[bool, frozenset[Any]]],
        any_pert: bool,
        lost_in: frozenset[Any],
        context: tuple[str, ...],
        site: str,
    ) -> list[tuple[bool, frozenset[Any]]]:
        prim = eqn.primitive.name
        n_out = len(eqn.outvars)
        pert_in = [p for p, _ in ins]
        los_in = [lo for _, lo in ins]
        if prim == "cond" and all(key == "branches" for key, _, _ in subs):
            # operands after the branch index go to every branch; a lost index only picks a branch.
            result = [(False, frozenset())] * n_out
            for _, jaxpr, _ in subs:
                outs = self.run(jaxpr, pert_in[1:], los_in[1:], context, site)
                result = [(a or p, lo_a | lo) for (a, lo_a), p, lo in zip(result, *outs, strict=True)]
            return result
        if (
            prim == "scan"
            and len(subs) == 1
            and len(subs[0][1].invars) == len(eqn.invars)
            and len(subs[0][1].outvars) == n_out
        ):
            _, jaxpr, _ = subs[0]
            n_consts, n_carry = eqn.params.get("num_consts"), eqn.params.get("num_carry")
            if not (isinstance(n_consts, int) and isinstance(n_carry, int)):
                # Layout unknown (JAX versions differ): one pass, then any loss reaches every output.
                out_p, out_l = self.run(jaxpr, pert_in, los_in, context, site)
                lost = frozenset().union(*out_l) if out_l else frozenset()
                return [
                    (p, lost if _is_inexact(var) else frozenset())
                    for p, var in zip(out_p, eqn.outvars, strict=True)
                ]
            carry = slice(n_consts, n_consts + n_carry)
            for _ in range(n_carry + 2):  # each pass carries the state one step further
                out_p, out_l = self.run(jaxpr, pert_in, los_in, context, site)
                new_p = [a or b for a, b in zip(pert_in[carry], out_p[:n_carry], strict=True)]
                new_l = [a | b for a, b in zip(los_in[carry], out_l[:n_carry], strict=True)]
                if new_p == pert_in[carry] and new_l == los_in[carry]:
                    break
                pert_in[carry], los_in[carry] = new_p, new_l
            return list(zip(out_p, out_l, strict=True))
        if len(subs) == 1:
            _, jaxpr, _ = subs[0]
            if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == n_out:
                name = _call_name(eqn, jaxpr)
                inner = (*context, name) if name else context
                out_p, out_l = self.run(jaxpr, pert_in, los_in, inner, site)
                return list(zip(out_p, out_l, strict=True))
        # Anything else (while loops, custom primitives): every input may reach every
        # output, and a loss anywhere inside counts.
        inner_lost: frozenset[Any] = frozenset()
        for _, jaxpr, _ in subs:
            k = len(jaxpr.invars)
            _, out_l = self.run(jaxpr, [any_pert] * k, [lost_in] * k, context, site)
            inner_lost = inner_lost.union(*out_l)
        return [
            (any_pert, (lost_in | inner_lost) if _is_inexact(var) else frozenset()) for var in eqn.outvars
        ]


def _is_matrix_product(eqn: Any) -> bool:
    """A ``dot_general`` that is more than an inner product: free entries on either side.

    A matrix-vector product counts: ``complex_step_gradient`` evaluates ``f`` under
    ``jax.vmap``, which turns it into a matrix-matrix product.
    """
    if eqn.primitive.name != "dot_general":
        return False
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]

    def free(var: Any, contract: Any, batch: Any) -> int:
        shape = var.aval.shape
        return math.prod(d for k, d in enumerate(shape) if k not in (*contract, *batch))

    lhs, rhs = eqn.invars[:2]
    return free(lhs, lhs_contract, lhs_batch) > 1 or free(rhs, rhs_contract, rhs_batch) > 1


def _platform(x: Any) -> str:
    """Where ``f`` will run: the device of a concrete ``x``, else JAX's default device."""
    for leaf in jax.tree_util.tree_leaves(x):
        if isinstance(leaf, jax.Array) and _concrete(leaf):
            return next(iter(leaf.devices())).platform
    default = jax.config.jax_default_device
    if isinstance(default, jax.Device):
        return default.platform
    if isinstance(default, str):
        return default
    return jax.default_backend()


def _complex_example(x: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.complex128), x)


def complex_step_culprits(f: Callable[[Any], Any], x: Any, *, shared_products: bool = False) -> list[str]:
    """Operations in ``f`` that drop the imaginary part on the way to its output.

    A static scan of ``f``'s jaxpr at complex128 input shaped like ``x`` (only
    shapes are used, so it works under ``jax.jit`` and ``jax.vmap``). Each entry
    names the primitive, the JAX function it sits in and the line of your code
    that called it, e.g. ``"imag inside softplus/logaddexp at loss.py:12 (f)"``.

    Args:
      f: the function to check.
      x: an array or pytree giving the shapes of ``f``'s argument.
      shared_products: ``f`` is evaluated with shared matrix products
        (``complex_step_gradient``'s default): a product of ``x`` with an
        ``x``-free matrix is computed once, at real ``x``, and each point adds
        ``1j*h`` times a column, so it is not a GPU matrix-product culprit.

    Returns:
      The culprits, in program order; empty when the scan finds none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     bad = calcjax.complex_step_culprits(jax.nn.softplus, jnp.zeros(()))
      ...     good = calcjax.complex_step_culprits(lambda z: jnp.log1p(jnp.exp(z)), jnp.zeros(()))
      >>> [c.split(" at ")[0] for c in bad], good
      (['real, imag inside softplus/logaddexp'], [])
    """
    with _quiet_casts():
        closed = jax.make_jaxpr(f)(_complex_example(x))
    jaxpr = closed.jaxpr
    # f with side effects is evaluated as written (calcjax._shared_eval.point_function): nothing shared.
    scan = _Scan(_platform(x), shared_products and not jaxpr.effects)
    pert_in = [_is_complex(var) for var in jaxpr.invars]
    _, out_lost = scan.run(jaxpr, pert_in, [frozenset()] * len(jaxpr.invars), (), onehot_in=pert_in)
    reached = frozenset().union(*out_lost) if out_lost else frozenset()
    grouped: dict[tuple[str, str], list[str]] = {}
    for prim, inside, site in scan.seen_culprits:
        if (prim, inside, site) in reached and prim not in grouped.setdefault((inside, site), []):
            grouped[(inside, site)].append(prim)
    return [
        ", ".join(prims) + (f" inside {inside}" if inside else "") + (f" at {site}" if site else "")
        for (inside, site), prims in grouped.items()
    ]


# --------------------------------------------------------------------------- numeric probe


def _judge(cs: np.ndarray, vals: np.ndarray, t: np.ndarray) -> tuple[int, float, float, float] | None:
    """The worst disagreement between complex-step and FD derivatives, or ``None``.

    ``vals`` holds ``f`` at ``+t, -t, +t/2, -t/2`` (rows) for each entry
    (columns). Returns ``(index, complex step, FD estimate, FD error bound)``.
    """
    eps = float(np.finfo(np.float64).eps)
    d1 = (vals[0] - vals[1]) / (2 * t)
    d2 = (vals[2] - vals[3]) / t
    extrapolated = d2 + (d2 - d1) / 3
    scale = np.max(np.abs(vals), axis=0)
    bound = np.abs(d2 - d1) + 16 * eps * scale / t
    tol = 10 * bound + PROBE_RTOL * np.maximum(np.abs(extrapolated), np.abs(cs))
    ok = ~np.all(np.isfinite(vals), axis=0) | ~np.isfinite(cs) | (np.abs(cs - extrapolated) <= tol)
    if np.all(ok):
        return None
    gap = np.where(ok, -np.inf, np.abs(cs - extrapolated) / np.maximum(tol, 1e-300))
    i = int(np.argmax(gap))
    return i, float(cs[i]), float(extrapolated[i]), float(bound[i])


def _probe_gradient(f: Callable[[Any], Any], x: Any, seed: int) -> tuple[int, float, float, float] | None:
    flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), x))
    _, unravel_c = ravel_pytree(jax.tree_util.tree_map(lambda a: jnp.zeros(jnp.shape(a), jnp.complex128), x))
    direction = np.random.default_rng(seed).standard_normal(flat.size)
    x_np = np.asarray(flat)
    t = float(np.finfo(np.float64).eps) ** (1 / 3) * max(1.0, float(np.max(np.abs(x_np))))
    t /= float(np.max(np.abs(direction)))
    vals = [f(unravel(jnp.asarray(x_np + c * t * direction))) for c in (1.0, -1.0, 0.5, -0.5)]
    z = jnp.asarray(x_np + 1j * PROBE_STEP * direction)
    out = f(unravel_c(z))
    if not (_concrete(vals) and _concrete(out)):
        return None
    cs = np.imag(np.asarray(out, np.complex128)).reshape(1) / PROBE_STEP
    return _judge(cs, np.real(np.asarray(vals)).astype(np.float64).reshape(4, 1), np.asarray([t]))


def _probe_elementwise(f: Callable[[Any], Any], x: Any) -> tuple[int, float, float, float] | None:
    every = np.asarray(x, np.float64).reshape(-1)
    index = np.arange(every.size)
    if every.size > PROBE_POINTS:
        index = np.unique(np.linspace(0, every.size - 1, PROBE_POINTS).round().astype(int))
    points = every[index]
    t = float(np.finfo(np.float64).eps) ** (1 / 3) * np.maximum(1.0, np.abs(points))
    pts = np.stack([points + c * t for c in (1.0, -1.0, 0.5, -0.5)])
    vals = jax.vmap(jax.vmap(f))(jnp.asarray(pts))
    out = jax.vmap(f)(jnp.asarray(points + 1j * PROBE_STEP))
    if not (_concrete(vals) and _concrete(out)):
        return None
    cs = np.imag(np.asarray(out, np.complex128)) / PROBE_STEP
    found = _judge(cs, np.real(np.asarray(vals)).astype(np.float64), t)
    if found is None:
        return None
    return (int(index[found[0]]), *found[1:])


def _negative_float_powers(f: Callable[[Any], Any], x: Any) -> list[str]:
    """Sites of ``pow`` with a floating exponent whose base is negative when ``f`` runs at real ``x``.

    Complex ``pow`` is ``exp(y * log(z))`` on the principal branch of ``log``, which
    jumps across the negative real axis: at a negative base the complex step is
    wrong even for an integer-valued float exponent (``x ** 3.0``). ``f``'s jaxpr is
    run at ``x`` (float64) equation by equation, entering ``jit`` and other call
    bodies, so each ``pow``'s base can be read. Best effort: ``[]`` when it cannot.
    """
    found: list[str] = []

    def run(jaxpr: Any, consts: Any, args: Any) -> list[Any]:
        env: dict[Any, Any] = {}
        read = lambda var: var.val if isinstance(var, jcore.Literal) else env[var]
        for var, val in zip(jaxpr.constvars, consts, strict=True):
            env[var] = val
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = val
        for eqn in jaxpr.eqns:
            ins = [read(var) for var in eqn.invars]
            if eqn.primitive.name == "pow" and _is_inexact(eqn.invars[1]):
                base = np.asarray(ins[0])
                if np.any(np.real(base) < 0):
                    site = _where(eqn)
                    found.append(f"pow{f' at {site}' if site else ''}")
            subs = _sub_jaxprs(eqn.params)
            if eqn.primitive.name in ("pjit", "jit", "closed_call", "core_call") and len(subs) == 1:
                _, sub, sub_consts = subs[0]
                outs = run(sub, sub_consts, ins)
            else:
                outs = eqn.primitive.bind(*ins, **eqn.params)
                outs = outs if eqn.primitive.multiple_results else [outs]
            for var, val in zip(eqn.outvars, outs, strict=True):
                env[var] = val
        return [read(var) for var in jaxpr.outvars]

    try:
        real = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), x)
        closed = jax.make_jaxpr(f)(real)
        run(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(real))
    except Exception:  # naming the cause is a courtesy; the refusal stands without it
        return []
    return list(dict.fromkeys(found))


def _concrete(*values: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for v in values for leaf in jax.tree_util.tree_leaves(v))


def _fix(culprits: Iterable[str]) -> str:
    listed = "; ".join(culprits)
    return (
        f"it drops the imaginary part at: {listed}. "
        if listed
        else f"f probably drops the imaginary part (usual culprits: {_KNOWN_CULPRITS}) "
        "or is not differentiable at x. "
    )


def check_complex_step(
    f: Callable[[Any], Any],
    x: Any,
    *,
    elementwise: bool = False,
    seed: int = 0,
    what: str = "check_complex_step",
    shared_products: bool = False,
) -> None:
    """Refuse ``f`` for the complex step when it would return a wrong derivative.

    Runs the checks described in :mod:`calcjax._complex_safety`: ``f``'s output
    dtype at complex input, a static scan of its jaxpr for operations that drop
    the imaginary part (:func:`complex_step_culprits`), and -- when ``x`` is
    concrete, not a tracer under ``jax.jit``/``jax.vmap`` -- a numeric probe
    comparing the complex step with float64 central differences along a seeded
    random direction (five evaluations of ``f``).

    Args:
      f: scalar function of ``x`` (or, with ``elementwise``, of one scalar).
      x: the point, an array or pytree; with ``elementwise``, an array of points
        (at most 16 of them, evenly spaced, are probed).
      elementwise: ``f`` maps a scalar to a scalar and is applied per entry of ``x``.
      seed: seed of the probe's random direction.
      what: the caller's name, for the message.
      shared_products: as for :func:`complex_step_culprits`.

    Raises:
      ValueError: ``f`` is not complex-step safe; the message names the culprits
        (primitive, JAX function and your line) or, when only the probe
        disagrees, the usual suspects and the two numbers.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     calcjax.check_complex_step(lambda w: jnp.sum(jnp.log1p(jnp.exp(w))), jnp.ones(3))
      ...     calcjax.check_complex_step(lambda w: jnp.sum(jax.nn.softplus(w)), jnp.ones(3))
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: check_complex_step: f is not complex-step safe: it drops the imaginary part at: real, ...
    """
    _validate.check_nonempty(x, "x")
    example = jax.ShapeDtypeStruct((), jnp.complex128) if elementwise else _complex_example(x)
    try:
        with _quiet_casts():
            out = jax.eval_shape(f, example)
    except TypeError as exc:
        if "complex" not in str(exc):
            raise
        raise complex_input_error(exc, what) from exc
    if not jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise ValueError(
            f"{what}: f returned dtype {out.dtype} for complex input, so it drops the imaginary part "
            f"(usual culprits: {_KNOWN_CULPRITS}); the complex step would be wrong. Use jax.grad instead"
        )
    culprits = complex_step_culprits(f, jnp.zeros(()) if elementwise else x, shared_products=shared_products)
    if culprits:
        raise ValueError(
            f"{what}: f is not complex-step safe: {_fix(culprits)}"
            "The complex step would return a wrong derivative; use jax.grad, or write f with "
            "complex-safe operations (e.g. jnp.log1p(jnp.exp(z)) for softplus, z * jnp.sign(jnp.real(z)) "
            "for abs)"
        )
    if not _concrete(x):
        return  # traced: the numeric probe needs values
    with _quiet_casts(), np.errstate(all="ignore"):  # inf/nan in x: no NumPy warnings; such points pass
        found = _probe_elementwise(f, x) if elementwise else _probe_gradient(f, x, seed)
    if found is not None:
        index, cs, fd_value, bound = found
        where = f"at x[{index}]" if elementwise else f"along a random direction (seed {seed})"
        tiny = float(np.finfo(np.float64).tiny)
        if abs(cs) < tiny and fd_value != 0 and abs(fd_value) * PROBE_STEP < tiny:
            exponent = math.floor(math.log10(abs(fd_value)) + math.log10(PROBE_STEP))
            raise ValueError(
                f"{what}: the complex step underflows {where}: its imaginary part f'(x) * h ~ "
                f"1e{exponent} is below float64's smallest normal number ({tiny:.1e}), "
                f"so it returns {cs:.6g} where central differences give {fd_value:.6g}. "
                "Use calcjax.richardson_derivative/richardson_gradient or jax.grad there"
            )
        point = np.asarray(x, np.float64).reshape(-1)[index] if elementwise else x
        powers = _negative_float_powers(f, point)
        if powers:
            raise ValueError(
                f"{what}: f raises a negative base to a float power ({'; '.join(powers)}), {where}: "
                "complex pow takes the principal branch of log, which jumps across the negative real "
                f"axis, so the complex step returns {cs:.6g} where central differences give {fd_value:.6g}. "
                "Write an integer power (x ** 3, not x ** 3.0) or use jax.grad"
            )
        raise ValueError(
            f"{what}: the complex step disagrees with central differences {where}: "
            f"complex step {cs:.6g}, float64 central differences {fd_value:.6g} (+- {bound:.1e}). "
            f"{_fix(())}Use jax.grad, or write f with complex-safe operations"
        )
