"""The ``nonjax`` suite: gradients of functions JAX cannot trace (:mod:`calcjax._bench.nonjax`).

Each record times one gradient of a NumPy/SciPy loss in float64 and grades it
against an independent reference (analytic; the ODE's sensitivity equations).
calcjax runs serially, ``vectorized=True`` (the batched twin), on a process pool
of 2 (``workers=2``) and on a Dask ``LocalCluster`` of 2 processes (left out
quietly when Dask is not installed). A pool's start-up is measured apart
(``startup_s``): it is started, and f sent once, before the timed rounds.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest

from calcjax._bench import nonjax as nj


@pytest.fixture(scope="module")
def dask_client():
    """A Dask ``LocalCluster`` of 2 worker processes (1 thread each) and its start-up time."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=nj.WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    startup = time.perf_counter() - start
    yield client, startup
    client.close()
    cluster.close()


def _f_call_s(p: nj.NonJaxProblem) -> float:
    times = []
    while len(times) < 3 or (len(times) < 20 and sum(times) < 0.05):
        start = time.perf_counter()
        p.f(p.x0)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@pytest.mark.bench_cases("nonjax")
def test_nonjax(benchmark, bench, request, problem, n, method):
    p = nj.nonjax_problem(problem, n)
    why = nj.unavailable(method, p)
    if why is not None:
        if method == "calcjax-dask2":
            pytest.skip(why)  # an optional extra: left out quietly (skip summary only)
        pytest.skip(f"{method} on {problem}: {why}")
    m = nj.METHODS[method]
    f_call = _f_call_s(p)
    bench.check_budget(
        f"{method} on {problem} n={p.n}", seconds=m.evals(p.n) * f_call / (nj.WORKERS if m.pool else 1)
    )
    startup, workers, compile_s = None, 1, 0.0
    if method == "jax-grad":
        x = jax.numpy.asarray(p.x0)
        case = bench.compiled_case(jax.grad(p.jax_f), x)
        compile_s = case.compile_s
    else:
        if method == "calcjax-workers2":
            from calcjax._blackbox import shutdown_workers

            shutdown_workers()  # a fresh pool: its start-up (and f's first trip) is measured apart
            start = time.perf_counter()
            m.run(p, workers=nj.WORKERS)
            startup, workers = time.perf_counter() - start, nj.WORKERS
            call = lambda: m.run(p, workers=nj.WORKERS)
        elif method == "calcjax-dask2":
            client, started = request.getfixturevalue("dask_client")
            start = time.perf_counter()
            m.run(p, workers=client)  # ships f and calcjax's task to the workers once
            startup, workers = started + time.perf_counter() - start, nj.WORKERS
            call = lambda: m.run(p, workers=client)
        else:
            call = lambda: m.run(p)
        case = bench.numpy_case(call)
    result = bench.measure(benchmark, case, headline=True)
    g = np.asarray(result, np.float64)
    err = bench.rel_error(g, p.grad)
    if not np.isfinite(err):
        pytest.skip(f"{method} gave a non-finite gradient on {problem} (f fails at its trial points)")
    if bench.profile.name == "ci" and method.startswith("calcjax"):
        # calcjax's central differences at the automatic step: sqrt-eps-level accuracy or better
        assert err <= 10 * np.sqrt(np.finfo(np.float64).eps), f"{method} on {problem}: rel. error {err:.2e}"
    bench.record(
        benchmark,
        suite="nonjax",
        group=f"nonjax {problem} n={p.n}",
        problem=problem,
        n=p.n,
        method=method,
        dtype="float64",
        f_evals=m.evals(p.n),
        rel_error=err,
        reference=p.reference,
        compile_s=compile_s,
        peak_bytes=case.peak_bytes,
        peak_source=case.peak_source,
        startup_s=startup,
        f_call_s=f_call,
        workers=workers,
    )
