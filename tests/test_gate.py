"""The regression gate on synthetic rounds: seeded lognormal noise, known slowdowns, drifting load."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from calcjax import _gate as gate
from calcjax._errors import UsageError

MEDIAN_S = 1e-3


def noisy(rng: np.random.Generator, rounds: int, sigma: float, scale: float = 1.0) -> np.ndarray:
    return scale * MEDIAN_S * rng.lognormal(0.0, sigma, rounds)


def test_min_rounds_is_where_the_exact_test_can_first_reach_alpha():
    assert gate.min_rounds(0.002) == 7
    # the bound is real: with 6 a side even total separation is not significant, with 7 it is
    six, seven = np.arange(1.0, 7.0), np.arange(1.0, 8.0)
    assert mannwhitneyu(six + 100, six, method="exact").pvalue >= 0.002
    assert mannwhitneyu(seven + 100, seven, method="exact").pvalue < 0.002
    assert gate.compare_rounds(six, six * 10).verdict == gate.NO_STATISTICS
    assert gate.compare_rounds(seven, seven * 10).verdict == "slower"


@pytest.mark.parametrize("rounds", [7, 10, 20])
def test_a_a_gives_no_flags_over_many_seeds(rounds):
    """Same distribution on both sides, 1000 seeds: the rule (test and factor) flags nothing."""
    flags = significant_only = 0
    for seed in range(1000):
        rng = np.random.default_rng([seed, rounds])
        v = gate.compare_rounds(noisy(rng, rounds, 0.05), noisy(rng, rounds, 0.05))
        flags += v.verdict in ("slower", "faster")
        significant_only += v.p_value < gate.ALPHA
    assert flags == 0
    # the test alone, at its own level, does flag some: the factor is what keeps A/A clean
    assert significant_only <= 10  # about ALPHA * 1000 = 2 expected


def test_false_positive_rate_stays_at_alpha_when_noise_is_large():
    """Noise so large the factor does not help: the flags stay near ALPHA, not near the ratio's spread."""
    flags = ratio_beyond_factor = 0
    n = 2000
    for seed in range(n):
        rng = np.random.default_rng(seed)
        v = gate.compare_rounds(noisy(rng, 10, 0.3), noisy(rng, 10, 0.3))
        flags += v.verdict in ("slower", "faster")
        ratio_beyond_factor += not (1 / gate.FACTOR <= v.ratio <= gate.FACTOR)
    assert flags <= 3 * gate.ALPHA * n  # binomial(2000, 0.002): mean 4, this is 12
    assert ratio_beyond_factor > 0.3 * n  # a ratio-only gate would flag a third of them


@pytest.mark.parametrize("rounds", [7, 10, 20])
def test_a_1_3x_slowdown_is_flagged(rounds):
    for seed in range(200):
        rng = np.random.default_rng([seed, rounds])
        a, b = noisy(rng, rounds, 0.05), noisy(rng, rounds, 0.05, scale=1.3)
        v = gate.compare_rounds(a, b)
        assert v.verdict == "slower", (seed, v)
        assert v.ratio == pytest.approx(np.median(b) / np.median(a))
        assert gate.compare_rounds(b, a).verdict == "faster"


def test_a_significant_change_below_the_factor_is_same():
    rng = np.random.default_rng(0)
    a, b = noisy(rng, 50, 0.01), noisy(rng, 50, 0.01, scale=1.05)
    v = gate.compare_rounds(a, b)
    assert v.p_value < gate.ALPHA
    assert v.verdict == "same"
    assert gate.compare_rounds(a, b, factor=1.02).verdict == "slower"


