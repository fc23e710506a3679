"""Finite differences of functions JAX cannot trace: NumPy twins, pytrees, vectorized f, process pools.

References are analytic gradients in NumPy float64 (the problems' own, or
hand-written below), never ``jax.grad``. Serial and parallel runs are compared
bit for bit.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import calcjax
from calcjax import _blackbox
from calcjax import _finite_diff as fd

sys.path.insert(0, str(Path(__file__).parent))  # workers import the helpers by name
import blackbox_helpers as bh

X0 = np.array([-1.2, 1.0, 0.3, -0.4, 0.8, 0.9])


def rel(got, ref):
    got, ref = np.ravel(np.asarray(got, np.float64)), np.ravel(np.asarray(ref, np.float64))
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- accuracy, dtypes


def test_the_issue_loss_works_as_a_user_calls_it():
    x = np.linspace(-1.0, 1.0, 7)
    g = calcjax.gradient(bh.issue_loss, x)
    assert type(g) is np.ndarray
    assert g.dtype == np.float64
    assert rel(g, bh.issue_loss_grad(x)) < 1e-9


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_numpy_twins_match_analytic_gradients(name, dtype, tol):
    inst = calcjax.get_problem(name).instance(16, dtype)
    g = calcjax.gradient(inst.f_np, inst.x0_np, traceable=False)
    assert isinstance(g, np.ndarray)
    assert g.dtype == np.dtype(dtype)
    assert rel(g, inst.reference_gradient()) < tol.fd(dtype, 2)


@pytest.mark.parametrize(
    ("scheme", "order"), [("forward", 1), ("backward", 2), ("central", 4), ("central", 6)]
)
def test_schemes_and_orders(scheme, order, tol):
    g = calcjax.gradient(bh.rosen, X0, scheme=scheme, order=order)
    assert rel(g, bh.rosen_grad(X0)) < tol.fd("float64", order)


def test_richardson_error_estimate_covers_the_error():
    est = calcjax.richardson_gradient(bh.issue_loss, X0)
    assert isinstance(est, calcjax.Estimate)
    assert isinstance(est.value, np.ndarray)
    assert np.all(np.abs(est.value - bh.issue_loss_grad(X0)) <= est.error)
    assert np.max(est.error) < 1e-9


def test_derivative_richardson_derivative_and_directional():
    def sin_np(t):
        return float(np.sin(np.asarray(t)))

    t = np.linspace(0.0, 2.0, 5)
    assert np.max(np.abs(calcjax.derivative(sin_np, t) - np.cos(t))) < 1e-9
    est = calcjax.richardson_derivative(sin_np, t)
    assert np.all(np.abs(est.value - np.cos(t)) <= est.error)
    direction = np.arange(6.0)
    d = calcjax.directional_derivative(bh.rosen, X0, direction)
    assert abs(d - bh.rosen_grad(X0) @ direction) < 1e-6 * np.abs(bh.rosen_grad(X0)) @ np.abs(direction)


def test_float32_stays_float32_and_float64_stays_float64():
    for dtype in (np.float32, np.float64):
        g = calcjax.gradient(bh.rosen, X0.astype(dtype))
        assert g.dtype == dtype
        est = calcjax.richardson_gradient(bh.rosen, X0.astype(dtype))
        assert est.value.dtype == dtype
        assert est.error.dtype == dtype


def test_float64_with_x64_off_stays_float64_and_x64_stays_off():
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import jax, numpy as np, calcjax, blackbox_helpers as bh
        assert not jax.config.jax_enable_x64
        x = np.linspace(-1.0, 1.0, 7)
        g = calcjax.gradient(bh.issue_loss, x)
        err = np.linalg.norm(g - bh.issue_loss_grad(x)) / np.linalg.norm(bh.issue_loss_grad(x))
        g32 = calcjax.gradient(bh.issue_loss, x.astype(np.float32))
        r = calcjax.gradient_descent(bh.issue_loss, x, lr=0.1, steps=3, method="fd-central")
        print(g.dtype, g32.dtype, r.x.dtype, r.losses.dtype, err < 1e-9, jax.config.jax_enable_x64)
        """
    )
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["float64", "float32", "float64", "float64", "True", "False"]


