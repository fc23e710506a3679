"""Compare every gradient method on the user's own function: error, time, cost, a recommendation.

``compare(f, x)`` runs each registry method at ``x``, measures its relative error
against a reference gradient and its time (jit-compiled and warmed up,
``block_until_ready`` on every call, compile time apart), and recommends the
cheapest method that meets an error target.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from calcjax import _blackbox
from calcjax import _complex_step as cs
from calcjax import _finite_diff as fd
from calcjax import _richardson as rich
from calcjax import _validate as v
from calcjax._complex_safety import check_complex_step, complex_step_culprits
from calcjax._devices import resolve_device
from calcjax._fmt import fmt_time as _fmt_time
from calcjax._methods import METHODS, GradientMethod, get_method
from calcjax._timing import compile_jit, time_call

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "TARGET_ERROR", "check_inputs", "compare", "default_target", "format_table"]

#: Default relative-error target per dtype: ``sqrt(eps)``, half the dtype's digits. It is
#: what a well-chosen forward difference reaches, and more than gradient descent needs.
TARGET_ERROR: dict[str, float] = {
    name: float(jnp.finfo(name).eps) ** 0.5 for name in ("float16", "bfloat16", "float32", "float64")
}

#: An error this many ulps of the dtype (relative) counts as "exact to rounding".
ROUNDING_ULPS = 64

#: Columns of the result, in order.
COLUMNS = (
    "method",
    "family",
    "status",
    "rel_error",
    "est_error",
    "meets_target",
    "median_s",
    "compile_s",
    "f_evals",
    "recommended",
    "description",
)

#: The method whose float64 result *is* each kind of reference: its row is labelled
#: ``status == "reference"`` (an error against itself would be zero by construction) and carries
#: its own estimated error in ``est_error`` instead.
SELF_REFERENCE = {
    "complex-step": "fd-complex",
    "jax.grad-float64": "ad-reverse",
    "richardson-estimate": "fd-richardson",
}

#: A NumPy/SciPy method whose first call (f already compiled) takes longer than this is timed by
#: that call alone: seconds-long calls are not repeated.
SLOW_CALL_S = 0.5


def default_target(dtype: Any) -> float:
    """The default relative-error target for ``dtype`` (see :data:`TARGET_ERROR`)."""
    name = jnp.dtype(dtype).name
    if name not in TARGET_ERROR:
        raise TypeError(f"no error target for dtype {name}; valid: {', '.join(TARGET_ERROR)}")
    return TARGET_ERROR[name]


def _leaves(tree: Any) -> list[Any]:
    return jax.tree_util.tree_leaves(tree)


def _flat64(tree: Any) -> np.ndarray:
    leaves = _leaves(tree)
    if not leaves:
        return np.zeros(0)
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in leaves])


def _dtype_of(x: Any) -> np.dtype:
    return np.result_type(*[np.asarray(leaf).dtype for leaf in _leaves(x)])


def check_inputs(f: Callable[[Any], Any], x: Any) -> tuple[int, np.dtype]:
    """Validate ``x`` (floating leaves) and ``f`` (a real scalar at ``x``); return ``(n, dtype)``.

    Raises:
      TypeError: a leaf of ``x`` is not floating, or ``f`` returns a non-floating value.
      ValueError: ``x`` is empty or ``f`` does not return a scalar.
    """
    leaves = _leaves(x)
    v.check_nonempty(x, "x")
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        v.as_float_array(leaf, "x" + jax.tree_util.keystr(path))
    v.check_scalar_function(f, jax.tree_util.tree_map(jnp.asarray, x))
    return sum(int(np.size(leaf)) for leaf in leaves), _dtype_of(x)


def _rel_error(g: Any, ref: np.ndarray) -> float:
    got = _flat64(g)
    if got.shape != ref.shape:
        raise ValueError(f"the gradient has {got.size} entries, the reference {ref.size}")
    denom = float(np.linalg.norm(ref))
    diff = float(np.linalg.norm(got - ref))
    return diff / denom if denom > 0 else diff


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _as_x64(x: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), x)


def _complex_step_problem(f: Callable[[Any], Any], x64: Any) -> str | None:
    """Why the complex step is wrong for ``f`` at ``x64`` (one line), or ``None``."""
    try:
        culprits = complex_step_culprits(f, x64)
        if culprits:
            return "f drops the imaginary part at " + "; ".join(culprits)
        check_complex_step(f, x64, what="compare")
    except ValueError as err:
        return _first_line(err).removeprefix("compare: ").split(". ")[0]
    except Exception as err:  # f cannot even run at complex input
        return f"f does not run at complex input ({type(err).__name__}: {_first_line(err)})"
    return None


def _reference(
    f: Callable[[Any], Any], x: Any, reference: Any, n: int
) -> tuple[np.ndarray, str, str, str | None, float]:
    """``(gradient, kind, note, complex-step problem, estimated rel. error)`` in float64.

    The estimate: ``0`` for the user's gradient; for the complex step, its relative
    difference from float64 ``jax.grad`` (an independent gradient: each bounds the
    other's error); for float64 ``jax.grad`` alone, rounding (:data:`ROUNDING_ULPS`
    ulps), assumed and not checked -- the note says so.
    """
    x64 = _as_x64(x)
    unsafe = _complex_step_problem(f, x64)
    if reference is not None:
        ref = reference(x64) if callable(reference) else reference
        ref = _flat64(ref)
        if ref.size != n:
            raise ValueError(f"reference has {ref.size} entries but x has {n}")
        return ref, "analytic", "reference: your analytic gradient (reference=), at x in float64", unsafe, 0.0
    ad = _flat64(jax.grad(f)(x64))  # the fallback, and a cross-check of the complex step
    if unsafe is None:
        ref = _flat64(cs.complex_step_gradient(f, x64))
        # What the complex step's own checks cannot see: f batched by vmap as
        # complex_step_gradient runs it, on this device. Both right -> equal to rounding.
        gap = float(np.linalg.norm(ref - ad)) / max(float(np.linalg.norm(ad)), np.finfo(np.float64).tiny)
        if gap <= TARGET_ERROR["float64"]:
            return (
                ref,
                "complex-step",
                "reference: complex-step gradient in complex128 (exact to rounding; "
                f"rel. difference from float64 jax.grad {gap:.1e})",
                None,
                gap,
            )
        unsafe = f"the complex-step gradient disagrees with float64 jax.grad (rel. difference {gap:.1e})"
    ref = ad
    note = (
        "reference: float64 jax.grad, not an independent gradient (ad-reverse is compared with itself), "
        f"because the complex step is not safe here: {unsafe}"
    )
    return ref, "jax.grad-float64", note, unsafe, ROUNDING_ULPS * float(np.finfo(np.float64).eps)


def _label_reference(
    rows: list[dict[str, Any]], kind: str, dtype: np.dtype, ref: np.ndarray, ref_err: float
) -> None:
    """Mark the row whose computation *is* the reference (same method, float64) as ``"reference"``.

    Its error against itself would be zero by construction; it shows its own estimated
    error (``est_error``) instead and can still be recommended on cost.
    """
    name = SELF_REFERENCE.get(kind)
    if name is None or np.dtype(dtype) != np.float64:
        return
    if not np.all(np.isfinite(ref)):
        ref_err = math.nan  # a non-finite reference estimates nothing, not even itself
    for row in rows:
        if row["method"] == name and row["status"] == "ok":
            row.update(status="reference", rel_error=math.nan, est_error=ref_err)
            row["description"] = f"the reference itself (est. rel. error {ref_err:.1e}); {row['description']}"


def _error(row: dict[str, Any]) -> float:
    """The error a row is judged by: measured, or its own estimate when it is the reference."""
    return row["est_error"] if row["status"] == "reference" else row["rel_error"]


def _skip_reason(method: GradientMethod, n: int, unsafe: str | None) -> tuple[str, str] | None:
    """``(status, reason)`` when ``method`` does not run here."""
    why = method.unavailable()
    if why:
        return "unavailable", why
    if method.max_n is not None and n > method.max_n:
        return "skipped", f"n = {n} > its max_n = {method.max_n}"
    if method.name == "fd-complex" and unsafe is not None:
        return "invalid", unsafe
    return None


def _measure(
    method: GradientMethod, f: Callable[[Any], Any], f_jit: Callable[[Any], Any], x: Any
) -> tuple[Any, float, float]:
    """``(gradient, median seconds, compile seconds)`` with the timing recipe.

    NumPy/SciPy methods get ``f_jit = jax.jit(f)`` (one dispatch per call, the best a
    user can do) and NumPy arrays.
    """
    if method.traceable:
        compiled, compile_s = compile_jit(lambda z: method(f, z), x)
        g = compiled(x)
        timing = time_call(compiled, x, jit=False)
        return g, timing.median_s, compile_s
    x_np = jax.tree_util.tree_map(np.asarray, x)
    for dtype in {_dtype_of(x_np), np.dtype(np.float64)}:  # compile f for what the methods pass
        jax.block_until_ready(f_jit(jax.tree_util.tree_map(lambda a, d=dtype: a.astype(d), x_np)))
    start = time.perf_counter()
    g = jax.block_until_ready(method(f_jit, x_np))
    first = time.perf_counter() - start
    if first > SLOW_CALL_S:
        # One call takes seconds: its warm-up costs (f's compile) are noise next to it.
        return g, first, 0.0
    timing = time_call(lambda z: method(f_jit, z), x_np, jit=False)
    return g, timing.median_s, 0.0


def _fmt_ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def _recommend(rows: list[dict[str, Any]], target: float, n: int, dtype: np.dtype) -> tuple[str | None, str]:
    """The cheapest row meeting ``target`` and the one-line reason (``None`` when none meets it)."""
    ran = [r for r in rows if r["status"] in ("ok", "reference")]
    ok = [r for r in ran if math.isfinite(_error(r))]
    meets = [r for r in ok if _error(r) <= target]
    fd_rows = [r for r in ok if r["family"] == "fd"] or [r for r in ok if r["family"] != "ad"]
    best_fd = min(fd_rows, key=lambda r: (_error(r), r["median_s"])) if fd_rows else None
    if not meets:
        if not ran:
            return None, "no method ran"
        if not ok:
            return None, (
                f"{len(ran)} method(s) ran but none gave a finite error at n = {n} "
                "(is f finite at x and around it?)"
            )
        best = min(ok, key=_error)
        return None, (
            f"no method meets the {target:.1e} target at n = {n}; the most accurate is "
            f"{best['method']} (rel. error {_error(best):.1e})"
        )
    pick = min(meets, key=lambda r: r["median_s"])
    eps = float(jnp.finfo(dtype).eps)
    exact = _error(pick) <= ROUNDING_ULPS * eps
    own = " (the reference; its estimated error)" if pick["status"] == "reference" else ""
    accuracy = (
        f"exact to rounding{own}"
        if exact
        else f"meets the {target:.1e} target (rel. error {_error(pick):.1e}{own})"
    )
    is_ = "" if exact else "is "
    name = pick["method"]
    if pick["family"] == "ad" and best_fd is not None:
        ratio = best_fd["median_s"] / pick["median_s"]
        other = f"the most accurate FD ({best_fd['method']}, rel. error {_error(best_fd):.1e})"
        if ratio >= 1:
            return name, f"{name}: {accuracy} and {is_}{_fmt_ratio(ratio)} cheaper than {other} at n = {n}"
        faster = _fmt_ratio(1 / ratio)
        return name, f"{name}: {accuracy}; {other} is {faster} faster but misses the target at n = {n}"
    ad = [r for r in ok if r["family"] == "ad" and r["method"] != name]
    if ad:
        fastest_ad = min(ad, key=lambda r: r["median_s"])
        ratio = fastest_ad["median_s"] / pick["median_s"]
        if ratio >= 1:
            return name, (
                f"{name}: {accuracy}, the cheapest method that does, and {_fmt_ratio(ratio)} cheaper "
                f"than {fastest_ad['method']} at n = {n}"
            )
    return name, f"{name}: {accuracy}, the cheapest method that does at n = {n}"


@contextlib.contextmanager
def _x64_on() -> Iterator[bool]:
    """x64 on inside the block (restored after); yields whether it had to be switched."""
    if jax.config.jax_enable_x64:
        yield False
        return
    with jax.enable_x64(True):
        yield True


def _emitter(progress: Any) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """``(start(text), done(text))`` for ``progress``: None, True (stderr) or a callable."""
    if progress is None or progress is False:
        return (lambda text: None), (lambda text: None)
    if progress is True:

        def start(text: str) -> None:
            print(text, end="", file=sys.stderr, flush=True)

        def done(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        return start, done
    if not callable(progress):
        raise TypeError(f"progress must be None, True or a callable taking one str, got {progress!r}")
    pending: list[str] = []

    def start_cb(text: str) -> None:
        pending[:] = [text]

    def done_cb(text: str) -> None:
        progress("".join(pending) + text)

    return start_cb, done_cb


def compare(
    f: Callable[[Any], jax.Array],
    x: Any,
    *,
    methods: Sequence[str | GradientMethod] | None = None,
    reference: Any = None,
    target_error: float | None = None,
    device: str | jax.Device | None = None,
    progress: Any = None,
    jax_port: Callable[[Any], jax.Array] | None = None,
    traceable: bool | None = None,
    vectorized: bool | str = False,
    workers: Any = None,
) -> pd.DataFrame:
    """Every gradient method on ``f`` at ``x``: relative error, time, f-evaluations, a recommendation.

    The reference gradient, in float64: your ``reference`` when given; else the
    complex-step gradient when ``f`` passes :func:`calcjax.check_complex_step`
    and agrees with float64 ``jax.grad`` to ``sqrt(eps)``; else float64
    ``jax.grad`` -- then ``ad-reverse`` is compared with itself, and
    a note saying so is printed (stderr) and kept in ``attrs["reference_note"]``.
    Traceable methods are jit-compiled (compile time in ``compile_s``), warmed
    up and timed with ``block_until_ready``; NumPy/SciPy methods call
    ``jax.jit(f)`` with NumPy arrays (compiled beforehand) and are timed without
    jit -- a call over :data:`SLOW_CALL_S` seconds is timed once. SciPy's methods
    pass float64 arrays whatever ``x``'s dtype. x64 is switched on for the call
    when it is off (restored after). A method that cannot run is a row
    with its reason in ``status``/``description``: ``unavailable`` (missing
    package, x64 off), ``skipped`` (``n`` above its ``max_n``), ``invalid``
    (``fd-complex`` on a function that drops the imaginary part), ``failed``.
    The method whose float64 result *is* the reference (``fd-complex`` for the
    complex-step reference, ``ad-reverse`` for float64 ``jax.grad``,
    ``fd-richardson`` for a black box's Richardson estimate;
    :data:`SELF_REFERENCE`) is not graded against itself: its status is
    ``reference``, ``rel_error`` is NaN and ``est_error`` holds the reference's
    own estimated error, by which it can still be recommended on cost.

    Args:
      f: scalar function of ``x``, traceable by JAX.
      x: the point, an array or a pytree of floating arrays; its dtype is the
        dtype every method runs in.
      methods: registry names (default: every registered method).
      reference: the exact gradient: a function ``x -> gradient`` or a
        gradient (array or pytree like ``x``).
      target_error: relative L2 error a method must reach to be recommended;
        default :data:`TARGET_ERROR` of ``x``'s dtype (``sqrt(eps)``).
      device: ``"cpu"``, ``"gpu"``, ``"auto"`` or a ``jax.Device`` (default: JAX's default device).
      progress: ``None`` (quiet), ``True`` (one line per method on stderr) or a
        callable receiving each line.
      jax_port: for an ``f`` JAX cannot trace, a JAX version of it: ``jax.grad``
        on it is timed and checked (row ``ad-reverse-jax-port``) -- is porting
        worth it?
      traceable: ``None`` (default) traces ``f`` once; when that fails (NumPy,
        SciPy, a simulator), or with ``False``, ``f`` is a black box: the AD and
        JAX-only rows say why they cannot run, every FD method that can run
        runs on NumPy arrays, and without ``reference`` the reference is
        calcjax's Richardson gradient in float64 with its error estimate (the
        error column is then estimated, ``attrs["error_estimated"]``).
      vectorized: as for :func:`calcjax.gradient`; adds the row
        ``fd-central-vectorized`` for a black-box ``f``.
      workers: as for :func:`calcjax.gradient`; adds the row ``fd-central-workers``.

    Returns:
      A ``pandas.DataFrame`` with columns :data:`COLUMNS`, one row per method;
      ``attrs`` holds ``n``, ``dtype``, ``device``, ``reference``,
      ``reference_note``, ``complex_step_safe``, ``target_error``,
      ``recommended`` and ``recommendation`` (the one-line reason).

    Raises:
      TypeError: ``x`` has a non-floating leaf or ``f`` returns a non-float.
      ValueError: ``f`` is not scalar, an unknown method, a bad ``reference``
        or ``target_error``.
      calcjax._devices.DeviceError: the requested device is not available.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda w: jnp.sum(jnp.sin(w))
      >>> df = calcjax.compare(f, jnp.ones(20), methods=["ad-reverse", "numpy-loop"])
      >>> df[["method", "recommended"]].to_dict("list")
      {'method': ['ad-reverse', 'numpy-loop'], 'recommended': [True, False]}
      >>> df.attrs["reference"]
      'complex-step'
    """

    default = [m for m in METHODS if not METHODS[m].stochastic]  # random estimators: not graded here
    chosen = [get_method(m) for m in (default if methods is None else methods)]
    if not chosen:
        raise ValueError("methods is empty; give at least one registry name")
    if target_error is not None:
        v.check_positive_finite(target_error, "target_error")
    _blackbox.check_traceable(traceable)
    _blackbox.check_vectorized(vectorized)
    _blackbox.check_workers(workers)
    v.check_nonempty(x, "x")
    if traceable is not True:
        _blackbox.check_leaves(x)
        reason = "traceable=False" if traceable is False else _blackbox.trace_failure(f, x)
        if reason is not None:
            return _compare_blackbox(
                f, x, chosen, reason, reference, target_error, jax_port, vectorized, workers, progress
            )
    dev = resolve_device(device) if isinstance(device, str) else device
    start, done = _emitter(progress)
    with _x64_on() as switched, jax.default_device(dev) if dev is not None else contextlib.nullcontext():
        n, dtype = check_inputs(f, x)
        target = float(target_error) if target_error is not None else default_target(dtype)
        x = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), x)
        if dev is not None:
            x = jax.device_put(x, dev)
        ref, kind, note, unsafe, ref_err = _reference(f, x, reference, n)
        if kind == "jax.grad-float64":
            print(f"calcjax.compare: note: {note}", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        f_jit = jax.jit(f)
        width = max(len(m.name) for m in chosen)
        for i, method in enumerate(chosen, 1):
            row: dict[str, Any] = {
                "method": method.name,
                "family": method.family,
                "status": "ok",
                "rel_error": math.nan,
                "median_s": math.nan,
                "compile_s": math.nan,
                "f_evals": int(method.evals(n)),
                "description": method.description,
            }
            start(f"[{i:>{len(str(len(chosen)))}}/{len(chosen)}] {method.name:<{width}}  ")
            skip = _skip_reason(method, n, unsafe)
            if skip is not None:
                row["status"], row["description"] = skip
                done(f"{skip[0]}: {skip[1]}")
            else:
                try:
                    g, median_s, compile_s = _measure(method, f, f_jit, x)
                    row.update(rel_error=_rel_error(g, ref), median_s=median_s, compile_s=compile_s)
                    done(
                        f"rel_error {row['rel_error']:.1e}  median {_fmt_time(median_s)}"
                        + (f"  (compile {_fmt_time(compile_s)})" if method.traceable else "")
                    )
                except Exception as err:  # a method failing on f is a row, not a crash
                    message = _first_line(err)
                    row["status"], row["description"] = "failed", f"{type(err).__name__}: {message}"
                    done(f"failed: {type(err).__name__}: {message}")
            rows.append(row)
        _label_reference(rows, kind, dtype, ref, ref_err)
    return _frame(
        rows,
        target,
        n,
        dtype,
        reference_error=ref_err,
        device=str(dev if dev is not None else jax.devices()[0]),
        reference=kind,
        reference_note=note,
        complex_step_safe=unsafe is None,
        complex_step_problem=unsafe,
        x64_switched_on=switched,
    )


def _frame(rows: list[dict[str, Any]], target: float, n: int, dtype: np.dtype, **attrs: Any) -> pd.DataFrame:
    """The result table: which rows meet ``target``, the recommendation, and ``attrs``."""
    import pandas as pd

    for row in rows:
        row.setdefault("est_error", math.nan)
        row["meets_target"] = bool(row["status"] in ("ok", "reference") and _error(row) <= target)
    recommended, reason = _recommend(rows, target, n, dtype)
    for row in rows:
        row["recommended"] = row["method"] == recommended
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs.update(
        n=n,
        dtype=str(dtype),
        target_error=target,
        recommended=recommended,
        recommendation=reason,
        jax_version=jax.__version__,
        **attrs,
    )
    return frame


#: Registry methods that run on a function JAX cannot trace (through calcjax's black-box path).
BLACKBOX_FD = ("fd-forward", "fd-central", "fd-central-blackbox", "fd-central4", "fd-richardson")


def _time_numpy(fn: Callable[[Any], Any], x: Any) -> tuple[Any, float]:
    """``(result, median seconds)`` of a host call after a warm-up; over :data:`SLOW_CALL_S`: timed once."""
    jax.block_until_ready(fn(x))  # warm-up: calcjax compiles its FD program once, SciPy imports lazily
    start = time.perf_counter()
    g = jax.block_until_ready(fn(x))
    second = time.perf_counter() - start
    if second > SLOW_CALL_S:
        return g, second
    return g, time_call(fn, x, jit=False).median_s


def _blackbox_reference(
    f: Callable[[Any], Any], x64: Any, reference: Any, n: int
) -> tuple[np.ndarray, str, str, float]:
    """``(gradient, kind, note, estimated relative error)`` for a black-box ``f``, in float64."""
    if reference is not None:
        ref = _flat64(reference(x64) if callable(reference) else reference)
        if ref.size != n:
            raise ValueError(f"reference has {ref.size} entries but x has {n}")
        return ref, "analytic", "reference: your analytic gradient (reference=), at x in float64", 0.0
    est = rich.richardson_gradient(f, x64, traceable=False)
    value, error = _flat64(est.value), _flat64(est.error)
    scale = max(float(np.linalg.norm(value)), np.finfo(np.float64).tiny)
    ref_err = float(np.linalg.norm(error)) / scale
    note = (
        "reference: calcjax Richardson extrapolation in float64 (f is not JAX-traceable and no "
        f"reference= was given); its estimated rel. error is {ref_err:.1e}, so the error column is "
        "estimated (errors below that cannot be resolved)"
    )
    return value, "richardson-estimate", note, ref_err


def _compare_blackbox(
    f: Callable[[Any], Any],
    x: Any,
    chosen: list[GradientMethod],
    reason: str,
    reference: Any,
    target_error: float | None,
    jax_port: Callable[[Any], Any] | None,
    vectorized: Any,
    workers: Any,
    progress: Any,
) -> pd.DataFrame:
    """:func:`compare` for an ``f`` JAX cannot trace: FD methods on NumPy arrays, AD rows say why not."""

    leaves = _leaves(x)
    x_np = jax.tree_util.tree_map(np.asarray, x)
    n, dtype = sum(int(np.size(leaf)) for leaf in leaves), _dtype_of(x_np)
    target = float(target_error) if target_error is not None else default_target(dtype)
    x64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), x_np)
    start, done = _emitter(progress)
    with _x64_on() as switched:
        ref, kind, note, ref_err = _blackbox_reference(f, x64, reference, n)
        runs: list[tuple[str, str, str, Callable[[Any], Any] | None, int]] = []
        for method in chosen:
            if method.traceable and method.name not in BLACKBOX_FD:
                runs.append((method.name, method.family, method.description, None, int(method.evals(n))))
            else:
                runs.append((method.name, method.family, method.description, method.fn, int(method.evals(n))))
        if vectorized is not False:
            fn = lambda g, z: fd.gradient(g, z, vectorized=vectorized)
            runs.append(
                ("fd-central-vectorized", "fd", f"calcjax central, vectorized={vectorized!r}", fn, 2 * n)
            )
        if workers is not None:
            fn = lambda g, z: fd.gradient(g, z, workers=workers)
            runs.append(("fd-central-workers", "fd", f"calcjax central, workers={workers!r}", fn, 2 * n))
        rows: list[dict[str, Any]] = []
        width = max(len(r[0]) for r in [*runs, ("ad-reverse-jax-port",)])
        total = len(runs) + (jax_port is not None)
        for i, (name, family, description, fn, evals) in enumerate(runs, 1):
            row: dict[str, Any] = {
                "method": name,
                "family": family,
                "status": "ok",
                "rel_error": math.nan,
                "median_s": math.nan,
                "compile_s": 0.0,
                "f_evals": evals,
                "description": description,
            }
            start(f"[{i}/{total}] {name:<{width}}  ")
            method = METHODS.get(name)
            why = method.unavailable() if method is not None else None
            if fn is None:
                row["status"], row["description"] = (
                    "unavailable",
                    f"f is not JAX-traceable ({reason})",
                )
            elif why:
                row["status"], row["description"] = "unavailable", why
            elif method is not None and method.max_n is not None and n > method.max_n:
                row["status"], row["description"] = "skipped", f"n = {n} > its max_n = {method.max_n}"
            else:
                try:
                    g, median_s = _time_numpy(functools.partial(fn, f), x_np)
                    row.update(rel_error=max(_rel_error(g, ref), ref_err), median_s=median_s)
                except Exception as err:  # a method failing on f is a row, not a crash
                    row["status"], row["description"] = "failed", f"{type(err).__name__}: {_first_line(err)}"
            if row["status"] != "ok":
                done(row["status"])
            elif name == SELF_REFERENCE.get(kind) and np.dtype(dtype) == np.float64:
                done(f"the reference (est. rel. error {ref_err:.1e})")
            else:
                done(f"rel_error {row['rel_error']:.1e}")
            rows.append(row)
        if jax_port is not None:
            start(f"[{total}/{total}] {'ad-reverse-jax-port':<{width}}  ")
            rows.append(_jax_port_row(f, jax_port, x_np, ref, ref_err, n))
            done(rows[-1]["status"])
        _label_reference(rows, kind, dtype, ref, ref_err)
    return _frame(
        rows,
        target,
        n,
        dtype,
        device="cpu (host: f is not JAX-traceable)",
        reference=kind,
        reference_note=note,
        reference_error=ref_err,
        error_estimated=kind == "richardson-estimate",
        traceable=False,
        not_traceable_reason=reason,
        complex_step_safe=False,
        complex_step_problem=f"f is not JAX-traceable ({reason})",
        x64_switched_on=switched,
    )


def _jax_port_row(
    f: Callable[[Any], Any],
    jax_port: Callable[[Any], Any],
    x_np: Any,
    ref: np.ndarray,
    ref_err: float,
    n: int,
) -> dict[str, Any]:
    """``jax.grad`` on the user's JAX version of ``f``: timed (compile apart) and checked."""
    row: dict[str, Any] = {
        "method": "ad-reverse-jax-port",
        "family": "ad",
        "status": "ok",
        "rel_error": math.nan,
        "median_s": math.nan,
        "compile_s": math.nan,
        "f_evals": 0,
        "description": "jax.grad on jax_port, the JAX version of f",
    }
    try:
        x_jax = jax.tree_util.tree_map(jnp.asarray, x_np)
        grad = jax.grad(jax_port)
        compiled, compile_s = compile_jit(grad, x_jax)
        g = compiled(x_jax)
        timing = time_call(compiled, x_jax, jit=False)
        row.update(rel_error=max(_rel_error(g, ref), ref_err), median_s=timing.median_s, compile_s=compile_s)
        ours, theirs = float(jax_port(x_jax)), float(f(x_np))
        if abs(ours - theirs) > TARGET_ERROR["float64"] * max(abs(theirs), 1.0):
            row["description"] += f"; jax_port(x) = {ours!r} but f(x) = {theirs!r}: is the port right?"
    except Exception as err:
        row["status"], row["description"] = "failed", f"{type(err).__name__}: {_first_line(err)}"
    return row


