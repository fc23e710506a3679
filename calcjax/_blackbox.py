"""Finite differences of functions JAX cannot trace: NumPy, SciPy, simulators, external programs.

A non-JAX ``f`` is wrapped into a JAX function (:class:`BlackBox`) whose value is
computed on the host by ``jax.pure_callback``. Every finite-difference routine
of calcjax then runs unchanged on it -- schemes, orders, automatic steps,
Richardson, pytrees, ``gradient_descent`` -- and so does anything later written
on the same entry (:func:`prepare`, or the decorator :func:`accepts_blackbox`
that adds the options ``traceable``, ``vectorized`` and ``workers`` to a public
function whose first parameters are ``(f, x)``). A routine may also give the
decorator a ``host`` implementation, the same computation on NumPy arrays with
no XLA program around the evaluations (:func:`calcjax.gradient` does: an XLA
program adds a fixed cost per call, larger after a long callback, which a cheap
``f`` at small n feels; ``bench/nonjax_targets.py`` measures it).

Two host paths evaluate ``f``:

* the points of a coordinate-wise stencil (``f(x + c*h_i*e_i)`` for every
  coordinate ``i``, what :func:`calcjax.gradient` and
  :func:`calcjax.richardson_gradient` need) are recognised from ``f``'s jaxpr
  (:func:`coordinate_values`) and reach the host as ``x`` once plus the moved
  coordinate values: one buffer is perturbed in place and restored, so no copy
  of ``x`` is made per point, and worker processes receive ``x`` once per chunk;
* any other batch of points (:func:`calcjax.derivative`, a directional
  derivative, ``f(x)`` itself) reaches the host as an array of points, one row
  per point, and ``f`` is called on views of those rows.

Either way ``f`` is evaluated serially (once per point), ``vectorized`` (once per
chunk of points stacked on a leading axis, or on a trailing axis as
``scipy.differentiate`` does) or by ``workers`` (a process pool, any map-like
``workers(fn, iterable)``, or a Dask client), with the same engine, so serial
and parallel results are the same bit for bit.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import contextlib
import functools
import inspect
import itertools
import math
import multiprocessing
import multiprocessing.pool
import os
import pickle
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from calcjax import _validate as v
from calcjax._domain import array_module, deferred_reports, tracing_call

__all__ = [
    "BlackBox",
    "NotDifferentiableError",
    "accepts_blackbox",
    "coordinate_values",
    "prepare",
    "shutdown_workers",
    "trace_failure",
]

#: A progress bar (or, when stderr is not a terminal, a plain line) appears once the
#: evaluations of one call have taken this long.
PROGRESS_DELAY_S = 3.0
#: Seconds between two plain progress lines.
PLAIN_LINE_S = 10.0
#: Bytes of points one call of a vectorized ``f`` receives when the chunk is fixed (workers, or
#: a stencil too short to tune on): a batch that stays in a core's L2 cache (at n = 1000 in
#: float64, 32 coordinates of a central stencil, 64 points).
VECTOR_BUDGET_BYTES = 512 * 2**10
#: The automatic chunk of a vectorized ``f`` is tuned from :data:`TUNE_START_POINTS` points up to
#: :data:`TUNE_MAX_BYTES` of points (:class:`_ChunkTuner`): which batch is fastest depends on
#: ``f`` (a matrix product wants hundreds of points; elementwise work on temporaries larger
#: than the points, as logistic regression's margins at small n, a few dozen). ``f``'s own
#: temporaries grow with the chunk, so the top is 4x :data:`VECTOR_BUDGET_BYTES`, not more.
TUNE_START_POINTS = 16
TUNE_MAX_BYTES = 2 * 2**20
#: A tried chunk size this much slower per point than the best so far ends the search.
TUNE_WORSE = 1.10
#: Chunks timed per size (the fastest counts).
TUNE_SAMPLES = 3
#: Chunks of points per worker, so that a slow worker does not hold the others up.
CHUNKS_PER_WORKER = 4
#: Progress is updated every this many evaluations of a serial loop (every this many
#: coordinates in the fast loop).
_TICK = 64
_TICK_ROWS = 256
_CACHE_SIZE = 64

#: What JAX raises when a function needs concrete values (``np.asarray(x)``, ``float(x)``, ``if x > 0``).
_TRACE_ERRORS = (jax.errors.JAXTypeError, jax.errors.JAXIndexError)

_OPTIONS_DOC = """
    Functions JAX cannot trace (NumPy, SciPy, a simulator) are accepted too: ``f``
    is then evaluated outside JAX and the results are NumPy arrays in ``x``'s
    dtype. Options for such an ``f``:

      traceable: ``None`` (default) traces ``f`` once and evaluates it outside
        JAX when tracing fails; ``False``: ``f`` is a function of NumPy arrays;
        ``True``: ``f`` must be a JAX function.
      vectorized: ``False``; ``True`` or ``"leading"``: ``f`` takes a batch of
        points stacked on a leading axis, ``(k, *x.shape) -> (k,)``;
        ``"trailing"``: stacked on a trailing axis as ``scipy.differentiate``
        passes them, ``(*x.shape, k) -> (k,)``.
      workers: ``None`` (serial); an int (a process pool of that many workers,
        started on first use and reused); a map-like ``workers(fn, iterable)``
        (``multiprocessing.Pool.map``, ``Executor.map``); a
        ``concurrent.futures.Executor``, a ``multiprocessing`` pool or a
        ``dask.distributed.Client``.
"""


class NotDifferentiableError(TypeError):
    """Autodiff was asked to differentiate a function JAX cannot trace."""


class _LRU:
    """A small least-recently-used cache; unhashable keys are simply not cached."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        try:
            hash(key)
        except TypeError:
            return make()
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = make()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


_REASONS = _LRU(_CACHE_SIZE)
_BOXES = _LRU(_CACHE_SIZE)


# --------------------------------------------------------------------------- detection


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    import calcjax

    dirs = {os.path.dirname(mod.__file__) for mod in (jax, np, calcjax) if getattr(mod, "__file__", None)}
    dirs.update(p for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_path(key)))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


def _where(err: BaseException) -> str:
    """``file:line`` of the innermost frame of ``err`` in the user's code (else outside JAX and calcjax)."""
    frames = traceback.extract_tb(err.__traceback__)
    libs = _library_dirs()
    own = tuple(d for d in libs if os.path.basename(os.path.dirname(d)) in ("jax", "jaxlib", "calcjax"))
    real = lambda fr: os.path.realpath(fr.filename)
    user = [fr for fr in frames if not real(fr).startswith(libs)]
    outside = [fr for fr in frames if not real(fr).startswith(own)]
    chosen = (user or outside or frames or [None])[-1]
    if chosen is None:
        return "an unknown place"
    name = chosen.filename
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(name)
        name = name if rel.startswith("..") else rel
    return f"{name}:{chosen.lineno}"