def test_pytree_of_numpy_arrays():
    def f(p):
        a, b = np.asarray(p["a"]), np.asarray(p["b"])
        return float(np.sum(a**2) + np.sum(np.sin(b)) * a[0])

    p = {"a": np.array([1.0, -2.0, 0.5]), "b": np.arange(4.0).reshape(2, 2)}
    g = calcjax.gradient(f, p)
    assert set(g) == {"a", "b"}
    assert g["b"].shape == (2, 2)
    assert isinstance(g["a"], np.ndarray)
    ga = 2 * p["a"]
    ga[0] += np.sum(np.sin(p["b"]))
    assert rel(g["a"], ga) < 1e-9
    assert rel(g["b"], np.cos(p["b"]) * p["a"][0]) < 1e-9


def test_mixed_float32_float64_pytree_keeps_each_leaf_dtype():
    def f(p):
        return float(np.sum(np.asarray(p["w"], np.float64) ** 2) + 3.0 * float(np.asarray(p["s"])))

    p = {"w": np.array([1.0, 2.0], np.float32), "s": np.float64(0.5)}
    g = calcjax.gradient(f, p)
    assert g["w"].dtype == np.float32
    assert g["s"].dtype == np.float64
    assert rel(g["w"], [2.0, 4.0]) < 1e-3
    assert abs(g["s"] - 3.0) < 1e-9


def test_gradient_descent_on_a_numpy_function():
    res = calcjax.gradient_descent(bh.rosen, X0, lr=1e-4, steps=20, method="fd-central")
    x = X0.copy()
    losses = [bh.rosen(x)]
    for _ in range(20):
        x = x - 1e-4 * bh.rosen_grad(x)
        losses.append(bh.rosen(x))
    assert isinstance(res.x, np.ndarray)
    assert res.x.dtype == np.float64
    assert np.max(np.abs(res.x - x)) < 1e-8
    assert np.max(np.abs(res.losses - np.array(losses)) / np.array(losses)) < 1e-8


def test_autodiff_on_a_numpy_function_names_the_users_line_and_the_option():
    with pytest.raises(
        TypeError, match=r"not JAX-traceable \(TracerArrayConversionError at .*blackbox_helpers.py:\d+\)"
    ):
        calcjax.gradient_descent(bh.issue_loss, X0, lr=0.1, steps=2)
    with pytest.raises(TypeError, match="method='fd-central'"):
        calcjax.gradient_descent(bh.issue_loss, X0, lr=0.1, steps=2)


def test_traceable_true_on_a_numpy_function_names_the_option():
    with pytest.raises(TypeError, match=r"traceable=True was given: pass traceable=False"):
        calcjax.gradient(bh.issue_loss, X0, traceable=True)


def test_a_jax_function_keeps_the_jax_path():
    g = calcjax.gradient(lambda w: jnp.sum(w**2), jnp.asarray(X0))
    assert isinstance(g, jax.Array)


def test_a_branch_on_a_value_is_a_black_box():
    def f(x):
        return float(np.sum(x**2)) if x[0] > 0 else float(np.sum(x**4))

    assert "TracerBoolConversionError" in _blackbox.trace_failure(f, X0)
    assert rel(calcjax.gradient(f, np.abs(X0)), 2 * np.abs(X0)) < 1e-9


