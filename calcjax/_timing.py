"""Honest timing of JAX code: compile apart, warm up, ``block_until_ready`` on every call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

__all__ = ["Timing", "compile_jit", "time_call"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls (seconds) and the one-off compile time.

    Attributes:
      compile_s: time to lower and compile (0 for code that is not compiled).
      times_s: each timed call, warm-up excluded.
    """

    compile_s: float
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)


def compile_jit(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``; returns it and the compile time (s)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_call(
    fn: Callable[..., Any],
    *args: Any,
    jit: bool = True,
    min_time: float = 0.2,
    min_repeats: int = 3,
    max_repeats: int = 1000,
    max_time: float = 10.0,
) -> Timing:
    """Time ``fn(*args)``: compile apart (when ``jit``), one warm-up call, then timed calls.

    Every call ends in ``jax.block_until_ready``, so asynchronous dispatch is
    not mistaken for speed. Calls repeat until ``min_time`` seconds have been
    spent and at least ``min_repeats`` calls were made (at most ``max_repeats``,
    stopping after ``max_time`` seconds).
    """
    compile_s = 0.0
    if jit:
        fn, compile_s = compile_jit(fn, *args)
    jax.block_until_ready(fn(*args))  # warm-up: caches, allocator, first-call costs
    times: list[float] = []
    spent = 0.0
    while len(times) < max_repeats and (len(times) < min_repeats or spent < min_time) and spent < max_time:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return Timing(compile_s, tuple(times))
