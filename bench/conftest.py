"""The benchmark suite's machinery: cases, honest timing, skips with reasons, records.

One recipe for every benchmark (``../shared/DESIGN.md``):

1. build the case on the chosen device (the root ``conftest.py`` resolves
   ``--device`` and makes it JAX's default device);
2. compile apart: ``jax.jit(fn).lower(*args).compile()`` gives ``compile_s`` and,
   from XLA's memory analysis, ``peak_bytes``; NumPy code is not compiled and its
   peak comes from ``tracemalloc``;
3. warm up: one call, whose result is scored against the analytic reference;
4. time: ``benchmark.pedantic`` with rounds chosen from the warm-up time, so a
   slow case takes one round and a fast one many. Every timed call ends in
   ``jax.block_until_ready``.

What the profile cannot afford (predicted time of one call over its
``max_call_s``), what does not fit (predicted memory over the device budget)
and what the registry rules out (missing package, ``max_n``) is skipped with
the reason. ``benchmark.extra_info`` of every record holds :data:`BASE_FIELDS`.
"""

from __future__ import annotations

import functools
import os
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from calcjax import METHODS, PROBLEMS
from calcjax._complex_safety import complex_step_culprits
from calcjax._devices import device_info
from calcjax._finite_diff import _STENCILS as _STENCIL_TABLE

#: The problems whose n can grow: the gradient, feval, accuracy and sharding suites run these.
SCALABLE = tuple(name for name, p in PROBLEMS.items() if p.scalable)

#: Fields every record's ``extra_info`` carries (``None`` where they do not apply).
BASE_FIELDS = (
    "suite",
    "problem",
    "n",
    "method",
    "dtype",
    "device",
    "backend",
    "device_kind",
    "device_count",
    "compile_s",
    "f_evals",
    "rel_error",
    "reference",
    "peak_bytes",
    "peak_source",
)

#: Bytes of points in one ``feval`` batch (at least 16 points, at most the max), per platform:
#: a CPU is at full speed with a few MiB, an accelerator needs far more work to fill it.
FEVAL_BATCH_BYTES = {"cpu": 16 * 2**20, "gpu": 256 * 2**20, "tpu": 256 * 2**20}
FEVAL_BATCH_MAX = {"cpu": 4096, "gpu": 65536, "tpu": 65536}

#: Fixed cost of one call (dispatch), in the cost model that predicts a case's time.
CALL_OVERHEAD_S = 50e-6
#: A call predicted to take longer than this is timed once, without a warm-up call.
NO_WARM_UP_S = 5.0
#: A warm-up call shorter than this is followed by a second one (the faster one counts).
WARM_AGAIN_S = 0.05
#: A warm-up at least this long calibrates the cost model for larger n of the same case.
CALIBRATE_MIN_S = 5e-3

#: Share of the device's memory a case may be predicted to use.
MEMORY_SHARE = {"cpu": 0.25, "gpu": 0.5, "tpu": 0.5}


def _cost_evals(name: str, n: int) -> int:
    """f-evaluations one gradient costs, for predicting its time (not a record field).

    The registry gives AD 0 f-evaluations; forward mode is ``n`` JVPs, each about
    one f-evaluation, so it is predicted as ``n``; reverse mode as a few.
    """
    if name == "ad-forward":
        return n
    if name == "ad-reverse":
        return 3
    return METHODS[name].evals(n)


def _memory_bytes(name: str, n: int, itemsize: int) -> int:
    """Predicted bytes of a gradient's working set (data apart)."""
    method = METHODS[name]
    if method.memory is not None:
        return int(method.memory(n, itemsize))
    if name == "ad-forward":  # jax.jacfwd pushes all n tangents at once: an n x n basis
        return n * n * itemsize
    return 4 * n * itemsize


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{b:.3g} {unit}"
        b /= 1024
    return f"{b:.3g} TiB"  # pragma: no cover


def fmt_s(s: float) -> str:
    return f"{s:.3g} s" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def flat_np(tree: Any) -> np.ndarray:
    """A gradient (JAX pytree or NumPy array) as a flat float64 NumPy vector."""
    if isinstance(tree, np.ndarray | np.generic | float):
        return np.ravel(np.asarray(tree, np.float64))
    flat, _ = ravel_pytree(tree)
    return np.asarray(flat, np.float64)


