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
)
def test_auto_batch_size_fits_the_budget(n, points, itemsize, budget, point_bytes):
    b = calcjax.auto_batch_size(n, points, itemsize, budget_bytes=budget, point_bytes=point_bytes)
    assert isinstance(b, int)
    assert 1 <= b <= n
    # one evaluation holds a point, or f's largest intermediate when that is bigger
    per_eval = max(n * itemsize, point_bytes or 0)
    # memory grows like batch_size * n: the batch fits unless even one coordinate does not
    assert b * points * per_eval <= budget or b == 1
    # and it is the largest batch that fits
    assert b == n or (b + 1) * points * per_eval > budget


def test_auto_batch_size_default_budget_on_cpu():
    budget = calcjax._finite_diff.DEFAULT_BATCH_BYTES["cpu"]
    assert calcjax.auto_batch_size(10_000, 2, 8, platform="cpu") == budget // (10_000 * 2 * 8)
    assert calcjax.auto_batch_size(10, 2, 8, platform="cpu") == 10
    assert calcjax.auto_batch_size(10**8, 2, 8, platform="cpu") == 1


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
