"""Gradient-descent benchmarks: the tutorial's loop against compiled loops.

Suite ``descent``. Four ways to run ``steps`` steps of ``x <- x - lr * grad f(x)``:

- ``tutorial-loop``: the tutorial's pure-Python loop
  (:func:`calcjax.baselines.tutorial_gradient_descent`) with the tutorial's FD
  gradient: ``numerical_derivative`` (eps=1e-5) at n = 1, the NumPy loop over
  coordinates above;
- ``python-loop-jit-step``: a Python loop around one jitted step (``jax.grad``);
- ``scan-ad-reverse`` and ``scan-fd-central``: ``calcjax.gradient_descent``, the
  whole loop one compiled ``lax.scan``, with ``jax.grad`` and with calcjax's
  central differences;
- two hand-written references for ``scan-ad-reverse``, compiled the same way:
  ``fori-bare``, a bare ``lax.fori_loop`` of ``x - lr * jax.grad(f)(x)`` that
  keeps no loss history (the loop-speed issue's yardstick), and ``scan-hand-vg``,
  a ``lax.scan`` over ``jax.value_and_grad`` that records the loss at every step
  as ``gradient_descent`` does (the best a user could write by hand).

n = 1 is the tutorial's problem (``x**2`` from 5.0, lr = 0.1); larger n is the
ill-conditioned quadratic with lr = 1 / (its largest curvature). Each record
holds ``steps``, ``final_loss`` and, for up to :data:`HISTORY_MAX` steps, the
loss at every point visited (``losses``).

Suite ``descent-race`` (:func:`test_descent_race`, below): the randomized gradient
estimators against ``ad-reverse`` and ``fd-central`` on the scalable problems, loss
against step, f-evaluations and wall time, every method tuned by the same rule.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree

import calcjax
from calcjax import METHODS, baselines
from calcjax._problems import QUADRATIC_CONDITION
from calcjax._timing import compile_jit

#: Loss histories longer than this are not stored in the record.
HISTORY_MAX = 1000
#: A descent may take this many times the profile's time for one call.
DESCENT_CALL_FACTOR = 10
#: Python's own cost of one step of a loop around a jitted call (dispatch), for predictions.
DISPATCH_S = 20e-6


def _max_s(bench) -> float:
    """A whole descent may take longer than one gradient call: the loops are the point here."""
    return DESCENT_CALL_FACTOR * bench.profile.max_call_s


def _problem(n: int) -> tuple[str, float]:
    return ("square", 0.1) if n == 1 else ("quadratic", 1.0 / QUADRATIC_CONDITION)


def _tutorial_case(bench, inst, steps, lr, dtype):
    """The tutorial's loop; the loss after each step comes with it (``f`` is passed)."""
    if inst.n == 1:
        f = lambda t: t * t
        grad = lambda t: baselines.numerical_derivative(f, t)
        x0 = np.dtype(dtype).type(5.0)
        per_step = 5e-6
    else:
        f = inst.f_np
        grad = lambda w: baselines.numpy_loop_gradient(f, w)
        x0 = inst.x0_np
        per_step = (2 * inst.n + 1) * bench.numpy_f_time(inst.name, inst.n, dtype)
    predicted = steps * per_step
    bench.check_budget(
        f"the tutorial loop, n={inst.n}, {steps} steps", seconds=predicted, max_s=_max_s(bench)
    )

    def run(k):
        x, losses = baselines.tutorial_gradient_descent(grad, x0, lr, k, f=f)
        return jax.block_until_ready(x), [float(f(x0)), *map(float, losses)]

    if predicted <= bench.profile.target_s:
        return bench.numpy_case(run, steps), "numpy-loop"
    # Costly: nothing to compile or warm up in pure Python, so time the first call; the
    # peak (which does not grow with the steps) comes from a one-step run.
    _, _, peak = bench.traced_peak(lambda: run(1))
    return bench.Case(lambda: run(steps), None, predicted, 0.0, peak, "tracemalloc"), "numpy-loop"


def _step(x, g, lr):
    return jax.tree_util.tree_map(lambda a, b: a - lr * b, x, g)


def _fori_bare(x0, data, *, f_data, lr, steps):
    """The yardstick: a bare ``fori_loop`` of gradient steps, no loss recorded."""
    return lax.fori_loop(0, steps, lambda _, x: _step(x, jax.grad(f_data)(x, data), lr), x0)


def _scan_hand_vg(x0, data, *, f_data, lr, steps):
    """By hand: ``lax.scan`` over ``value_and_grad``, the loss at every point, the last one included."""

    def body(x, _):
        loss, g = jax.value_and_grad(f_data)(x, data)
        return _step(x, g, lr), loss

    x, losses = lax.scan(body, x0, None, length=steps)
    return x, jnp.append(losses, f_data(x, data))


HAND_WRITTEN = {"fori-bare": _fori_bare, "scan-hand-vg": _scan_hand_vg}


