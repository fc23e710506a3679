"""The regression gate: is benchmark B faster, slower or the same as A, beyond noise?

One rule, after asv (``asv compare``): B is *slower* when the ratio of medians
B ÷ A is above ``factor`` (default :data:`FACTOR`) **and** a two-sided
Mann–Whitney U test on the per-round times gives p < ``alpha`` (default
:data:`ALPHA`); *faster* likewise below ``1 / factor``; otherwise *same*. A
ratio alone (pytest-benchmark's ``--benchmark-compare-fail=median:10%``) cannot
tell a change from a noisy machine, and a test alone flags changes too small to
matter.

With few rounds the test cannot reach ``alpha`` at all: the smallest two-sided
p-value of the exact test with ``m`` and ``n`` rounds is ``2 / C(m + n, m)``,
so p < 0.002 needs at least 7 rounds a side (:func:`min_rounds`). Such a pair,
or one without per-round data, gets the verdict ``"no statistics"``: its ratio
is shown, never judged.

On a noisy machine two separate runs differ by more than any code change of
interest: the load moves between them. :func:`schedule` and
:func:`run_interleaved` give the robust mode: the rounds of A and B alternate in
one session (ABBA order, benchmarks shuffled per round), so a drift in load falls
on both alike, and :func:`compare_pairs` judges the ratios of rounds that ran back
to back (Wilcoxon signed-rank, same ``alpha`` and ``factor``; 10 pairs at least).
:func:`parse_slowdown` and :func:`slowed` are the test hook that makes one
method a known factor slower (:data:`ENV_SLOWDOWN`), to check the gate catches it.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.lognormal(np.log(1e-3), 0.05, 15)
    >>> compare_rounds(a, 1.3 * rng.lognormal(np.log(1e-3), 0.05, 15)).verdict
    'slower'
    >>> compare_rounds(a[:3], 1.3 * a[:3]).verdict
    'no statistics'
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from calcjax._errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ALPHA",
    "ENV_SLOWDOWN",
    "FACTOR",
    "KEY",
    "MACHINE_FIELDS",
    "NO_STATISTICS",
    "Verdict",
    "check_factor",
    "compare_pairs",
    "compare_records",
    "compare_records_pair",
    "compare_rounds",
    "failures",
    "interleaved_table",
    "min_rounds",
    "parse_slowdown",
    "rounds_of",
    "run_differences",
    "run_interleaved",
    "schedule",
    "slowed",
]

#: Significance level of the two-sided Mann–Whitney U test (asv's).
ALPHA = 0.002
#: Ratio of medians beyond which a significant difference counts (asv's ``--factor``).
FACTOR = 1.10
#: The verdict of a pair whose rounds cannot reach significance.
NO_STATISTICS = "no statistics"
#: Fields that identify one benchmark across runs (the device is compared, not matched:
#: a CPU run and a GPU run of the same benchmarks are compared, with a warning).
KEY = (
    "suite",
    "problem",
    "method",
    "n",
    "dtype",
    "devices",
    "steps",
    "scheme",
    "order",
    "h",
    "case",
    "batch",
)
#: Suites whose records are accuracy tables, not timings worth gating.
UNTIMED_SUITES = ("vcurve", "estimate")
#: ``machine_info`` fields whose difference makes two runs' times not like for like.
MACHINE_FIELDS = (
    ("profile", "profile"),
    ("backend", "backend"),
    ("device_kind", "device"),
    ("device_count", "device count"),
    ("cpu_model", "CPU"),
    ("cpu_cores", "CPU cores"),
    ("jax_version", "JAX"),
    ("jaxlib_version", "jaxlib"),
    ("x64", "x64"),
    ("thread_env", "thread settings"),
    ("xla_flags", "XLA_FLAGS"),
)
#: Environment variable of the slowdown test hook: ``"METHOD=FACTOR[,METHOD=FACTOR...]"``.
ENV_SLOWDOWN = "CALCJAX_BENCH_SLOWDOWN"


# --------------------------------------------------------------------------- one pair


def min_rounds(alpha: float = ALPHA) -> int:
    """The fewest rounds a side (equal sides) with which the exact test can reach p < ``alpha``.

    Example:
        >>> min_rounds(0.002), min_rounds(0.05)
        (7, 4)
    """
    n = 1
    while not _reachable(n, n, alpha):
        n += 1
    return n


def _reachable(m: int, n: int, alpha: float) -> bool:
    """Whether the test with ``m`` and ``n`` rounds can give p < ``alpha`` at all."""
    return m > 0 and n > 0 and _min_p(m, n) < alpha


@functools.cache
def _min_p(m: int, n: int) -> float:
    """The smallest p-value the two-sided test can give with ``m`` and ``n`` rounds.

    It is the p-value of complete separation, computed by the same call as the test
    (scipy picks the exact test when a side has at most 8 rounds, the normal
    approximation otherwise), so the bound always agrees with the test run.
    """
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(np.arange(n) + m, np.arange(m), alternative="two-sided").pvalue)


def _judge(ratio: float, p: float, factor: float, alpha: float) -> str:
    """The rule: significant *and* beyond the factor."""
    if p < alpha and ratio > factor:
        return "slower"
    if p < alpha and ratio < 1 / factor:
        return "faster"
    return "same"


#: Columns of a gate table after the benchmark's key.
_ROW = ("median_a", "median_b", "ratio", "p_value", "verdict", "rounds_a", "rounds_b")


@dataclass(frozen=True)
class Verdict:
    """The gate's judgement of one benchmark.

    Attributes:
      verdict: ``"faster"``, ``"slower"``, ``"same"`` or :data:`NO_STATISTICS` (about B
        against A).
      ratio: median time of B ÷ median time of A (above 1: B is slower).
      p_value: two-sided Mann–Whitney U p-value, or ``nan`` without statistics.
      rounds_a, rounds_b: rounds each side had.
      median_a, median_b: the medians, in seconds.
    """

    verdict: str
    ratio: float
    p_value: float
    rounds_a: int
    rounds_b: int
    median_a: float
    median_b: float

    def as_row(self) -> dict[str, Any]:
        """The table columns of one benchmark (:data:`_ROW` order)."""
        return {name: getattr(self, name) for name in _ROW}

    @property
    def significant(self) -> bool:
        """The test was run and found a difference (whatever its size)."""
        return not math.isnan(self.p_value) and self.verdict in ("faster", "slower")


def _rounds(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} has no rounds")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"{name} must hold positive finite times, got {arr[~(np.isfinite(arr) & (arr > 0))][:3]}"
        )
    return arr


def compare_rounds(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    factor: float = FACTOR,
    alpha: float = ALPHA,
    median_a: float | None = None,
    median_b: float | None = None,
) -> Verdict:
    """Judge B against A from their per-round times.

    Args:
      a, b: per-round times in seconds (one value means a median without rounds).
      factor: ratio of medians beyond which a significant difference counts (> 1).
      alpha: significance level of the two-sided Mann–Whitney U test.
      median_a, median_b: medians to use instead of the rounds' own (a record's stored
        median when its rounds were not kept).

    Returns:
      A :class:`Verdict`; :data:`NO_STATISTICS` when the rounds cannot reach ``alpha``.

    Raises:
      ValueError: empty rounds, a time that is not positive and finite, or ``factor`` ≤ 1.
    """
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"factor must be a finite number above 1, got {factor!r}")
    ra, rb = _rounds(a, "rounds of A"), _rounds(b, "rounds of B")
    ma = float(np.median(ra)) if median_a is None else float(median_a)
    mb = float(np.median(rb)) if median_b is None else float(median_b)
    ratio = mb / ma
    if not _reachable(ra.size, rb.size, alpha):
        return Verdict(NO_STATISTICS, ratio, math.nan, ra.size, rb.size, ma, mb)
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(rb, ra, alternative="two-sided").pvalue)
    return Verdict(_judge(ratio, p, factor, alpha), ratio, p, ra.size, rb.size, ma, mb)


def rounds_of(record: Mapping[str, Any]) -> tuple[np.ndarray | None, float, int]:
    """A record's per-round times (``None`` when not kept), its median and its round count.

    The rounds are pytest-benchmark's ``stats["data"]`` (kept with
    ``--benchmark-save-data``), or a field ``rounds_s`` of the record.

    Example:
        >>> rounds_of({"stats": {"median": 2.0, "rounds": 3, "data": [1.0, 2.0, 4.0]}})
        (array([1., 2., 4.]), 2.0, 3)
        >>> rounds_of({"stats": {"median": 3.0, "rounds": 5}})
        (None, 3.0, 5)
    """
    stats = record.get("stats") if isinstance(record.get("stats"), Mapping) else {}
    data = stats.get("data")
    if data is None:
        data = record.get("rounds_s")
    values = np.asarray(data, dtype=np.float64) if data is not None and len(data) else None
    median = stats.get("median", record.get("time"))
    if median is None and values is not None:
        median = float(np.median(values))
    if median is None:
        raise ValueError(f"record {record.get('name', '?')!r} has no time")
    count = stats.get("rounds") or (len(values) if values is not None else 1)
    return values, float(median), int(count)


def compare_records_pair(
    record_a: Mapping[str, Any],
    record_b: Mapping[str, Any],
    *,
    factor: float = FACTOR,
    alpha: float = ALPHA,
) -> Verdict:
    """Judge one benchmark of two runs; without per-round data on both sides, :data:`NO_STATISTICS`.

    A stored median is not one round, so a record that kept no rounds is never tested.

    Example:
        >>> compare_records_pair({"stats": {"median": 1.0, "rounds": 9}},
        ...                      {"stats": {"median": 2.0, "rounds": 9}}).verdict
        'no statistics'
    """
    (da, ma, na), (db, mb, nb) = rounds_of(record_a), rounds_of(record_b)
    if da is None or db is None:
        if not (math.isfinite(factor) and factor > 1):
            raise ValueError(f"factor must be a finite number above 1, got {factor!r}")
        return Verdict(NO_STATISTICS, mb / ma, math.nan, na, nb, ma, mb)
    return compare_rounds(da, db, factor=factor, alpha=alpha, median_a=ma, median_b=mb)


# --------------------------------------------------------------------------- two runs


def check_factor(value: Any, option: str = "--fail-above") -> float:
    """A gate factor from the command line: a finite number above 1.

    Raises:
      UsageError: not a number, ≤ 1 or not finite (the command exits 2).

    Example:
        >>> check_factor("1.10")
        1.1
    """
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number above 1 (e.g. 1.10), got {value!r}") from None
    if not (math.isfinite(factor) and factor > 1):
        raise UsageError(f"{option} must be a finite number above 1 (e.g. 1.10), got {value!r}")
    return factor


def _key_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _by_key(records: Iterable[Mapping[str, Any]], key: Sequence[str], exclude: Sequence[str]) -> dict:
    out: dict[tuple, Mapping[str, Any]] = {}
    for r in records:
        if r.get("suite") in exclude:
            continue
        out.setdefault(tuple(_key_value(r.get(k)) for k in key), r)  # first one, as the tables do
    return out


def compare_records(
    records_a: Iterable[Mapping[str, Any]],
    records_b: Iterable[Mapping[str, Any]],
    *,
    key: Sequence[str] = KEY,
    factor: float = FACTOR,
    alpha: float = ALPHA,
    exclude_suites: Sequence[str] = UNTIMED_SUITES,
) -> pd.DataFrame:
    """The gate over two runs: one row per benchmark both runs have.

    Args:
      records_a, records_b: the runs' records, each a mapping with the ``key`` fields and
        pytest-benchmark's ``stats`` (or ``time``), like the report's loaded records.
      key: fields that match a benchmark of A with one of B.
      factor, alpha: the rule, see :func:`compare_rounds`.
      exclude_suites: suites left out (accuracy tables).

    Returns:
      A DataFrame in A's order with the ``key`` columns, then ``median_a``, ``median_b``,
      ``ratio`` (B ÷ A), ``p_value``, ``verdict``, ``rounds_a``, ``rounds_b``. Its
      ``attrs`` hold ``only_a`` and ``only_b``, the counts of unmatched benchmarks.
    """
    import pandas as pd

    a = _by_key(records_a, key, exclude_suites)
    b = _by_key(records_b, key, exclude_suites)
    rows = []
    for k, ra in a.items():
        rb = b.get(k)
        if rb is None:
            continue
        v = compare_records_pair(ra, rb, factor=factor, alpha=alpha)
        rows.append({**dict(zip(key, k, strict=True)), **v.as_row()})
    columns = [*key, *_ROW]
    table = pd.DataFrame.from_records(rows, columns=columns)
    table.attrs["alpha"] = alpha
    table.attrs["only_a"] = sum(1 for k in a if k not in b)
    table.attrs["only_b"] = sum(1 for k in b if k not in a)
    return table


def run_differences(machine_a: Mapping[str, Any], machine_b: Mapping[str, Any]) -> list[str]:
    """Warnings naming what differs between two runs' ``machine_info`` (empty: like for like).

    Example:
        >>> run_differences({"profile": "default"}, {"profile": "quick"})
        ['runs differ in profile: default (A) vs quick (B)']
    """
    out = []
    for field, label in MACHINE_FIELDS:
        va, vb = machine_a.get(field), machine_b.get(field)
        if va != vb:
            out.append(f"runs differ in {label}: {_show(va)} (A) vs {_show(vb)} (B)")
    return out


def _show(value: Any) -> str:
    return "not recorded" if value in (None, "") else str(value)


def failures(table: pd.DataFrame, fail_above: float) -> pd.DataFrame:
    """The rows of a :func:`compare_records` table that fail ``--fail-above``.

    A benchmark fails when the test found it slower (p < alpha) by more than
    ``fail_above``; rows without statistics never fail (they are listed apart by the
    caller as unjudged).

    Raises:
      UsageError: ``fail_above`` is ≤ 1 or not finite.
    """
    factor = check_factor(fail_above)
    significant = table["p_value"] < float(table.attrs.get("alpha", ALPHA))  # NaN: no statistics
    return table[significant & (table["ratio"] > factor)]


# --------------------------------------------------------------------------- robust mode


def schedule(
    keys: Sequence[Hashable], *, rounds: int, variants: tuple[str, str] = ("A", "B"), seed: int = 0
) -> list[tuple[int, Hashable, str]]:
    """The order of an interleaved A/B session: ``(round, benchmark, variant)`` steps.

    Every round runs every benchmark once per variant. Within a round the benchmarks
    come in a fresh seeded order; for each benchmark the two variants run back to
    back, A first in one round and B first in the next (ABBA), so neither variant
    always runs warm or always runs first.

    Example:
        >>> [(r, v) for r, _, v in schedule(["x"], rounds=2)]
        [(0, 'A'), (0, 'B'), (1, 'B'), (1, 'A')]
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds!r}")
    if len(set(keys)) != len(keys):
        raise ValueError("benchmark keys must be distinct")
    rng = random.Random(seed)
    steps = []
    for r in range(rounds):
        order = list(range(len(keys)))
        rng.shuffle(order)
        for i in order:
            pair = variants if (r + i) % 2 == 0 else variants[::-1]
            steps.extend((r, keys[i], v) for v in pair)
    return steps


