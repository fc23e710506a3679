"""Issue 14's targets for functions JAX cannot trace, measured interleaved in one process.

Run on a quiet machine (the figures depend on load):

    python bench/nonjax_targets.py                 # every target, n = 1000, 7 rounds
    python bench/nonjax_targets.py --rounds 11 --n 1000 --workers-n 16

Each comparison alternates its contestants round by round (at least 7 rounds),
so a change in machine load hits both sides alike; the figure is the median of
the per-round time ratios. Targets checked (float64):

- serial: calcjax serial never slower than the tutorial's loop on each NumPy twin;
  calcjax's overhead per evaluation at most 2x a bare Python loop calling the same
  constant f;
- vectorized: at least 3x faster than the tutorial's loop on each twin, 5x on logistic; beside it
  the ceiling that the batched f itself allows (the loop's time over the time of the batched f
  alone on the same points, in the same chunks), since no FD bookkeeping can beat its own f;
- memory: calcjax's own allocations (tracemalloc; f's are next to nothing) at n = 10 000
  at most 64 MiB, serial and vectorized;
- workers=2 on a loss that waits 5 ms per call: at least 1.7x faster than serial; Dask
  LocalCluster(2): at least 1.5x (when dask is installed); the compute-bound variant beside.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import calcjax  # noqa: E402
from calcjax._bench import nonjax as nj  # noqa: E402
from calcjax.baselines import numpy_loop_gradient  # noqa: E402

MiB = 2**20


def interleaved(contestants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each contestant per round, alternating (the order rotates every round)."""
    names = list(contestants)
    for fn in contestants.values():  # warm-up: compile, start pools, first-touch
        fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            contestants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of time(slow) / time(fast): how many times faster ``fast`` is."""
    return statistics.median(a / b for a, b in zip(times[slow], times[fast], strict=True))


def verdict(value: float, target: float, *, at_most: bool = False) -> str:
    ok = value <= target if at_most else value >= target
    return f"{'meets' if ok else 'MISSES'} target {'<=' if at_most else '>='} {target:g}"


def twins(n: int, rounds: int, names: list[str]) -> None:
    print(f"\n== NumPy twins at n = {n}: speed-up over the tutorial's loop (median of per-round ratios)")
    print(
        "   ceiling: the loop / the batched f alone on the same 2n points in its fastest chunk (no FD\n"
        "   bookkeeping; chunk sizes as calcjax's tuner tries them): what any vectorized FD could\n"
        "   reach with that f on this machine"
    )
    from calcjax._blackbox import _ChunkTuner

    for name in names:
        p = nj.nonjax_problem(name, n)
        stack = np.repeat(p.x0[None, :], 2 * p.n, axis=0)

        def batched(c: int, p: nj.NonJaxProblem = p, s: np.ndarray = stack) -> None:
            for a in range(0, len(s), c):
                p.f_batch(s[a : a + c])

        sweep = {}
        for c in _ChunkTuner(p.n, 8, 2 * p.n).sizes:
            batched(c)
            sweep[c] = min(timed(lambda c=c: batched(c)) for _ in range(3))
        chunk = min(sweep, key=sweep.__getitem__)
        times = interleaved(
            {
                "loop": lambda p=p: numpy_loop_gradient(p.f, p.x0),
                "serial": lambda p=p: calcjax.gradient(p.f, p.x0, traceable=False),
                "vectorized": lambda p=p: calcjax.gradient(p.f_batch, p.x0, traceable=False, vectorized=True),
                "batched-f": lambda c=chunk, b=batched: b(c),
            },
            rounds,
        )
        serial, vec = ratio(times, "loop", "serial"), ratio(times, "loop", "vectorized")
        ceiling = ratio(times, "loop", "batched-f")
        need = 5.0 if name == "logistic" else 3.0
        loop_ms = statistics.median(times["loop"]) * 1e3
        print(
            f"{name:>10} (n={p.n}): loop {loop_ms:8.2f} ms | serial {serial:5.2f}x "
            f"({verdict(serial, 1.0)}) | vectorized {vec:5.2f}x ({verdict(vec, need)}; "
            f"ceiling {ceiling:5.2f}x with chunks of {chunk} points, calcjax at {vec / ceiling:4.0%} of it)"
        )


def overhead(n: int, rounds: int) -> None:
    print(f"\n== overhead per evaluation, constant f, n = {n} (2n evaluations)")
    x = np.linspace(-1.0, 1.0, n)

    def const(w: np.ndarray) -> float:
        return 1.0

    def bare() -> None:
        for _ in range(2 * n):
            const(x)

    times = interleaved({"bare": bare, "serial": lambda: calcjax.gradient(const, x, traceable=False)}, rounds)
    per_bare = statistics.median(times["bare"]) / (2 * n)
    per_serial = statistics.median(times["serial"]) / (2 * n)
    r = ratio(times, "serial", "bare")
    print(
        f"bare loop {per_bare * 1e9:7.0f} ns/eval | calcjax serial {per_serial * 1e9:7.0f} ns/eval | "
        f"ratio {r:.2f} ({verdict(r, 2.0, at_most=True)})"
    )
    # The same at 10n: what is per evaluation (the slope) and what is per call (the intercept).
    big = np.linspace(-1.0, 1.0, 10 * n)
    more = interleaved({"serial": lambda: calcjax.gradient(const, big, traceable=False)}, rounds)
    t_small, t_big = statistics.median(times["serial"]), statistics.median(more["serial"])
    slope = (t_big - t_small) / (18 * n)
    print(
        f"calcjax serial at n = {10 * n}: {t_big * 1e3:.2f} ms; per evaluation (slope) {slope * 1e9:.0f} ns "
        f"= {slope / per_bare:.2f}x the bare loop; per call (intercept) "
        f"{(t_small - 2 * n * slope) * 1e3:.2f} ms"
    )


def memory(n: int) -> None:
    print(f"\n== calcjax's own allocations at n = {n} (tracemalloc peak; f allocates next to nothing)")
    x = np.linspace(-1.0, 1.0, n)

    def f(w: np.ndarray) -> float:
        return float(w[0])

    def f_batch(ws: np.ndarray) -> np.ndarray:
        return ws[..., 0].copy()

    for label, call in (
        ("serial", lambda: calcjax.gradient(f, x, traceable=False)),
        ("vectorized", lambda: calcjax.gradient(f_batch, x, traceable=False, vectorized=True)),
    ):
        call()  # compile and cache outside the measurement
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        print(f"{label:>10}: peak {peak / MiB:7.2f} MiB ({verdict(peak / MiB, 64, at_most=True)})")


def parallel(n: int, rounds: int) -> None:
    print(f"\n== workers on 5 ms losses, n = {n} ({2 * n} evaluations per gradient)")
    client = cluster = None
    if nj.dask_available():
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        print(f"Dask LocalCluster(2) started in {time.perf_counter() - start:.2f} s (not timed below)")
    try:
        for name in ("sleep-5ms", "compute-5ms"):
            p = nj.nonjax_problem(name, n)
            contestants = {
                "serial": lambda p=p: calcjax.gradient(p.f, p.x0, traceable=False),
                "workers2": lambda p=p: calcjax.gradient(p.f, p.x0, traceable=False, workers=2),
            }
            if client is not None:
                contestants["dask2"] = lambda p=p: calcjax.gradient(
                    p.f, p.x0, traceable=False, workers=client
                )
            start = time.perf_counter()
            times = interleaved(contestants, rounds)
            line = f"{name:>11}: serial {statistics.median(times['serial']) * 1e3:7.1f} ms"
            w = ratio(times, "serial", "workers2")
            line += f" | workers=2 {w:4.2f}x"
            if name == "sleep-5ms":
                line += f" ({verdict(w, 1.7)})"
            if "dask2" in times:
                d = ratio(times, "serial", "dask2")
                line += f" | Dask(2) {d:4.2f}x" + (f" ({verdict(d, 1.5)})" if name == "sleep-5ms" else "")
            print(line + f"  [{time.perf_counter() - start:.1f} s with warm-up]")
    finally:
        if client is not None:
            client.close()
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="n of the NumPy twins (default 1000)")
    parser.add_argument(
        "--twins", default=",".join(nj.TWINS), help="comma-separated twins (default: all four)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds, at least 7 (default 7)")
    parser.add_argument("--memory-n", type=int, default=10_000, help="n of the memory check (default 10000)")
    parser.add_argument("--workers-n", type=int, default=16, help="n of the 5 ms losses (default 16)")
    parser.add_argument(
        "--only", default="twins,overhead,memory,parallel", help="comma-separated parts (default: all)"
    )
    args = parser.parse_args()
    if args.rounds < 7:
        parser.error(f"--rounds must be at least 7, got {args.rounds}")
    parts = set(args.only.split(","))
    if "twins" in parts:
        twins(args.n, args.rounds, [t for t in args.twins.split(",") if t])
    if "overhead" in parts:
        overhead(args.n, args.rounds)
    if "memory" in parts:
        memory(args.memory_n)
    if "parallel" in parts:
        parallel(args.workers_n, args.rounds)


if __name__ == "__main__":
    main()
