"""History across runs, as a page: per machine, device and profile, the headline benchmarks run by run.

The data come from :mod:`calcjax._history` (grouping, time order, each step judged
by the regression gate where both runs kept enough rounds, else by the ratio
alone); this module picks the headline benchmarks, lays them out as one table and
one plot per group, and marks the steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from calcjax import _gate, _history
from calcjax._fmt import fmt_n, fmt_ratio, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import METHOD_ORDER, PROBLEM_ORDER
from calcjax.report._common import HEADLINE_METHODS, HEADLINE_SHARED, _rank
from calcjax.report._load import Run
from calcjax.report._plots import _MARKERS, _Line, _Panel
from calcjax.report._tables import headline_picks

#: The page's file in the results folder.
HISTORY_NAME = "history.md"
#: Marks of a step against the previous run in the same group.
SLOWER, FASTER = "▲", "▼"
_METHODS = (*HEADLINE_METHODS, HEADLINE_SHARED)


def _headline_keys(runs: Sequence[Run]) -> set[tuple]:
    """(problem, n, dtype) of every headline row of every run."""
    return {(p, n, d) for run in runs for p, n, d, _ in headline_picks(run)}


def history_table(runs: Sequence[Run]) -> Any:
    """The :func:`calcjax._history.history` table of the headline benchmarks of ``runs``."""
    frame = _history.history_frame(runs)
    keys = _headline_keys(runs)
    pick = [
        r.suite == "gradient" and r.method in _METHODS and (r.problem, _gate._key_value(r.n), r.dtype) in keys
        for r in frame.itertuples()
    ]
    return _history.history(frame[pick])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "group"


def _mark(row: dict[str, Any]) -> str:
    step, basis = row["step"], row["basis"]
    if step not in ("slower", "faster"):
        return ""
    arrow = SLOWER if step == "slower" else FASTER
    return f" {arrow}{fmt_ratio(row['ratio'])}" + ("≈" if basis == "ratio only" else "")


def history_blocks(runs: Sequence[Run]) -> tuple[list[Any], dict[str, list[_Panel]]]:
    """The history page's blocks and its plots (file name -> panels)."""
    from calcjax.report._page import Table

    if not runs:
        return ["_No runs yet._"], {}
    table = history_table(runs)
    blocks: list[Any] = [
        "The headline benchmarks (suite `gradient`, the headline's problems, n and dtype; methods "
        f"{', '.join(f'`{m}`' for m in _METHODS)}) in every run, grouped by machine, device and profile "
        "(only like is compared with like), runs in time order with their commit. "
        f"{SLOWER} slower, {FASTER} faster than the group's previous run, by the ratio shown: judged by the "
        f"regression gate (Mann–Whitney U p < {_gate.ALPHA:g} and a ratio beyond {_gate.FACTOR:g}×) where "
        f"both runs kept at least {_gate.min_rounds()} rounds; marked ≈ where a run kept no rounds and the "
        f"ratio alone passed {_history.RATIO_ONLY_FACTOR:g}×."
    ]
    plots: dict[str, list[_Panel]] = {}
    if table.empty:
        return [*blocks, "_No headline benchmarks in these runs._"], plots
    for group, g in table.groupby(list(_history.GROUP), sort=True):
        machine, device, profile = group
        g = g.assign(_when=g["datetime"].astype(str))
        run_ids = list(dict.fromkeys(g.sort_values(["_when", "run_id"])["run_id"]))
        info = {r["run_id"]: r for r in g.to_dict("records")}
        header = ["problem", "n", "dtype", "method"]
        for rid in run_ids:
            commit = info[rid]["commit"]
            short = f"`{commit[:7]}`" if isinstance(commit, str) and commit else "no commit"
            header.append(f"{str(info[rid]['datetime'])[:16].replace('T', ' ')} {short}")
        rows = []
        bench_cols = ["problem", "n", "dtype", "method"]
        benches = sorted(
            {tuple(r[c] for c in bench_cols) for r in g.to_dict("records")},
            key=lambda b: (_rank(b[0], PROBLEM_ORDER), b[1], b[2], _rank(b[3], METHOD_ORDER)),
        )
        by = {(tuple(r[c] for c in bench_cols), r["run_id"]): r for r in g.to_dict("records")}
        panels: dict[Any, _Panel] = {}
        for b in benches:
            cells = []
            xs, ys = [], []
            steps: list[tuple[str, float, float]] = []
            for i, rid in enumerate(run_ids):
                r = by.get((b, rid))
                if r is None:
                    cells.append("—")
                    continue
                few = "†" if not _missing(r["rounds"]) and r["rounds"] < 3 else ""
                cells.append(fmt_time(r["time"]) + few + _mark(r))
                xs.append(float(i))
                ys.append(float(r["time"]))
                if r["step"] in ("slower", "faster"):
                    steps.append((r["step"], float(i), float(r["time"])))
            rows.append([str(b[0]), fmt_n(b[1]), str(b[2]), str(b[3]), *cells])
            panel = panels.setdefault(
                b[:3],
                _Panel(
                    f"{b[0]} (n = {fmt_n(b[1])}, {b[2]})",
                    "run (time order)",
                    "median time of one gradient (s)",
                    xlog=False,
                    xticks=[(float(i), str(rid)[4:13]) for i, rid in enumerate(run_ids)],
                ),
            )
            k = _rank(b[3], _METHODS)[0]
            if xs:
                panel.lines.append(_Line(str(b[3]), xs, ys, _MARKERS[k % len(_MARKERS)], k))
            for step, x, y in steps:
                marker, color = ("^", "red") if step == "slower" else ("v", "green")
                panel.lines.append(
                    _Line(f"step: {step} than the run before", [x], [y], marker, color, "", 0.5)
                )
        title = f"{device} · {machine} · profile {profile}"
        blocks += [f"## {title}", Table.of(header, rows, "lrll" + "r" * len(run_ids))]
        name = f"history-{_slug(f'{device}-{profile}-{machine}')}.png"
        if any(len(p.lines) for p in panels.values()) and len(run_ids) > 1:
            plots[name] = list(panels.values())
            blocks.append(f"![headline times across runs: {title}](plots/{name})")
    return blocks, plots


__all__ = ["HISTORY_NAME", "history_blocks", "history_table"]