def test_too_few_rounds_gives_no_statistics_with_the_ratio():
    v = gate.compare_rounds([1.0, 1.1, 0.9], [3.0, 3.3, 2.7])
    assert v.verdict == gate.NO_STATISTICS
    assert math.isnan(v.p_value)
    assert not v.significant
    assert v.ratio == pytest.approx(3.0)
    # the bound follows the exact test: 1 round against 2000 can reach 2 / C(2001, 1) < ALPHA
    many = np.random.default_rng(0).lognormal(0.0, 0.05, 2000)
    assert gate.compare_rounds([100.0], many).verdict == "faster"
    assert gate.compare_rounds([100.0], many[:900]).verdict == gate.NO_STATISTICS
    one = gate.compare_rounds([2.0], np.arange(1.0, 30.0))  # a record without rounds
    assert one.verdict == gate.NO_STATISTICS
    assert (one.rounds_a, one.rounds_b) == (1, 29)


def test_bad_rounds_and_factors():
    with pytest.raises(ValueError, match="rounds of B has no rounds"):
        gate.compare_rounds([1.0], [])
    with pytest.raises(ValueError, match="positive finite times"):
        gate.compare_rounds([1.0, -1.0], [1.0])
    with pytest.raises(ValueError, match=r"factor must be a finite number above 1, got 1\.0"):
        gate.compare_rounds([1.0], [1.0], factor=1.0)


@pytest.mark.parametrize("bad", ["1", "0.9", "-2", "inf", "nan", "fast", None])
def test_fail_above_must_be_a_finite_number_above_one(bad):
    with pytest.raises(UsageError, match=r"--fail-above must be a (finite )?number above 1"):
        gate.check_factor(bad)


def test_check_factor_accepts_good_values():
    assert gate.check_factor("1.10") == pytest.approx(1.1)
    assert gate.check_factor(2) == 2.0


def record(method: str, n: int, rounds: np.ndarray | None, median: float | None = None, **extra):
    stats = {"median": float(np.median(rounds)) if median is None else median}
    if rounds is not None:
        stats["data"] = list(map(float, rounds))
        stats["rounds"] = len(rounds)
    return {
        "suite": "gradient",
        "problem": "quadratic",
        "method": method,
        "n": n,
        "dtype": "float64",
        "stats": stats,
        **extra,
    }


def test_compare_records_matches_by_key_and_judges_each():
    rng = np.random.default_rng(7)
    a = [
        record("fd-central", 10, noisy(rng, 15, 0.05)),
        record("ad-reverse", 10, noisy(rng, 15, 0.05)),
        record("numpy-loop", 10, None, median=0.5),  # rounds not kept: no statistics
        record("only-in-a", 10, noisy(rng, 15, 0.05)),
        {**record("fd-central", 1, noisy(rng, 15, 0.05)), "suite": "vcurve"},  # not a timing
    ]
    b = [
        record("ad-reverse", 10.0, noisy(rng, 15, 0.05)),  # n as a float still matches
        record("fd-central", 10, noisy(rng, 15, 0.05, scale=1.3)),
        record("numpy-loop", 10, None, median=1.0),
        record("only-in-b", 10, noisy(rng, 15, 0.05)),
        {**record("fd-central", 1, noisy(rng, 15, 0.05, scale=3)), "suite": "vcurve"},
    ]
    table = gate.compare_records(a, b)
    assert list(table["method"]) == ["fd-central", "ad-reverse", "numpy-loop"]  # A's order
    assert list(table["verdict"]) == ["slower", "same", gate.NO_STATISTICS]
    assert table.loc[2, "ratio"] == pytest.approx(2.0)
    assert list(table["rounds_a"]) == [15, 15, 1]
    assert (table.attrs["only_a"], table.attrs["only_b"]) == (1, 1)
    fails = gate.failures(table, 1.10)
    assert list(fails["method"]) == ["fd-central"]  # numpy-loop is 2x but unjudged
    assert gate.failures(table, 2.5).empty
    with pytest.raises(UsageError, match="above 1"):
        gate.failures(table, 1.0)


