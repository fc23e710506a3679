"""Check a gradient against finite differences, with a tolerance from an honest error estimate.

``check_gradient(f, x, grad)`` compares the gradient ``g`` (``jax.grad(f)``, a
hand-written function or an array) with finite differences of ``f`` along a few
seeded random directions ``u``: a Richardson-extrapolated directional derivative
``D_u f(x)`` with its own error estimate (:func:`calcjax.richardson_derivative`
of ``t -> f(x + t u)``) against ``<g, u>``. The allowed discrepancy is that
estimate plus the rounding that the comparison itself cannot avoid (``x + t u``
rounded in the FD dtype, ``g`` rounded in its own dtype), times a safety factor;
no fixed atol/rtol unless the caller asks for one. The cost at default settings
does not depend on ``n``: 3 directions x 8 evaluations, ``f(x)`` once and, for a
JAX ``f``, one ``jax.jvp`` per direction, plus one gradient.

When a direction fails, the culprit is found by group testing: the failing
direction is restricted to halves of the index set -- whole pytree leaves first,
then coordinates inside a bad leaf -- and each half that still fails is split
again, so a bad coordinate costs ``O(log n)`` extra checks. ``mode="full"``
checks every coordinate instead (``2 * num_steps * n`` evaluations).

Every evaluation of ``f`` goes through one JAX-callable function made by
:func:`_prepare`: a JAX ``f`` as it is, a function JAX cannot trace through a
host callback (``traceable``, ``vectorized`` and ``workers`` are the black-box
options of the rest of calcjax).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from calcjax import _blackbox
from calcjax import _validate as v
from calcjax._estimators import DISTRIBUTIONS
from calcjax._richardson import (
    RICHARDSON_FIRST_STEP,
    RICHARDSON_RATIO,
    _neville_weights,
    richardson_derivative,
)

__all__ = ["CheckRow", "GradientCheck", "assert_gradient", "check_gradient"]

MODES = ("random", "full")

#: Default number of random directions and of Richardson step sizes per direction:
#: 3 x (2 x 4) = 24 evaluations, plus f(x) and one jvp per direction: 28 <= 30.
DEFAULT_DIRECTIONS = 3
DEFAULT_NUM_STEPS = 4

#: The allowed error is this many times the summed error estimates. Richardson's
#: estimate (the last tableau correction) is already an over-estimate on smooth
#: functions; the factor covers the cases where the correction shrinks by chance.
SAFETY = 3.0

#: Ulps of the gradient's own dtype granted to each ``|g_i u_i|`` of ``<g, u>``: the
#: rounding of ``g_i`` itself (half an ulp) and of the few operations that made it.
GRAD_ULPS = 8.0

#: At most this many culprit coordinates are isolated per bad leaf; beyond that the
#: leaf is reported as having many bad coordinates (its whole gradient is off).
MAX_CULPRITS = 8

#: Inputs narrower than this many bytes per entry (float16, bfloat16) are differenced in float32.
_MIN_FD_ITEMSIZE = 4


class CheckRow(NamedTuple):
    """One comparison of a check.

    Attributes:
      kind: ``"direction"`` (``<g, u>`` against FD along ``u``), ``"jvp"``
        (``jax.jvp(f)`` along the same ``u`` against FD), ``"leaf"`` or
        ``"coordinates"`` (the failing direction restricted to a leaf or part of
        one, while locating a bug), ``"coordinate"`` (``mode="full"`` or an
        isolated culprit), ``"f(x)"`` / ``"gradient"`` (a non-finite value).
      where: what was checked: ``"u0"``, a key path such as ``"['layer2']['b']"``,
        or a key path with an index ``"['W'][1, 2]"``.
      fd: the finite-difference value.
      fd_error: its error estimate (Richardson's, plus the rounding of ``x + t u``).
      grad: the gradient's value (``<g, u>``, or ``g_i``).
      allowed: the allowed ``|fd - grad|``.
      ratio: ``|fd - grad| / allowed``; the row passes when it is at most 1.
      passed: whether the row passes.
    """

    kind: str
    where: str
    fd: float
    fd_error: float
    grad: float
    allowed: float
    ratio: float
    passed: bool


class GradientCheck(NamedTuple):
    """The result of :func:`check_gradient`; ``str()`` gives a readable report.

    Attributes:
      passed: every row passed.
      rows: the :class:`CheckRow` of every comparison.
      culprits: where the gradient is wrong: key paths of bad leaves and, where
        isolated, of bad coordinates (empty when it passed).
      f_evals: evaluations of ``f`` (each ``jax.jvp`` counted as one), the culprit search included.
      locate_evals: of those, the evaluations the culprit search took (0 when it passed).
      grad_evals: evaluations of the gradient (1).
      dtype: the gradient's dtype.
      fd_dtype: the dtype the finite differences ran in.
      notes: anything the reader should know (a widened dtype, a skipped jvp check).
    """

    passed: bool
    rows: tuple[CheckRow, ...]
    culprits: tuple[str, ...]
    f_evals: int
    locate_evals: int
    grad_evals: int
    dtype: str
    fd_dtype: str
    notes: tuple[str, ...]

    def __str__(self) -> str:
        return format_report(self)


def format_report(res: GradientCheck, max_rows: int = 40) -> str:
    """The report of a check: verdict, culprits, notes, then a table of the rows."""
    verdict = "PASSED" if res.passed else "FAILED"
    lines = [
        f"gradient check {verdict}: {sum(r.passed for r in res.rows)}/{len(res.rows)} checks within the "
        f"allowed error; gradient {res.dtype}, finite differences {res.fd_dtype}, "
        f"{res.f_evals} f-evaluations + {res.grad_evals} gradient"
    ]
    if res.culprits:
        lines.append("culprits: " + ", ".join(res.culprits))
    lines += [f"note: {n}" for n in res.notes]
    header = ("kind", "where", "finite diff.", "FD error", "gradient", "allowed", "|diff|/allowed", "ok")
    body = [
        (
            r.kind,
            r.where,
            f"{r.fd:.6g}",
            f"{r.fd_error:.2g}",
            f"{r.grad:.6g}",
            f"{r.allowed:.2g}",
            f"{r.ratio:.3g}",
            "yes" if r.passed else "NO",
        )
        for r in res.rows
    ]
    if len(body) > max_rows:  # keep the failures, then the first of the rest
        failed = [b for b, r in zip(body, res.rows, strict=True) if not r.passed][:max_rows]
        rest = [b for b, r in zip(body, res.rows, strict=True) if r.passed][: max_rows - len(failed)]
        body = failed + rest + [("...", f"{len(res.rows) - len(failed) - len(rest)} more rows", *[""] * 6)]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    for row in (header, *body):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluation of f


def _prepare(
    stack: contextlib.ExitStack,
    f: Callable[..., Any],
    x: Any,
    *,
    traceable: bool | None,
    vectorized: bool | str,
    workers: Any,
) -> tuple[Callable[..., Any], Any, bool]:
    """``(f_jax, x_jax, traced)``: the one entry point through which every evaluation of ``f`` goes.

    A JAX ``f`` (``traceable`` is ``True``, or ``None`` and ``f`` traces) is used
    as it is. Otherwise :func:`calcjax._blackbox.prepare` wraps it into a
    JAX-callable (serial, vectorized or on workers), inside ``stack``: 64-bit
    JAX for a float64 ``x`` and ``f``'s own exceptions last as long as the check.
    """
    f_jax, x_jax, _ = stack.enter_context(
        _blackbox.prepare(f, x, traceable=traceable, vectorized=vectorized, workers=workers)
    )
    return f_jax, x_jax, not isinstance(f_jax, _blackbox.BlackBox)


# --------------------------------------------------------------------------- jitted kernels
# ``f`` enters every kernel as a ``jax.tree_util.Partial`` argument: a function bound to
# arrays (``Partial(loss, params)``) then compiles once for all its parameter values.


def _as_partial(f: Callable[..., Any]) -> Partial:
    return f if isinstance(f, Partial) else Partial(f)


@jax.jit(static_argnames=("num_steps",))
def _fd_directions(f: Partial, flat: jax.Array, unravel_like: Any, u: jax.Array, num_steps: int):
    """Richardson ``D_u f(x)`` and its error estimate for each row of ``u``."""
    _, unravel = ravel_pytree(unravel_like)
    zero = jnp.zeros((), flat.dtype)

    def along(uj: jax.Array):
        est = richardson_derivative(
            lambda t: f(unravel(flat + t * uj)).astype(flat.dtype), zero, num_steps=num_steps
        )
        return est.value, est.error

    return jax.vmap(along)(u)


@jax.jit
def _value_and_grad(f: Partial, x: Any):
    return jax.value_and_grad(f)(x)


@jax.jit
def _value(f: Partial, x: Any):
    return f(x)


@jax.jit
def _jvps(f: Partial, x: Any, tangents: Any):
    return jax.vmap(lambda t: jax.jvp(f, (x,), (t,))[1])(tangents)


def _richardson_amplification(num_steps: int) -> float:
    """``sum_k |a_k| r**k``: how much Richardson amplifies an error in each value of f (first step 1)."""
    weights = _neville_weights(num_steps, RICHARDSON_RATIO)
    return float(sum(abs(a) * RICHARDSON_RATIO**k for k, a in enumerate(weights)))


# --------------------------------------------------------------------------- inputs


class _Layout(NamedTuple):
    """Where each leaf of ``x`` lives in the flat vector."""

    paths: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    sizes: tuple[int, ...]

    def leaf_of(self, i: int) -> int:
        return int(np.searchsorted(np.asarray(self.starts), i, side="right") - 1)

    def leaf_range(self, i: int) -> tuple[int, int]:
        """The flat range of the leaf that holds coordinate ``i``."""
        k = self.leaf_of(i)
        return self.starts[k], self.starts[k] + self.sizes[k]

    def name(self, lo: int, hi: int) -> str:
        """A name for the flat range ``[lo, hi)``: leaves, one leaf, a coordinate or a slice of a leaf."""
        k, last = self.leaf_of(lo), self.leaf_of(hi - 1)
        if k != last:
            names = [f"x{p}" for p in self.paths[k : last + 1]]
            return (
                " + ".join(names)
                if len(names) <= 3
                else f"{names[0]} + ... + {names[-1]} ({len(names)} leaves)"
            )
        path, start, size, shape = "x" + self.paths[k], self.starts[k], self.sizes[k], self.shapes[k]
        if lo == start and hi == start + size:
            return path
        if hi - lo == 1:
            index = np.unravel_index(lo - start, shape)
            return f"{path}[{', '.join(str(int(i)) for i in index)}]"
        return f"{path}.ravel()[{lo - start}:{hi - start}]"


def _layout(x: Any) -> _Layout:
    with_path = jax.tree_util.tree_leaves_with_path(x)
    if not with_path:
        raise ValueError("x must hold at least one array, got an empty pytree")
    paths, shapes, sizes = [], [], []
    for path, leaf in with_path:
        name = jax.tree_util.keystr(path)
        v.check_floating_leaf(leaf, "x" + name)
        paths.append(name)
        shapes.append(tuple(np.shape(leaf)))
        sizes.append(math.prod(np.shape(leaf)))
    v.check_nonempty(x, "x")
    starts = tuple(int(s) for s in np.cumsum([0, *sizes[:-1]]))
    return _Layout(tuple(paths), tuple(shapes), starts, tuple(sizes))


def _fd_dtype(dtype: Any) -> Any:
    """float16/bfloat16 are differenced in float32: their eps (1e-3, 8e-3) leaves no digits for FD."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < _MIN_FD_ITEMSIZE else dtype


def _check_int(value: Any, name: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")


def _check_tolerance(value: Any, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number or None, got {name}={value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {name}={value!r}")


def _resolve_grad(grad: Any, f_jax: Callable[..., Any], x: Any, traced: bool) -> tuple[Any, Any]:
    """``(f(x) or None, gradient)``: ``jax.grad(f)``, ``grad(x)`` on NumPy arrays, or ``grad`` itself."""
    if grad is None:
        if not traced:
            raise ValueError(
                "grad=None takes jax.grad(f), but f is not JAX-traceable: pass the gradient to check "
                "as grad= (a function of x or an array)"
            )
        value, g = _value_and_grad(_as_partial(f_jax), x)
        return value, g
    g = grad(jax.tree_util.tree_map(np.asarray, x)) if callable(grad) else grad
    return None, g


def _grad_leaves(g: Any, x: Any, layout: _Layout) -> list[np.ndarray]:
    x_def = jax.tree_util.tree_structure(x)
    g_def = jax.tree_util.tree_structure(g)
    if g_def != x_def:
        raise ValueError(f"grad must have the structure of x: x is {x_def}, grad is {g_def}")
    leaves = []
    for path, leaf, shape in zip(layout.paths, jax.tree_util.tree_leaves(g), layout.shapes, strict=True):
        arr = np.asarray(leaf)
        if not (np.issubdtype(arr.dtype, np.floating) or str(arr.dtype) == "bfloat16"):
            raise TypeError(f"grad{path} must be floating, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"grad{path} has shape {arr.shape} but x{path} has shape {shape}")
        leaves.append(arr)
    return leaves


def _directions(num: int, n: int, distribution: str, seed: int) -> np.ndarray:
    """``num`` seeded directions of ``n`` entries, float64, largest entry 1 in magnitude."""
    rng = np.random.default_rng(seed)
    if distribution == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(num, n))
    d = rng.standard_normal((num, n))
    return d / np.max(np.abs(d), axis=1, keepdims=True)


# --------------------------------------------------------------------------- the check


class _Checker:
    """The pieces of one check: FD along any direction, ``<g, u>`` and the allowed error."""

    def __init__(self, f_jax, x_fd, g_flat, g_eps, num_steps, atol, rtol, safety):
        self.f = _as_partial(f_jax)
        self.flat, _ = ravel_pytree(x_fd)
        self.x_fd = x_fd
        self.fd_dtype = self.flat.dtype
        self.x64 = np.asarray(self.flat, np.float64)
        self.scale = np.maximum(1.0, np.abs(self.x64))
        self.g = g_flat
        self.g_eps = g_eps
        self.num_steps = num_steps
        self.atol, self.rtol, self.safety = atol, rtol, safety
        self.evals = 0
        self.locate_evals = 0
        fd_eps = float(jnp.finfo(self.fd_dtype).eps)
        # Rounding of x + t u in the FD dtype: each coordinate is off by eps * |x_i + t u_i|,
        # which moves f by up to eps * sum |g_i| |x_i + t u_i|; Richardson amplifies it.
        self.pert = fd_eps * _richardson_amplification(num_steps) / RICHARDSON_FIRST_STEP

    def directions(self, v: np.ndarray) -> np.ndarray:
        """Directions ``v`` scaled per coordinate like calcjax's steps (``max(1, |x_i|)``).

        Rounded to the FD dtype, so ``<g, u>`` is taken along exactly the direction differenced.
        """
        u = v * self.scale[None, :]
        return np.asarray(np.asarray(u, self.fd_dtype), np.float64)

    def fd(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vals, errs = _fd_directions(
            self.f, self.flat, self.x_fd, jnp.asarray(u, self.fd_dtype), num_steps=self.num_steps
        )
        self.evals += 2 * self.num_steps * u.shape[0]
        return np.asarray(vals, np.float64), np.asarray(errs, np.float64)

    def compare(
        self,
        u: np.ndarray,
        fd: np.ndarray,
        fd_err: np.ndarray,
        kind: str,
        names: Sequence[str],
        dot: np.ndarray | None = None,
    ) -> list[CheckRow]:
        """Rows comparing ``<g, u>`` (or the given ``dot``) with the FD values, in float64."""
        if dot is None:
            dot = u @ self.g
        absdot = np.abs(u) @ np.abs(self.g)
        moved = np.abs(u) * RICHARDSON_FIRST_STEP + np.abs(self.x64)[None, :] * (u != 0)
        fd_err = fd_err + self.pert * (moved @ np.abs(self.g))
        return [
            self.row(kind, name, fd[j], fd_err[j], dot[j], GRAD_ULPS * self.g_eps * absdot[j])
            for j, name in enumerate(names)
        ]

    def row(self, kind: str, where: str, fd: float, fd_err: float, grad: float, grad_err: float) -> CheckRow:
        if self.atol is None and self.rtol is None:
            allowed = self.safety * (fd_err + grad_err)
        else:
            allowed = (self.atol or 0.0) + (self.rtol or 0.0) * abs(fd)
        diff = abs(fd - grad)
        finite = math.isfinite(fd) and math.isfinite(grad) and math.isfinite(fd_err)
        if not finite:
            ratio = math.inf
        elif allowed > 0:
            ratio = diff / allowed
        else:
            ratio = 0.0 if diff == 0 else math.inf
        return CheckRow(kind, where, float(fd), float(fd_err), float(grad), float(allowed), ratio, ratio <= 1)


def _locate(chk: _Checker, u: np.ndarray, layout: _Layout, max_culprits: int) -> tuple[list, list]:
    """Group testing along the failing direction ``u``: bad leaves, then bad coordinates in them.

    A group is a flat index range. A range over several leaves is split at the
    leaf boundary nearest its middle, a range inside one leaf at its middle. Each
    level's halves are checked in one batch; halves that still fail are split
    again. A leaf with more than ``max_culprits`` failing groups at one level is
    wrong almost everywhere: it is named as such and not split further.
    """
    n = u.size
    bounds = [*layout.starts, n]
    rows: list[CheckRow] = []
    culprits: list[str] = []

    def split(lo: int, hi: int) -> list[tuple[int, int]]:
        inner = [b for b in bounds if lo < b < hi]
        mid = min(inner, key=lambda b: abs(b - (lo + hi) / 2)) if inner else (lo + hi) // 2
        return [(lo, mid), (mid, hi)]

    def kind_of(lo: int, hi: int) -> str:
        k = layout.leaf_of(lo)
        if k != layout.leaf_of(hi - 1):
            return "leaves"
        if lo == layout.starts[k] and hi == layout.starts[k] + layout.sizes[k]:
            return "leaf"
        return "coordinate" if hi - lo == 1 else "coordinates"

    if len(layout.paths) == 1:  # the one leaf already failed: name it, then split it
        culprits.append(layout.name(0, n))
        groups = split(0, n) if n > 1 else []
    else:
        groups = split(0, n)
    while groups:
        dirs = np.zeros((len(groups), n))
        for j, (lo, hi) in enumerate(groups):
            dirs[j, lo:hi] = u[lo:hi]
        # halves come in pairs: one compiled shape, (2, n), for the whole search
        pairs = [chk.fd(dirs[j : j + 2]) for j in range(0, len(groups), 2)]
        fd, err = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        level = chk.compare(dirs, fd, err, "", [layout.name(lo, hi) for lo, hi in groups])
        failing = []
        for (lo, hi), r in zip(groups, level, strict=True):
            rows.append(r._replace(kind=kind_of(lo, hi)))
            if r.passed:
                continue
            if kind_of(lo, hi) == "leaf" or hi - lo == 1:
                culprits.append(r.where)
            if hi - lo > 1:
                failing += split(lo, hi)
        per_leaf: dict[int, int] = {}
        for lo, hi in failing:
            if layout.leaf_of(lo) == layout.leaf_of(hi - 1):
                per_leaf[layout.leaf_of(lo)] = per_leaf.get(layout.leaf_of(lo), 0) + 1
        crowded = {k for k, count in per_leaf.items() if count > max_culprits}
        for k in sorted(crowded):
            culprits.append(f"x{layout.paths[k]} (wrong at more than {max_culprits} places)")
        groups = [
            (lo, hi)
            for lo, hi in failing
            if not (layout.leaf_of(lo) == layout.leaf_of(hi - 1) and layout.leaf_of(lo) in crowded)
        ]
    return rows, culprits


def check_gradient(
    f: Callable[[Any], Any],
    x: Any,
    grad: Any = None,
    *,
    directions: int = DEFAULT_DIRECTIONS,
    distribution: str = "rademacher",
    seed: int = 0,
    mode: str = "random",
    num_steps: int = DEFAULT_NUM_STEPS,
    atol: float | None = None,
    rtol: float | None = None,
    safety: float = SAFETY,
    locate: bool = True,
    max_culprits: int = MAX_CULPRITS,
    check_jvp: bool = True,
    traceable: bool | None = None,
    vectorized: bool = False,
    workers: Any = None,
) -> GradientCheck:
    """Check a gradient of a scalar function against finite differences.

    Along ``directions`` seeded random directions ``u`` (Rademacher or Gaussian
    entries, scaled by ``max(1, |x_i|)`` like calcjax's steps), a
    Richardson-extrapolated central difference of ``t -> f(x + t u)`` and its
    error estimate are compared with ``<grad, u>``. The allowed error is
    ``safety`` times that estimate plus the rounding of ``x + t u`` in the FD
    dtype and of ``grad`` in its own dtype, so float32 and float64 each get the
    tolerance they can honestly resolve. At default settings the check costs 28
    evaluations of ``f`` (24 for FD, ``f(x)``, 3 ``jax.jvp``) and one gradient,
    whatever ``n`` is.

    On a failure the culprit is located by group testing: the failing direction
    is restricted to halves of ``x`` (whole pytree leaves first, named by key
    path such as ``['layer2']['b']``, then coordinates), ``O(log n)`` extra checks
    per bad group. For a JAX ``f``, ``jax.jvp`` along the same directions is
    compared with FD too, so a wrong forward rule (``custom_jvp``) or a jvp that
    disagrees with the vjp shows up.

    Args:
      f: scalar function of ``x``: JAX code, or any Python function of NumPy
        arrays (see ``traceable``).
      x: the point: an array or a pytree of floating arrays. float16/bfloat16
        leaves are differenced in float32 (the report says so).
      grad: the gradient to check: ``None`` (``jax.grad(f)``, which checks the
        custom rules inside ``f``), a function of ``x`` (JAX or NumPy; called once,
        on NumPy arrays) or an array/pytree with ``x``'s structure and shapes.
      directions: how many random directions (>= 1).
      distribution: ``"rademacher"`` (entries +-1) or ``"gaussian"``.
      seed: seed of the directions.
      mode: ``"random"`` (directions) or ``"full"`` (every coordinate; costs
        ``2 * num_steps * n`` evaluations).
      num_steps: Richardson step sizes per direction (2 to 12).
      atol, rtol: if either is given, the allowed error is ``atol + rtol * |fd|``
        instead of the one from the error estimate.
      safety: factor on the error estimate.
      locate: on a failure, look for the culprit leaves and coordinates.
      max_culprits: coordinates isolated per bad leaf at most.
      check_jvp: for a JAX ``f``, also compare ``jax.jvp(f)`` with FD.
      traceable: ``True``: ``f`` is JAX code; ``False``: a black box evaluated
        through a host callback; ``None``: try to trace it.
      vectorized, workers: black-box evaluation options, as in the rest of calcjax.

    Returns:
      A :class:`GradientCheck`: ``passed``, ``rows``, ``culprits``, cost and notes;
      ``print`` it for the report.

    Raises:
      TypeError: a leaf of ``x`` or of ``grad`` is not floating (an integer ``x``).
      ValueError: ``f`` is not scalar; ``grad`` has another structure or a leaf
        another shape (both named); ``directions``, ``num_steps``, ``mode`` or
        ``distribution`` is invalid. A non-finite ``f(x)``, FD value or gradient
        is a failure naming where, never a pass.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda w: jnp.sum(jnp.sin(w) * w)
      >>> good = lambda w: jnp.sin(w) + w * jnp.cos(w)
      >>> calcjax.check_gradient(f, jnp.linspace(0.0, 1.0, 5), good).passed
      True
      >>> bad = lambda w: good(w).at[3].multiply(-1.0)  # a sign flip on one coordinate
      >>> res = calcjax.check_gradient(f, jnp.linspace(0.0, 1.0, 5), bad)
      >>> res.passed, res.culprits
      (False, ('x', 'x[3]'))
    """
    _check_int(directions, "directions")
    _check_int(max_culprits, "max_culprits")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 2 <= num_steps <= 12:
        raise ValueError(f"num_steps must be an integer from 2 to 12, got num_steps={num_steps!r}")
    v.check_choice(mode, MODES, "mode")
    v.check_choice(distribution, DISTRIBUTIONS, "distribution")
    _check_tolerance(atol, "atol")
    _check_tolerance(rtol, "rtol")
    _check_tolerance(safety, "safety")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer, got seed={seed!r}")

    layout = _layout(x)
    x = jax.tree_util.tree_map(jnp.asarray, x)
    dtypes = [leaf.dtype for leaf in jax.tree_util.tree_leaves(x)]
    notes: list[str] = []
    x_fd = jax.tree_util.tree_map(lambda a: a.astype(_fd_dtype(a.dtype)), x)
    narrow = sorted({str(d) for d in dtypes if _fd_dtype(d) != d})
    if narrow:
        notes.append(
            f"x is {'/'.join(narrow)}: finite differences ran in float32 (its eps leaves no digits for "
            "a difference quotient); the gradient is checked in its own dtype"
        )

    with contextlib.ExitStack() as stack:  # a black box is evaluated inside _blackbox.prepare
        f_jax, x_fd, traced = _prepare(
            stack, f, x_fd, traceable=traceable, vectorized=vectorized, workers=workers
        )
        if traced:
            v.check_scalar_function(f_jax, x)
        fp = _as_partial(f_jax)

        value, g = _resolve_grad(grad, f_jax, x, traced)
        g_leaves = _grad_leaves(g, x, layout)
        g_eps = max(float(jnp.finfo(a.dtype).eps) for a in g_leaves)
        g_name = str(jnp.result_type(*[a.dtype for a in g_leaves]))
        g_flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in g_leaves])

        chk = _Checker(f_jax, x_fd, g_flat, g_eps, num_steps, atol, rtol, safety)
        rows: list[CheckRow] = []
        culprits: list[str] = []

        if value is None:
            value = _value(fp, x_fd)
        chk.evals += 1
        value = float(np.asarray(value, np.float64))
        if not math.isfinite(value):
            rows.append(CheckRow("f(x)", "x", value, math.nan, math.nan, math.nan, math.inf, False))
            culprits.append(f"f(x) = {value}")
        bad_g = np.flatnonzero(~np.isfinite(g_flat))
        for i in bad_g[:max_culprits]:
            where = layout.name(int(i), int(i) + 1)
            rows.append(
                CheckRow("gradient", where, math.nan, math.nan, float(g_flat[i]), math.nan, math.inf, False)
            )
            culprits.append(where)
        if bad_g.size > max_culprits:
            culprits.append(f"... {bad_g.size - max_culprits} more non-finite gradient entries")

        if mode == "full":
            full = _full(chk, layout)
            rows += full
            bad = [i for i, r in enumerate(full) if not r.passed]
            culprits += [layout.name(*layout.leaf_range(i)) for i in bad]
            culprits += [full[i].where for i in bad][: max_culprits * len(layout.paths)]
            return _result(rows, culprits, chk, g_name, notes)

        vdirs = _directions(directions, layout.starts[-1] + layout.sizes[-1], distribution, int(seed))
        u = chk.directions(vdirs)
        fd, err = chk.fd(u)
        dir_rows = chk.compare(u, fd, err, "direction", [f"u{j}" for j in range(directions)])
        rows += dir_rows

        if traced and check_jvp:
            jvp_rows = _jvp_rows(chk, fp, x, u, fd, err, notes)
            rows += jvp_rows
            if jvp_rows and all(r.passed for r in dir_rows) and not all(r.passed for r in jvp_rows):
                notes.append(
                    "jax.jvp disagrees with finite differences while the gradient agrees: "
                    "f's forward rule (a custom_jvp, or a jvp that does not match the vjp) is wrong"
                )

        failed = [j for j, r in enumerate(dir_rows) if not r.passed and math.isfinite(r.fd)]
        if failed and locate and bad_g.size == 0:
            before = chk.evals
            worst = max(failed, key=lambda j: dir_rows[j].ratio)
            loc_rows, loc_culprits = _locate(chk, u[worst], layout, max_culprits)
            chk.locate_evals = chk.evals - before
            rows += loc_rows
            culprits += loc_culprits
            if not loc_culprits:
                culprits.append("the whole gradient (no smaller part fails on its own)")
        elif any(not math.isfinite(r.fd) for r in dir_rows):
            culprits.append("f is not finite near x (a finite-difference value is NaN or inf)")
        return _result(rows, culprits, chk, g_name, notes)


def _jvp_rows(chk: _Checker, fp: Partial, x: Any, u: np.ndarray, fd, err, notes: list) -> list[CheckRow]:
    """``jax.jvp(f)`` along each direction against the FD values (a custom_vjp has no jvp: a note)."""
    flat, unravel = ravel_pytree(x)
    tangents = jax.vmap(unravel)(jnp.asarray(u, flat.dtype))
    try:
        jvps = np.asarray(_jvps(fp, x, tangents), np.float64)
    except TypeError as e:
        if "custom_vjp" not in str(e):
            raise
        notes.append("jvp check skipped: f has a custom_vjp rule, so forward mode is not defined")
        return []
    chk.evals += u.shape[0]
    return chk.compare(u, fd, err, "jvp", [f"u{j}" for j in range(u.shape[0])], dot=jvps)


def _full(chk: _Checker, layout: _Layout, batch: int = 64) -> list[CheckRow]:
    """Every coordinate: Richardson along each unit direction (scaled by ``max(1, |x_i|)``)."""
    n = chk.g.size
    rows = []
    for lo in range(0, n, batch):
        idx = np.arange(lo, min(lo + batch, n))
        u = np.zeros((idx.size, n))
        u[np.arange(idx.size), idx] = chk.scale[idx]
        fd, err = chk.fd(u)
        names = [layout.name(int(i), int(i) + 1) for i in idx]
        for r, i in zip(chk.compare(u, fd, err, "coordinate", names), idx, strict=True):
            s = chk.scale[i]
            rows.append(
                r._replace(fd=r.fd / s, fd_error=r.fd_error / s, grad=r.grad / s, allowed=r.allowed / s)
            )
    return rows


def _result(rows, culprits, chk, g_name, notes) -> GradientCheck:
    passed = all(r.passed for r in rows)
    return GradientCheck(
        passed,
        tuple(rows),
        tuple(dict.fromkeys(culprits)) if not passed else (),
        chk.evals,
        chk.locate_evals,
        1,
        g_name,
        str(jnp.dtype(chk.fd_dtype)),
        tuple(notes),
    )


def assert_gradient(f: Callable[[Any], Any], x: Any, grad: Any = None, **options: Any) -> GradientCheck:
    """:func:`check_gradient`, raising ``AssertionError`` with the report when the check fails.

    For a user's pytest: ``calcjax.assert_gradient(loss, params, my_grad)``.
    Takes the same arguments; returns the result when it passes.

    Raises:
      AssertionError: the gradient does not match finite differences (the report,
        with the culprits, is the message).

    Example:
      >>> import jax.numpy as jnp
      >>> _ = calcjax.assert_gradient(lambda w: jnp.sum(w**3), jnp.ones(3), lambda w: 3 * w**2)
      >>> calcjax.assert_gradient(lambda w: jnp.sum(w**3), jnp.ones(3), lambda w: 2 * w**2)
      Traceback (most recent call last):
      ...
      AssertionError: gradient check FAILED: ...
    """
    res = check_gradient(f, x, grad, **options)
    if not res.passed:
        raise AssertionError(str(res))
    return res
