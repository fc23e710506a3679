"""What each benchmark runs: its cases, from the profile, and the order the benchmarks run in.

A benchmark asks for its cases with ``@pytest.mark.bench_cases("gradient")``;
the plugin (:mod:`calcjax._bench.plugin`) parametrises it with the table of that
name. Profiles marked ``thin`` (``ci``) run a covering subset: every method,
problem and dtype at least once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from calcjax import _corpus
from calcjax._bench.profiles import RACE_DETERMINISTIC_MAX_N
from calcjax._finite_diff import _STENCILS as _STENCIL_TABLE
from calcjax._methods import METHODS
from calcjax._problems import PROBLEMS
from calcjax._second_order import SECOND_ORDER_METHODS

__all__ = ["TABLES", "case_table", "collection_rank", "cover"]

#: The problems whose n can grow: the gradient, feval, accuracy and sharding suites run these.
SCALABLE = tuple(name for name, p in PROBLEMS.items() if p.scalable)
#: (parameter names, cases, id of a case)
Table = tuple[tuple[str, ...], list[tuple], Callable[[tuple], str]]

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
#: The descent race: randomized estimators against the full gradients, deterministic ones first.
RACE_METHODS = ("ad-reverse", "fd-central", "zo-spsa", "zo-gaussian", "zo-gaussian-k10", "fwd-gradient")
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
    """Deterministic registry methods (stochastic estimators are graded in their own tests and suite)."""
    return tuple(
        m
        for m in METHODS
        if not METHODS[m].stochastic and (s.profile.methods is None or m in s.profile.methods)
    )


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


def _feval(s: Any) -> Table:
    p = s.profile
    cases = [(pr, n, d) for pr in SCALABLE for n in p.sizes for d in s.timing_dtypes]
    return ("problem", "n", "dtype"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}"


def _gradient(s: Any) -> Table:
    cases = _gradient_cases(s, s.profile.sizes, s.timing_dtypes)
    return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"


def _accuracy(s: Any) -> Table:
    p = s.profile
    cases = [(pr, d, m) for pr, _, d, m in _gradient_cases(s, (p.accuracy_n,), s.dtypes)]
    return ("problem", "dtype", "method"), cases, lambda c: f"{c[0]}-n{p.accuracy_n}-{c[1]}-{c[2]}"


def _one_dtype(s: Any) -> str:
    return "float64" if "float64" in s.timing_dtypes else s.timing_dtypes[0]


def _memory(s: Any) -> Table:
    dtype = _one_dtype(s)
    cases = [(pr, n, dtype, m) for pr in MEMORY_PROBLEMS for n in s.profile.memory_n for m in MEMORY_METHODS]
    return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"


def _sharding(s: Any) -> Table:
    dtype = _one_dtype(s)
    cases = [(pr, n, dtype, k) for pr in SCALABLE for n in s.profile.sharding_n for k in SHARD_DEVICES]
    if s.profile.thin:
        cases = cover(cases, ((0,), (3,)))
    return ("problem", "n", "dtype", "devices"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-dev{c[3]}"


def _derivative(s: Any) -> Table:
    p = s.profile
    methods = [f"{sc}{o}" for sc, o in p.stencils or STENCILS] + list(DERIVATIVE_PEERS)
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


def _vcurve(s: Any) -> Table:
    p = s.profile
    hs = (*p.vcurve_h, "auto")
    cases = [
        (f, d, sc, o, h)
        for f in VCURVE_FUNCTIONS
        for d in s.dtypes
        for sc, o in p.stencils or STENCILS
        for h in hs
    ]
    if p.thin:
        cases = cover(cases, ((1, 2, 3), (4,)))
    return ("function", "dtype", "scheme", "order", "h"), cases, lambda c: "-".join(str(v) for v in c)


#: The second-difference V-curve's function, ``sin(w0) exp(w1)`` (``bench/test_second_order.py``): the
#: diagonal and the mixed stencils both matter to its Hessian.
HESSIAN_VCURVE_FUNCTION = "sin-exp"


def _second_cases(s: Any, kinds: tuple[str, ...], sizes: tuple[int, ...]) -> list[tuple]:
    """(problem, n, dtype, method) for the second-order methods of ``kinds``, in every dtype asked for
    (accuracy in float32 is part of the point). Thin: each method once per dtype, rotating problems;
    ``second_thin`` (the default profile): the timing dtypes only -- its V-curve shows float32."""
    only = s.profile.second_methods
    methods = [n for n, m in SECOND_ORDER_METHODS.items() if m.kind in kinds and (only is None or n in only)]
    dtypes = s.timing_dtypes if s.profile.second_thin else s.dtypes
    cases = [(p, n, d, m) for p in SCALABLE for n in sizes for d in dtypes for m in methods]
    if s.profile.thin or s.profile.second_thin:
        rotate = {
            (SCALABLE[(i + j) % len(SCALABLE)], d, m)
            for i, m in enumerate(methods)
            for j, d in enumerate(dtypes)
        }
        cases = [c for c in cases if (c[0], c[2], c[3]) in rotate]
    return cases


def _hessian(s: Any) -> Table:
    cases = _second_cases(s, ("hessian", "diagonal"), s.profile.hessian_n)
    return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"


def _hvp(s: Any) -> Table:
    cases = _second_cases(s, ("hvp",), s.profile.hvp_n)
    return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"


def _hessian_vcurve(s: Any) -> Table:
    hs = (*s.profile.vcurve_h, "auto") if s.profile.hessian_n else ()
    cases = [(HESSIAN_VCURVE_FUNCTION, d, h) for d in s.dtypes for h in hs]
    return ("function", "dtype", "h"), cases, lambda c: "-".join(str(v) for v in c)


def _descent(s: Any) -> Table:
    p = s.profile
    cases = [(n, k, d, m) for n, k in p.descent for d in s.timing_dtypes for m in DESCENT_METHODS]
    if p.thin:
        cases = cover(cases, ((3, 2), (3, 0)))
    return ("n", "steps", "dtype", "method"), cases, lambda c: f"n{c[0]}-steps{c[1]}-{c[2]}-{c[3]}"


#: The nonjax suite (:mod:`calcjax._bench.nonjax`): its default selection (a small share of the
#: default profile's time): the tutorial's loop against calcjax serial and vectorized (and jax.grad on the JAX
#: twin) on the problem whose batch is one matrix product, and the process pool on the waiting loss
#: (its start-up, timed apart, is most of it). The ODE fit, Dask and the peers run in ``--full``.
NONJAX_DEFAULT = (
    ("logistic", 200, "calcjax-serial"),
    ("logistic", 200, "calcjax-vectorized"),
    ("logistic", 200, "tutorial-loop"),
    ("logistic", 200, "jax-grad"),
    ("sleep-5ms", 8, "calcjax-serial"),
    ("sleep-5ms", 8, "calcjax-workers2"),
)
NONJAX_CI = (
    ("quadratic", 10, "calcjax-serial"),
    ("mlp", 21, "calcjax-vectorized"),
    ("rosenbrock", 10, "tutorial-loop"),
    ("logistic", 10, "scipy-differentiate"),
    ("quadratic", 10, "jax-grad"),
    ("ode-fit", 6, "calcjax-serial"),
    ("sleep-5ms", 4, "calcjax-workers2"),
)
#: Methods of the nonjax suite that need a process pool, and those the black boxes run.
_NONJAX_POOL = ("calcjax-workers2", "calcjax-dask2")
_NONJAX_BLACK_BOX = ("calcjax-serial", *_NONJAX_POOL, "tutorial-loop", "scipy-approx-fprime")


def _nonjax(s: Any) -> Table:
    from calcjax._bench.nonjax import BLACK_BOXES, TWINS
    from calcjax._bench.nonjax import METHODS as NJ_METHODS

    name = s.profile.name
    if name == "ci":
        cases = list(NONJAX_CI)
    elif name != "full":
        cases = list(NONJAX_DEFAULT)
    else:
        twin = [m for m in NJ_METHODS if m not in _NONJAX_POOL]
        cases = [(p, n, m) for p in TWINS for n in (100, 1000) for m in twin]
        # scipy.differentiate and numdifftools are left out of the black boxes: their first trial steps
        # (0.5; numdifftools' largest) take the ODE far outside its range, where the integration fails
        # or turns stiff and runs far past the per-call limit; on the waiting losses they add only rounds.
        cases += [(p, 6 if p == "ode-fit" else 8, m) for p in BLACK_BOXES for m in _NONJAX_BLACK_BOX]
    return ("problem", "n", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}"


def _race(s: Any) -> Table:
    dtype = _one_dtype(s)
    cases = [
        (pr, n, dtype, m)
        for pr, n in s.profile.race
        for m in RACE_METHODS
        if (s.profile.race_methods is None or m in s.profile.race_methods)
        and (n <= RACE_DETERMINISTIC_MAX_N or m == "ad-reverse" or METHODS[m].stochastic)
    ]
    if s.profile.thin:
        cases = cover(cases, ((3,), (0,)))
    return ("problem", "n", "dtype", "method"), cases, lambda c: f"{c[0]}-n{c[1]}-{c[2]}-{c[3]}"


#: The corpus suite's cases outside ``--full``: a point the automatic step got wrong (log near 0) and a
#: unit-scale one.
CORPUS_QUICK = ("log at 1e-05", "sin at 1.2")
#: The gradcheck suite's tools: calcjax.check_gradient and jax.test_util.check_grads.
GRADCHECK_TOOLS = ("calcjax", "check_grads")


def _corpus_table(s: Any) -> Table:
    names = [c.name for c in _corpus.CASES]
    if not s.profile.corpus_all:
        names = [n for n in names if n in CORPUS_QUICK]
    cases = [(n, m) for n in names for m in _corpus.METHODS]
    if s.profile.thin:
        cases = cover(cases, ((0,), (1,)))
    return ("case", "method"), cases, lambda c: f"{c[0]}-{c[1]}"


def _gradcheck(s: Any) -> Table:
    runs = s.profile.gradcheck_count > 0
    cases = [(d, k, t) for d in s.dtypes for k in ("bug", "correct") for t in GRADCHECK_TOOLS] if runs else []
    return ("dtype", "kind", "tool"), cases, lambda c: "-".join(c)


#: Case table name -> its builder, in run order: gradients first, smallest n first, so that their
#: timings calibrate the cost model before the larger cases (and the accuracy suite) are predicted.
TABLES: dict[str, Callable[[Any], Table]] = {
    "feval": _feval,
    "gradient": _gradient,
    "sharding": _sharding,
    "memory": _memory,
    "accuracy": _accuracy,
    "vcurve": _vcurve,
    "derivative": _derivative,
    "descent": _descent,
    "hessian": _hessian,
    "hvp": _hvp,
    "hessian_vcurve": _hessian_vcurve,
    "nonjax": _nonjax,
    "descent-race": _race,
    "corpus": _corpus_table,
    "gradcheck": _gradcheck,
}


def case_table(name: str, settings: Any) -> Table:
    """The parameter names, cases and ids of table ``name`` under ``settings`` (``config.calcjax_bench``)."""
    if name not in TABLES:
        raise ValueError(f"unknown bench case table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name](settings)


def collection_rank(name: str | None) -> int:
    """Where benchmarks of case table ``name`` run (see :data:`TABLES`); others (``None``) last."""
    return list(TABLES).index(name) if name in TABLES else len(TABLES)