def test_fail_above_below_the_verdict_factor_still_fails_significant_steps():
    rng = np.random.default_rng(1)
    a = [record("fd-central", 10, noisy(rng, 50, 0.01))]
    b = [record("fd-central", 10, noisy(rng, 50, 0.01, scale=1.05))]
    table = gate.compare_records(a, b)
    assert list(table["verdict"]) == ["same"]  # within the 1.10 factor
    assert len(gate.failures(table, 1.03)) == 1


def test_run_differences_names_what_differs():
    cpu = {"profile": "default", "backend": "cpu", "device_kind": "cpu", "jax_version": "0.10.2"}
    gpu = {"profile": "default", "backend": "gpu", "device_kind": "NVIDIA H100", "jax_version": "0.11.2"}
    assert gate.run_differences(cpu, dict(cpu)) == []
    assert gate.run_differences(cpu, gpu) == [
        "runs differ in backend: cpu (A) vs gpu (B)",
        "runs differ in device: cpu (A) vs NVIDIA H100 (B)",
        "runs differ in JAX: 0.10.2 (A) vs 0.11.2 (B)",
    ]
    assert gate.run_differences({}, {"profile": "quick"}) == [
        "runs differ in profile: not recorded (A) vs quick (B)"
    ]


def test_rounds_of_reads_pytest_benchmark_stats():
    data, median, count = gate.rounds_of({"stats": {"median": 2.0, "data": [1.0, 2.0, 3.0]}})
    assert list(data) == [1.0, 2.0, 3.0]
    assert (median, count) == (2.0, 3)
    assert gate.rounds_of({"stats": {"median": 2.5, "rounds": 40}}) == (None, 2.5, 40)
    assert gate.rounds_of({"time": 2.5, "rounds_s": []}) == (None, 2.5, 1)
    with pytest.raises(ValueError, match="has no time"):
        gate.rounds_of({"name": "x", "stats": {}})


def test_a_stored_median_is_never_tested_as_one_round():
    many = {"stats": {"median": 1.0, "data": list(np.linspace(0.9, 1.1, 2000))}}
    alone = {"stats": {"median": 100.0, "rounds": 50}}  # 50 rounds, not kept
    v = gate.compare_records_pair(many, alone)
    assert v.verdict == gate.NO_STATISTICS
    assert (v.ratio, v.rounds_a, v.rounds_b) == (100.0, 2000, 50)
    # the same value as a kept single round is a legitimate (exact) test: 2 / C(2001, 1) < ALPHA
    assert gate.compare_records_pair(many, {"stats": {"median": 100.0, "data": [100.0]}}).verdict == "slower"


# --------------------------------------------------------------------------- interleaved A/B

KEYS = [(m, n) for m in ("ad-reverse", "fd-central", "numpy-loop") for n in (10, 100, 1000)]


def drifting_machine(seed: int, steps: int, slowdown: dict[str, float], *, drift: float = 1.5):
    """A machine whose load rises ``drift`` times over the session, with 5% noise per call.

    Variant B runs the same code with ``slowdown`` applied (the test hook's effect).
    """
    rng = np.random.default_rng(seed)
    clock = iter(range(1, 10**9))

    def measure(variant: str, key: tuple[str, int]) -> float:
        load = 1 + (drift - 1) * next(clock) / steps
        factor = slowdown.get(key[0], 1.0) if variant == "B" else 1.0
        return 1e-4 * (1 + key[1] / 100) * factor * load * rng.lognormal(0.0, 0.05)

    return measure


def test_schedule_alternates_and_covers_every_round():
    steps = gate.schedule(KEYS, rounds=12, seed=3)
    assert len(steps) == 12 * len(KEYS) * 2
    for key in KEYS:
        mine = [(r, v) for r, k, v in steps if k == key]
        assert sorted(mine) == [(r, v) for r in range(12) for v in "AB"]
        firsts = [v for i, (_, v) in enumerate(mine) if i % 2 == 0]
        assert firsts.count("A") == firsts.count("B") == 6  # ABBA: each first half the time
    # the pair of a benchmark runs back to back
    for i in range(0, len(steps), 2):
        assert steps[i][:2] == steps[i + 1][:2]
        assert {steps[i][2], steps[i + 1][2]} == {"A", "B"}
    # the benchmarks' order changes between rounds
    orders = {tuple(k for r, k, v in steps if r == rnd and v == "A") for rnd in range(12)}
    assert len(orders) > 1
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        gate.schedule(KEYS, rounds=0)


