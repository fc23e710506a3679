"""Scalar derivative benchmarks: every scheme and order of ``calcjax.derivative``.

On the tutorial's ``x**2`` and on ``sin``, ``exp`` and ``log``, at one point and
(larger profiles) elementwise over many points, against ``jax.grad`` (vmapped)
and the tutorial's NumPy ``numerical_derivative`` with ``eps=1e-5``
(``numpy-tutorial``). Suite ``derivative``; ``n`` is the number of points.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import calcjax
from calcjax import baselines


def _points(k: int, dtype: str) -> np.ndarray:
    """``k`` points in [0.5, 1.5] (``log`` needs x > 0); one point is x = 1."""
    return (1.0 + 0.5 * np.sin(np.arange(k))).astype(dtype)


@pytest.mark.bench_cases("derivative")
def test_derivative(benchmark, bench, function, points, dtype, method):
    f, df, f_np = bench.functions[function]
    x = _points(points, dtype)
    fields = {"scheme": None, "order": None}
    if method == "ad-reverse":
        case = bench.compiled_case(jax.vmap(jax.grad(f)), x)
        f_evals = 0
    elif method == "numpy-tutorial":
        case = bench.numpy_case(baselines.numerical_derivative, f_np, x)
        fields = {"scheme": "central", "order": 2, "h": baselines.TUTORIAL_EPS}
        f_evals = 2
    else:
        scheme, order = bench.stencils[method]
        case = bench.compiled_case(lambda t: calcjax.derivative(f, t, scheme=scheme, order=order), x)
        fields = {"scheme": scheme, "order": order}
        f_evals = len(calcjax.stencil(scheme, order).offsets)
    value = np.asarray(case.result, np.float64)
    assert value.shape == x.shape
    exact = df(x.astype(np.float64))
    err = float(np.linalg.norm(value - exact) / np.linalg.norm(exact))
    assert np.isfinite(err)
    bench.measure(benchmark, case)
    bench.record(
        benchmark,
        suite="derivative",
        group=f"derivative {function} n={points} {dtype}",
        problem=function,
        n=points,
        method="calcjax.derivative" if method in bench.stencils else method,
        dtype=dtype,
        f_evals=f_evals * points,
        rel_error=err,
        reference="analytic",
        **fields,
        **bench.case_fields(case),
    )