def run_interleaved(
    measure: Callable[[str, Hashable], float],
    keys: Sequence[Hashable],
    *,
    rounds: int,
    variants: tuple[str, str] = ("A", "B"),
    seed: int = 0,
) -> pd.DataFrame:
    """Run an interleaved session: ``measure(variant, key)`` times one round of one benchmark.

    ``measure`` is where the integration plugs in (two persistent worker processes,
    one per commit, each timing one round on request); this function owns the order.

    Returns:
      Tidy observations: ``step``, ``round``, ``key``, ``variant``, ``seconds``.
    """
    import pandas as pd

    rows = [
        {"step": s, "round": r, "key": k, "variant": v, "seconds": float(measure(v, k))}
        for s, (r, k, v) in enumerate(schedule(keys, rounds=rounds, variants=variants, seed=seed))
    ]
    return pd.DataFrame.from_records(rows, columns=["step", "round", "key", "variant", "seconds"])


def compare_pairs(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    factor: float = FACTOR,
    alpha: float = ALPHA,
) -> Verdict:
    """Judge B against A from paired rounds (round i of A ran next to round i of B).

    The ratio is the median of the per-pair ratios B ÷ A, and the test is the
    two-sided Wilcoxon signed-rank test on their logarithms: a load that drifts
    slower than one pair cancels out of both. The exact test reaches p < 0.002 with
    10 pairs (``2 / 2**10``); fewer give :data:`NO_STATISTICS`.

    Raises:
      ValueError: the two sides differ in length, or as :func:`compare_rounds`.

    Example:
        >>> v = compare_pairs([1.0, 2.0, 4.0], [1.1, 2.2, 4.4])
        >>> v.verdict, round(v.ratio, 6)
        ('no statistics', 1.1)
    """
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"factor must be a finite number above 1, got {factor!r}")
    ra, rb = _rounds(a, "rounds of A"), _rounds(b, "rounds of B")
    if ra.size != rb.size:
        raise ValueError(f"paired rounds need as many of A as of B, got {ra.size} and {rb.size}")
    log_ratio = np.log(rb) - np.log(ra)
    ratio = float(np.exp(np.median(log_ratio)))
    ma, mb = float(np.median(ra)), float(np.median(rb))
    if not 2.0 / 2.0**ra.size < alpha or not np.any(log_ratio != 0):
        return Verdict(NO_STATISTICS, ratio, math.nan, ra.size, rb.size, ma, mb)
    from scipy.stats import wilcoxon

    p = float(wilcoxon(log_ratio, alternative="two-sided").pvalue)
    return Verdict(_judge(ratio, p, factor, alpha), ratio, p, ra.size, rb.size, ma, mb)