def rel_error(value: Any, reference: np.ndarray) -> float:
    """L2 relative error of ``value`` against ``reference`` (absolute where the reference is 0)."""
    v, r = flat_np(value), np.ravel(np.asarray(reference, np.float64))
    if v.shape != r.shape:
        raise AssertionError(f"result has {v.size} entries, the reference {r.size}")
    scale = float(np.linalg.norm(r))
    err = float(np.linalg.norm(v - r))
    return err / scale if scale > 0 else err


@dataclass
class Case:
    """One thing to time.

    Attributes:
      call: one call, ending in ``jax.block_until_ready``; the timed callable.
      result: what the warm-up call returned.
      warm_s: how long the warm-up call took (for choosing rounds).
      compile_s: compile time (0.0 for NumPy code).
      peak_bytes, peak_source: peak memory and how it was measured.
      compiled: the compiled XLA executable, for jitted code.
    """

    call: Callable[[], Any]
    result: Any
    warm_s: float
    compile_s: float
    peak_bytes: int | None
    peak_source: str | None
    compiled: Any = None


def xla_peak_bytes(compiled: Any) -> int | None:
    """Temp + argument + output bytes of a compiled program (aliased bytes counted once)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # pragma: no cover - backends without memory analysis
        return None
    if m is None:  # pragma: no cover
        return None
    total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    return int(total)


def _warm_up(call: Callable[[], Any], first: tuple[Any, float] | None = None) -> tuple[Any, float]:
    """One call (or the ``first`` one already made): its result and a fair time of one call.

    A first call can carry one-off costs (allocation, thread start-up); when it is
    cheap, a second call is timed too and the smaller time is kept.
    """
    if first is None:
        start = time.perf_counter()
        first = (call(), time.perf_counter() - start)
    result, seconds = first
    if seconds < WARM_AGAIN_S:
        start = time.perf_counter()
        call()
        seconds = min(seconds, time.perf_counter() - start)
    return result, seconds


def compiled_case(fn: Callable[..., Any], *args: Any, expected_s: float | None = None) -> Case:
    """``jax.jit(fn)`` compiled for ``args`` (timed apart), then one warm-up call.

    A call expected to take longer than :data:`NO_WARM_UP_S` is not warmed up:
    its one-off costs are lost in its length, and it is timed once (``result``
    is then ``None``: the timed call returns it).
    """
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    call = lambda: jax.block_until_ready(compiled(*args))
    if expected_s is not None and expected_s > NO_WARM_UP_S:
        result, warm_s = None, expected_s
    else:
        result, warm_s = _warm_up(call)
    peak = xla_peak_bytes(compiled)
    source = None if peak is None else "xla_memory_analysis"
    return Case(call, result, warm_s, compile_s, peak, source, compiled)


def traced_peak(call: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run ``call`` once under ``tracemalloc``: its result, time and peak bytes."""
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    else:
        tracemalloc.start()
        base = 0
    try:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, elapsed, int(peak)


def numpy_case(fn: Callable[..., Any], *args: Any, expected_s: float | None = None) -> Case:
    """NumPy code: nothing to compile; the warm-up call runs under ``tracemalloc``.

    A call expected to take longer than :data:`NO_WARM_UP_S` is neither warmed up
    nor traced (its peak memory is then not measured) and is timed once.
    """
    call = lambda: jax.block_until_ready(fn(*args))
    if expected_s is not None and expected_s > NO_WARM_UP_S:
        return Case(call, None, expected_s, 0.0, None, None)
    result, traced_s, peak = traced_peak(call)
    result, warm_s = _warm_up(call, (result, traced_s))
    return Case(call, result, warm_s, 0.0, peak, "tracemalloc")


