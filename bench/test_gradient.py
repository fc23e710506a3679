"""Gradient benchmarks: every registry method on every scalable problem, n and dtype.

Suites:

- ``feval``: one f evaluation inside a large ``vmap`` batch (the record times the
  whole batch; ``batch`` says how many points). A gradient's compute limit is
  its f-evaluations times this per-point time.
- ``gradient``: each method of :data:`calcjax.METHODS` (calcjax's FD, JAX's AD and
  every peer). Traceable methods are jitted with the problem's data passed as an
  argument, not baked in as constants; NumPy methods get the problem's NumPy twin.
- ``sharding``: calcjax's central FD gradient with its batch split over 1, 2 and
  4 devices (``calcjax.gradient(..., devices=k)``).
- ``memory``: calcjax's FD gradients at sizes too slow to run in the profile
  (n = 1e6): the record's one timed call is the compilation (from abstract
  shapes: no input is allocated), and ``peak_bytes`` is XLA's memory analysis of
  the compiled program.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

import calcjax
from calcjax import METHODS


@pytest.mark.bench_cases("feval")
def test_feval(benchmark, bench, problem, n, dtype):
    case, batch = bench.feval_case(problem, n, dtype)
    inst = bench.instance(problem, n, dtype)
    assert np.all(np.isfinite(np.asarray(case.result)))
    bench.measure(benchmark, case, headline=True)
    bench.record(
        benchmark,
        suite="feval",
        group=f"feval {dtype}",
        problem=problem,
        n=n,
        n_params=inst.n,
        method="vmap-f",
        dtype=dtype,
        f_evals=batch,
        batch=batch,
        **bench.case_fields(case),
    )


@pytest.mark.bench_cases("gradient")
def test_gradient(benchmark, bench, problem, n, dtype, method):
    case, inst = bench.gradient_case(problem, method, n, dtype)
    result = bench.measure(benchmark, case, headline=True)  # the warm-up's result, or the timed call's
    bench.record_gradient(
        benchmark,
        suite="gradient",
        group=f"gradient {problem} n={n} {dtype}",
        problem=problem,
        n=n,
        inst=inst,
        method=method,
        dtype=dtype,
        result=result,
        case=case,
    )


@pytest.mark.bench_cases("sharding")
def test_sharding(benchmark, bench, problem, n, dtype, devices):
    available = len(jax.local_devices(backend=bench.device.platform))
    if available < devices:
        pytest.skip(
            f"needs {devices} {bench.device.platform} devices, JAX sees {available} "
            "(on a CPU: --cpu-devices 4 forces host devices)"
        )
    inst = bench.instance(problem, n, dtype)
    bench.check_budget(
        f"sharded fd-central on {problem} n={n}",
        seconds=METHODS["fd-central"].evals(inst.n) * bench.f_eval_time(problem, n, dtype),
    )

    def grad(x, data):
        return calcjax.gradient(functools.partial(inst.f_data, data=data), x, devices=devices)

    case = bench.compiled_case(grad, inst.x0, inst.data)
    err = bench.rel_error(case.result, inst.reference_gradient())
    assert np.isfinite(err)
    bench.check_error(err, METHODS["fd-central"], dtype, f"sharded fd-central on {problem} n={n}")
    bench.measure(benchmark, case)
    bench.record(
        benchmark,
        suite="sharding",
        group=f"sharding {problem} n={n} {dtype}",
        problem=problem,
        n=n,
        n_params=inst.n,
        method="fd-central",
        dtype=dtype,
        devices=devices,
        f_evals=METHODS["fd-central"].evals(inst.n),
        rel_error=err,
        reference="analytic",
        **bench.case_fields(case),
    )


@pytest.mark.bench_cases("memory")
def test_memory(benchmark, bench, problem, n, dtype, method):
    inst = bench.instance(problem, n, dtype)
    m = METHODS[method]
    shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (inst.x0, inst.data))
    jitted = jax.jit(lambda x, data: m.fn(functools.partial(inst.f_data, data=data), x))
    # One round, no warm-up: a second compilation of the same program could come from a cache.
    compiled = benchmark.pedantic(lambda: jitted.lower(*shapes).compile(), rounds=1, warmup_rounds=0)
    peak = bench.xla_peak_bytes(compiled)
    assert peak is None or peak > 0
    stats = getattr(benchmark, "stats", None)
    bench.record(
        benchmark,
        suite="memory",
        group=f"memory {problem} {dtype}",
        problem=problem,
        n=n,
        n_params=inst.n,
        method=method,
        dtype=dtype,
        f_evals=m.evals(inst.n),
        compile_s=stats.stats.min if stats else None,
        peak_bytes=peak,
        peak_source="xla_memory_analysis" if peak is not None else None,
    )
