"""``compare_second_order(f, x)``: every second-order method on the user's function, in one table.

The second-order sibling of :func:`calcjax.compare` (``calcjax compare --order 2``):
each :data:`calcjax.SECOND_ORDER_METHODS` entry on ``f`` at ``x`` -- full
Hessians, diagonals and Hessian-vector products along a fixed direction --
graded against one float64 reference Hessian, timed with the suite's recipe,
with a recommendation per kind.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from calcjax import _compare as cmp
from calcjax import _hessian as hs
from calcjax import _validate as v
from calcjax._fmt import fmt_time
from calcjax._second_order import SECOND_ORDER_METHODS, SecondOrderMethod, get_second_order_method
from calcjax._timing import compile_jit, time_call

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SECOND_COLUMNS", "compare_second_order", "format_second_table"]

#: Columns of the result, in order.
SECOND_COLUMNS = (
    "method",
    "kind",
    "family",
    "status",
    "rel_error",
    "is_reference",
    "meets_target",
    "median_s",
    "compile_s",
    "f_evals",
    "grad_evals",
    "recommended",
    "description",
)
#: Which registry method computes each reference exactly as the reference does (in float64).
_REFERENCE_METHOD = {"complex-step": "complex-of-grad-hessian", "jax.hessian-float64": "jax-hessian"}


def _direction(n: int) -> np.ndarray:
    """The HVPs' direction: ``cos(1 + k)``, entries of both signs and none zero."""
    return np.cos(1.0 + np.arange(n))


def _reference(f: Callable[..., Any], x: Any, reference: Any, n: int) -> tuple[np.ndarray, str, str]:
    """``(n x n Hessian in float64, kind, note)``: the user's, else complex steps, else jax.hessian."""
    x64 = cmp._as_x64(x)
    if reference is not None:
        ref = reference(x64) if callable(reference) else reference
        ref = (
            np.asarray(ref, np.float64)
            if isinstance(ref, np.ndarray)
            else np.asarray(hs.ravel_hessian(ref, x64))
        )
        if ref.shape != (n, n):
            raise ValueError(
                f"reference must be the {n} x {n} Hessian (or laid out like jax.hessian), got {ref.shape}"
            )
        return ref.astype(np.float64), "analytic", "reference: your Hessian (reference=), at x in float64"
    ad = np.asarray(hs.ravel_hessian(jax.hessian(f)(x64), x64), np.float64)
    unsafe = cmp._complex_step_problem(f, x64)
    if unsafe is None:
        ref = np.asarray(hs.ravel_hessian(hs.complex_step_hessian(f, x64), x64), np.float64)
        gap = float(np.linalg.norm(ref - ad)) / max(float(np.linalg.norm(ad)), np.finfo(np.float64).tiny)
        if gap <= cmp.TARGET_ERROR["float64"]:
            return (
                ref,
                "complex-step",
                "reference: complex steps of the gradient in complex128 (exact to rounding)",
            )
        unsafe = f"the complex-step Hessian disagrees with float64 jax.hessian (rel. difference {gap:.1e})"
    note = (
        "reference: float64 jax.hessian, not independent of the AD rows, because the complex step "
        f"is not safe here: {unsafe}"
    )
    return ad, "jax.hessian-float64", note


def _measure(m: SecondOrderMethod, f: Callable[..., Any], x: Any, vec: Any) -> tuple[Any, float, float]:
    """``(result, median seconds, compile seconds)``: traceable methods jit-compiled apart, then timed."""
    args = (x,) if m.kind != "hvp" else (x, vec)
    if m.traceable:
        compiled, compile_s = compile_jit(lambda *a: m(f, *a), *args)
        out = compiled(*args)
        return out, time_call(compiled, *args, jit=False).median_s, compile_s
    f_jit = jax.jit(f)
    np_args = jax.tree_util.tree_map(np.asarray, args)
    out = jax.block_until_ready(m(f_jit, *np_args))
    return out, time_call(lambda *a: m(f_jit, *a), *np_args, jit=False).median_s, 0.0


def _score(m: SecondOrderMethod, out: Any, x: Any, ref: np.ndarray, v_flat: np.ndarray) -> float:
    if m.kind == "hessian":
        got = out if isinstance(out, np.ndarray) else hs.ravel_hessian(out, x)
        return cmp._rel_error(np.ravel(np.asarray(got, np.float64)), ref.ravel())
    return cmp._rel_error(out, np.diag(ref) if m.kind == "diagonal" else ref @ v_flat)


