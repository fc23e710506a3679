"""The benchmark profiles: what each one runs (sizes, methods, dtypes) and the time it may spend.

Standard library only: ``calcjax bench --help`` and option checking need no JAX.
"""

from __future__ import annotations

from dataclasses import dataclass

from calcjax._schema import DTYPES

__all__ = ["CORE_METHODS", "PROFILES", "RACE_DETERMINISTIC_MAX_N", "RACE_PROBLEMS", "Profile"]


@dataclass(frozen=True)
class Profile:
    """What one benchmark profile runs, and the time it may spend.

    Attributes:
      name: ``ci``, ``quick``, ``default`` or ``full``.
      sizes: n of the gradient suite (and of ``feval``).
      timing_dtypes: dtypes of the timing suites when ``--dtypes`` is not given
        (the accuracy suites always run every dtype asked for).
      accuracy_n: n of the ``accuracy`` suite.
      derivative_points: how many points one ``derivative`` call differentiates at.
      derivative_functions: the scalar functions of the derivative suite (``None``: all).
      stencils: the (scheme, order) stencils of the derivative and V-curve suites (``None``: all).
      vcurve_h: step sizes of the V-curve.
      descent: (n, steps) pairs of the descent suite.
      sharding_n: n of the sharding suite.
      memory_n: n of the memory suite (compile only: XLA's memory analysis at sizes too
        slow to run).
      methods: the gradient methods timed (``None``: every registry method).
      thin: run a covering subset of the cases (every method, problem and dtype at
        least once) instead of every combination: the ``ci`` profile's way to stay fast.
      max_call_s: a case whose single call is predicted to take longer is skipped.
      long_methods, long_call_s: gradient methods allowed up to ``long_call_s`` per call
        instead (the full profile's n = 1e5 point for calcjax's FD and the NumPy loop).
      accuracy_max_call_s: the same for the accuracy suite (it times one round only).
      target_s: seconds of timed calls per benchmark (rounds follow from it).
      max_rounds: at most this many timed rounds.
      min_rounds: at least this many timed rounds for the gradient and feval suites (the
        headline's timings: enough rounds for the regression gate's test, :mod:`calcjax._gate`).
      hessian_n: n of the ``hessian`` suite (full Hessians and diagonals); ``()``: not run.
      hvp_n: n of the ``hvp`` suite (Hessian-vector products); ``()``: not run.
      second_methods: the second-order methods of the ``hessian`` and ``hvp`` suites (``None``: all).
      second_thin: the second-order suites run each method once per dtype on a rotating
        problem (the ``default`` profile's way to stay within its time) instead of every problem.
      race: (problem, n) pairs of the ``descent-race`` suite (randomized estimators against AD and
        FD in gradient descent, ``bench/test_descent.py``); the deterministic methods run up to
        :data:`RACE_DETERMINISTIC_MAX_N`.
      race_methods: the methods of the race (``None``: all of ``calcjax._bench.cases.RACE_METHODS``).
      corpus_all: the ``corpus`` suite runs every case of :mod:`calcjax._corpus` (else the
        few in :data:`calcjax._bench.cases.CORPUS_QUICK`).
      gradcheck_count, gradcheck_bug_limit: the ``gradcheck`` suite's correct gradients and
        planted bugs per dtype (``None``: every bug kind); a count of 0 leaves the suite out.
        Only ``full`` runs it: every check compiles, so even 2 correct gradients and 1 bug per
        dtype do not fit the default profile's allowance.
    """

    name: str
    sizes: tuple[int, ...]
    timing_dtypes: tuple[str, ...]
    accuracy_n: int
    derivative_points: tuple[int, ...]
    derivative_functions: tuple[str, ...] | None
    stencils: tuple[tuple[str, int], ...] | None
    vcurve_h: tuple[float, ...]
    descent: tuple[tuple[int, int], ...]
    sharding_n: tuple[int, ...]
    memory_n: tuple[int, ...]
    methods: tuple[str, ...] | None
    thin: bool
    max_call_s: float
    long_methods: tuple[str, ...]
    long_call_s: float
    accuracy_max_call_s: float
    target_s: float
    max_rounds: int
    min_rounds: int = 1
    hessian_n: tuple[int, ...] = ()
    hvp_n: tuple[int, ...] = ()
    second_methods: tuple[str, ...] | None = None
    second_thin: bool = False
    race: tuple[tuple[str, int], ...] = ()
    race_methods: tuple[str, ...] | None = None
    corpus_all: bool = False
    gradcheck_count: int = 0
    gradcheck_bug_limit: int | None = 1