def aligned(header: Sequence[str], lines: Sequence[Sequence[str]], *, right: Sequence[int]) -> list[str]:
    """A text table's lines: columns padded to their widest cell (``right``: right-aligned), a rule
    under the header, and the last column (a free-text note) left unpadded."""
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(header[:-1])]
    out = []
    for line in [header, (*("-" * w for w in widths), "----"), *lines]:
        cells = [
            c.rjust(w) if k in right else c.ljust(w)
            for k, (c, w) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return out


def format_table(frame: pd.DataFrame) -> str:
    """The result of :func:`compare` as an aligned text table with the recommendation below."""
    err_name = "est_error" if frame.attrs.get("error_estimated") else "rel_error"
    header = ("method", "family", err_name, "median", "compile", "f_evals", "note")
    lines = []
    for row in frame.to_dict("records"):
        if row["status"] in ("ok", "reference"):
            err = f"{row['rel_error']:.1e}" if row["status"] == "ok" else "reference"
            note = (
                "<- recommended" if row["recommended"] else ("" if row["meets_target"] else "misses target")
            )
            if row["status"] == "reference":
                own = f"own est. error {row['est_error']:.1e}"
                note = f"{own}; {note}" if note else own
        else:
            err = "-"
            note = f"{row['status']}: {row['description']}"
        compile_s = _fmt_time(row["compile_s"]) if row["compile_s"] else "-"
        lines.append(
            (
                row["method"],
                row["family"],
                err,
                _fmt_time(row["median_s"]),
                compile_s,
                str(row["f_evals"]) if row["f_evals"] else "-",
                note,
            )
        )
    out = aligned(header, lines, right=(2, 3, 4, 5))
    attrs = frame.attrs
    out.append("")
    out.append(
        f"n = {attrs.get('n')}, dtype {attrs.get('dtype')}, device {attrs.get('device')}, "
        f"target rel. error {attrs.get('target_error', math.nan):.1e}"
    )
    out.append(str(attrs.get("reference_note", "")))
    out.append(f"recommended: {attrs.get('recommendation', '')}")
    return "\n".join(out)
