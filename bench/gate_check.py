"""Check the regression gate's robust mode (``calcjax ab``) on this machine, as it is loaded now.

Measures, on one commit (``--rev``, default ``HEAD``) and ``calcjax ab``'s default selection:

1. ``--pairs`` A/A sessions of ``calcjax ab REV REV`` (interleaved, two workers): how many
   benchmarks the gate flags at ``--factor`` among those with enough rounds (goal: 0);
2. one session with the test hook ``CALCJAX_BENCH_SLOWDOWN=<method>=<factor>`` on B: how many of
   that method's benchmarks are flagged slower (goal: all), and how many others are flagged;
3. for contrast, ``--pairs`` plain comparisons: two separate runs made one after the other (each
   benchmark's rounds back to back, as a benchmark suite times them), compared with
   :func:`calcjax._gate.compare_records` (Mann–Whitney U per benchmark), timed with the wall
   clock like the benchmark suite.

Run from the repository root::

    PYTHONPATH=$PWD python bench/gate_check.py --out gate-check.md

It prints one line per session and a summary table (Markdown); nothing is hard-coded: the
figures are this machine's, now.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path


def _flagged(table) -> tuple[int, int]:
    """(benchmarks flagged slower or faster, benchmarks with enough rounds to be judged)."""
    judged = table[table["verdict"] != "no statistics"]
    return int(judged["verdict"].isin(["slower", "faster"]).sum()), len(judged)


def _worst(table, label) -> str:
    """The ratio farthest from 1× and its benchmark."""
    row = table.loc[table["ratio"].apply(lambda r: abs(math.log(r))).idxmax()]
    return f"{row['ratio']:.3f}× ({label(row)})"


def _since(t0: float) -> str:
    return f"{time.perf_counter() - t0:.0f} s"


def _records(rounds: dict[str, list[float]], cases) -> list[dict]:
    import numpy as np

    from calcjax._commands.ab import case_label

    out = []
    for problem, n, dtype, method in cases:
        data = rounds.get(case_label((problem, n, dtype, method)))
        if data:
            stats = {"data": data, "median": float(np.median(data)), "rounds": len(data)}
            out.append(
                {
                    "suite": "gradient",
                    "problem": problem,
                    "n": n,
                    "dtype": dtype,
                    "method": method,
                    "stats": stats,
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    from calcjax import _gate
    from calcjax._commands import ab

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the commit measured on both sides (default: HEAD)")
    parser.add_argument("--pairs", type=int, default=3, help="A/A sessions and plain pairs (default: 3)")
    parser.add_argument("--rounds", type=int, default=ab.DEFAULT_ROUNDS)
    parser.add_argument("--round-s", type=float, default=ab.DEFAULT_ROUND_S)
    parser.add_argument("--factor", type=float, default=_gate.FACTOR)
    parser.add_argument("--slowdown", default="fd-central=1.3", help="the hook on B (default: %(default)s)")
    parser.add_argument("--problems", default=",".join(ab.DEFAULT_PROBLEMS))
    parser.add_argument("--methods", default=",".join(ab.DEFAULT_METHODS))
    parser.add_argument("--n", default=",".join(map(str, ab.DEFAULT_N)))
    parser.add_argument("--dtype", default="float64")
    parser.add_argument(
        "--clock", default="auto", help="the interleaved sessions' clock (calcjax ab --clock; default: auto)"
    )
    parser.add_argument("--out", type=Path, help="also write the summary (Markdown) here")
    args = parser.parse_args(argv)
    cases = ab.selection(args.problems, args.methods, args.n, args.dtype)
    slowdown = _gate.parse_slowdown(args.slowdown)
    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="gate-check-") as tmp:
        tmp = Path(tmp)
        a, b = ab.resolve_version(args.rev, tmp), ab.resolve_version(args.rev, tmp)
        say(f"commit {a.commit}, {len(cases)} benchmarks, {args.rounds} rounds, factor {args.factor:g}")
        rows = []
        for i in range(args.pairs):
            t0 = time.perf_counter()
            s = ab.interleave(
                a,
                b,
                cases,
                rounds=args.rounds,
                round_s=args.round_s,
                seed=i,
                factor=args.factor,
                clock=args.clock,
                log_dir=tmp,
            )
            flagged, judged = _flagged(s.table)
            if i == 0:
                say(f"interleaved sessions time with the {s.clock} clock; plain runs with the wall clock\n")
            worst = _worst(s.table, lambda row: row["key"])
            rows.append([f"A/A interleaved #{i + 1}", f"{flagged} of {judged}", worst, _since(t0)])
            say(f"A/A interleaved #{i + 1}: {flagged} of {judged} flagged; largest ratio {rows[-1][2]}")
        t0 = time.perf_counter()
        s = ab.interleave(
            a,
            b,
            cases,
            rounds=args.rounds,
            round_s=args.round_s,
            seed=args.pairs,
            factor=args.factor,
            slowdown=slowdown,
            clock=args.clock,
            log_dir=tmp,
        )
        slowed = s.table["key"].str.rsplit(" ", n=1).str[-1].isin(list(slowdown))
        hit = s.table[slowed & (s.table["verdict"] == "slower")]
        judged_slowed = int((slowed & (s.table["verdict"] != "no statistics")).sum())
        others, judged_others = _flagged(s.table[~slowed])
        ratios = ", ".join(
            f"{r:.3f}× (p {p:.0e})" for r, p in s.table[slowed][["ratio", "p_value"]].to_numpy()
        )
        flags = f"{len(hit)} of {judged_slowed} slowed; {others} of {judged_others} others"
        rows.append([f"slowdown {args.slowdown} on B", flags, f"slowed ratios {ratios}", _since(t0)])
        say(f"slowdown: {rows[-1][1]} flagged; {rows[-1][2]}")
        for i in range(args.pairs):
            t0 = time.perf_counter()
            runs = [
                ab.sequential_rounds(a, cases, rounds=args.rounds, round_s=args.round_s, log_dir=tmp)
                for _ in range(2)
            ]
            table = _gate.compare_records(*(_records(r, cases) for r in runs), factor=args.factor)
            flagged, judged = _flagged(table)
            worst = _worst(table, lambda row: f"{row['problem']} n={row['n']} {row['dtype']} {row['method']}")
            rows.append(
                [f"plain pair #{i + 1} (two runs, Mann–Whitney)", f"{flagged} of {judged}", worst, _since(t0)]
            )
            say(f"plain pair #{i + 1}: {flagged} of {judged} flagged; largest ratio {rows[-1][2]}")
    from calcjax._fmt import md_table

    summary = md_table(["session", "flagged (of judged)", "largest |log ratio|", "wall"], rows, "llll")
    say("\n" + summary)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