class Bench:
    """Session-wide helper behind the ``bench`` fixture: instances, cases, timing, records."""

    def __init__(self, config: pytest.Config) -> None:
        s = config.calcjax_bench
        self.settings = s
        self.profile = s.profile
        self.device = s.device
        self.info = device_info(s.device)
        self.memory_budget = self._memory_budget()
        self._instances: OrderedDict[tuple, Any] = OrderedDict()
        self._cases: dict[tuple, Case] = {}
        self._feval: dict[tuple, tuple[Case, int]] = {}
        self._np_time: dict[tuple, float] = {}
        self._memo: dict[tuple, Any] = {}
        self._primed: set[tuple] = set()
        #: (problem, method) -> measured time / cost model, from its latest (largest) n so far.
        self._calibration: dict[tuple, float] = {}
        self.functions = FUNCTIONS
        self.stencils = {f"{sc}{o}": (sc, o) for sc, o in STENCILS}  # "central2" -> ("central", 2)

    # ----------------------------------------------------------------- budgets

    def _memory_budget(self) -> int:
        share = MEMORY_SHARE.get(self.device.platform, 0.5)
        if self.device.platform != "cpu":
            stats = self.device.memory_stats() or {}
            if stats.get("bytes_limit"):
                return int(share * stats["bytes_limit"])
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            total = 8 * 2**30
        return int(share * total)

    def check_budget(
        self, what: str, *, seconds: float = 0.0, nbytes: float = 0.0, max_s: float | None = None
    ) -> None:
        """Skip (with the reason) what the profile's time or the device's memory cannot afford."""
        if nbytes > self.memory_budget:
            pytest.skip(
                f"{what}: predicted memory {fmt_bytes(nbytes)} > budget {fmt_bytes(self.memory_budget)} "
                f"({MEMORY_SHARE.get(self.device.platform, 0.5):.0%} of the {self.device.platform}'s memory)"
            )
        limit = self.profile.max_call_s if max_s is None else max_s
        if seconds > limit:
            pytest.skip(
                f"{what}: predicted {fmt_s(seconds)} per call > {fmt_s(limit)} allowed by the "
                f"{self.profile.name!r} profile (--max-call-s or --full allows more)"
            )

    # ----------------------------------------------------------------- problems

    def instance(self, problem: str, n: int, dtype: str):
        """The problem at (at least) ``n`` parameters, on the device; the last few are kept."""
        p = PROBLEMS[problem]
        size = max(n, p.min_n) if p.scalable else None
        key = (problem, size, dtype)
        if key in self._instances:
            self._instances.move_to_end(key)
            return self._instances[key]
        itemsize = jnp.dtype(dtype).itemsize
        if p.scalable:
            self.check_budget(f"{problem} data at n={n}", nbytes=p.data_bytes(size) * itemsize / 8)
        inst = p.instance(size, dtype)
        self._instances[key] = inst
        while len(self._instances) > 4:
            self._instances.popitem(last=False)
        return inst

    def memo(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key`` for the session (e.g. one compiled function for many steps h)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def numpy_f_time(self, problem: str, n: int, dtype: str) -> float:
        """Seconds of one call of the problem's NumPy twin (the median of a few back-to-back calls:
        the best one hides BLAS threads that spin between calls on a busy machine)."""
        key = (problem, n, dtype)
        if key not in self._np_time:
            inst = self.instance(problem, n, dtype)
            times: list[float] = []
            while len(times) < 5 and sum(times) < 0.2:
                start = time.perf_counter()
                inst.f_np(inst.x0_np)
                times.append(time.perf_counter() - start)
            self._np_time[key] = float(np.median(times))
        return self._np_time[key]

    def feval_case(self, problem: str, n: int, dtype: str) -> tuple[Case, int]:
        """``vmap(f)`` over a large batch of distinct points: (case, batch size)."""
        key = (problem, n, dtype)
        if key not in self._feval:
            inst = self.instance(problem, n, dtype)
            itemsize = jnp.dtype(dtype).itemsize
            platform = self.device.platform if self.device.platform in FEVAL_BATCH_BYTES else "gpu"
            batch = FEVAL_BATCH_BYTES[platform] // (inst.n * itemsize)
            batch = int(np.clip(batch, 16, FEVAL_BATCH_MAX[platform]))
            self.check_budget(f"{problem} f batch at n={n}", nbytes=2 * batch * inst.n * itemsize)
            scale = 1.0 + 1e-3 * np.linspace(0.0, 1.0, batch)

            def spread(a: jax.Array) -> jax.Array:
                s = jnp.asarray(scale, a.dtype).reshape((batch,) + (1,) * a.ndim)
                return a[None] * s

            points = jax.tree_util.tree_map(spread, inst.x0)
            fn = lambda pts, data: jax.vmap(inst.f_data, in_axes=(0, None))(pts, data)
            self._feval[key] = (compiled_case(fn, points, inst.data), batch)
        return self._feval[key]

    def f_eval_time(self, problem: str, n: int, dtype: str) -> float:
        """Seconds per f-evaluation inside a large batch (from the warm-up of :meth:`feval_case`)."""
        case, batch = self.feval_case(problem, n, dtype)
        return case.warm_s / batch

    # ----------------------------------------------------------------- gradients

    def gradient_case(self, problem: str, name: str, n: int, dtype: str, *, max_s: float | None = None):
        """A registry method's gradient of the problem at ``n``: (case, instance); cached at accuracy n.

        Skips what the registry rules out (``unavailable()``, ``max_n``) and what
        the predicted time or memory rules out.
        """
        method = METHODS[name]
        reason = method.unavailable()
        if reason:
            pytest.skip(reason)
        if method.max_n is not None and n > method.max_n:
            pytest.skip(f"{name} runs only up to n={method.max_n} (registry max_n)")
        key = (problem, name, n, dtype)
        if key in self._cases:
            return self._cases[key], self.instance(problem, n, dtype)
        inst = self.instance(problem, n, dtype)
        if method.scheme == "complex":
            # fd-complex shares products (complex_step_gradient's default) and refuses what that
            # leaves unsafe here (a batched complex matrix product on a GPU): say so, as a skip.
            culprits = complex_step_culprits(inst.f, inst.x0, shared_products=True)
            if culprits:
                pytest.skip(f"{name} on {problem}: not complex-step safe here ({'; '.join(culprits)})")
        itemsize = jnp.dtype(dtype).itemsize
        if method.traceable:
            per_eval = self.f_eval_time(problem, n, dtype)
        else:
            per_eval = self.numpy_f_time(problem, n, dtype)
        model_s = CALL_OVERHEAD_S + _cost_evals(name, inst.n) * per_eval
        predicted = model_s * self._calibration.get((problem, name), 1.0)
        limit = self.profile.max_call_s if max_s is None else max_s
        if name in self.profile.long_methods:
            limit = max(limit, self.profile.long_call_s)
        self.check_budget(
            f"{name} on {problem} n={n}",
            seconds=predicted,
            nbytes=_memory_bytes(name, inst.n, itemsize),
            max_s=limit,
        )
        if method.traceable:
            fn = lambda x, data: method.fn(functools.partial(inst.f_data, data=data), x)
            case = compiled_case(fn, inst.x0, inst.data, expected_s=predicted)
        else:
            self._prime(name, dtype)
            case = numpy_case(method.fn, inst.f_np, inst.x0_np, expected_s=predicted)
        # A warm-up long enough says how far off the cost model is, for this case's larger n.
        if case.result is not None and case.warm_s >= CALIBRATE_MIN_S:
            self._calibration[(problem, name)] = max(1.0, case.warm_s / model_s)
        if n == self.profile.accuracy_n:
            self._cases[key] = case  # shared by the accuracy and gradient suites
        return case, inst

    def _prime(self, name: str, dtype: str) -> None:
        """Run a NumPy method once on a tiny problem, so that its imports and one-off set-up
        are not counted in the peak memory ``tracemalloc`` sees."""
        if (name, dtype) not in self._primed:
            METHODS[name].fn(lambda w: float(np.sum(w * w)), np.ones(4, dtype))
            self._primed.add((name, dtype))

    # ----------------------------------------------------------------- timing and records

    def rounds_for(self, seconds: float) -> int:
        return int(min(self.profile.max_rounds, max(1, self.profile.target_s / max(seconds, 1e-9))))

    def measure(self, benchmark: Any, case: Case, *, rounds: int | None = None) -> Any:
        """Time ``case.call`` with pytest-benchmark (compiled and warmed up already); return the
        warm-up's result, or the timed call's when there was no warm-up."""
        if benchmark.disabled:  # run as a test: one call
            result = benchmark.pedantic(case.call)
        else:
            rounds = rounds or self.rounds_for(case.warm_s)
            result = benchmark.pedantic(case.call, rounds=rounds, iterations=1, warmup_rounds=0)
        return result if case.result is None else case.result

    def record(self, benchmark: Any, *, suite: str, group: str | None = None, **fields: Any) -> None:
        """Fill ``benchmark.extra_info``: the base fields (``None`` where not given), then the rest."""
        info = dict.fromkeys(BASE_FIELDS)
        info.update(self.info)
        info.update(suite=suite, **fields)
        for key, value in info.items():
            if isinstance(value, np.generic):
                info[key] = value.item()
        benchmark.extra_info.update(info)
        benchmark.group = group or suite
        if getattr(benchmark, "stats", None) is not None:  # measured already: its record keeps the group
            benchmark.stats.group = benchmark.group

    def case_fields(self, case: Case) -> dict[str, Any]:
        return {"compile_s": case.compile_s, "peak_bytes": case.peak_bytes, "peak_source": case.peak_source}

    def record_gradient(
        self,
        benchmark: Any,
        *,
        suite: str,
        group: str,
        problem: str,
        n: int,
        inst: Any,
        method: str,
        dtype: str,
        result: Any,
        case: Case,
    ) -> None:
        """Score a registry method's gradient against the analytic reference and record it."""
        err = rel_error(result, inst.reference_gradient())
        assert np.isfinite(err), f"{method} gave a non-finite gradient on {problem} ({dtype})"
        m = METHODS[method]
        self.record(
            benchmark,
            suite=suite,
            group=group,
            problem=problem,
            n=n,
            n_params=inst.n,
            method=method,
            family=m.family,
            scheme=m.scheme,
            order=m.order,
            dtype=dtype,
            f_evals=m.evals(inst.n),
            rel_error=err,
            reference="analytic",
            **self.case_fields(case),
        )

    # The module-level helpers, for the test modules.
    compiled_case = staticmethod(compiled_case)
    numpy_case = staticmethod(numpy_case)
    traced_peak = staticmethod(traced_peak)
    xla_peak_bytes = staticmethod(xla_peak_bytes)
    rel_error = staticmethod(rel_error)
    flat_np = staticmethod(flat_np)
    Case = Case


# --------------------------------------------------------------------------- parametrisation
#
# What each test runs comes from the profile (root conftest.py), so it is decided
# here, at collection, for every test function by name.

#: Scalar functions of the derivative and V-curve suites: name -> (f, f', NumPy f).
FUNCTIONS: dict[str, tuple[Callable, Callable, Callable]] = {
    "square": (lambda x: x**2, lambda x: 2.0 * x, lambda x: x**2),  # the tutorial's
    "sin": (jnp.sin, np.cos, np.sin),
    "exp": (jnp.exp, np.exp, np.exp),
    "log": (jnp.log, lambda x: 1.0 / x, np.log),
}
VCURVE_FUNCTIONS = ("sin", "exp")
#: Every (scheme, order) stencil of calcjax.derivative, from calcjax's own table.
STENCILS = tuple(_STENCIL_TABLE)
#: Derivative methods beside calcjax's stencils: JAX's AD and the tutorial's NumPy formula.
DERIVATIVE_PEERS = ("ad-reverse", "numpy-tutorial")
#: Descent variants: the tutorial's loop, a Python loop around a jitted step, calcjax's scan.
DESCENT_METHODS = (
    "tutorial-loop",
    "python-loop-jit-step",
    "fori-bare",
    "scan-hand-vg",
    "scan-ad-reverse",
    "scan-fd-central",
)
SHARD_DEVICES = (1, 2, 4)
#: The memory suite: calcjax's FD gradients where issue 4 bounds their memory.
MEMORY_PROBLEMS = ("quadratic", "rosenbrock")
MEMORY_METHODS = ("fd-forward", "fd-central")


def cover(cases: list[tuple], groups: tuple[tuple[int, ...], ...]) -> list[tuple]:
    """A small subset of ``cases`` in which every value combination of each group of positions
    that occurs in ``cases`` occurs at least once (greedy set cover)."""

    def keys(case: tuple) -> set[tuple]:
        return {(g, tuple(case[i] for i in g)) for g in groups}

    todo = set().union(*(keys(c) for c in cases)) if cases else set()
    chosen: list[tuple] = []
    while todo:
        best = max(cases, key=lambda c: len(keys(c) & todo))
        chosen.append(best)
        todo -= keys(best)
    return [c for c in cases if c in chosen]


def _methods(s: Any) -> tuple[str, ...]:
    return tuple(m for m in METHODS if s.profile.methods is None or m in s.profile.methods)


def _gradient_cases(s: Any, sizes: tuple[int, ...], dtypes: tuple[str, ...]) -> list[tuple]:
    methods = _methods(s)
    cases = [(p, n, d, m) for p in SCALABLE for n in sizes for d in dtypes for m in methods]
    if s.profile.thin:  # each method in each dtype on a rotating problem; AD and FD on every problem
        rotate = {
            (SCALABLE[(i + j) % len(SCALABLE)], d, m)
            for i, m in enumerate(methods)
            for j, d in enumerate(dtypes)
        }
        cases = [c for c in cases if c[3] in ("ad-reverse", "fd-central") or (c[0], c[2], c[3]) in rotate]
    return cases


def _make_cases(name: str, s: Any) -> tuple[tuple[str, ...], list[tuple], Callable[[tuple], str]] | None:
    p = s.profile
    dash = lambda case: "-".join(str(v) for v in case)
    if name == "test_feval":
        cases = [(pr, n, d) for pr in SCALABLE for n in p.sizes for d in s.timing_dtypes]
        return ("problem", "n", "dtype"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}"
    if name == "test_gradient":
        cases = _gradient_cases(s, p.sizes, s.timing_dtypes)
        return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"
    if name == "test_accuracy":
        cases = [(pr, d, m) for pr, _, d, m in _gradient_cases(s, (p.accuracy_n,), s.dtypes)]
        return ("problem", "dtype", "method"), cases, lambda c: f"{c[0]}-n{p.accuracy_n}-{c[1]}-{c[2]}"
    if name == "test_memory":
        dtype = "float64" if "float64" in s.timing_dtypes else s.timing_dtypes[0]
        cases = [(pr, n, dtype, m) for pr in MEMORY_PROBLEMS for n in p.memory_n for m in MEMORY_METHODS]
        return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"
    if name == "test_sharding":
        dtype = "float64" if "float64" in s.timing_dtypes else s.timing_dtypes[0]
        cases = [(pr, n, dtype, k) for pr in SCALABLE for n in p.sharding_n for k in SHARD_DEVICES]
        if p.thin:
            cases = cover(cases, ((0,), (3,)))
        return ("problem", "n", "dtype", "devices"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-dev{c[3]}"
    stencils = p.stencils or STENCILS
    if name == "test_derivative":
        methods = [f"{sc}{o}" for sc, o in stencils] + list(DERIVATIVE_PEERS)
        cases = [
            (f, k, d, m)
            for f in p.derivative_functions or tuple(FUNCTIONS)
            for k in p.derivative_points
            for d in s.timing_dtypes
            for m in methods
        ]
        if p.thin:
            cases = cover(cases, ((3,), (0,), (2,)))
        return ("function", "points", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"
    if name == "test_vcurve":
        hs = (*p.vcurve_h, "auto")
        cases = [
            (f, d, sc, o, h) for f in VCURVE_FUNCTIONS for d in s.dtypes for sc, o in stencils for h in hs
        ]
        if p.thin:
            cases = cover(cases, ((1, 2, 3), (4,)))
        return ("function", "dtype", "scheme", "order", "h"), cases, dash
    if name == "test_descent":
        cases = [(n, k, d, m) for n, k in p.descent for d in s.timing_dtypes for m in DESCENT_METHODS]
        if p.thin:
            cases = cover(cases, ((3, 2), (3, 0)))
        return ("n", "steps", "dtype", "method"), cases, lambda c: f"n{c[0]}-steps{c[1]}-{c[2]}-{c[3]}"
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    made = _make_cases(metafunc.function.__name__, metafunc.config.calcjax_bench)
    if made is not None:
        names, cases, idfn = made
        metafunc.parametrize(names, cases, ids=[idfn(c) for c in cases])


#: Run order: gradients first, smallest n first, so that their timings calibrate the cost
#: model before the larger cases (and the accuracy suite) are predicted.
ORDER = (
    "test_feval",
    "test_gradient",
    "test_sharding",
    "test_memory",
    "test_accuracy",
    "test_vcurve",
    "test_derivative",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    slots = [i for i, item in enumerate(items) if str(item.path).startswith(here + os.sep)]

    def rank(i: int) -> int:
        name = getattr(items[i], "originalname", items[i].name)
        return ORDER.index(name) if name in ORDER else len(ORDER)

    ordered = [items[i] for i in sorted(slots, key=rank)]  # stable: each test's own order is kept
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> Bench:
    """The suite's helper (test modules cannot import this conftest: they get it here)."""
    return Bench(pytestconfig)