@pytest.mark.parametrize("seed", range(5))
def test_interleaved_a_a_flags_nothing_under_drift(seed):
    rounds = 12
    obs = gate.run_interleaved(
        drifting_machine(seed, rounds * len(KEYS) * 2, {}), KEYS, rounds=rounds, seed=seed
    )
    table = gate.interleaved_table(obs)
    assert len(table) == len(KEYS)
    assert set(table["rounds_a"]) == {rounds}
    assert list(table["verdict"]) == ["same"] * len(KEYS)


@pytest.mark.parametrize("seed", range(5))
def test_interleaved_flags_an_injected_slowdown_in_all_its_benchmarks(seed):
    rounds = 12
    measure = drifting_machine(seed, rounds * len(KEYS) * 2, {"fd-central": 1.3})
    table = gate.interleaved_table(gate.run_interleaved(measure, KEYS, rounds=rounds, seed=seed))
    slowed = table["key"].map(lambda k: k[0] == "fd-central")
    assert set(table.loc[slowed, "verdict"]) == {"slower"}
    assert set(table.loc[~slowed, "verdict"]) == {"same"}
    assert table.loc[slowed, "ratio"].to_numpy() == pytest.approx(1.3, rel=0.05)


def test_separate_runs_under_the_same_drift_flag_false_changes():
    """Why the robust mode exists: A's rounds all early, B's all late, same code -> 'slower'."""
    rounds = 12
    measure = drifting_machine(0, rounds * len(KEYS) * 2, {})
    a = {k: [measure("A", k) for _ in range(rounds)] for k in KEYS}
    b = {k: [measure("B", k) for _ in range(rounds)] for k in KEYS}
    verdicts = [gate.compare_rounds(a[k], b[k]).verdict for k in KEYS]
    assert verdicts.count("slower") == len(KEYS)


def test_paired_rounds_need_ten_pairs():
    a = np.linspace(1.0, 2.0, 9)
    assert gate.compare_pairs(a, 2 * a).verdict == gate.NO_STATISTICS
    a = np.linspace(1.0, 2.0, 10)
    assert gate.compare_pairs(a, a * np.linspace(1.9, 2.1, 10)).verdict == "slower"
    with pytest.raises(ValueError, match="as many of A as of B"):
        gate.compare_pairs(a, a[:5])


def test_parse_slowdown():
    assert gate.parse_slowdown("fd-central=1.3, ad-reverse=2") == {"fd-central": 1.3, "ad-reverse": 2.0}
    assert gate.parse_slowdown(None) == {}
    for bad in ("fd-central", "fd-central=0.5", "=1.3", "fd-central=inf", "fd-central=x"):
        with pytest.raises(UsageError, match="CALCJAX_BENCH_SLOWDOWN entries must be METHOD=FACTOR"):
            gate.parse_slowdown(bad)


def test_slowed_waits_the_extra_time_on_the_clock():
    now = [0.0]

    def clock() -> float:
        now[0] += 0.25  # each reading of the clock costs a quarter second of fake time
        return now[0]

    def call() -> str:
        now[0] += 1.0  # the call itself takes one second
        return "out"

    start = now[0]
    assert gate.slowed(call, 1.5, clock=clock)() == "out"
    inner = 1.25  # clock() after the call minus clock() before it
    assert now[0] - start >= 0.25 + inner * 1.5  # waited at least (1.5 - 1) x the call's time
    assert gate.slowed(call, 1.0) is call
    with pytest.raises(ValueError, match="at least 1"):
        gate.slowed(call, 0.5)
