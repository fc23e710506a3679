"""Measurement primitives of the benchmark suite: compile apart, warm up, peak memory, error.

One recipe for every benchmark (``shared/DESIGN.md``):

1. build the case on the chosen device (the plugin resolves ``--device`` and
   makes it JAX's default device);
2. compile apart: ``jax.jit(fn).lower(*args).compile()`` gives ``compile_s`` and,
   from XLA's memory analysis, ``peak_bytes``; NumPy code is not compiled and its
   peak comes from ``tracemalloc``;
3. warm up: one call, whose result is scored against the analytic reference;
4. time: ``benchmark.pedantic`` (see :meth:`calcjax._bench.harness.Bench.measure`).
   Every timed call ends in ``jax.block_until_ready``.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from calcjax._timing import compile_jit

__all__ = ["Case", "compiled_case", "flat_np", "numpy_case", "rel_error", "traced_peak", "xla_peak_bytes"]

#: A call predicted to take longer than this is timed once, without a warm-up call.
NO_WARM_UP_S = 5.0
#: A warm-up call shorter than this is followed by a second one (the faster one counts).
WARM_AGAIN_S = 0.05


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
    compiled, compile_s = compile_jit(fn, *args)
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