def test_non_finite_values_follow_the_rule_of_jax_functions():
    def f_np(x):
        with np.errstate(invalid="ignore"):
            return float(np.sum(np.sqrt(np.asarray(x))))

    x = np.array([0.0, 1.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g_bb = calcjax.gradient(f_np, x)
        g_jax = np.asarray(calcjax.gradient(lambda z: jnp.sum(jnp.sqrt(z)), jnp.asarray(x)))
    np.testing.assert_array_equal(np.isnan(g_bb), np.isnan(g_jax))
    finite = np.isfinite(g_jax)
    assert rel(g_bb[finite], g_jax[finite]) < 1e-9


# --------------------------------------------------------------------------- evaluation strategies


def test_serial_calls_f_once_per_point_on_one_buffer():
    seen = []

    def f(x):
        seen.append(x)
        return float(np.sum(np.asarray(x) ** 2))

    x = np.linspace(0.1, 1.0, 9)
    calcjax.gradient(f, x, traceable=False)
    assert len(seen) == 2 * x.size
    assert all(np.shares_memory(a, seen[0]) for a in seen)  # perturbed in place, not copied
    assert not seen[0].flags.writeable  # f cannot change the buffer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("scheme", "order"), [("forward", 1), ("central", 2), ("central", 4)])
def test_each_point_moves_one_coordinate_in_order_and_batches_see_the_same_points(dtype, scheme, order):
    # The serial loop (a memoryview store per point) and the vectorized one (one fancy-indexed
    # store per chunk) must hand f exactly the same points, coordinate by coordinate.
    x = np.linspace(0.1, 1.0, 7).astype(dtype)
    serial_points, batch_points = [], []

    def f(p):
        serial_points.append(np.array(p))
        return float(np.sum(np.asarray(p, np.float64) ** 2))

    def f_batch(ps):
        batch_points.extend(np.array(ps))
        return np.sum(np.asarray(ps, np.float64) ** 2, axis=-1)

    calcjax.gradient(f, x, traceable=False, scheme=scheme, order=order)
    calcjax.gradient(f_batch, x, traceable=False, vectorized=True, scheme=scheme, order=order)
    serial_points = [p for p in serial_points if not np.array_equal(p, x)]  # f(x) of a forward scheme
    batch_points = [p for p in batch_points if not np.array_equal(p, x)]
    per_coord = len(serial_points) // x.size
    assert per_coord >= 1
    assert len(serial_points) == per_coord * x.size
    for k, p in enumerate(serial_points):
        assert p.dtype == np.dtype(dtype)
        assert np.flatnonzero(p != x).tolist() == [k // per_coord]  # the rest of x restored bit for bit
    assert len(batch_points) == len(serial_points)
    assert all(np.array_equal(a, b) for a, b in zip(serial_points, batch_points, strict=True))


def test_vectorized_leading_and_trailing_equal_serial_to_rounding(tol):
    # f's batched sums round differently (pairwise vs sequential): a few ulps of f, divided by h.
    x = np.tile(X0, 20)
    serial = calcjax.gradient(bh.rosen, x)
    lead = calcjax.gradient(bh.rosen_batched, x, vectorized=True)
    trail = calcjax.gradient(bh.rosen_trailing, x, vectorized="trailing")
    assert rel(lead, serial) < tol.fd("float64", 2)
    assert rel(trail, serial) < tol.fd("float64", 2)
    assert rel(lead, bh.rosen_grad(x)) < 1e-8


def test_vectorized_batches_are_chunked_automatically():
    shapes = []

    def f(xs):
        shapes.append(xs.shape)
        return bh.rosen_batched(xs)

    n = 2000
    x = np.ones(n)
    calcjax.gradient(f, x, vectorized=True)
    sizes = [s[0] for s in shapes]
    assert all(s[1:] == (n,) for s in shapes)
    assert sum(sizes) == 2 * n
    assert 1 < max(sizes)
    assert max(sizes) * n * 8 <= _blackbox.TUNE_MAX_BYTES
    assert sizes[0] == _blackbox.TUNE_START_POINTS  # the search starts small
    # the largest chunk tried follows n: the same bytes of points
    assert _blackbox._ChunkTuner(500, 8).sizes[-1] == 4 * _blackbox._ChunkTuner(2000, 8).sizes[-1]


def test_the_chunk_tuner_keeps_the_fastest_size_and_stops_at_a_slower_one():
    tuner = _blackbox._ChunkTuner(1000, 8)
    assert tuner.sizes[0] == _blackbox.TUNE_START_POINTS
    assert all(b == 2 * a for a, b in itertools.pairwise(tuner.sizes))
    assert tuner.sizes[-1] * 8000 <= _blackbox.TUNE_MAX_BYTES < 2 * tuner.sizes[-1] * 8000
    # seconds per point, made up: each size's samples, the slower one first (load adds time)
    assert tuner.sizes == [16, 32, 64, 128, 256]
    assert _blackbox._ChunkTuner(1000, 8, total=100).sizes == [16, 32, 64]  # no larger than a call
    # seconds per point, made up, TUNE_SAMPLES of them per size (load only adds time: the least counts)
    per_point = {16: 4.0, 32: 3.0, 64: 2.0, 128: 1.5, 256: 1.8}
    tuner.report(16, 100.0)  # the first chunk warms the buffers up: no sample
    tuner.report(7, 1.0)  # a partial chunk is no measurement
    for k in (16, 32, 64, 128, 256):
        for extra in range(_blackbox.TUNE_SAMPLES):
            assert tuner.next() == k
            tuner.report(k, (per_point[k] + (2.0 if extra == 0 else 0.0)) * k)
    assert tuner.best == 128  # 256's best sample is over TUNE_WORSE times 128's, and it was the last
    assert tuner.next() == 128
    tuner.report(128, 0.0)  # settled: later chunks change nothing
    assert tuner.best == 128

    def settle(times):
        t = _blackbox._ChunkTuner(1000, 8)
        t.report(16, 1.0)  # warm-up
        for k, per in times.items():
            for _ in range(_blackbox.TUNE_SAMPLES):
                t.report(k, per * k)
        return t

    # one slow size may be noise: the search goes on; two in a row end it
    assert settle({16: 1.0, 32: 1.2, 64: 0.9}).best is None
    assert settle({16: 1.0, 32: 1.2, 64: 1.3}).best == 16


def test_the_chunk_buffer_is_kept_between_calls_but_never_shared():
    tuner = _blackbox._ChunkTuner(1000, 8)
    x = np.arange(1000.0)
    a = tuner.take(x, 32, leading=True)
    b = tuner.take(x, 32, leading=True)  # a is still in use (another thread): b is its own
    assert not np.shares_memory(a, b)
    tuner.give(a)
    c = tuner.take(x + 1.0, 16, leading=True)  # the kept buffer, refilled with this call's x
    assert np.shares_memory(a, c)
    assert c.shape == (16, 1000)
    np.testing.assert_array_equal(c, np.broadcast_to(x + 1.0, c.shape))
    tuner.give(c)
    t = tuner.take(x, 8, leading=False)
    assert t.shape == (1000, 8)
    np.testing.assert_array_equal(t, np.broadcast_to(x[:, None], t.shape))


def test_vectorized_chunks_settle_where_f_is_fastest_per_point():
    # f's cost per call: a fixed wait (big chunks pay it less often) or a wait growing with the
    # square of the chunk (small chunks win). Waits, not arithmetic, so load does not decide it.
    calls = []

    def per_call(xs):
        calls.append(xs.shape[0])
        time.sleep(0.002)
        return np.sum(xs, axis=-1)

    def quadratic_cost(xs):
        calls.append(xs.shape[0])
        time.sleep(2e-6 * xs.shape[0] ** 2)
        return np.sum(xs, axis=-1)

    x = np.ones(2000)  # 16 KiB a point: chunks of 16 to 128 points
    for f, want in ((per_call, max), (quadratic_cost, min)):
        tuner_sizes = _blackbox._ChunkTuner(x.size, 8).sizes
        calcjax.gradient(f, x, vectorized=True)
        calls.clear()
        calcjax.gradient(f, x, vectorized=True)
        assert max(set(calls), key=calls.count) == want(tuner_sizes), (f.__name__, calls[:8])


def test_vectorized_wrong_output_shape_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"shape \(\d+,\) for a batch of shape \(\d+, 6\), got an output of shape \(\d+, 1\)"
    ):
        calcjax.gradient(lambda xs: bh.rosen_batched(xs)[:, None], X0, vectorized=True)


def test_derivative_vectorized_gets_all_points_at_once():
    calls = []

    def f(ts):
        calls.append(np.shape(ts))
        return np.sin(np.asarray(ts))

    t = np.linspace(0.0, 1.0, 10)
    d = calcjax.derivative(f, t, vectorized=True)
    assert len(calls) == 1
    assert calls[0] == (20,)
    assert np.max(np.abs(d - np.cos(t))) < 1e-9


def test_f_returning_a_vector_is_an_error_with_its_shape():
    with pytest.raises(ValueError, match=r"f must return a scalar, got an output of shape \(6,\)"):
        calcjax.gradient(lambda x: np.asarray(x) ** 2, X0, traceable=False)


def test_repeated_calls_compile_once():
    # richardson_gradient runs as one XLA program around the host evaluations (gradient does not)
    jitted = _blackbox._jitted(calcjax.richardson_gradient.__wrapped_blackbox__)
    calcjax.richardson_gradient(bh.rosen, X0)
    size = jitted._cache_size()
    for k in range(3):
        calcjax.richardson_gradient(bh.rosen, X0 + k)
    assert jitted._cache_size() == size


def _through_xla(f, x, **settings):
    """calcjax.gradient of a black-box f as one XLA program around host callbacks (the other path)."""
    fn = fd.gradient.__wrapped_blackbox__
    with _blackbox.prepare(f, x, traceable=False) as (f_jax, x_jax, finish):
        return finish(jax.jit(lambda z: fn(f_jax, z, **settings))(x_jax))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("scheme", "order"), [(s, o) for s, o in fd._STENCILS])
def test_gradient_runs_on_the_host_and_agrees_with_the_xla_path_to_rounding(
    dtype, scheme, order, monkeypatch
):
    # The same steps, points and combination as the XLA path (which contracts w*F + total into
    # fused multiply-adds where NumPy rounds twice): the difference is at most a few roundings of
    # sum_j |w_j F_j| divided by the step.
    x = np.linspace(-1.0, 2.0, 40).astype(dtype)
    ref = _through_xla(bh.issue_loss, x, scheme=scheme, order=order)

    def no_xla(*args, **kwargs):
        raise AssertionError("the host path ran a JAX callback")

    monkeypatch.setattr(jax, "pure_callback", no_xla)
    got = calcjax.gradient(bh.issue_loss, x, traceable=False, scheme=scheme, order=order)
    assert got.dtype == np.dtype(dtype)
    weights = fd.stencil(scheme, order).weights
    h = fd.default_step(jnp.asarray(x), scheme=scheme, order=order)
    size = sum(abs(w) for w in weights) * abs(bh.issue_loss(x)) / np.asarray(h, np.float64)
    bound = 4 * np.finfo(dtype).eps * size
    assert np.all(np.abs(got.astype(np.float64) - ref.astype(np.float64)) <= bound)
    if set(np.abs(weights)) <= {0.5, 1.0}:  # exact products: no fused multiply-add can differ
        assert same_bits(got, ref)


def test_host_path_falls_back_to_xla_for_what_it_does_not_do():
    x = np.linspace(0.1, 1.0, 6)
    adaptive = calcjax.gradient(bh.issue_loss, x, traceable=False, h="adaptive")
    assert rel(adaptive, bh.issue_loss_grad(x)) < 1e-9
    mixed = {"a": x[:3].astype(np.float32), "b": x[3:]}
    g = calcjax.gradient(lambda p: bh.issue_loss(np.concatenate([p["a"], p["b"]])), mixed, traceable=False)
    assert g["a"].dtype == np.float32
    assert g["b"].dtype == np.float64
    at = np.concatenate([mixed["a"].astype(np.float64), mixed["b"]])  # the point f sees
    assert rel(g["b"], bh.issue_loss_grad(at)[3:]) < 1e-9


def test_domain_warnings_of_concurrent_calls_reach_their_own_caller():
    # The compiled program's callback runs on XLA's thread: the call number it carries routes the
    # counts. Thread "one" has one bad coordinate, thread "two" two; each warning must name the
    # line of the call that made it, and no call may lose its result.
    def log_np(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum(np.log(np.asarray(x))))

    results, lines = {}, {}

    def run(name, x, rounds=6):
        lines[name] = sys._getframe().f_lineno + 2
        for _ in range(rounds):
            results[name] = calcjax.richardson_gradient(log_np, x)

    one, two = np.array([1e-20, 1.0, 2.0]), np.array([1e-20, 1e-20, 2.0])  # log one-sided there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [
            threading.Thread(target=run, args=("one", one)),
            threading.Thread(target=run, args=("two", two)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(results) == {"one", "two"}
    domain = [w for w in caught if issubclass(w.category, calcjax.DomainWarning)]
    assert len(domain) == 12
    for w in domain:
        assert w.filename == __file__
        count = 1 if "for 1 coordinate" in str(w.message) else 2
        assert w.lineno == lines["one" if count == 1 else "two"], (str(w.message), w.lineno, lines)


def test_host_path_edges_bfloat16_read_only_x_and_infinite_x():
    def f(x):
        return float(np.sum(np.asarray(x, np.float64) ** 2))

    b16 = jnp.asarray([1.0, 2.0], jnp.bfloat16)  # NumPy has no finfo for it: the XLA path takes it
    g = calcjax.gradient(f, np.asarray(b16), traceable=False, h=0.125, scheme="forward", order=1)
    assert g.dtype == b16.dtype
    np.testing.assert_allclose(np.asarray(g, np.float64), [2.0, 4.0], atol=0.2)  # f rounded to bfloat16

    def mutate(x):  # a buggy f writing into its argument must not reach the caller's x
        with contextlib.suppress(ValueError):
            x[0] = 100.0
        return f(x)

    x = np.array([1.0, 2.0, 3.0])
    g = calcjax.gradient(mutate, x, traceable=False, scheme="forward", order=1)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    assert rel(g, 2 * x) < 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # calcjax's own arithmetic stays quiet
        with np.errstate(all="raise"):
            g = calcjax.gradient(lambda z: float(z[0] ** 2), np.array([1.0, np.inf]))
    assert abs(g[0] - 2.0) < 1e-9


def test_domain_warnings_name_the_callers_line():
    def log_np(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum(np.log(np.asarray(x))))

    x = np.array([1e-20, 1.0, 2.0])
    calls = {
        "black box": lambda: calcjax.gradient(log_np, x),
        "black box, vectorized": lambda: calcjax.gradient(
            lambda xs: np.array([log_np(p) for p in xs]), x, vectorized=True
        ),
        "jax": lambda: calcjax.gradient(lambda z: jnp.sum(jnp.log(z)), jnp.asarray(x)),
        "derivative": lambda: calcjax.derivative(jnp.log, jnp.asarray(x)),
        "richardson": lambda: calcjax.richardson_gradient(log_np, x),
        # compiled once around the host callbacks: the counts leave the program on every call
        "richardson again": lambda: calcjax.richardson_gradient(log_np, x),
        "richardson_derivative": lambda: calcjax.richardson_derivative(
            lambda t: log_np(np.atleast_1d(t)), np.array([0.0, 1.0])
        ),
    }
    for what, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        domain = [w for w in caught if issubclass(w.category, calcjax.DomainWarning)]
        assert domain, what
        assert all(w.filename == __file__ for w in domain), (what, [w.filename for w in domain])
        assert not [w for w in caught if w.category is RuntimeWarning and "calcjax" in w.filename], what


# --------------------------------------------------------------------------- workers


@pytest.fixture(scope="module")
def serial_issue():
    x = np.linspace(-1.0, 1.0, 40)
    return x, calcjax.gradient(bh.issue_loss, x), calcjax.richardson_gradient(bh.issue_loss, x)


def test_process_pool_equals_serial_bit_for_bit(serial_issue):
    x, g, est = serial_issue
    assert same_bits(calcjax.gradient(bh.issue_loss, x, workers=2), g)
    est2 = calcjax.richardson_gradient(bh.issue_loss, x, workers=2)
    assert same_bits(est2.value, est.value)
    assert same_bits(est2.error, est.error)
    lead = calcjax.gradient(bh.rosen_batched, np.tile(X0, 5), vectorized=True)
    assert same_bits(calcjax.gradient(bh.rosen_batched, np.tile(X0, 5), vectorized=True, workers=2), lead)


def test_map_likes_equal_serial_bit_for_bit(serial_issue):
    x, g, _ = serial_issue
    with cf.ThreadPoolExecutor(2) as ex:
        assert same_bits(calcjax.gradient(bh.issue_loss, x, workers=ex.map), g)
        assert same_bits(calcjax.gradient(bh.issue_loss, x, workers=ex), g)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert same_bits(calcjax.gradient(bh.issue_loss, x, workers=pool.map), g)


def test_pool_really_uses_other_processes():
    # Forward differences with h = 1: f(x) itself runs here, the perturbed points in the pool,
    # so each entry is (worker's pid - this pid).
    g = calcjax.gradient(bh.worker_pid, np.zeros(8), workers=2, scheme="forward", order=1, h=1.0)
    pids = set(_pool_pids())
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert set((g + os.getpid()).astype(int).tolist()) <= pids


def _pool_pids():
    return [p.pid for p in (_blackbox._POOLS[2]._processes or {}).values()]


@pytest.mark.parametrize("workers", [None, 2])
def test_an_exception_of_f_is_the_users_own_with_the_evaluation(workers):
    x = np.array([0.1, 0.2, 0.3, 0.5, 0.1])  # x[3] + h > THRESHOLD: coordinate 3's forward point
    with pytest.raises(bh.SimulatorError, match=r"diverged") as info:
        calcjax.gradient(bh.fails_above, x, workers=workers)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "evaluation 7" in notes  # central order 2: coordinate 3, offset +h is point 3*2 + 1
    chain = info.value.__cause__ or info.value.__context__
    assert not isinstance(chain, jax.errors.JaxRuntimeError)
    # The pool is still usable after the error.
    assert rel(calcjax.gradient(bh.issue_loss, X0, workers=workers), bh.issue_loss_grad(X0)) < 1e-9


def test_a_dying_worker_is_an_error_and_the_pool_is_shut_down():
    calcjax.gradient(bh.issue_loss, X0, workers=3)  # start the pool
    old = list(_blackbox._POOLS[3]._processes.values())
    with pytest.raises(RuntimeError, match="died"):
        calcjax.gradient(bh.crashes, X0, workers=3)
    assert 3 not in _blackbox._POOLS
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.is_alive() for p in old)
    assert rel(calcjax.gradient(bh.issue_loss, X0, workers=3), bh.issue_loss_grad(X0)) < 1e-9
    _blackbox._discard_pool(3)


def test_no_worker_is_left_after_an_error_and_exit():
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import numpy as np, calcjax, blackbox_helpers as bh
        from calcjax import _blackbox
        if __name__ == "__main__":
            try:
                calcjax.gradient(bh.fails_above, np.array([0.1, 0.2, 0.3, 0.5, 0.1]), workers=2)
            except bh.SimulatorError:
                pass
            print(*[p.pid for p in _blackbox._POOLS[2]._processes.values()])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_unpicklable_f_with_a_process_pool_says_what_to_do():
    scale = 2.0
    with pytest.raises(TypeError, match=r"module level.*dask"):
        calcjax.gradient(lambda x: float(np.sum(np.asarray(x) * scale)), X0, workers=2)


@pytest.mark.parametrize(
    ("workers", "error", "match"),
    [
        (0, ValueError, "at least 1"),
        (-2, ValueError, "at least 1"),
        (True, TypeError, "workers must be None"),
        ("4", TypeError, "map-like"),
        (4.0, TypeError, "map-like"),
    ],
)
def test_bad_workers(workers, error, match):
    with pytest.raises(error, match=match):
        calcjax.gradient(bh.issue_loss, X0, workers=workers)


def test_bad_vectorized_and_traceable():
    with pytest.raises(ValueError, match="vectorized must be"):
        calcjax.gradient(bh.issue_loss, X0, vectorized="sideways")
    with pytest.raises(TypeError, match="traceable must be"):
        calcjax.gradient(bh.issue_loss, X0, traceable="yes")
    with pytest.raises(ValueError, match="need traceable=False or None"):
        calcjax.gradient(bh.issue_loss, X0, traceable=True, workers=2)


def test_options_are_keyword_only_and_documented():
    import inspect

    for fn in (calcjax.gradient, calcjax.derivative, calcjax.gradient_descent, calcjax.richardson_gradient):
        params = inspect.signature(fn).parameters
        for name in ("traceable", "vectorized", "workers"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
            assert f"{name}:" in fn.__doc__


# --------------------------------------------------------------------------- progress


def test_progress_prints_plain_lines_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(_blackbox, "PROGRESS_DELAY_S", 0.0)
    monkeypatch.setattr(_blackbox, "PLAIN_LINE_S", 0.0)
    monkeypatch.setattr(_blackbox, "_TICK", 1)
    calcjax.gradient(bh.issue_loss, X0)
    err = capsys.readouterr().err
    assert "calcjax: 12/12 evaluations of f" in err
    assert "\r" not in err


def test_no_progress_for_a_quick_call(capsys):
    calcjax.gradient(bh.issue_loss, X0)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- compare


def test_compare_on_a_numpy_function_estimates_the_error_and_says_why_ad_cannot_run():
    x = np.linspace(-1.0, 1.0, 12)
    df = calcjax.compare(bh.issue_loss, x, methods=["fd-central", "ad-reverse", "numpy-loop", "fd-complex"])
    rows = df.set_index("method")
    assert rows.loc["ad-reverse", "status"] == "unavailable"
    assert rows.loc["ad-reverse", "description"].startswith(
        "f is not JAX-traceable (TracerArrayConversionError at "
    )
    assert "blackbox_helpers.py:" in rows.loc["fd-complex", "description"]
    assert df.attrs["error_estimated"]
    assert df.attrs["reference"] == "richardson-estimate"
    # The estimated error is honest: the true error (against the analytic gradient) is no larger.
    g = calcjax.gradient(bh.issue_loss, x)
    true = rel(g, bh.issue_loss_grad(x))
    assert true <= rows.loc["fd-central", "rel_error"] + df.attrs["reference_error"]
    assert df.attrs["recommended"] in ("fd-central", "numpy-loop")
    from calcjax._compare import format_table

    assert "est_error" in format_table(df)


def test_compare_with_a_reference_workers_and_a_jax_port():
    x = np.linspace(-1.0, 1.0, 12)

    def port(w):
        return jnp.sum(jnp.cos(w) ** 2) + jnp.sum(w[1:] * w[:-1])

    df = calcjax.compare(
        bh.issue_loss, x, methods=["fd-central"], reference=bh.issue_loss_grad, jax_port=port, workers=2
    )
    rows = df.set_index("method")
    assert not df.attrs["error_estimated"]
    assert set(rows.index) == {"fd-central", "fd-central-workers", "ad-reverse-jax-port"}
    assert rows.loc["fd-central-workers", "rel_error"] == rows.loc["fd-central", "rel_error"]
    assert rows.loc["ad-reverse-jax-port", "rel_error"] < 1e-14
    assert df.attrs["recommended"] == "ad-reverse-jax-port"
