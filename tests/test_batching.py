"""The automatic batch: the CPU byte rule pinned, the accelerator rule on a simulated device memory."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import calcjax
from calcjax import _batching
from calcjax import _finite_diff as fd

GIB = 2**30


def fake_device(platform: str, bytes_limit: int | None) -> SimpleNamespace:
    """A device as the rule sees it: a platform and ``memory_stats()``."""
    stats = {} if bytes_limit is None else {"bytes_limit": bytes_limit}
    return SimpleNamespace(platform=platform, memory_stats=lambda: stats)


def linear(fixed: int, per_coordinate: int, calls: list[int] | None = None):
    """A ``measure`` whose compiled batch of ``b`` coordinates takes ``fixed + b * per_coordinate`` bytes."""

    def measure(b: int) -> int:
        if calls is not None:
            calls.append(b)
        return fixed + b * per_coordinate

    return measure


def no_nominal(budget):
    raise AssertionError(f"the nominal rule was asked (budget {budget}) where the measurement decides")


# ----------------------------------------------------------------- the CPU rule is unchanged

_A = np.ones((300, 2000))
_PROBLEMS = {
    "quadratic": lambda x: jnp.sum(x**2),
    "rosenbrock": lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
    "logistic": lambda w: jnp.mean(jnp.log1p(jnp.exp(-(_A @ w)))),
}


@pytest.mark.parametrize(
    ("problem", "n", "dtype", "two_points", "four_points"),
    [
        # Outputs of the byte rule before the accelerator rule existed (commit d0437af).
        ("quadratic", 10, "float64", 10, 10),
        ("quadratic", 1000, "float32", 256, 128),
        ("quadratic", 1000, "float64", 128, 64),
        ("quadratic", 10000, "float32", 16, 8),
        ("rosenbrock", 1000, "float64", 128, 64),
        ("rosenbrock", 10000, "float64", 8, 4),
        ("logistic", 2000, "float32", 128, 64),
        ("logistic", 2000, "float64", 64, 32),
    ],
)
def test_cpu_batch_is_the_measured_byte_rule(problem, n, dtype, two_points, four_points):
    x = jnp.ones(n, dtype)
    f = _PROBLEMS[problem]
    never = lambda *a: pytest.fail("a CPU batch must not compile anything to decide")
    cpu = (jax.devices("cpu")[0],)
    assert fd._auto_batch(f, x, 2, cpu, True, never) == two_points
    assert fd._auto_batch(f, x, 4, cpu, False, never) == four_points


def test_cpu_choice_never_measures():
    calls: list[int] = []
    got = _batching.choose_batch(
        1000, device=fake_device("cpu", 64 * GIB), nominal=lambda budget: 7, measure=linear(0, 1, calls)
    )
    assert got == 7
    assert calls == []


# ----------------------------------------------------------------- the accelerator rule


def test_all_coordinates_in_one_batch_when_they_fit_the_share():
    # 16 GiB device: 1 GiB share; 10 000 coordinates at 64 KiB each plus 1 MiB = 626 MiB: fits.
    device = fake_device("gpu", 16 * GIB)
    got = _batching.choose_batch(
        10_000, device=device, nominal=no_nominal, measure=linear(2**20, 2**16), fixed_bytes=80_000
    )
    assert got == 10_000


def test_bounded_power_of_two_batches_when_they_do_not():
    # 1 GiB device: 64 MiB share; 1e6 coordinates at 8 KiB each would take 7.6 GiB.
    calls: list[int] = []
    measure = linear(2**20, 2**13, calls)
    got = _batching.choose_batch(
        1_000_000, device=fake_device("gpu", GIB), nominal=no_nominal, measure=measure, fixed_bytes=2**20
    )
    share = GIB // 16
    assert got & (got - 1) == 0  # a power of two
    assert measure(got) + 2**20 <= share
    assert measure(2 * got) + 2**20 > share  # the largest power of two that fits
    assert calls[0] == 1_000_000  # the whole program was measured first
    assert len(calls) <= 4  # scaled from the measurement, not found by halving from n


def test_a_batch_that_fits_the_share_is_still_capped():
    # 141 GiB device: an 8.8 GiB share; 10 000 coordinates at 512 KiB each (4.9 GiB) fit it,
    # but a batch's program stays within ACCELERATOR_BATCH_BYTES (1 GiB): 2048 coordinates.
    measure = linear(0, 2**19)
    got = _batching.choose_batch(
        10_000, device=fake_device("gpu", 141 * GIB), nominal=no_nominal, measure=measure
    )
    assert measure(got) <= _batching.ACCELERATOR_BATCH_BYTES < measure(2 * got)
    assert got == 2048


@example(n=1_000_000, fixed=2**30, per=1, budget=2**26, cap=None)  # the fixed part alone is over the share
@example(n=3, fixed=0, per=10**9, budget=2**20, cap=None)
@given(
    n=st.integers(1, 10**7),
    fixed=st.integers(0, 2**28),
    per=st.integers(1, 2**24),
    budget=st.integers(2**20, 2**34),
    cap=st.none() | st.integers(2**20, 2**32),
)
def test_never_more_than_the_share(n, fixed, per, budget, cap):
    measure = linear(fixed, per)
    got = _batching.accelerator_batch(
        n, budget_bytes=budget, measure=measure, nominal=no_nominal, fixed_bytes=4 * n, batch_bytes=cap
    )
    assert 1 <= got <= n
    fits = lambda b: measure(b) + 4 * n <= budget and (cap is None or measure(b) <= cap)
    assert got == 1 or fits(got)  # over the share only when not even one coordinate fits
    if fits(n):
        assert got == n


def test_programs_that_do_not_compile_start_from_the_nominal_rule():
    # The program of all n does not compile (inf); the nominal rule's batch is measured next.
    sizes = {1000: math.inf, 64: 10_000}
    got = _batching.accelerator_batch(
        1000, budget_bytes=2**20, measure=sizes.__getitem__, nominal=lambda budget: 64
    )
    assert got == 64


def test_falls_back_to_the_nominal_rule_without_memory_analysis():
    asked: list[object] = []
    nominal = lambda budget: asked.append(budget) or 32
    got = _batching.choose_batch(
        10_000, device=fake_device("gpu", 16 * GIB), nominal=nominal, measure=lambda b: None
    )
    assert (got, asked) == (32, [None])


def test_falls_back_to_the_nominal_rule_without_a_memory_limit():
    calls: list[int] = []
    for device in (fake_device("gpu", None), SimpleNamespace(platform="tpu")):
        got = _batching.choose_batch(
            100, device=device, nominal=lambda budget: 5, measure=linear(0, 1, calls)
        )
        assert got == 5
    assert calls == []


def test_device_memory_reads_bytes_limit():
    assert _batching.device_memory(fake_device("gpu", 80 * GIB)) == 80 * GIB
    assert _batching.device_memory(fake_device("gpu", None)) is None
    assert _batching.device_memory(SimpleNamespace(platform="gpu")) is None
    cpu_limit = _batching.device_memory(jax.devices("cpu")[0])
    assert cpu_limit is None or cpu_limit > 0


def test_default_device_follows_jax_default_device():
    cpu = jax.devices("cpu")[0]
    for chosen in (cpu, "cpu"):
        with jax.default_device(chosen):
            assert _batching.default_device() == cpu
    assert _batching.default_device() == jax.devices()[0]


# ----------------------------------------------------------------- measuring a compiled program


def test_compiled_bytes_grows_with_the_batch():
    n = 1000
    x = jax.ShapeDtypeStruct((n,), jnp.float64)

    def rows(b):  # b copies of x, returned: at least b * n * 8 bytes of output
        return lambda v: jnp.broadcast_to(v, (b, n)) * jnp.arange(1.0, b + 1.0)[:, None]

    small, big = _batching.compiled_bytes(rows(4), (x,)), _batching.compiled_bytes(rows(64), (x,))
    assert small >= 4 * n * 8
    assert big >= 64 * n * 8 > small


def test_compiled_bytes_is_none_when_the_program_does_not_lower():
    def broken(v):
        raise ValueError("not traceable")

    assert _batching.compiled_bytes(broken, (jax.ShapeDtypeStruct((3,), jnp.float32),)) is None


# ----------------------------------------------------------------- the whole gradient, simulated


@pytest.fixture
def simulated_gpu(monkeypatch):
    """Run the accelerator rule on this CPU with a stated device memory; record what it measures and picks.

    The programs measured are the real ones (compiled for the CPU): only the
    platform and the memory size are simulated.
    """
    state: dict = {"memory": None, "picked": [], "measured": {}}
    choose, measure = _batching.choose_batch, _batching.compiled_bytes

    def as_gpu(n, *, device, **kwargs):
        b = choose(n, device=fake_device("gpu", state["memory"]), **kwargs)
        state["picked"].append((n, b))
        return b

    def spy(fn, args):
        got = measure(fn, args)
        state["measured"][args[-1].shape[0]] = got  # keyed by the batch (the index argument's length)
        return got

    monkeypatch.setattr(_batching, "choose_batch", as_gpu)
    monkeypatch.setattr(_batching, "compiled_bytes", spy)
    return state


def rosenbrock_gradient(x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return g


@pytest.mark.parametrize("memory", [16 * GIB, 2**26], ids=["16GiB", "64MiB"])
def test_gradient_on_a_simulated_accelerator(simulated_gpu, memory, tol):
    simulated_gpu["memory"] = memory
    n = 512
    x = np.linspace(-1.5, 1.5, n)
    g = calcjax.gradient(_PROBLEMS["rosenbrock"], jnp.asarray(x), share_products=False)
    want = rosenbrock_gradient(x)
    scale = max(float(_PROBLEMS["rosenbrock"](x)), np.max(np.abs(want)))  # FD rounding grows with |f|
    np.testing.assert_allclose(np.asarray(g), want, rtol=0, atol=tol.fd("float64", 2) * scale)

    # the first decision is the central stencil's (the domain fallback's one-sided stencils, traced
    # in a branch that runs only where f is not finite, are sized on their own)
    count, b = simulated_gpu["picked"][0]
    measured = simulated_gpu["measured"]
    share, output = memory // 16, n * 2 * 8
    assert count == n
    assert measured[n] + output > 2**26 // 16  # the CPU program of all 512 materialises its points
    if memory == 16 * GIB:
        assert b == n  # one batch, as naive vmap: it fits 1/16 of 16 GiB
        assert measured[n] + output <= share
    else:  # a 4 MiB share: the largest power of two whose compiled batch fits
        assert b < n
        assert b & (b - 1) == 0
        assert measured[b] + output <= share
        assert measured[n] * (2 * b) / n + output > share


def test_each_device_measures_its_own_share_of_the_coordinates(simulated_gpu):
    """With two devices, each device's half of the coordinates is what must fit its memory."""
    simulated_gpu["memory"] = 16 * GIB
    n, cpu = 512, jax.devices("cpu")[0]
    f = _PROBLEMS["quadratic"]

    def one_batch(idx, xw, hw, point):  # the batch's points, as _coordinate_values builds them
        moved = jnp.where(jnp.arange(n)[None, :] == idx[:, None], (xw + hw)[idx][:, None], xw[None, :])
        return jax.vmap(f)(moved)[:, None]

    b = fd._auto_batch(f, jnp.ones(n), 1, (cpu, cpu), False, one_batch)
    assert b == n // 2
    assert simulated_gpu["picked"] == [(n // 2, n // 2)]
    assert list(simulated_gpu["measured"]) == [n // 2]