def interleaved_table(
    observations: pd.DataFrame,
    *,
    variants: tuple[str, str] = ("A", "B"),
    factor: float = FACTOR,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """The gate over an interleaved session's observations, one row per benchmark.

    Each benchmark is judged by :func:`compare_pairs` on its rounds paired by round
    number (A's and B's round i ran back to back).

    Returns:
      Columns ``key``, ``median_a``, ``median_b``, ``ratio`` (median of per-round
      B ÷ A), ``p_value``, ``verdict``, ``rounds_a``, ``rounds_b``; ``attrs["alpha"]``.
    """
    import pandas as pd

    va, vb = variants
    rows = []
    for key, group in observations.groupby("key", sort=False):
        a = group[group["variant"] == va].groupby("round")["seconds"].median()
        b = group[group["variant"] == vb].groupby("round")["seconds"].median()
        both = a.index.intersection(b.index)
        v = compare_pairs(a[both].to_numpy(), b[both].to_numpy(), factor=factor, alpha=alpha)
        rows.append({"key": key, **v.as_row()})
    columns = ["key", *_ROW]
    table = pd.DataFrame.from_records(rows, columns=columns)
    table.attrs["alpha"] = alpha
    return table


def parse_slowdown(text: str | None) -> dict[str, float]:
    """The slowdown hook's setting: ``"fd-central=1.3,ad-reverse=1.5"`` -> ``{method: factor}``.

    Raises:
      UsageError: an entry is not ``NAME=FACTOR`` or a factor is not a finite number ≥ 1.

    Example:
        >>> parse_slowdown("fd-central=1.3")
        {'fd-central': 1.3}
        >>> parse_slowdown("")
        {}
    """
    out: dict[str, float] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        try:
            factor = float(value) if sep and name.strip() else math.nan
        except ValueError:
            factor = math.nan
        if not (math.isfinite(factor) and factor >= 1):
            raise UsageError(
                f"{ENV_SLOWDOWN} entries must be METHOD=FACTOR with a finite FACTOR ≥ 1, got {entry!r}"
            )
        out[name.strip()] = factor
    return out


def slowed(
    call: Callable[[], Any], factor: float, *, clock: Callable[[], float] = time.perf_counter
) -> Callable[[], Any]:
    """``call`` made ``factor`` times slower: after each call, busy-wait ``(factor - 1)`` × its time.

    A busy wait (not ``time.sleep``) keeps the extra time exact down to microseconds.
    It is a test hook for the gate, never used in a real measurement.

    Example:
        >>> ticks = iter([0.0, 1.0, 1.0, 1.6])  # start, end of call, then the wait's clock
        >>> slowed(lambda: "done", 1.5, clock=lambda: next(ticks))()
        'done'
    """
    if not (math.isfinite(factor) and factor >= 1):
        raise ValueError(f"slowdown factor must be finite and at least 1, got {factor!r}")
    if factor == 1:
        return call

    def wrapper() -> Any:
        t0 = clock()
        out = call()
        t1 = clock()
        until = t1 + (factor - 1) * (t1 - t0)
        while clock() < until:
            pass
        return out

    return wrapper
