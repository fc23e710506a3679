"""Accuracy benchmarks: how close each derivative is to the analytic one.

Suites:

- ``vcurve``: the error of ``calcjax.derivative`` against the step ``h``
  (1e-1 … 1e-14, and ``h='auto'``, calcjax's automatic step) for every scheme
  and order, in float32 and float64, on ``sin`` and ``exp`` at ``x = 1``: too
  large a step leaves truncation error, too small a step rounding error.
- ``accuracy``: the relative error of every gradient method on every scalable
  problem at the profile's ``accuracy_n`` (1 000 by default), in every dtype.
  The NumPy loop on the float32 instance is the tutorial's ``eps=1e-5`` in
  float32 (its ``f_np`` computes in float32).

The error is the point of these records; each still times its call (one
round), compiled and warmed up first. In the test profile (``ci``) each checks
what its table claims: every gradient's error within its bound (the tolerance
table), and the automatic step at the bottom of the V-curve (its error at most
:data:`VCURVE_SLACK` times the best of the decades 1e-1 … 1e-14).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import calcjax

X0 = 1.0
#: In the test profile, the automatic step's error may be at most this many times the best decade's.
VCURVE_SLACK = 10.0
#: The decades the test profile's V-curve check scans for the minimum.
DECADES = tuple(10.0**-k for k in range(1, 15))


def _vcurve_minimum(bench, f, dtype, scheme, order, exact):
    """(best absolute error over :data:`DECADES`, its step) of the memoised derivative of ``f``."""
    x = np.asarray(X0, dtype)
    fn = lambda t, step: calcjax.derivative(f, t, h=step, scheme=scheme, order=order)
    jitted = bench.memo(("vcurve-scan", f, dtype, scheme, order), lambda: jax.jit(fn))
    errors = {}
    for h in DECADES:
        if np.asarray(x + np.asarray(h, dtype), dtype) - x == 0:
            continue
        errors[h] = abs(float(jitted(x, np.asarray(h, dtype))) - exact)
    best = min(errors, key=errors.get)
    return errors[best], best


@pytest.mark.bench_cases("vcurve")
def test_vcurve(benchmark, bench, function, dtype, scheme, order, h):
    f, df, _ = bench.functions[function]
    x = np.asarray(X0, dtype)
    if h == "auto":
        case = bench.compiled_case(lambda t: calcjax.derivative(f, t, scheme=scheme, order=order), x)
    else:
        step = np.asarray(x + np.asarray(h, dtype), dtype) - x
        if step == 0:
            pytest.skip(f"h={h:g} is below {dtype}'s resolution at x={X0}: x + h == x")
        # One compiled derivative per scheme, order and dtype; the step is an argument.
        fn = lambda t, step: calcjax.derivative(f, t, h=step, scheme=scheme, order=order)
        compiled = bench.memo(
            ("vcurve", function, dtype, scheme, order),
            lambda: bench.compiled_case(fn, x, np.asarray(h, dtype)),
        )
        args = (x, np.asarray(h, dtype))
        case = bench.Case(
            lambda: jax.block_until_ready(compiled.compiled(*args)),
            None,
            0.0,
            compiled.compile_s,
            compiled.peak_bytes,
            compiled.peak_source,
        )
        case.result = case.call()  # warm-up, and the value scored
    exact = float(df(np.float64(x)))
    value = float(case.result)
    abs_error = abs(value - exact)
    if h == "auto" and bench.profile.name == "ci":
        best, at = _vcurve_minimum(bench, f, dtype, scheme, order, exact)
        floor = 2 * float(np.finfo(dtype).eps) * abs(exact)  # two ulps: below it, all steps tie
        assert abs_error <= VCURVE_SLACK * best + floor, (
            f"V-curve {function} {dtype} {scheme}{order}: the automatic step's error {abs_error:.3g} is "
            f"more than {VCURVE_SLACK:g}x the minimum {best:.3g} (at h={at:g})"
        )
    bench.measure(benchmark, case, rounds=1)
    bench.record(
        benchmark,
        suite="vcurve",
        group=f"vcurve {function} {dtype}",
        problem=function,
        n=1,
        method="calcjax.derivative",
        scheme=scheme,
        order=order,
        h=h if h == "auto" else float(h),
        dtype=dtype,
        f_evals=len(calcjax.stencil(scheme, order).offsets),
        abs_error=abs_error,
        rel_error=abs_error / abs(exact),
        reference="analytic",
        **bench.case_fields(case),
    )


@pytest.mark.bench_cases("accuracy")
def test_accuracy(benchmark, bench, problem, dtype, method):
    n = bench.profile.accuracy_n
    case, inst = bench.gradient_case(problem, method, n, dtype, max_s=bench.profile.accuracy_max_call_s)
    result = bench.measure(benchmark, case, rounds=1)
    bench.record_gradient(
        benchmark,
        suite="accuracy",
        group=f"accuracy {problem} {dtype}",
        problem=problem,
        n=n,
        inst=inst,
        method=method,
        dtype=dtype,
        result=result,
        case=case,
    )
