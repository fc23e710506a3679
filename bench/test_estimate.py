"""Error estimates against true errors: ``suite='estimate'`` records for the accuracy report.

For each scalar case, ``calcjax.richardson_derivative`` returns a value and an
error estimate; the record keeps both the estimate and the true error (against
the analytic derivative) so the report can show whether the estimate is honest
(true error at most 10x the estimate); in the test profile (``ci``) Richardson's
estimate is checked to be so (:data:`OPTIMISM_LIMIT`). numdifftools' own estimate
(``nd.Derivative(f, full_output=True)``) is recorded alongside when it is
installed. The timed call is the compiled Richardson derivative (or the
numdifftools call), warmed up first, through the suite's ``bench`` fixture.
"""

from __future__ import annotations

import importlib.util
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax._richardson import RICHARDSON_EVALUATIONS
from calcjax._timing import compile_jit

_square = lambda t: t**2
#: The estimate is honest when the true error is at most this many times the estimate.
OPTIMISM_LIMIT = 10.0

#: (name, f, exact derivative in NumPy float64, x). The issue's cases first, then a few harder ones.
CASES = [
    *[(f"x**2 at {x}", _square, lambda t: 2 * t, float(x)) for x in range(-3, 4)],
    ("sin at 1", jnp.sin, np.cos, 1.0),
    ("exp at 1", jnp.exp, np.exp, 1.0),
    ("exp(10x) at 1", lambda t: jnp.exp(10 * t), lambda t: 10 * np.exp(10 * t), 1.0),
    ("log at 0.5", jnp.log, lambda t: 1 / t, 0.5),
    ("1/x at 0.3", lambda t: 1 / t, lambda t: -1 / t**2, 0.3),
    ("sqrt at 0.25", jnp.sqrt, lambda t: 0.5 / np.sqrt(t), 0.25),
    ("tanh at 0.5", jnp.tanh, lambda t: 1 - np.tanh(t) ** 2, 0.5),
    ("x**3 at 2", lambda t: t**3, lambda t: 3 * t**2, 2.0),
    ("atan at 0.7", jnp.arctan, lambda t: 1 / (1 + t * t), 0.7),
    ("exp(-x**2) at 0.5", lambda t: jnp.exp(-t * t), lambda t: -2 * t * np.exp(-t * t), 0.5),
    ("sin(10x) at 1", lambda t: jnp.sin(10 * t), lambda t: 10 * np.cos(10 * t), 1.0),
    ("cos at 1e-3", jnp.cos, lambda t: -np.sin(t), 1e-3),
    ("x**2 at 1e3", _square, lambda t: 2 * t, 1e3),
]
IDS = [c[0] for c in CASES]

HAS_NUMDIFFTOOLS = importlib.util.find_spec("numdifftools") is not None

#: (f, dtype) -> (compiled Richardson derivative, compile seconds): cases sharing f compile once.
_COMPILED: dict[tuple[object, str], tuple[object, float]] = {}


def _richardson_case(bench, f, x_arr):
    """The suite's compiled case, with one compile per (f, dtype) shared by the cases."""
    key = (f, str(x_arr.dtype))
    if key not in _COMPILED:
        _COMPILED[key] = compile_jit(lambda t: calcjax.richardson_derivative(f, t), x_arr)
    compiled, compile_s = _COMPILED[key]
    call = lambda: jax.block_until_ready(compiled(x_arr))
    start = time.perf_counter()
    result = call()  # warm-up
    warm_s = time.perf_counter() - start
    peak = bench.xla_peak_bytes(compiled)
    return bench.Case(call, result, warm_s, compile_s, peak, None if peak is None else "xla_memory_analysis")


def _record(benchmark, bench, case, *, name, method, dtype, value, estimate, exact, f_evals):
    true_error = abs(float(value) - exact)
    estimate = float(estimate)
    ratio = 0.0 if true_error == 0 else true_error / estimate if estimate > 0 else None
    bench.record(
        benchmark,
        suite="estimate",
        group=f"estimate {dtype}",
        problem=name,
        case=name,
        n=1,
        method=method,
        dtype=dtype,
        f_evals=f_evals,
        rel_error=true_error / abs(exact) if exact else true_error,
        reference="analytic",
        true_error=true_error,
        estimate=estimate,
        ratio=ratio,
        **bench.case_fields(case),
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "f", "df", "x"), CASES, ids=IDS)
def test_richardson_estimate(benchmark, bench, name, f, df, x, dtype):
    if dtype not in bench.settings.dtypes:
        pytest.skip(f"--dtypes {','.join(bench.settings.dtypes)} leaves out {dtype}")
    case = _richardson_case(bench, f, jnp.asarray(x, dtype))
    est = case.result
    exact = float(df(np.float64(x)))
    if bench.profile.name == "ci":
        true_error = abs(float(est.value) - exact)
        floor = 2 * float(jnp.finfo(dtype).eps) * abs(exact)  # two ulps of the value itself
        assert true_error <= OPTIMISM_LIMIT * float(est.error) + floor, (
            f"richardson on {name} ({dtype}): true error {true_error:.3g} is more than "
            f"{OPTIMISM_LIMIT:g}x its estimate {float(est.error):.3g}"
        )
    bench.measure(benchmark, case)
    _record(
        benchmark,
        bench,
        case,
        name=name,
        method="fd-richardson",
        dtype=dtype,
        value=est.value,
        estimate=est.error,
        exact=exact,
        f_evals=RICHARDSON_EVALUATIONS,  # the default step search (per point)
    )


@pytest.mark.skipif(not HAS_NUMDIFFTOOLS, reason="numdifftools is not installed (pip install numdifftools)")
@pytest.mark.parametrize(("name", "f", "df", "x"), CASES, ids=IDS)
def test_numdifftools_estimate(benchmark, bench, name, f, df, x):
    import numdifftools as nd

    if "float64" not in bench.settings.dtypes:
        pytest.skip("numdifftools works in float64, which --dtypes leaves out")
    f_jit = jax.jit(f)
    evals = [0]

    def f_np(t):
        evals[0] += 1
        return float(f_jit(np.float64(t)))

    derivative = nd.Derivative(f_np, full_output=True)

    def call():
        with warnings.catch_warnings():
            # numdifftools' own internals warn (e.g. on zero steps); they are not ours to fix.
            warnings.simplefilter("ignore")
            return derivative(x)

    call()  # warm-up: compiles f
    evals[0] = 0
    case = bench.numpy_case(call)
    f_evals = evals[0]
    result = case.result
    value, info = (result.estimate, result) if hasattr(result, "estimate") else (result[0], result[1])
    estimate = float(np.asarray(info.error_estimate))
    assert math.isfinite(estimate)
    bench.measure(benchmark, case)
    _record(
        benchmark,
        bench,
        case,
        name=name,
        method="numdifftools",
        dtype="float64",
        value=value,
        estimate=estimate,
        exact=float(df(np.float64(x))),
        f_evals=f_evals,
    )