@pytest.mark.bench_cases("descent")
def test_descent(benchmark, bench, n, steps, dtype, method):
    problem, lr = _problem(n)
    inst = bench.instance(problem, n, dtype)
    per_eval = bench.f_eval_time(problem, n, dtype)
    if method == "tutorial-loop":
        case, grad_method = _tutorial_case(bench, inst, steps, lr, dtype)
        loop = "python"
    elif method == "python-loop-jit-step":
        grad_method, loop = "ad-reverse", "python-jit-step"
        bench.check_budget(
            f"{method}, n={n}, {steps} steps",
            seconds=steps * (DISPATCH_S + 4 * per_eval),
            max_s=_max_s(bench),
        )

        def step(x, data):
            return _step(x, jax.grad(inst.f_data)(x, data), lr)

        compiled, compile_s = compile_jit(step, inst.x0, inst.data)
        peak = bench.xla_peak_bytes(compiled)

        def run():
            x = inst.x0
            for _ in range(steps):
                x = compiled(x, inst.data)
            return jax.block_until_ready(x)

        start = time.perf_counter()
        x_end = run()  # warm-up
        warm = time.perf_counter() - start
        case = bench.Case(run, x_end, warm, compile_s, peak, "xla_memory_analysis" if peak else None)
    else:  # one compiled loop: gradient_descent, or a hand-written reference to it
        hand = HAND_WRITTEN.get(method)
        grad_method = "ad-reverse" if hand else method.removeprefix("scan-")
        loop = method if hand else "lax-scan"
        evals = 4 if grad_method == "ad-reverse" else METHODS[grad_method].evals(inst.n) + 1
        bench.check_budget(
            f"{method}, n={n}, {steps} steps", seconds=steps * evals * per_eval, max_s=_max_s(bench)
        )

        def descend(x0, data):
            f = functools.partial(inst.f_data, data=data)
            return calcjax.gradient_descent(f, x0, lr=lr, steps=steps, method=grad_method)

        loop_fn = functools.partial(hand, f_data=inst.f_data, lr=lr, steps=steps) if hand else descend
        case = bench.compiled_case(loop_fn, inst.x0, inst.data)
    result = bench.measure(benchmark, case)
    if loop == "python":
        x_end, losses = result
    elif loop in ("lax-scan", "scan-hand-vg"):
        x_end, losses = result[0], [float(v) for v in np.asarray(result[1])]
    else:
        x_end, losses = result, None
    final_loss = float(losses[-1]) if losses else float(inst.f(x_end))
    assert np.isfinite(final_loss)
    bench.record(
        benchmark,
        suite="descent",
        group=f"descent n={n} steps={steps} {dtype}",
        problem=problem,
        n=inst.n,
        method=method,
        dtype=dtype,
        loop=loop,
        grad_method=grad_method,
        lr=lr,
        steps=steps,
        final_loss=final_loss,
        losses=losses if losses is not None and steps <= HISTORY_MAX else None,
        f_evals=steps * METHODS[grad_method].evals(inst.n),
        compile_s=case.compile_s,
        peak_bytes=case.peak_bytes,
        peak_source=case.peak_source,
    )


# --------------------------------------------------------------------------- the descent race
#
# Suite ``descent-race``: the randomized estimators (zo-spsa, zo-gaussian, zo-gaussian-k10,
# fwd-gradient) against ad-reverse and fd-central, all through ``calcjax.gradient_descent`` with a
# constant step, on each problem of the profile's ``race`` list (quadratic, Rosenbrock, logistic
# regression, the MLP). Every method is tuned the same way:
#
# - L: the largest Hessian eigenvalue at x0 (power iteration on Hessian-vector products), one
#   figure per problem and n;
# - the same learning-rate grid for every method, 1/L times 10^0, 10^-1, ... down to about 1/(n L)
#   (the scale at which a one-direction estimate, whose variance is ~n |g|^2, stops diverging):
#   every grid point is run once and the method keeps the one with the lowest final loss (diverged
#   runs lose), exactly as for every other method;
# - the budget: the same number of f-evaluations for every method, those of RACE_STEPS full
#   central-difference gradients (2n RACE_STEPS), in at most RACE_MAX_STEPS steps: fd-central runs
#   RACE_STEPS steps, AD and the estimators, whose steps cost one or a few evaluations, up to
#   RACE_MAX_STEPS; the loss is recorded about RACE_STEPS times in every run.
#
# f-evaluations: evals(n) of the registry per step (an AD pass, a JVP or a VJP, counts as one),
# plus one per recorded loss. The report's table (calcjax/report/_race.py) turns the histories into
# f-evaluations and wall time to a common loss target.

#: fd-central's steps; every method gets the f-evaluations of this many central-difference gradients.
RACE_STEPS = 100
#: At most this many steps (and the loss recorded every ``steps // RACE_STEPS``).
RACE_MAX_STEPS = 10_000
#: Power-iteration steps for L (the grid's scale).
RACE_POWER_STEPS = 30
#: The seed of ``jax.random.key`` for the stochastic methods.
RACE_SEED = 0
#: Seconds to draw one normal entry of a direction on a CPU (threefry and erfinv), for predictions:
#: at a cheap f the directions, not f, set an estimator's step time.
NORMAL_ENTRY_S = 5e-9
#: Normal entries drawn per parameter and step (SPSA's signs take one random bit each: ~0).
RACE_DIRECTIONS = {"zo-gaussian": 1, "zo-gaussian-k10": 10, "fwd-gradient": 1}


