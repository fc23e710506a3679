"""Module-level NumPy functions for the black-box tests.

Worker processes receive functions by reference (pickle), so the functions they
run live in an importable module rather than in a test file. None of them can
be traced by JAX: each converts its input with ``np.asarray``.
"""

from __future__ import annotations

import os
import time

import numpy as np


class SimulatorError(Exception):
    """What a simulator might raise at a bad point."""


def issue_loss(x):
    """The loss from issue 14: a NumPy body JAX cannot trace."""
    x = np.asarray(x, dtype=float)
    return float(np.sum(np.cos(x) ** 2) + np.sum(x[1:] * x[:-1]))


def issue_loss_grad(x):
    x = np.asarray(x, dtype=np.float64)
    g = -2.0 * np.cos(x) * np.sin(x)
    g[1:] += x[:-1]
    g[:-1] += x[1:]
    return g


def rosen(x):
    """Extended Rosenbrock, in x's own dtype."""
    x = np.asarray(x)
    a, b = x[0::2], x[1::2]
    return np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)


def rosen_batched(xs):
    """``rosen`` of each row of ``xs`` (k, n) -> (k,)."""
    xs = np.asarray(xs)
    a, b = xs[:, 0::2], xs[:, 1::2]
    return np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=1)


def rosen_trailing(xs):
    """``rosen`` of each column of ``xs`` (n, k) -> (k,): scipy.differentiate's layout."""
    xs = np.asarray(xs)
    a, b = xs[0::2], xs[1::2]
    return np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=0)


def rosen_grad(x):
    x = np.asarray(x, dtype=np.float64)
    a, b = x[0::2], x[1::2]
    g = np.empty_like(x)
    g[0::2] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1::2] = 200.0 * (b - a * a)
    return g


#: ``fails_above`` raises once coordinate 3 exceeds this value (the forward point of coordinate 3).
THRESHOLD = 0.5


def fails_above(x):
    x = np.asarray(x)
    if x[3] > THRESHOLD:
        raise SimulatorError(f"the simulator diverged at x[3] = {x[3]}")
    return float(np.sum(x**2))


def crashes(x):
    """Kills its worker process (a segfault in a compiled library, say)."""
    os._exit(3)


def sleepy(x):
    """A loss that waits 5 ms per call, as a simulator waiting on an external program does."""
    time.sleep(0.005)
    return issue_loss(x)


def worker_pid(x):
    return float(os.getpid())
