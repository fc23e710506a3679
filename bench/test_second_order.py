"""Second-derivative benchmarks: each :data:`calcjax.SECOND_ORDER_METHODS` entry against independent Hessians.

Suites:

- ``hessian``: full Hessians and Hessian diagonals (kinds ``hessian`` and
  ``diagonal``) of every scalable problem, n up to 1 000 (``--full``), in every
  dtype asked for.
- ``hvp``: Hessian-vector products along a fixed direction with entries of both
  signs, n up to 1e5 (``--full``).
- ``hessian_vcurve``: the relative error of ``calcjax.hessian`` (central second
  differences, four-point mixed stencil) against the step ``h`` and with the
  automatic step, on ``sin(w0) exp(w1)`` at ``(1, 0.5)``, in float32 and
  float64: where rounding (``~eps/h**2``) overtakes truncation (``~h**2``), and
  where float32 stops giving a usable Hessian at all.

References never come from JAX: the problems' analytic Hessians (quadratic,
Rosenbrock, logistic regression) and, for the MLP, complex steps of its
hand-written NumPy gradient (:meth:`calcjax.Instance.reference_hessian`,
:meth:`~calcjax.Instance.reference_hvp`). Each record is timed with the suite's
recipe: compiled apart, warmed up, every call ending in ``block_until_ready``.
In the test profile (``ci``) each method's error must be within its documented
bound (:meth:`calcjax._bench.tolerances.Tolerances.second_order`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax._bench.measure import rel_error
from calcjax._bench.tolerances import Tolerances
from calcjax._second_order import SECOND_ORDER_METHODS

TOLERANCES = Tolerances()
#: The V-curve's point: ``sin(w0) exp(w1)`` there has a Hessian with no zero entry.
HESSIAN_VCURVE_X = (1.0, 0.5)


def _sin_exp(w):
    return jnp.sin(w[0]) * jnp.exp(w[1])


def _sin_exp_hessian(w) -> np.ndarray:
    a, b = float(w[0]), float(w[1])
    s, c, e = np.sin(a), np.cos(a), np.exp(b)
    return np.array([[-s * e, c * e], [c * e, s * e]])


def _direction(inst):
    """A fixed direction like ``x0``: ``cos(1 + k)``, entries of both signs and no zero."""
    flat = np.cos(1.0 + np.arange(inst.n))
    return flat, jax.tree_util.tree_map(lambda a: jnp.asarray(a, inst.dtype), inst.unflatten_np(flat))


def _reference_name(inst) -> str:
    return "analytic" if inst.hessian_np is not None else "complex-step-numpy-grad"


def _method_case(bench, problem, n, dtype, name):
    """(method, instance, case, v flat or None): the registry method compiled on the problem, or a skip."""
    m = SECOND_ORDER_METHODS[name]
    reason = m.unavailable()
    if reason:
        pytest.skip(reason)
    if m.max_n is not None and n > m.max_n:
        pytest.skip(f"{name} runs only up to n={m.max_n} (registry max_n: too slow beyond)")
    inst = bench.instance(problem, n, dtype)
    itemsize = jnp.dtype(dtype).itemsize
    per_eval = bench.f_eval_time(problem, n, dtype) if m.traceable else bench.numpy_f_time(problem, n, dtype)
    # A gradient costs a few f-evaluations (reverse mode); AD Hessians are n gradient passes.
    grads = m.grad_evals(inst.n) + (inst.n if m.family == "ad" and m.kind == "hessian" else 0)
    predicted = (m.evals(inst.n) + 4 * grads) * per_eval
    bench.check_budget(
        f"{name} on {problem} n={n}",
        seconds=predicted,
        nbytes=m.memory(inst.n, itemsize) if m.memory else 0.0,
    )
    v_flat = None
    args: tuple = ()
    if m.kind == "hvp":
        v_flat, v = _direction(inst)
        args = (v,)
    if m.traceable:
        fn = lambda x, data, *rest: m.fn(functools.partial(inst.f_data, data=data), x, *rest)
        case = bench.compiled_case(fn, inst.x0, inst.data, *args, expected_s=predicted)
    else:
        np_args = (v_flat.astype(dtype),) if v_flat is not None else ()
        case = bench.numpy_case(m.fn, inst.f_np, inst.x0_np, *np_args, expected_s=predicted)
    return m, inst, case, v_flat


def _score(m, inst, result, v_flat) -> float:
    if m.kind == "hessian":
        value = calcjax.ravel_hessian(result, inst.x0) if not isinstance(result, np.ndarray) else result
        return rel_error(value, inst.reference_hessian())
    if m.kind == "diagonal":
        return rel_error(result, np.diag(inst.reference_hessian()))
    return rel_error(result, inst.reference_hvp(v_flat))


def _run(benchmark, bench, problem, n, dtype, method, *, suite):
    m, inst, case, v_flat = _method_case(bench, problem, n, dtype, method)
    result = bench.measure(benchmark, case)
    err = _score(m, inst, result, v_flat)
    assert np.isfinite(err), f"{method} gave a non-finite {m.kind} on {problem} ({dtype})"
    if bench.profile.name == "ci":
        bound = TOLERANCES.second_order(m, dtype)
        assert err <= bound, (
            f"{method} on {problem} n={n} ({dtype}): relative error {err:.3g} > its bound {bound:.3g} "
            f"(kind {m.kind}, scheme {m.scheme}, order {m.order}; calcjax._bench.tolerances)"
        )
    bench.record(
        benchmark,
        suite=suite,
        group=f"{suite} {problem} n={n} {dtype}",
        problem=problem,
        n=n,
        n_params=inst.n,
        method=method,
        family=m.family,
        kind=m.kind,
        scheme=m.scheme,
        order=m.order,
        dtype=dtype,
        f_evals=m.evals(inst.n),
        grad_evals=m.grad_evals(inst.n),
        rel_error=err,
        reference=_reference_name(inst),
        **bench.case_fields(case),
    )


@pytest.mark.bench_cases("hessian")
def test_hessian(benchmark, bench, problem, n, dtype, method):
    _run(benchmark, bench, problem, n, dtype, method, suite="hessian")


@pytest.mark.bench_cases("hvp")
def test_hvp(benchmark, bench, problem, n, dtype, method):
    _run(benchmark, bench, problem, n, dtype, method, suite="hvp")


@pytest.mark.bench_cases("hessian_vcurve")
def test_hessian_vcurve(benchmark, bench, function, dtype, h):
    x = np.asarray(HESSIAN_VCURVE_X, dtype)
    if h == "auto":
        case = bench.compiled_case(lambda w: calcjax.hessian(_sin_exp, w), x)
    else:
        step = np.asarray(x + np.asarray(h, dtype), dtype) - x
        if np.any(step == 0):
            pytest.skip(f"h={h:g} is below {dtype}'s resolution at x={HESSIAN_VCURVE_X}: x + h == x")
        # One compiled Hessian per dtype; the step is an argument.
        compiled = bench.memo(
            ("hessian_vcurve", dtype),
            lambda: bench.compiled_case(lambda w, s: calcjax.hessian(_sin_exp, w, h=s), x, step),
        )
        case = bench.Case(
            lambda: jax.block_until_ready(compiled.compiled(x, step)),
            None,
            0.0,
            compiled.compile_s,
            compiled.peak_bytes,
            compiled.peak_source,
        )
        case.result = case.call()  # warm-up, and the value scored
    exact = _sin_exp_hessian(np.asarray(HESSIAN_VCURVE_X, np.float64))
    err = rel_error(case.result, exact)
    if h == "auto" and bench.profile.name == "ci":
        bound = TOLERANCES.second_difference(dtype)
        assert err <= bound, f"second differences, automatic step, {dtype}: error {err:.3g} > {bound:.3g}"
    bench.measure(benchmark, case, rounds=1)
    bench.record(
        benchmark,
        suite="hessian_vcurve",
        group=f"hessian_vcurve {function} {dtype}",
        problem=function,
        n=2,
        method="fd-hessian",
        kind="hessian",
        scheme="central",
        order=2,
        h=h if h == "auto" else float(h),
        dtype=dtype,
        f_evals=SECOND_ORDER_METHODS["fd-hessian"].evals(2),
        abs_error=float(np.linalg.norm(np.asarray(case.result, np.float64) - exact)),
        rel_error=err,
        reference="analytic",
        **bench.case_fields(case),
    )