def race_lr_grid(curvature: float, n: int) -> list[float]:
    """1/L times 1, 1/10, ... down to the first power of ten at or below 1/n: the same for every method."""
    decades = max(1, int(np.ceil(np.log10(max(n, 1)))))
    return [10.0**-j / curvature for j in range(decades + 1)]


def race_budget(method: str, n: int) -> tuple[int, int]:
    """(steps, loss_every) of ``method`` at ``n``: the f-evaluations of RACE_STEPS central-difference
    gradients, at most RACE_MAX_STEPS steps."""
    budget = RACE_STEPS * METHODS["fd-central"].evals(n)
    steps = max(1, min(RACE_MAX_STEPS, budget // race_evals_per_step(method, n)))
    return steps, max(1, steps // RACE_STEPS)


def race_evals_per_step(method: str, n: int) -> int:
    """f-evaluations of one step: the registry's ``evals(n)``, an AD pass (JVP or VJP) counted as one."""
    return max(METHODS[method].evals(n), 1)


def _largest_curvature(f, x0) -> float:
    """Largest Hessian eigenvalue at ``x0`` by power iteration on Hessian-vector products."""
    flat, unravel = ravel_pytree(x0)
    hvp = jax.jit(lambda v: ravel_pytree(jax.jvp(jax.grad(f), (x0,), (unravel(v),))[1])[0])
    v = jnp.ones_like(flat) / np.sqrt(flat.size)
    lam = 0.0
    for _ in range(RACE_POWER_STEPS):
        w = hvp(v)
        lam = float(jnp.vdot(v, w))
        v = w / jnp.linalg.norm(w)
    return abs(lam)


@pytest.mark.bench_cases("descent-race")
def test_descent_race(benchmark, bench, problem, n, dtype, method):
    inst = bench.instance(problem, n, dtype)
    m = METHODS[method]
    steps, loss_every = race_budget(method, inst.n)
    per_step = race_evals_per_step(method, inst.n)
    per_eval = bench.f_eval_time(problem, n, dtype)
    curvature = bench.memo(("race-curvature", problem, n, dtype), lambda: _largest_curvature(inst.f, inst.x0))
    grid = race_lr_grid(curvature, inst.n)
    predicted = steps * ((per_step + 1) * per_eval + RACE_DIRECTIONS.get(method, 0) * inst.n * NORMAL_ENTRY_S)
    bench.check_budget(
        f"descent race {method}, {problem} n={n}, {steps} steps x {len(grid)} learning rates",
        seconds=predicted * len(grid),
        max_s=_max_s(bench),
    )
    key = jax.random.key(RACE_SEED) if m.stochastic else None

    def descend(x0, data, lr):
        f = functools.partial(inst.f_data, data=data)
        return calcjax.gradient_descent(
            f, x0, lr=lr, steps=steps, method=method, key=key, loss_every=loss_every
        )

    compiled, compile_s = compile_jit(descend, inst.x0, inst.data, jnp.asarray(grid[0], dtype))
    finals = []
    for lr in grid:  # every grid point once; the lowest final loss wins (diverged runs lose)
        res = compiled(inst.x0, inst.data, jnp.asarray(lr, dtype))
        loss = float(res.losses[-1])
        finals.append(loss if int(res.stopped_at) < 0 and np.isfinite(loss) else None)
    ranked = [(f, i) for i, f in enumerate(finals) if f is not None]
    best = min(ranked)[1] if ranked else 0
    lr = jnp.asarray(grid[best], dtype)
    call = lambda: jax.block_until_ready(compiled(inst.x0, inst.data, lr))
    start = time.perf_counter()
    res = call()
    warm = time.perf_counter() - start
    peak = bench.xla_peak_bytes(compiled)
    case = bench.Case(call, res, warm, compile_s, peak, "xla_memory_analysis" if peak else None)
    res = bench.measure(benchmark, case)
    losses = [float(v) for v in np.asarray(res.losses)]
    loss_steps = [int(k) for k in np.asarray(res.loss_steps)]
    stopped_at = int(res.stopped_at)
    if stopped_at < 0:
        assert np.isfinite(losses[-1])
    bench.record(
        benchmark,
        suite="descent-race",
        group=f"descent race {problem} n={n} {dtype}",
        problem=problem,
        n=inst.n,
        method=method,
        dtype=dtype,
        loop="lax-scan",
        grad_method=method,
        lr=float(lr),
        lr_grid=grid,
        grid_final_losses=finals,
        curvature=curvature,
        steps=steps,
        final_loss=losses[-1],
        losses=losses,
        loss_steps=loss_steps,
        stopped_at=stopped_at,
        evals_per_step=per_step,
        f_evals=steps * per_step + len(losses),
        key_seed=RACE_SEED if m.stochastic else None,
        compile_s=compile_s,
        peak_bytes=peak,
        peak_source=case.peak_source,
    )