#: Timed rounds at least of the headline's timings (gradient, feval) outside the ci profile: the
#: regression gate (:mod:`calcjax._gate`) needs 7 rounds a side.
HEADLINE_MIN_ROUNDS = 7
_DECADES = tuple(10.0**-k for k in range(1, 15))  # 1e-1 ... 1e-14
#: The quick profile's gradient methods: the headline ones and their like-for-like peers.
CORE_METHODS = (
    "ad-reverse",
    "fd-forward",
    "fd-central",
    "numpy-loop",
    "scipy-approx-fprime",
    "jax-vmap-naive",
)
#: The default profile's second-order methods (within its ~10 s share): calcjax's FD Hessian and
#: HVP against their AD and complex-step counterparts; Richardson and the peers run with --full.
SECOND_CORE_METHODS = (
    "fd-hessian",
    "jax-hessian",
    "complex-of-grad-hessian",
    "fd-of-grad",
    "hvp-forward-over-reverse",
)
_DESCENT = ((1, 10), (1, 10_000), (10_000, 10), (10_000, 10_000))
#: The descent-race problems of the full profile: every scalable problem at n = 1000 and 10 000,
#: and n = 1e5 (the estimators and ad-reverse only: a full FD gradient there is 2e5 evaluations).
RACE_PROBLEMS = ("quadratic", "rosenbrock", "logistic", "mlp")
_RACE_FULL = tuple((p, n) for p in RACE_PROBLEMS for n in (1000, 10_000, 100_000))
#: Above this n the descent race runs the estimators and ad-reverse only.
RACE_DETERMINISTIC_MAX_N = 10_000

#: The profiles. ``ci`` runs every benchmark once, at tiny sizes, as a test.
PROFILES = {
    p.name: p
    for p in [
        Profile(
            "ci",
            sizes=(10,),
            timing_dtypes=DTYPES,
            accuracy_n=10,
            derivative_points=(1,),
            derivative_functions=None,
            stencils=None,
            vcurve_h=(1e-2, 1e-5, 1e-8),
            descent=((1, 10), (10, 10)),
            sharding_n=(10,),
            memory_n=(10,),
            methods=None,
            thin=True,
            max_call_s=0.5,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=0.5,
            target_s=0.0,
            max_rounds=1,
            hessian_n=(10,),
            hvp_n=(10,),
            race=(("quadratic", 10), ("rosenbrock", 10)),
        ),
        Profile(
            "quick",
            sizes=(100, 1000),
            timing_dtypes=("float64",),
            accuracy_n=100,
            derivative_points=(1,),
            derivative_functions=("square", "sin"),
            stencils=(("forward", 1), ("central", 2), ("central", 4)),
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000,),
            memory_n=(),
            methods=CORE_METHODS,
            thin=False,
            max_call_s=0.3,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=1.0,
            target_s=0.05,
            max_rounds=50,
            min_rounds=HEADLINE_MIN_ROUNDS,
        ),
        Profile(
            "default",
            sizes=(10, 100, 1000, 10_000),
            timing_dtypes=("float64",),
            accuracy_n=1000,
            derivative_points=(1, 10_000),
            derivative_functions=None,
            stencils=None,
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000, 10_000),
            memory_n=(1_000_000,),
            methods=None,
            thin=False,
            max_call_s=1.0,
            long_methods=(),
            long_call_s=0.0,
            accuracy_max_call_s=2.0,
            target_s=0.1,
            max_rounds=100,
            min_rounds=HEADLINE_MIN_ROUNDS,
            hessian_n=(10,),
            hvp_n=(10,),
            second_methods=SECOND_CORE_METHODS,
            second_thin=True,
            # FD against AD against SPSA within the default profile's allowance; every estimator is --full's
            race=(("quadratic", 1000),),
            race_methods=("ad-reverse", "fd-central", "zo-spsa"),
        ),
        Profile(
            "full",
            sizes=(10, 100, 1000, 10_000, 100_000, 1_000_000),
            timing_dtypes=DTYPES,
            accuracy_n=1000,
            derivative_points=(1, 10_000, 1_000_000),
            derivative_functions=None,
            stencils=None,
            vcurve_h=_DECADES,
            descent=_DESCENT,
            sharding_n=(1000, 10_000),
            memory_n=(100_000, 1_000_000),
            methods=None,
            thin=False,
            max_call_s=10.0,
            long_methods=("fd-forward", "fd-central", "numpy-loop"),
            long_call_s=300.0,
            accuracy_max_call_s=30.0,
            target_s=0.5,
            max_rounds=200,
            min_rounds=HEADLINE_MIN_ROUNDS,
            hessian_n=(10, 100, 1000),
            hvp_n=(100, 10_000, 100_000),
            race=_RACE_FULL,
            corpus_all=True,
            gradcheck_count=200,
            gradcheck_bug_limit=None,
        ),
    ]
}