def compare_second_order(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    methods: Sequence[str] | None = None,
    reference: Any = None,
    target_error: float | None = None,
    progress: Any = None,
) -> pd.DataFrame:
    """Every second-order method on ``f`` at ``x``: error against one reference Hessian, time, cost.

    The reference, in float64: your ``reference`` when given; else the Hessian
    by complex steps of the gradient (:func:`calcjax.complex_step_hessian`) when
    ``f`` is complex-step safe and agrees with float64 ``jax.hessian`` to
    ``sqrt(eps)``; else float64 ``jax.hessian``. The row of the method that
    computes the reference itself (in float64) is marked ``is_reference`` and
    shown as "reference", not as an error of 0. Products are taken along
    ``cos(1 + k)`` and graded against the reference Hessian times it; diagonals
    against its diagonal. Each kind (``hessian``, ``diagonal``, ``hvp``) gets its
    recommendation: the fastest method meeting the target.

    Args:
      f: scalar JAX function of ``x``.
      x: an array or pytree of floating arrays; its dtype is the methods' dtype.
      methods: :data:`calcjax.SECOND_ORDER_METHODS` names (default: all).
      reference: the exact Hessian: ``x -> Hessian`` or the Hessian itself,
        ``n x n`` or laid out like ``jax.hessian``'s result.
      target_error: relative error to be recommended (default ``sqrt(eps)`` of
        the dtype, as :func:`calcjax.compare`).
      progress: ``None``, ``True`` (stderr) or a callable receiving each line.

    Returns:
      A ``pandas.DataFrame`` with columns :data:`SECOND_COLUMNS`; ``attrs`` holds
      ``n``, ``dtype``, ``reference``, ``reference_note``, ``target_error``,
      ``recommended`` (kind -> method or ``None``) and ``recommendation``.

    Raises:
      TypeError: ``x`` has a non-floating leaf or ``f`` returns a non-float.
      ValueError: ``f`` not scalar, an unknown method, a bad ``reference``.

    Example:
      >>> import jax.numpy as jnp
      >>> df = calcjax.compare_second_order(lambda w: jnp.sum(jnp.sin(w) * w), jnp.ones(5),
      ...                                   methods=["fd-hessian", "complex-of-grad-hessian"])
      >>> df[["method", "is_reference"]].to_dict("list")
      {'method': ['fd-hessian', 'complex-of-grad-hessian'], 'is_reference': [False, True]}
    """
    import pandas as pd

    chosen = [
        get_second_order_method(m) for m in (list(SECOND_ORDER_METHODS) if methods is None else methods)
    ]
    if not chosen:
        raise ValueError("methods is empty; give at least one second-order method name")
    if target_error is not None:
        v.check_positive_finite(target_error, "target_error")
    start, done = cmp._emitter(progress)
    with cmp._x64_on() as switched:
        n, dtype = cmp.check_inputs(f, x)
        target = float(target_error) if target_error is not None else cmp.default_target(dtype)
        x = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), x)
        ref, kind, note = _reference(f, x, reference, n)
        if kind == "jax.hessian-float64":
            print(f"calcjax.compare_second_order: note: {note}", file=sys.stderr)
        v_flat = _direction(n)
        _, unravel = ravel_pytree(x)
        vec = unravel(jnp.asarray(v_flat, dtype))
        is_ref_method = _REFERENCE_METHOD.get(kind) if np.dtype(dtype) == np.float64 else None
        rows = []
        for i, m in enumerate(chosen, 1):
            row: dict[str, Any] = {
                "method": m.name,
                "kind": m.kind,
                "family": m.family,
                "status": "ok",
                "rel_error": math.nan,
                "is_reference": m.name == is_ref_method,
                "median_s": math.nan,
                "compile_s": math.nan,
                "f_evals": int(m.evals(n)),
                "grad_evals": int(m.grad_evals(n)),
                "description": m.description,
            }
            start(f"[{i}/{len(chosen)}] {m.name}  ")
            why = m.unavailable() or (f"n = {n} > its max_n = {m.max_n}" if m.max_n and n > m.max_n else None)
            if why:
                row["status"], row["description"] = "skipped", why
                done(f"skipped: {why}")
                rows.append(row)
                continue
            try:
                out, median_s, compile_s = _measure(m, f, x, vec)
                err = 0.0 if row["is_reference"] else _score(m, out, x, ref, v_flat)
                row.update(rel_error=err, median_s=median_s, compile_s=compile_s)
                done(f"rel_error {err:.1e}  median {fmt_time(median_s)}")
            except Exception as err:  # a method failing on f is a row, not a crash
                row["status"], row["description"] = "failed", f"{type(err).__name__}: {cmp._first_line(err)}"
                done(f"failed: {row['description']}")
            rows.append(row)
    recommended, reasons = {}, []
    for k in ("hessian", "diagonal", "hvp"):
        of = [r for r in rows if r["kind"] == k and not r["is_reference"]]  # the yardstick is not a candidate
        if of:
            pick, reason = cmp._recommend(of, target, n, dtype)
            recommended[k] = pick
            reasons.append(f"{k}: {reason}")
    for row in rows:
        row["meets_target"] = bool(row["status"] == "ok" and row["rel_error"] <= target)
        row["recommended"] = recommended.get(row["kind"]) == row["method"]
    frame = pd.DataFrame(rows, columns=list(SECOND_COLUMNS))
    frame.attrs.update(
        n=n,
        dtype=str(dtype),
        target_error=target,
        reference=kind,
        reference_note=note,
        recommended=recommended,
        recommendation="\n".join(reasons),
        x64_switched_on=switched,
        jax_version=jax.__version__,
    )
    return frame


def format_second_table(frame: pd.DataFrame) -> str:
    """The result of :func:`compare_second_order` as an aligned text table, recommendations below."""
    header = ("method", "kind", "family", "rel_error", "median", "compile", "f_evals", "grad_evals", "note")
    lines = []
    for r in frame.to_dict("records"):
        if r["status"] != "ok":
            err, note = "-", f"{r['status']}: {r['description']}"
        else:
            err = "reference" if r["is_reference"] else f"{r['rel_error']:.1e}"
            note = "<- recommended" if r["recommended"] else ("" if r["meets_target"] else "misses target")
        lines.append(
            (
                r["method"],
                r["kind"],
                r["family"],
                err,
                fmt_time(r["median_s"]),
                fmt_time(r["compile_s"]) if r["compile_s"] else "-",
                str(r["f_evals"]) if r["f_evals"] else "-",
                str(r["grad_evals"]) if r["grad_evals"] else "-",
                note,
            )
        )
    out = cmp.aligned(header, lines, right=range(3, len(header) - 1))
    a = frame.attrs
    out += [
        "",
        f"n = {a.get('n')}, dtype {a.get('dtype')}, target rel. error {a.get('target_error', math.nan):.1e}",
        str(a.get("reference_note", "")),
        *(f"recommended for {line}" for line in str(a.get("recommendation", "")).splitlines()),
    ]
    return "\n".join(out)
