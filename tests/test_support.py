"""The supporting modules: automatic batch size, honest timing, device selection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import calcjax
from calcjax import _devices, _timing

# --------------------------------------------------------------------------- auto_batch_size


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 10**7),
    points=st.integers(1, 12),
    itemsize=st.sampled_from([4, 8, 16]),
    budget=st.integers(1, 2**31),
    point_bytes=st.none() | st.integers(0, 2**28),
    shared=st.none() | st.integers(0, 2**33),
)
def test_auto_batch_size_fits_the_budget(n, points, itemsize, budget, point_bytes, shared):
    b = calcjax.auto_batch_size(
        n, points, itemsize, budget_bytes=budget, point_bytes=point_bytes, shared_bytes=shared
    )
    # a large shared operand lets the batch grow to a quarter of it, at most 64 MiB
    budget = max(budget, min((shared or 0) // 4, 64 * 2**20))
    assert isinstance(b, int)
    assert 1 <= b <= n
    # one evaluation holds its point and f's largest intermediate
    per_eval = n * itemsize + (point_bytes or 0)
    # memory grows like batch_size * n: the batch fits unless even one coordinate does not
    assert b * points * per_eval <= budget or b == 1
    # and it is all of n, or the largest power of two that fits
    assert b == n or (b & (b - 1) == 0 and 2 * b * points * per_eval > budget)


def test_auto_batch_size_default_budget_on_cpu():
    budget = calcjax._finite_diff.DEFAULT_BATCH_BYTES["cpu"]
    fits = budget // (10_000 * 2 * 8)
    b = calcjax.auto_batch_size(10_000, 2, 8, platform="cpu")
    assert b <= fits < 2 * b
    assert b & (b - 1) == 0
    assert calcjax.auto_batch_size(10, 2, 8, platform="cpu") == 10
    assert calcjax.auto_batch_size(10**8, 2, 8, platform="cpu") == 1


def test_auto_batch_size_grows_for_a_large_shared_operand():
    # logistic regression at n = 10 000: a 1000 x 10 000 float64 matrix read by every point
    plain = calcjax.auto_batch_size(10_000, 2, 8, platform="cpu")
    shared = calcjax.auto_batch_size(10_000, 2, 8, platform="cpu", shared_bytes=1000 * 10_000 * 8)
    assert shared == 64 > plain
    # data that fits the budget changes nothing
    assert calcjax.auto_batch_size(10_000, 2, 8, platform="cpu", shared_bytes=10_000 * 8) == plain


def test_evaluation_bytes_sees_intermediates_and_closed_over_data():
    a = jnp.ones((300, 50), jnp.float32)

    def f(x):
        return jnp.sum(jnp.tanh(a @ x))

    def outer(x, data):  # data closed over as a tracer of an outer jit counts too
        return calcjax._finite_diff._evaluation_bytes(lambda z: jnp.sum(data @ z) + f(z), x)

    largest, shared = calcjax._finite_diff._evaluation_bytes(f, jnp.ones(50, jnp.float32))
    assert largest == 300 * 4
    assert shared == 300 * 50 * 4
    seen = []
    x, data = jnp.ones(50, jnp.float32), jnp.ones((70, 50), jnp.float32)
    jax.jit(lambda x, d: seen.append(outer(x, d)) or jnp.sum(x))(x, data)
    assert seen == [(300 * 4, (300 + 70) * 50 * 4)]


# --------------------------------------------------------------------------- timing


def test_time_call_compiles_apart_and_repeats():
    x = jnp.ones(16)
    timing = _timing.time_call(lambda x: jnp.sum(x**2), x, min_time=0.0, min_repeats=4)
    assert timing.compile_s > 0
    assert len(timing.times_s) == 4
    assert all(t > 0 for t in timing.times_s)
    assert timing.min_s <= timing.median_s


def test_time_call_without_jit_has_no_compile_time():
    timing = _timing.time_call(lambda: sum(range(10)), jit=False, min_time=0.0, min_repeats=2)
    assert timing.compile_s == 0.0
    assert len(timing.times_s) == 2


def test_time_call_respects_max_repeats():
    timing = _timing.time_call(lambda: None, jit=False, min_time=10.0, max_repeats=3, max_time=10.0)
    assert len(timing.times_s) == 3


def test_compile_jit_returns_a_compiled_callable():
    compiled, seconds = _timing.compile_jit(lambda x: x + 1, jnp.ones(3))
    assert seconds > 0
    assert float(compiled(jnp.ones(3))[0]) == 2.0


# --------------------------------------------------------------------------- devices


def test_cpu_is_always_there():
    device = _devices.resolve_device("cpu")
    assert device.platform == "cpu"
    info = _devices.device_info(device)
    assert info["backend"] == "cpu"
    assert info["device"] == f"cpu:{device.id}"
    assert info["device_count"] == len(jax.devices("cpu"))


def test_auto_picks_a_gpu_when_there_is_one():
    expected = "gpu" if "gpu" in _devices.available_backends() else "cpu"
    assert _devices.resolve_device("auto").platform == expected


def test_unknown_device_lists_the_choices():
    with pytest.raises(ValueError, match="unknown device 'tpu9'; valid: cpu, gpu, auto"):
        _devices.resolve_device("tpu9")


def test_missing_gpu_says_what_is_available():
    if "gpu" in _devices.available_backends():
        pytest.skip("this machine has a GPU")
    with pytest.raises(_devices.DeviceError, match=r"no GPU is available to JAX .*; available: cpu: \d+ x"):
        _devices.resolve_device("gpu")