def _struct(leaf: Any) -> jax.ShapeDtypeStruct:
    dtype = np.result_type(leaf) if not hasattr(leaf, "dtype") else np.dtype(leaf.dtype)
    if dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        dtype = np.dtype(np.float32)  # traceability does not depend on the width; no x64 warning
    return jax.ShapeDtypeStruct(np.shape(leaf), dtype)


def trace_failure(f: Callable[..., Any], x: Any) -> str | None:
    """Why JAX cannot trace ``f`` at ``x``'s shapes (``"<error> at file:line"``), or ``None`` if it can.

    ``f`` is traced once with :func:`jax.eval_shape` (nothing is computed). A
    tracer-conversion or concretization error (``np.asarray(x)``, ``float(x)``,
    ``if x > 0``) means ``f`` must be evaluated outside JAX. Any other error
    while tracing (a compiled library rejecting a tracer, say) is checked by
    calling ``f`` once at ``x`` with NumPy arrays: if that works, ``f`` is a
    black box; if it fails too, that error is raised. The answer is cached per
    ``f`` and shapes.
    """
    leaves, treedef = jax.tree_util.tree_flatten(x)
    key = (f, treedef, tuple((np.shape(a), getattr(a, "dtype", type(a))) for a in leaves))

    def find() -> str | None:
        try:
            jax.eval_shape(f, jax.tree_util.tree_unflatten(treedef, [_struct(a) for a in leaves]))
        except _TRACE_ERRORS as err:
            return f"{type(err).__name__} at {_where(err)}"
        except Exception as err:  # not a tracer error: does f run on NumPy arrays?
            reason = f"{type(err).__name__} at {_where(err)}"
            f(jax.tree_util.tree_map(np.asarray, x))
            return reason
        return None

    return _REASONS.get(key, find)


# --------------------------------------------------------------------------- errors of f


class _FError(Exception):
    """An exception of ``f`` at one point (``index``), carried from the callback or a worker."""

    def __init__(self, index: int | None, error: BaseException, where: str = "", remote_tb: str = "") -> None:
        super().__init__(index, error, where, remote_tb)
        self.index, self.error, self.where, self.remote_tb = index, error, where, remote_tb

    def __reduce__(self) -> Any:
        return (_FError, (self.index, self.error, self.where, self.remote_tb))

    def portable(self) -> _FError:
        """A copy that pickles (for a worker's answer): the traceback as text, the error if it pickles."""
        tb = "".join(traceback.format_exception(self.error))
        error = self.error
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            error = RuntimeError(f"{type(error).__name__}: {error}")
        return _FError(self.index, error, self.where, tb)


def _point_error(index: int, err: BaseException, where: str = "") -> _FError:
    return _FError(index, err, where)


# --------------------------------------------------------------------------- the host engines


class _Leaf(NamedTuple):
    """Where a leaf of ``f``'s argument lives in the flat vector ``x``."""

    start: int
    size: int
    shape: tuple[int, ...]
    dtype: str


class _Spec(NamedTuple):
    """How the flat vector ``x`` becomes ``f``'s argument: its structure and leaves."""

    treedef: Any
    leaves: tuple[_Leaf, ...]


