"""Issue 20's per-step cost targets for the randomized estimators, measured interleaved in one process.

Run on a quiet machine (the figures depend on load):

    python bench/estimator_targets.py               # n = 10 000, the four problems, 9 rounds
    python bench/estimator_targets.py --n 100000 --problems quadratic,mlp

Every contestant is one compiled ``lax.scan`` of ``--steps`` steps (the loop of
``calcjax.gradient_descent``, compiled and warmed up apart, each run ending in
``block_until_ready``); the per-step time is the run's time over its steps. Rounds
alternate the contestants, and each ratio is the median of the per-round ratios, so
a change of machine load hits both sides alike. Targets (float64):

- ``zo-spsa``: at most 3 evaluations of ``f`` plus O(n) work per step. Printed: the
  step in f-evaluations, and the same after taking off the O(n) part that does not
  depend on f -- drawing the n random signs and the update, timed alone as ``draw``;
- ``fwd-gradient``: at most 3x an ``ad-reverse`` step (also shown: Baydin et al.'s
  normal directions, ``directions="normal"``).

Contestants besides the descents: ``f``, one evaluation of f per step at a point
that changes every step (so XLA cannot hoist it out of the loop), and ``draw``, the
signs of a step drawn as the estimators draw them (``fold_in(key, step)``) and added
to x.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

jax.config.update("jax_enable_x64", True)

import calcjax  # noqa: E402
from calcjax import _estimators  # noqa: E402


def scan_of(step: Callable, x0: jax.Array, steps: int) -> Callable[[], jax.Array]:
    """A compiled loop of ``steps`` calls ``x <- step(x, k)``, warmed up; calling it runs it once."""
    run = jax.jit(lambda x: jax.lax.scan(lambda z, k: (step(z, k), None), x, jnp.arange(steps))[0])
    jax.block_until_ready(run(x0))
    return lambda: jax.block_until_ready(run(x0))


def contestants(problem: str, n: int, steps: int) -> dict[str, Callable[[], object]]:
    inst = calcjax.PROBLEMS[problem].instance(n, "float64")
    f, x0 = inst.f, inst.x0
    flat0, unravel = ravel_pytree(x0)
    key = jax.random.key(0)
    lr = 1e-9  # tiny: the point moves, nothing diverges, the cost is what is measured

    def descent(method: str | calcjax.GradientMethod) -> Callable[[], object]:
        run = lambda: jax.block_until_ready(
            calcjax.gradient_descent(f, x0, lr=lr, steps=steps, method=method, key=key, loss_every=steps).x
        )
        run()
        return run

    normal = calcjax.METHODS["fwd-gradient"]
    normal = type(normal)(
        "fwd-gradient-normal",
        functools.partial(calcjax.forward_gradient, distribution="gaussian"),
        normal.family,
        "forward gradient, normal directions",
        evals=normal.evals,
        stochastic=True,
    )

    def f_step(z: jax.Array, k: jax.Array) -> jax.Array:
        return z + lr * f(unravel(z)).astype(z.dtype)

    def draw_step(z: jax.Array, k: jax.Array) -> jax.Array:
        return z + lr * _estimators._rademacher(jax.random.fold_in(key, k), z.shape, z.dtype)

    return {
        "ad-reverse": descent("ad-reverse"),
        "fwd-gradient": descent("fwd-gradient"),
        "fwd-gradient-normal": descent(normal),
        "zo-spsa": descent("zo-spsa"),
        "f": scan_of(f_step, flat0, steps),
        "draw": scan_of(draw_step, flat0, steps),
    }


def measure(problem: str, n: int, steps: int, rounds: int) -> None:
    runs = contestants(problem, n, steps)
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - start) / steps)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    def extra(a: str) -> float:  # (a - draw) / f, per round
        return statistics.median(
            (x - d) / y for x, d, y in zip(times[a], times["draw"], times["f"], strict=True)
        )

    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    spsa, spsa_net = ratio("zo-spsa", "f"), extra("zo-spsa")
    fwd, fwd_normal = ratio("fwd-gradient", "ad-reverse"), ratio("fwd-gradient-normal", "ad-reverse")
    print(
        f"{problem:>10} n={n}: " + ", ".join(f"{k} {v:.1f} us" for k, v in med.items()) + "\n"
        f"{'':>10} zo-spsa {spsa:.2f} f-evals a step, {spsa_net:.2f} without the draw "
        f"({'meets' if spsa_net <= 3 else 'MISSES'} <= 3 + O(n)); fwd-gradient {fwd:.2f}x ad-reverse "
        f"({'meets' if fwd <= 3 else 'MISSES'} <= 3x; normal directions {fwd_normal:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="parameters (default 10000)")
    parser.add_argument("--problems", default="quadratic,rosenbrock,logistic,mlp", help="comma-separated")
    parser.add_argument("--steps", type=int, default=500, help="steps per timed loop (default 500)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds, at least 7 (default 9)")
    args = parser.parse_args()
    if args.rounds < 7:
        parser.error(f"--rounds must be at least 7, got {args.rounds}")
    for problem in args.problems.split(","):
        measure(problem, args.n, args.steps, args.rounds)


if __name__ == "__main__":
    main()