def _as_values(vals: list[Any], dtype: Any, first: int) -> np.ndarray:
    """``f``'s outputs as one array in ``dtype``; errors name the first bad output's evaluation."""
    try:
        out = np.asarray(vals)
    except (TypeError, ValueError):
        out = np.asarray(vals, dtype=object)
    if out.shape == (len(vals),) and out.dtype.kind in "fiub":
        return out.astype(dtype, copy=False)
    for k, val in enumerate(vals):
        arr = np.asarray(val)
        if arr.shape != ():
            raise _point_error(
                first + k,
                ValueError(
                    f"f must return a scalar, got an output of shape {arr.shape}; "
                    "reduce it (e.g. np.sum) or differentiate one output at a time"
                ),
            )
        if arr.dtype.kind not in "fiub":
            raise _point_error(
                first + k,
                TypeError(
                    f"f must return a real number, got {type(val).__name__} {val!r} (dtype {arr.dtype})"
                ),
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _views(buf: np.ndarray, spec: _Spec, batch_axis: int | None) -> Any:
    """``f``'s argument as read-only views of ``buf`` (flat points; batch axis 0, -1 or none)."""
    leaves = []
    for leaf in spec.leaves:
        if batch_axis is None:
            part = buf[leaf.start : leaf.start + leaf.size].reshape(leaf.shape)
        elif batch_axis == 0:
            part = buf[:, leaf.start : leaf.start + leaf.size].reshape((buf.shape[0], *leaf.shape))
        else:
            part = buf[leaf.start : leaf.start + leaf.size, :].reshape((*leaf.shape, buf.shape[1]))
        part = part.astype(leaf.dtype) if part.dtype != np.dtype(leaf.dtype) else part.view()
        part.flags.writeable = False
        leaves.append(part)
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def _mixed(spec: _Spec, dtype: Any) -> bool:
    return any(np.dtype(leaf.dtype) != np.dtype(dtype) for leaf in spec.leaves)


def _check_batch_out(out: Any, k: int, shape: tuple[int, ...], first: int) -> np.ndarray:
    arr = np.asarray(out)
    if arr.shape != (k,):
        raise _point_error(
            first,
            ValueError(
                f"with vectorized=True, f must return one value per point: shape ({k},) for a batch "
                f"of shape {shape}, got an output of shape {arr.shape}"
            ),
        )
    if arr.dtype.kind not in "fiub":
        raise _point_error(first, TypeError(f"f must return real numbers, got dtype {arr.dtype}"))
    return arr


def vector_chunk(n: int, points: int, itemsize: int) -> int:
    """Coordinates per call of a vectorized ``f`` by default: their ``points`` perturbed points
    each (the stencil's) fill :data:`VECTOR_BUDGET_BYTES`."""
    from calcjax._finite_diff import auto_batch_size

    return auto_batch_size(n, points, itemsize, budget_bytes=VECTOR_BUDGET_BYTES)


class _ChunkTuner:
    """The chunk (points per call) of a vectorized ``f``, chosen by measuring ``f``.

    Chunks are sized :data:`TUNE_START_POINTS` points, then twice that, and so
    on up to ``TUNE_MAX_BYTES`` of points or all ``total`` points of a call;
    each size is timed on :data:`TUNE_SAMPLES` chunks (``f``'s call alone, per
    point, the fastest sample: this machine's load only ever adds time), and
    the search stops when two sizes in a row are :data:`TUNE_WORSE` slower than
    the best (one slow size may be a noisy one). The rest of the gradient, and
    every later call with the same ``f``, size and dtype, uses the fastest. Every
    tried chunk is real work: nothing is evaluated twice. The very first chunk
    (first-touch of the buffers) is not a sample. The search continues over
    calls until it ends.
    """

    def __init__(self, n: int, itemsize: int, total: int | None = None) -> None:
        point = max(1, n * itemsize)
        top = max(1, min(TUNE_MAX_BYTES // point, total or TUNE_MAX_BYTES))
        size = min(TUNE_START_POINTS, top)
        self.sizes = [size]
        while self.sizes[-1] * 2 <= top:
            self.sizes.append(self.sizes[-1] * 2)
        self.samples: dict[int, list[float]] = {}
        self.warm = False
        self.spare: np.ndarray | None = None
        self.lock = threading.Lock()
        self.best: int | None = None if len(self.sizes) > 1 else self.sizes[0]

    @property
    def largest(self) -> int:
        return self.sizes[-1] if self.best is None else self.best

    def take(self, x: np.ndarray, size: int, leading: bool) -> np.ndarray:
        """``size`` copies of ``x`` (points on axis 0, or -1 for the trailing layout), in the buffer
        kept from the last call when it is free (a fresh buffer of megabytes costs page faults on
        every call, as much as a cheap ``f`` itself); at most :data:`TUNE_MAX_BYTES` are kept."""
        with self.lock:
            buf, self.spare = self.spare, None
        axis = 0 if leading else 1
        if buf is None or buf.shape[axis] < size or buf.shape[1 - axis] != x.size:
            buf = np.empty((self.largest, x.size) if leading else (x.size, self.largest), x.dtype)
        part = buf[:size] if leading else buf[:, :size]
        part[...] = x[None, :] if leading else x[:, None]
        return part

    def give(self, buf: np.ndarray) -> None:
        with self.lock:
            self.spare = buf.base if buf.base is not None else buf

    def next(self) -> int:
        if self.best is not None:
            return self.best
        done = [k for k, t in self.samples.items() if len(t) >= TUNE_SAMPLES]
        return self.sizes[len(done)]

    def report(self, k: int, seconds: float) -> None:
        if self.best is not None or k != self.next():
            return  # settled, or a last partial chunk: not a fair measurement
        if not self.warm:
            self.warm = True
            return
        self.samples.setdefault(k, []).append(seconds / k)
        if len(self.samples[k]) < TUNE_SAMPLES:
            return
        per_point = {size: min(t) for size, t in self.samples.items()}
        fastest = min(per_point, key=per_point.__getitem__)
        tried = sorted(per_point)
        slower = [per_point[size] > TUNE_WORSE * per_point[fastest] for size in tried[-2:]]
        if len(per_point) == len(self.sizes) or (len(slower) == 2 and all(slower)):
            self.best = fastest


def _eval_coords_serial(
    f: Callable[..., Any],
    x: np.ndarray,
    moved: np.ndarray,
    lo: int,
    spec: _Spec,
    first: int,
    tick: Callable[[int], None] | None,
) -> np.ndarray:
    """The serial loop of :func:`_eval_coords`: ``f`` once per point, in the points' order.

    The loop is the hot path of a black-box gradient, so it does as little
    Python as it can per point: one store into a ``memoryview`` of the buffer
    (Python floats in, no NumPy scalar made), one call, one append; the
    coordinate is restored from a Python float after its points. Leaves of
    another dtype than ``x`` get fresh views per point (their cast copies).
    """
    rows, m = moved.shape
    dtype = x.dtype
    buf = np.array(x)
    arg = _views(buf, spec, None)
    vals: list[Any] = []
    append = vals.append
    if _mixed(spec, dtype) or dtype not in (np.float32, np.float64):
        try:
            for r, row in enumerate(moved.tolist()):
                i = lo + r
                old = buf[i]
                for value in row:
                    buf[i] = value
                    append(f(_views(buf, spec, None)))
                buf[i] = old
                if tick is not None and (r + 1) % _TICK == 0:
                    tick(_TICK * m)
        except Exception as err:
            raise _point_error(first + len(vals), err) from None
        if tick is not None:
            tick((rows % _TICK) * m)
        return _as_values(vals, dtype, first).reshape(rows, m)
    mv = memoryview(buf)  # stores a Python float exactly (float32: the value is one already)
    orig = x[lo : lo + rows].tolist()
    cols = [moved[:, j].tolist() for j in range(m)]
    try:
        for start in range(0, rows, _TICK_ROWS):
            stop = min(rows, start + _TICK_ROWS)
            if m == 2:  # central differences: the common case, unrolled
                plus, minus = cols
                for r in range(start, stop):
                    i = lo + r
                    mv[i] = plus[r]
                    append(f(arg))
                    mv[i] = minus[r]
                    append(f(arg))
                    mv[i] = orig[r]
            else:
                for r in range(start, stop):
                    i = lo + r
                    for col in cols:
                        mv[i] = col[r]
                        append(f(arg))
                    mv[i] = orig[r]
            if tick is not None:
                tick((stop - start) * m)
    except Exception as err:
        raise _point_error(first + len(vals), err) from None
    return _as_values(vals, dtype, first).reshape(rows, m)


def _eval_coords(
    f: Callable[..., Any],
    x: np.ndarray,
    moved: np.ndarray,
    lo: int,
    spec: _Spec,
    layout: str | None,
    chunk: int | _ChunkTuner,
    tick: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``F[r, j] = f(x with coordinate lo + r set to moved[r, j])``, one buffer perturbed in place.

    Serial (``layout`` None): ``f`` is called once per point on read-only views
    of one copy of ``x``; the coordinate is restored bit for bit after its
    points. Vectorized: ``chunk`` points at a time (or as many as a
    :class:`_ChunkTuner` says, call by call), stacked on the leading or
    trailing axis of one reused buffer whose rows hold ``x`` (only the moved
    entries are written and restored).
    """
    rows, m = moved.shape
    dtype = x.dtype
    if rows == 0:
        return np.empty((0, m), dtype)
    first = lo * m
    if layout is None:
        return _eval_coords_serial(f, x, moved, lo, spec, first, tick)
    total = rows * m
    tuner = chunk if isinstance(chunk, _ChunkTuner) else None
    size = max(1, min(tuner.largest if tuner is not None else chunk, total))
    leading = layout == "leading"
    if tuner is None:
        buf = np.repeat(x[None, :], size, axis=0) if leading else np.repeat(x[:, None], size, axis=1)
        return _fill_chunks(f, x, moved, lo, spec, leading, buf, size, None, tick)
    buf = tuner.take(x, size, leading)
    try:
        return _fill_chunks(f, x, moved, lo, spec, leading, buf, size, tuner, tick)
    finally:
        tuner.give(buf)


def _fill_chunks(
    f: Callable[..., Any],
    x: np.ndarray,
    moved: np.ndarray,
    lo: int,
    spec: _Spec,
    leading: bool,
    buf: np.ndarray,
    size: int,
    tuner: _ChunkTuner | None,
    tick: Callable[[int], None] | None,
) -> np.ndarray:
    """The chunk loop of a vectorized :func:`_eval_coords`; ``buf`` holds ``x`` in ``size`` rows."""
    rows, m = moved.shape
    dtype, total, first = x.dtype, rows * m, lo * m
    values = moved.reshape(-1)  # point p moves coordinate lo + p // m to values[p]
    coords = lo + np.arange(total) // m
    slots = np.arange(size)
    out = np.empty(total, dtype)
    start = 0
    while start < total:
        k = min(tuner.next() if tuner is not None else size, size, total - start)
        q, c = slots[:k], coords[start : start + k]
        if leading:  # one fancy-indexed store per chunk, not one per point
            buf[q, c] = values[start : start + k]
        else:
            buf[c, q] = values[start : start + k]
        view = buf[:k] if leading else buf[:, :k]
        try:
            began = time.perf_counter()
            res = f(_views(view, spec, 0 if leading else -1))
            took = time.perf_counter() - began
        except Exception as err:
            raise _point_error(first + start, err, f"in the batch of evaluations {first + start}..") from None
        out[start : start + k] = _check_batch_out(res, k, view.shape, first + start)
        if tuner is not None:
            tuner.report(k, took)
        if leading:
            buf[q, c] = x[c]
        else:
            buf[c, q] = x[c]
        if tick is not None:
            tick(k)
        start += k
    return out.reshape(rows, m)


def _eval_rows(
    f: Callable[..., Any],
    rows: list[np.ndarray],
    treedef: Any,
    dtype: Any,
    layout: str | None,
    chunk: int,
    first: int = 0,
    tick: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``f`` at each point of ``rows`` (one array per leaf, points on axis 0), on views of the rows."""
    k = rows[0].shape[0]
    if layout is None:
        single = treedef.num_leaves == 1 and treedef == jax.tree_util.tree_structure(0)
        points: Iterable[Any] = (
            iter(rows[0])
            if single
            else (jax.tree_util.tree_unflatten(treedef, [r[j] for r in rows]) for j in range(k))
        )
        vals: list[Any] = []
        try:
            for p in points:
                vals.append(f(p))
        except Exception as err:
            raise _point_error(first + len(vals), err) from None
        if tick is not None:
            tick(k)
        return _as_values(vals, dtype, first)
    out = np.empty(k, dtype)
    chunk = max(1, chunk)
    for start in range(0, k, chunk):
        part = [r[start : start + chunk] for r in rows]
        n_here = part[0].shape[0]
        if layout == "trailing":
            part = [np.ascontiguousarray(np.moveaxis(p, 0, -1)) for p in part]
        try:
            res = f(jax.tree_util.tree_unflatten(treedef, part))
        except Exception as err:
            raise _point_error(first + start, err, f"in the batch of evaluations {first + start}..") from None
        out[start : start + n_here] = _check_batch_out(res, n_here, part[0].shape, first + start)
        if tick is not None:
            tick(n_here)
    return out


def _load_f(f: Any) -> Callable[..., Any]:
    if not isinstance(f, bytes):
        return f
    try:
        return pickle.loads(f)
    except Exception as err:
        raise RuntimeError(
            f"a worker process could not load f ({type(err).__name__}: {err}); {_PICKLE_ADVICE}"
        ) from None


def _task(payload: tuple[Any, ...]) -> np.ndarray:
    """One chunk of evaluations in a worker: ``("coords", f, ...)`` or ``("rows", f, ...)``."""
    kind, f, *args = payload
    f = _load_f(f)
    try:
        if kind == "coords":
            return _eval_coords(f, *args)
        return _eval_rows(f, *args)
    except _FError as err:
        raise err.portable() from None


# --------------------------------------------------------------------------- workers

_PICKLE_ADVICE = (
    "define f at module level in an importable file (not a lambda, a closure or a function typed "
    "in an interactive session; a script needs `if __name__ == '__main__':` around its calls), "
    "or pass workers=<dask.distributed.Client>, which sends functions with cloudpickle"
)

_POOLS: dict[int, cf.ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(n: int) -> cf.ProcessPoolExecutor:
    """The process pool of ``n`` workers, started on first use and reused (``spawn``: no fork of JAX)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
            _POOLS[n] = pool
        return pool


def _discard_pool(n: int) -> None:
    with _POOLS_LOCK:
        pool = _POOLS.pop(n, None)
    if pool is None:
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(timeout=5)


def shutdown_workers() -> None:
    """Stop the process pools calcjax started for ``workers=<int>`` (also done at exit)."""
    for n in list(_POOLS):
        with _POOLS_LOCK:
            pool = _POOLS.pop(n, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_workers)


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and all(
        hasattr(obj, name) for name in ("map", "gather", "cancel", "nthreads")
    )


class _Runner:
    """Runs chunks of evaluations somewhere: ``map(payloads)`` yields results in order."""

    count: int
    pickle_f: bool = False

    def map(self, payloads: list[tuple[Any, ...]]) -> Iterator[np.ndarray]:  # pragma: no cover
        raise NotImplementedError


class _PoolRunner(_Runner):
    pickle_f = True

    def __init__(self, n: int) -> None:
        self.count = n

    def map(self, payloads: list[tuple[Any, ...]]) -> Iterator[np.ndarray]:
        from concurrent.futures.process import BrokenProcessPool

        pool = _pool(self.count)
        futures = []
        try:
            futures = [pool.submit(_task, p) for p in payloads]
            for fut in futures:
                yield fut.result()
        except BrokenProcessPool as err:
            _discard_pool(self.count)
            raise RuntimeError(
                f"a worker process of the pool (workers={self.count}) died while evaluating f ({err}); "
                "the pool was shut down, the next call starts a new one"
            ) from None
        except BaseException:
            for fut in futures:
                fut.cancel()
            if not all(fut.done() for fut in futures):  # interrupted: do not leave work running
                _discard_pool(self.count)
            raise


class _DaskRunner(_Runner):
    def __init__(self, client: Any) -> None:
        self.client = client
        self.count = max(1, sum(client.nthreads().values()))

    def map(self, payloads: list[tuple[Any, ...]]) -> Iterator[np.ndarray]:
        futures = self.client.map(_task, payloads, pure=False)
        try:
            for fut in futures:
                yield fut.result()
        except BaseException:
            self.client.cancel(futures)
            raise


class _MapRunner(_Runner):
    def __init__(self, mapper: Callable[..., Iterable[Any]]) -> None:
        self.mapper = mapper
        self.count = os.cpu_count() or 1

    def map(self, payloads: list[tuple[Any, ...]]) -> Iterator[np.ndarray]:
        yield from self.mapper(_task, payloads)


def _runner(workers: Any) -> _Runner | None:
    """The runner for a ``workers`` option (checked by :func:`check_workers`)."""
    if workers is None:
        return None
    if isinstance(workers, int | np.integer):
        return _PoolRunner(int(workers))
    if _is_dask_client(workers):
        return _DaskRunner(workers)
    if isinstance(workers, cf.Executor | multiprocessing.pool.Pool):
        return _MapRunner(workers.map)
    return _MapRunner(workers)


def check_workers(workers: Any) -> None:
    """``TypeError``/``ValueError`` unless ``workers`` is None, an int >= 1 or something map-like."""
    if workers is None:
        return
    if isinstance(workers, bool):
        raise TypeError(f"workers must be None, an int or a map-like callable, got {workers!r}")
    if isinstance(workers, int | np.integer):
        if workers <= 0:
            raise ValueError(f"workers must be at least 1 (the number of processes), got workers={workers}")
        return
    if _is_dask_client(workers) or isinstance(workers, cf.Executor | multiprocessing.pool.Pool):
        return
    if callable(workers):
        return
    raise TypeError(
        "workers must be None (serial), an int (a process pool of that many workers), a map-like "
        "callable workers(fn, iterable) such as multiprocessing.Pool.map or Executor.map, a "
        "concurrent.futures.Executor, a multiprocessing pool or a dask.distributed.Client; "
        f"got {type(workers).__name__} {workers!r}"
    )


def check_vectorized(vectorized: Any) -> str | None:
    """The batch layout of a ``vectorized`` option: ``None``, ``"leading"`` or ``"trailing"``."""
    if vectorized is False:
        return None
    if vectorized is True or vectorized == "leading":
        return "leading"
    if vectorized == "trailing":
        return "trailing"
    raise ValueError(f"vectorized must be False, True, 'leading' or 'trailing', got {vectorized!r}")


def check_traceable(traceable: Any) -> None:
    if traceable not in (None, True, False) or not isinstance(traceable, bool | type(None)):
        raise TypeError(f"traceable must be None, True or False, got {traceable!r}")


# --------------------------------------------------------------------------- progress


class _Progress:
    """Counts evaluations; after :data:`PROGRESS_DELAY_S` shows a tqdm bar, or plain lines off a terminal."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.done = 0
        self.total = 0
        self.bar: Any = None
        self.last_line = -math.inf
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())

    def expect(self, k: int) -> None:
        self.total += k
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, k: int) -> None:
        if k <= 0:
            return
        self.done += k
        now = time.perf_counter()
        elapsed = now - self.start
        if self.bar is not None:
            self.bar.update(k)
            return
        if elapsed < PROGRESS_DELAY_S:
            return
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=max(self.total, self.done),
                initial=self.done,
                unit="eval",
                desc="calcjax: f",
                leave=False,
            )
        elif now - self.last_line >= PLAIN_LINE_S:
            self.last_line = now
            left = ""
            if self.total >= self.done > 0:
                left = f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
            print(
                f"calcjax: {self.done}/{self.total} evaluations of f, {elapsed:.0f} s{left}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- the JAX wrapper


class _RowsCallback:
    """The host side of :class:`BlackBox` for one argument structure: a batch of points, one per row."""

    def __init__(self, box: BlackBox, treedef: Any, shapes: tuple[tuple[int, ...], ...]) -> None:
        self.box, self.treedef, self.shapes = box, treedef, shapes

    def __call__(self, *leaves: Any) -> np.ndarray:
        arrays = [np.asarray(a) for a in leaves]
        dtype = np.result_type(*arrays)
        batch = np.broadcast_shapes(
            *[a.shape[: a.ndim - len(s)] for a, s in zip(arrays, self.shapes, strict=True)]
        )
        k = math.prod(batch)
        rows = [
            np.broadcast_to(a, batch + s).reshape((k, *s)) for a, s in zip(arrays, self.shapes, strict=True)
        ]
        return self.box._run_rows(rows, self.treedef, dtype).reshape(batch)


class _CoordsCallback:
    """The host side of :func:`coordinate_values`: ``x`` once, the moved coordinate values, ``F``."""

    def __init__(self, box: BlackBox, spec: _Spec, chunk: int | None) -> None:
        self.box, self.spec, self.chunk = box, spec, chunk

    def __call__(self, x: Any, moved: Any) -> np.ndarray:
        x, moved = np.asarray(x), np.asarray(moved)
        if x.ndim == 1:
            return self.box._run_coords(x, moved, self.spec, self.chunk)
        # Batched by an outer vmap: one stencil per leading index.
        lead = x.shape[:-1]
        xs = np.broadcast_to(x, lead + x.shape[-1:]).reshape(-1, x.shape[-1])
        ms = np.broadcast_to(moved, lead + moved.shape[-2:]).reshape(-1, *moved.shape[-2:])
        out = [self.box._run_coords(a, b, self.spec, self.chunk) for a, b in zip(xs, ms, strict=True)]
        return np.stack(out).reshape(lead + moved.shape[-2:])


class BlackBox:
    """A non-JAX ``f`` as a JAX function: its values come from the host through ``jax.pure_callback``.

    Called with JAX arrays (or tracers) it is a scalar JAX function that
    ``jax.vmap``, ``jax.jit`` and ``lax.map`` accept; a batch of points reaches
    the host as one array. Called with NumPy arrays it is ``f`` itself.
    Autodiff raises :class:`NotDifferentiableError`. One object per ``(f,
    options)`` is kept (:func:`wrap`), so compiled programs are reused.
    """

    def __init__(self, f: Callable[..., Any], reason: str, layout: str | None, workers: Any) -> None:
        self.f, self.reason, self.layout = f, reason, layout
        self.runner = _runner(workers)
        self.f_bytes: bytes | None = None
        self._callbacks: dict[Any, _RowsCallback] = {}
        self._tuners: dict[tuple[int, int, str], _ChunkTuner] = {}  # (n, points a coordinate, dtype)
        self._error: _FError | None = None
        self._sessions = 0
        self._progress: _Progress | None = None
        self._fn = jax.custom_jvp(self._primal)
        self._fn.defjvp(self._no_jvp)
        functools.update_wrapper(self, f, assigned=("__module__", "__name__", "__qualname__", "__doc__"))

    def __repr__(self) -> str:
        return f"BlackBox({getattr(self.f, '__name__', self.f)!r}, {self.reason})"

    def __call__(self, x: Any) -> Any:
        leaves = jax.tree_util.tree_leaves(x)
        if not any(isinstance(a, jax.Array) for a in leaves):
            return self.f(x)  # NumPy in, NumPy out: a host-side caller (a NumPy gradient method)
        return self._fn(x)

    def _primal(self, x: Any) -> jax.Array:
        leaves, treedef = jax.tree_util.tree_flatten(x)
        shapes = tuple(tuple(jnp.shape(a)) for a in leaves)
        key = (treedef, shapes)
        cb = self._callbacks.get(key)
        if cb is None:
            cb = self._callbacks[key] = _RowsCallback(self, treedef, shapes)
        dtype = jnp.result_type(*leaves)
        return jax.pure_callback(cb, jax.ShapeDtypeStruct((), dtype), *leaves, vmap_method="expand_dims")

    def _no_jvp(self, primals: Any, tangents: Any) -> Any:
        raise NotDifferentiableError(
            f"f is not JAX-traceable ({self.reason}), so autodiff cannot differentiate it: use "
            "finite differences (calcjax.gradient(f, x), or method='fd-central' in gradient_descent)"
        )

    # -- host side

    def _pickled(self) -> bytes:
        if self.f_bytes is None:
            self.f_bytes = pickle_for_workers(self.f)
        return self.f_bytes

    def _failed(self, err: _FError, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if self._sessions == 0:  # no calcjax call to hand it to (f under the user's own jit): raise here
            raise _user_error(err)
        if self._error is None:
            self._error = err
        return np.full(shape, np.nan, dtype)

    def _tick(self) -> Callable[[int], None] | None:
        return self._progress.update if self._progress is not None else None

    def _run_rows(self, rows: list[np.ndarray], treedef: Any, dtype: Any) -> np.ndarray:
        k = rows[0].shape[0]
        if self._error is not None:
            return np.full(k, np.nan, dtype)
        if self._progress is not None:
            self._progress.expect(k)
        point_bytes = sum(r[0].nbytes for r in rows) if k else 1
        chunk = max(1, VECTOR_BUDGET_BYTES // max(point_bytes, 1))
        try:
            if self.runner is None or k < 2:
                return _eval_rows(self.f, rows, treedef, dtype, self.layout, chunk, 0, self._tick())
            bounds = _split(k, self.runner.count * CHUNKS_PER_WORKER)
            f = self._pickled() if self.runner.pickle_f else self.f
            payloads = [
                ("rows", f, [r[a:b] for r in rows], treedef, dtype, self.layout, chunk, a) for a, b in bounds
            ]
            return np.concatenate(list(self._gather(payloads, [b - a for a, b in bounds])))
        except _FError as err:
            return self._failed(err, (k,), dtype)

    def _run_coords(self, x: np.ndarray, moved: np.ndarray, spec: _Spec, chunk: int | None) -> np.ndarray:
        n, m = moved.shape
        if self._error is not None:
            return np.full((n, m), np.nan, x.dtype)
        if self._progress is not None:
            self._progress.expect(n * m)
        fixed = (vector_chunk(n, m, x.dtype.itemsize) if chunk is None else chunk) * m  # points
        try:
            if self.runner is None or n < 2:
                sizing: int | _ChunkTuner = fixed
                if chunk is None and self.layout is not None:
                    key = (x.size, m, x.dtype.str)
                    sizing = self._tuners.get(key) or self._tuners.setdefault(
                        key, _ChunkTuner(x.size, x.dtype.itemsize, x.size * m)
                    )
                return _eval_coords(self.f, x, moved, 0, spec, self.layout, sizing, self._tick())
            bounds = _split(n, self.runner.count * CHUNKS_PER_WORKER)
            f = self._pickled() if self.runner.pickle_f else self.f
            payloads = [("coords", f, x, moved[a:b], a, spec, self.layout, fixed) for a, b in bounds]
            return np.concatenate(list(self._gather(payloads, [(b - a) * m for a, b in bounds])))
        except _FError as err:
            return self._failed(err, (n, m), x.dtype)

    def coordinate_values_host(
        self, x: np.ndarray, steps: np.ndarray, offsets: Any, spec: _Spec, batch_size: int | None
    ) -> np.ndarray:
        """:func:`coordinate_values` on the host, without XLA: ``F[i, j] = f(x + offsets[j]*steps[i]*e_i)``.

        Inside a :meth:`session`; an exception of ``f`` is raised at once.
        """
        out = self._run_coords(x, moved_points(x, steps, offsets), spec, batch_size)
        self.raise_if_failed()
        return out

    def value_host(self, x: np.ndarray, spec: _Spec) -> np.ndarray:
        """``f(x)`` on the host (0-d, ``x``'s dtype), evaluated as the other points are."""
        x = x.view()
        x.flags.writeable = False  # as every other point: f cannot change the caller's x
        rows = [x[None, a.start : a.start + a.size].reshape((1, *a.shape)) for a in spec.leaves]
        out = self._run_rows(rows, spec.treedef, x.dtype)
        self.raise_if_failed()
        return out.reshape(())

    def _gather(self, payloads: list[tuple[Any, ...]], sizes: list[int]) -> Iterator[np.ndarray]:
        assert self.runner is not None
        try:
            for res, size in zip(self.runner.map(payloads), sizes, strict=True):
                if self._progress is not None:
                    self._progress.update(size)
                yield res
        except _FError:
            raise
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            if "pickle" not in str(err).lower():
                raise _FError(None, err) from None
            raise _FError(
                None,
                TypeError(f"f cannot be sent to the workers ({type(err).__name__}: {err}); {_PICKLE_ADVICE}"),
            ) from None
        except Exception as err:
            raise _FError(None, err) from None

    # -- sessions: one public call

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """A public call: errors of ``f`` are collected (not raised through XLA) and re-raised at the end."""
        outer = self._sessions == 0
        if outer:
            self._error = None
            self._progress = _Progress()
        self._sessions += 1
        try:
            yield
        except Exception:
            if self._error is not None and outer:
                raise _user_error(self._error) from None
            raise
        finally:
            self._sessions -= 1
            if outer and self._progress is not None:
                self._progress.close()
                self._progress = None
        if outer:
            self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise _user_error(err)


def _user_error(err: _FError) -> BaseException:
    """The user's own exception, with a note saying at which evaluation of ``f`` it was raised."""
    user = err.error
    if isinstance(user, _FError):  # pragma: no cover - defensive
        return _user_error(user)
    if err.index is not None:
        note = f"calcjax: raised by f at evaluation {err.index} (counted from 0)"
        if err.where:
            note += f" ({err.where})"
        user.add_note(note)
    if err.remote_tb:
        user.add_note("calcjax: traceback in the worker:\n" + err.remote_tb.rstrip())
    return user


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges cutting ``range(n)`` into at most ``parts`` near-equal pieces."""
    parts = max(1, min(parts, n))
    cuts = [round(n * k / parts) for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def pickle_for_workers(f: Callable[..., Any]) -> bytes:
    """``pickle.dumps(f)``, or a ``TypeError`` saying why worker processes could not receive it."""
    main = sys.modules.get("__main__")
    if getattr(f, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise TypeError(f"f ({f!r}) was defined in an interactive session; {_PICKLE_ADVICE}")
    try:
        return pickle.dumps(f)
    except Exception as err:
        raise TypeError(
            f"f cannot be sent to worker processes ({type(err).__name__}: {err}); {_PICKLE_ADVICE}"
        ) from None


def wrap(f: Callable[..., Any], reason: str, layout: str | None, workers: Any) -> BlackBox:
    """The :class:`BlackBox` of ``f`` (one per ``(f, layout, workers)``, kept in a small cache)."""
    return _BOXES.get((f, layout, workers), lambda: BlackBox(f, reason, layout, workers))


# --------------------------------------------------------------------------- the stencil fast path


def _match(f_flat: Callable[[jax.Array], Any], x: jax.Array) -> tuple[BlackBox, _Spec] | None:
    """``(box, spec)`` when ``f_flat(z)`` is a :class:`BlackBox` applied to ``unravel(z)``, else ``None``.

    Reads ``f_flat``'s jaxpr: ``split``/``reshape``/``convert_element_type`` of
    ``z`` (how :func:`jax.flatten_util.ravel_pytree` unravels) feeding the box's
    call, whose result is the output.
    """
    try:
        closed = jax.make_jaxpr(f_flat)(x)
    except Exception:
        return None
    jaxpr = closed.jaxpr
    if len(jaxpr.invars) != 1 or len(jaxpr.outvars) != 1 or not jaxpr.eqns:
        return None
    *prep, call = jaxpr.eqns
    if call.primitive.name != "custom_jvp_call" or call.outvars[0] is not jaxpr.outvars[0]:
        return None
    inner = call.params.get("call_jaxpr")
    inner_eqns = getattr(getattr(inner, "jaxpr", None), "eqns", [])
    if len(inner_eqns) != 1 or inner_eqns[0].primitive.name != "pure_callback":
        return None
    cb = inner_eqns[0].params.get("callback")
    ours = next(
        (
            c
            for c in (cb, getattr(cb, "callback_func", None), getattr(cb, "callback", None))
            if isinstance(c, _RowsCallback)
        ),
        None,
    )
    if ours is None:
        return None
    n = x.shape[0]
    env: dict[Any, _Leaf] = {jaxpr.invars[0]: _Leaf(0, n, (n,), str(x.dtype))}
    for eqn in prep:
        if len(eqn.invars) != 1 or eqn.invars[0] not in env:
            return None
        src = env[eqn.invars[0]]
        name = eqn.primitive.name
        if name == "split" and eqn.params["axis"] == 0 and len(src.shape) == 1:
            start = src.start
            for size, out in zip(eqn.params["sizes"], eqn.outvars, strict=True):
                env[out] = _Leaf(start, size, (size,), src.dtype)
                start += size
        elif name == "reshape" and eqn.params.get("dimensions") is None:
            env[eqn.outvars[0]] = src._replace(shape=tuple(eqn.params["new_sizes"]))
        elif name == "convert_element_type":
            env[eqn.outvars[0]] = src._replace(dtype=str(np.dtype(eqn.params["new_dtype"])))
        else:
            return None
    if not all(var in env for var in call.invars):
        return None
    leaves = tuple(env[var] for var in call.invars)
    if tuple(leaf.shape for leaf in leaves) != ours.shapes:
        return None
    return ours.box, _Spec(ours.treedef, leaves)


def moved_points(x: Any, steps: Any, offsets: Any) -> Any:
    """``P[i, j] = x_i + offsets[j]*steps[i]``: the moved coordinate of every stencil point.

    The one formula for both paths (JAX arrays, or NumPy on the host), so a
    black-box ``f`` is evaluated at the same points either way.
    """
    xp = array_module(x)
    offs = xp.asarray(list(offsets), x.dtype)
    return x[:, None] + offs[None, :] * steps.astype(x.dtype)[:, None]


@functools.cache
def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype)


def flat_spec(leaves: list[np.ndarray], treedef: Any) -> _Spec:
    """Where each leaf of ``x`` lives in its flat vector (leaves in order, raveled)."""
    out, start = [], 0
    for a in leaves:
        out.append(_Leaf(start, a.size, a.shape, _dtype_name(a.dtype)))
        start += a.size
    return _Spec(treedef, tuple(out))


def unflatten(flat: np.ndarray, leaves: list[np.ndarray], treedef: Any) -> Any:
    """``flat`` cut back into ``x``'s structure, shapes and dtypes (NumPy arrays)."""
    parts, start = [], 0
    for a in leaves:
        parts.append(flat[start : start + a.size].reshape(a.shape).astype(a.dtype, copy=False))
        start += a.size
    return jax.tree_util.tree_unflatten(treedef, parts)


def coordinate_values(
    f_flat: Callable[[jax.Array], Any],
    x: jax.Array,
    steps: jax.Array,
    offsets: Any,
    batch_size: int | None,
) -> jax.Array | None:
    """``F[i, j] = f(x + offsets[j]*steps[i]*e_i)`` on the host for a black-box ``f``, else ``None``.

    The point values are computed here in JAX exactly as the JAX path computes
    them (``x_i + c_j*h_i``); the host receives ``x`` once and these values and
    perturbs one buffer in place (no copy of ``x`` per point). ``batch_size``
    (coordinates) is the chunk of a vectorized ``f`` (default: tuned,
    :class:`_ChunkTuner`).
    """
    if any(isinstance(c, complex) for c in offsets) or x.ndim != 1:
        return None
    match = _match(f_flat, x)
    if match is None:
        return None
    box, spec = match
    moved = moved_points(x, steps, offsets)
    out = jax.ShapeDtypeStruct(moved.shape, x.dtype)
    return jax.pure_callback(_CoordsCallback(box, spec, batch_size), out, x, moved, vmap_method="expand_dims")


# --------------------------------------------------------------------------- the entry


def check_leaves(x: Any) -> None:
    """``ValueError`` for an empty pytree, ``TypeError`` naming a non-floating leaf (before tracing f)."""
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves:
        raise ValueError("x must hold at least one array, got an empty pytree")
    if all(type(leaf) is float or v.has_floating_dtype(leaf) for leaf in leaves):
        return  # the fast path: no key paths built (gradient_descent is called in loops)
    for path, leaf in jax.tree_util.tree_leaves_with_path(x):
        v.check_floating_leaf(leaf, "x" + jax.tree_util.keystr(path))


def _identity(out: Any) -> Any:
    return out


def _tracer_error(err: BaseException) -> NotDifferentiableError:
    return NotDifferentiableError(
        f"f is not JAX-traceable ({type(err).__name__} at {_where(err)}), but traceable=True was given: "
        "pass traceable=False (or leave it None) to evaluate f outside JAX"
    )


def _resolve(
    f: Callable[..., Any], x: Any, traceable: bool | None, vectorized: bool | str, workers: Any
) -> tuple[Any, Any, BlackBox | None]:
    """``(f, x, None)`` for a JAX ``f`` (or ``x`` traced by the user's own transformation, with ``f``
    wrapped), else ``(box, x as NumPy arrays, box)``: the checks of :func:`prepare`."""
    check_traceable(traceable)
    layout = check_vectorized(vectorized)
    check_workers(workers)
    outside = layout is not None or workers is not None
    if traceable is True and outside:
        raise ValueError("vectorized= and workers= evaluate f outside JAX: they need traceable=False or None")
    if isinstance(f, BlackBox) or traceable is True:
        return f, x, None
    check_leaves(x)
    if traceable is False:
        reason = "traceable=False"
    elif outside:  # not traced: a vectorized f expects a batch, not one point
        reason = "evaluated outside JAX: vectorized= or workers= given"
    else:
        reason = trace_failure(f, x)
    if reason is None:
        return f, x, None
    box = wrap(f, reason, layout, workers)
    if isinstance(workers, int | np.integer):
        box._pickled()  # a clear error now, not from a worker
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(x)):
        return box, x, None  # inside the user's own trace: JAX values in and out
    return box, jax.tree_util.tree_map(np.asarray, x), box  # a Python float becomes float64, as in NumPy


@contextlib.contextmanager
def _outside(box: BlackBox, x_np: Any) -> Iterator[tuple[Any, Callable[[Any], Any]]]:
    """``(x as JAX arrays, finish)`` for a concrete black-box call (see :func:`prepare`)."""
    wide = any(a.dtype.itemsize == 8 for a in jax.tree_util.tree_leaves(x_np))
    x64 = jax.enable_x64(True) if wide and not jax.config.jax_enable_x64 else contextlib.nullcontext()

    def finish(out: Any) -> Any:
        out = jax.block_until_ready(out)
        box.raise_if_failed()
        return jax.tree_util.tree_map(np.asarray, out)

    with x64, box.session():
        yield jax.tree_util.tree_map(jnp.asarray, x_np), finish


@contextlib.contextmanager
def prepare(
    f: Callable[..., Any],
    x: Any,
    *,
    traceable: bool | None = None,
    vectorized: bool | str = False,
    workers: Any = None,
) -> Iterator[tuple[Callable[..., Any], Any, Callable[[Any], Any]]]:
    """``with prepare(f, x, ...) as (f_jax, x_jax, finish): return finish(routine(f_jax, x_jax))``.

    For a JAX ``f`` (``traceable=True``, or ``None`` and ``f`` traces) this yields
    ``(f, x, identity)``. Otherwise ``f_jax`` is the :class:`BlackBox` of ``f``,
    ``x_jax`` is ``x`` as JAX arrays of NumPy's dtypes (a Python float is
    float64: 64-bit JAX is switched on inside the block when ``x`` needs it, and
    restored after), and ``finish(out)`` waits for ``out`` and returns it as
    NumPy arrays (pytrees too). An exception of ``f`` is raised as the user's own
    exception, with a note giving the evaluation it happened at.

    Raises:
      TypeError: bad ``traceable``/``workers`` type, a non-floating leaf of ``x``,
        an ``f`` a process pool cannot receive.
      ValueError: bad ``vectorized``, ``workers <= 0``; ``traceable=True`` with
        ``vectorized`` or ``workers``.
    """
    f_out, x_out, box = _resolve(f, x, traceable, vectorized, workers)
    if box is None:
        yield f_out, x_out, _identity
        return
    with _outside(box, x_out) as (x_jax, finish):
        yield box, x_jax, finish


def _static(value: Any) -> bool:
    if isinstance(value, np.ndarray | jax.Array | list | dict):
        return False
    try:
        hash(value)
    except TypeError:
        return False
    return True


@functools.cache
def _jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled around a black-box ``f``; ``call`` numbers the call for its domain reports."""

    def apply(
        x: Any, args: tuple[Any, ...], dynamic: dict[str, Any], call: Any, *, f: Any, static: tuple[Any, ...]
    ) -> Any:
        with tracing_call(call):
            return fn(f, x, *args, **dynamic, **dict(static))

    return jax.jit(apply, static_argnames=("f", "static"))


def _with_options_doc(doc: str | None) -> str | None:
    if not doc:
        return doc
    marker = "\n    Returns:"
    text = _OPTIONS_DOC.rstrip("\n")
    if marker in doc:
        head, tail = doc.split(marker, 1)
        return head.rstrip("\n") + "\n" + text + "\n" + marker + tail
    return doc.rstrip("\n") + "\n" + text + "\n"


def accepts_blackbox(
    fn: Callable[..., Any] | None = None,
    *,
    jit: bool = True,
    host: Callable[..., Any] | None = None,
) -> Any:
    """Decorator: ``fn(f, x, ...)`` also takes ``traceable``, ``vectorized`` and ``workers``.

    A JAX ``f`` goes to ``fn`` untouched. A non-JAX ``f`` at a concrete ``x`` goes
    to ``host(box, x as NumPy arrays, **every keyword setting of fn)`` when given
    (a NumPy implementation that runs no XLA program; it returns
    ``NotImplemented`` for settings it does not cover), else through
    :func:`prepare`; with ``jit=True`` the call is compiled once per ``(f,
    options, settings, shapes)`` (settings that are hashable Python values are
    static; arrays are traced), so repeated calls do not recompile.
    """
    if fn is None:
        return functools.partial(accepts_blackbox, jit=jit, host=host)

    @functools.wraps(fn)
    def wrapper(
        f: Callable[..., Any],
        x: Any,
        *args: Any,
        traceable: bool | None = None,
        vectorized: bool | str = False,
        workers: Any = None,
        **kwargs: Any,
    ) -> Any:
        f_jax, x_in, box = _resolve(f, x, traceable, vectorized, workers)
        if box is None:
            if traceable is not True:
                return fn(f_jax, x_in, *args, **kwargs)
            try:
                return fn(f_jax, x_in, *args, **kwargs)
            except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as err:
                raise _tracer_error(err) from None
        if host is not None and not args and kwargs.keys() <= defaults.keys():  # else fn's own TypeError
            with box.session():
                out = host(box, x_in, **{**defaults, **kwargs})
            if out is not NotImplemented:
                return out
        with _outside(box, x_in) as (x_jax, finish):
            try:
                if not jit:
                    return finish(fn(f_jax, x_jax, *args, **kwargs))
                static = tuple(sorted((k, val) for k, val in kwargs.items() if _static(val)))
                dynamic = {k: val for k, val in kwargs.items() if not _static(val)}
                with deferred_reports() as call:  # DomainWarnings leave the program by a callback
                    return finish(_jitted(fn)(x_jax, args, dynamic, call, f=f_jax, static=static))
            except NotDifferentiableError as err:
                raise err.with_traceback(None) from None

    sig = inspect.signature(fn)
    defaults = {k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    extra = [
        inspect.Parameter(
            "traceable", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="bool | None"
        ),
        inspect.Parameter(
            "vectorized", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool | str"
        ),
        inspect.Parameter("workers", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"),
    ]
    params = list(sig.parameters.values())
    cut = next((k for k, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    wrapper.__signature__ = sig.replace(parameters=params[:cut] + extra + params[cut:])  # type: ignore[attr-defined]
    wrapper.__doc__ = _with_options_doc(fn.__doc__)
    wrapper.__wrapped_blackbox__ = fn  # type: ignore[attr-defined]
    return wrapper
