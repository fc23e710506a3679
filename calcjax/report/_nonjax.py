"""The ``nonjax`` suite's table: gradients of functions JAX cannot trace (NumPy, SciPy, an ODE solver).

Registered with :func:`calcjax.report._registry.register_table`; reads records only (no JAX).
"""

from __future__ import annotations

from typing import Any

from calcjax._fmt import fmt_n, fmt_ratio, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import NONJAX_PLOT
from calcjax.report._common import PLOTS_DIR, _div, _err, _few, _index, _num, _ordered, _time
from calcjax.report._page import FEW_MARK, Table
from calcjax.report._registry import register_table

__all__ = ["NONJAX_METHOD_ORDER", "NONJAX_PLOT", "NONJAX_PROBLEM_ORDER", "nonjax_panels", "nonjax_ratios"]

#: The suite's problems and methods in display order (:mod:`calcjax._bench.nonjax` defines them;
#: the report imports no JAX, so the names are repeated here and pinned by a test).
NONJAX_PROBLEM_ORDER = ("quadratic", "rosenbrock", "logistic", "mlp", "ode-fit", "sleep-5ms", "compute-5ms")
NONJAX_METHOD_ORDER = (
    "calcjax-serial",
    "calcjax-vectorized",
    "calcjax-workers2",
    "calcjax-dask2",
    "tutorial-loop",
    "scipy-approx-fprime",
    "scipy-differentiate",
    "numdifftools",
    "jax-grad",
)
BASELINE = "tutorial-loop"
SERIAL = "calcjax-serial"


def _problem_groups(records: list[dict[str, Any]]) -> list[tuple[Any, Any, list[dict[str, Any]]]]:
    """``(problem, n, records)`` in display order."""
    out = []
    for problem in _ordered((r.get("problem") for r in records), NONJAX_PROBLEM_ORDER):
        of = [r for r in records if r.get("problem") == problem]
        for n in sorted({r.get("n") for r in of}, key=lambda v: _num(v)):
            out.append((problem, n, [r for r in of if r.get("n") == n]))
    return out


def nonjax_panels(records: list[dict[str, Any]], panel: Any) -> list[Any]:
    """The plot as data: per problem and n, a bar of each method's median time (log axis).

    ``panel``: the plot module's panel class (passed in, so that this module needs no matplotlib).
    """
    panels = []
    for problem, n, rows_of in _problem_groups(records):
        by = _index(rows_of, ("method",))
        methods = [
            m
            for m in _ordered((r.get("method") for r in rows_of), NONJAX_METHOD_ORDER)
            if _num(by[(m,)].get("time"), 0) > 0
        ]
        if not methods:
            continue
        p = panel(f"{problem}, n = {fmt_n(n)}", "", "median time of one gradient (s)", xlog=False)
        p.bars = [("median time (pools: start-up apart)", [float(by[(m,)]["time"]) for m in methods])]
        p.xticks = [(float(i), str(m)) for i, m in enumerate(methods)]
        panels.append(p)
    return panels


def _speedup(slow: dict[str, Any] | None, fast: dict[str, Any] | None) -> str:
    """time(slow) ÷ time(fast): how many times faster ``fast`` is."""
    text = fmt_ratio(_div(slow and slow["time"], fast and fast["time"]))
    return text + FEW_MARK if text != "—" and _few(slow, fast) else text


def nonjax_ratios(records: list[dict[str, Any]]) -> dict[tuple[Any, Any, str], float]:
    """``(problem, n, what) -> ratio`` for the headline: ``what`` is ``"serial/loop"``,
    ``"vectorized/loop"``, ``"workers/serial"`` or ``"dask/serial"`` (times; below 1 is faster)."""
    by = _index(records, ("problem", "n", "method"))
    pairs = {
        "serial/loop": (SERIAL, BASELINE),
        "vectorized/loop": ("calcjax-vectorized", BASELINE),
        "workers/serial": ("calcjax-workers2", SERIAL),
        "dask/serial": ("calcjax-dask2", SERIAL),
    }
    out: dict[tuple[Any, Any, str], float] = {}
    for problem, n in {(r.get("problem"), r.get("n")) for r in records}:
        for what, (a, b) in pairs.items():
            ra, rb = by.get((problem, n, a)), by.get((problem, n, b))
            ratio = _div(ra and ra["time"], rb and rb["time"])
            if ratio is not None:
                out[(problem, n, what)] = ratio
    return out


@register_table(
    "nonjax.md",
    "Functions JAX cannot trace",
    "Gradients of NumPy/SciPy losses: calcjax serial, vectorized and in parallel against the tutorial's "
    "loop, SciPy and numdifftools.",
)
def _nonjax(run: Any, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    records = run.select("nonjax")
    if not records:
        return None
    blocks: list[Any] = [
        "One gradient of a loss JAX cannot trace, float64, median time. Errors are relative L2 errors "
        "against an independent reference: the analytic gradient, or for `ode-fit` (a Lotka–Volterra "
        "model fitted through `scipy.integrate.solve_ivp`) the forward sensitivity equations at "
        "tolerance 1e-13. *vs loop*: how many times faster than the tutorial's loop on the same problem; "
        "*vs serial*: than calcjax serial. Pools (`workers=2`, Dask `LocalCluster(2)`) are started and "
        "sent f before the timing: their start-up is the last column. `sleep-5ms` waits 5 ms per call "
        "(as a simulator waiting on a program does); `compute-5ms` computes for about as long, so its "
        "workers compete for the cores. `jax-grad` is `jax.grad` on the JAX version of the same problem."
    ]
    if NONJAX_PLOT in plots:
        blocks.append(f"![median time of one gradient per method]({PLOTS_DIR}/{NONJAX_PLOT})")
    for problem, n, rows_of in _problem_groups(records):
        by = _index(rows_of, ("method",))
        loop, serial = by.get((BASELINE,)), by.get((SERIAL,))
        rows = []
        for method in _ordered((r.get("method") for r in rows_of), NONJAX_METHOD_ORDER):
            r = by[(method,)]
            startup = r.get("startup_s")
            rows.append(
                [
                    f"`{method}`",
                    _time(r),
                    _speedup(loop, r) if loop is not None and r is not loop else "—",
                    _speedup(serial, r) if serial is not None and r is not serial else "—",
                    _err(r),
                    str(r.get("f_evals") if not _missing(r.get("f_evals")) else "—"),
                    fmt_time(startup) if not _missing(startup) else "—",
                ]
            )
        f_call = next((r.get("f_call_s") for r in rows_of if not _missing(r.get("f_call_s"))), None)
        cost = f", one call of f {fmt_time(f_call)}" if f_call is not None else ""
        blocks += [
            f"## {problem}, n = {fmt_n(n)}{cost}",
            Table.of(
                ["method", "time", "vs loop", "vs serial", "rel. error", "f-evals", "start-up"],
                rows,
                "lrrrrrr",
            ),
        ]
    return blocks


def headline_line(run: Any) -> str | None:
    """One sentence for the headline from the run's ``nonjax`` records (``None`` without them)."""
    records = run.select("nonjax")
    ratios = nonjax_ratios(records)
    parts = []
    for (problem, n, what), ratio in sorted(ratios.items(), key=lambda kv: (str(kv[0][0]), kv[0][2])):
        if not ratio:
            continue
        if what == "serial/loop":
            parts.append(
                f"serial {fmt_ratio(1 / ratio)} the tutorial loop's speed on {problem} (n = {fmt_n(n)})"
            )
        elif what == "vectorized/loop":
            parts.append(f"`vectorized=True` {fmt_ratio(1 / ratio)} on {problem} (n = {fmt_n(n)})")
        elif what in ("workers/serial", "dask/serial"):
            label = "`workers=2`" if what == "workers/serial" else "Dask `LocalCluster(2)`"
            parts.append(f"{label} {fmt_ratio(1 / ratio)} serial on a {problem} loss (n = {fmt_n(n)})")
    if not parts:
        return None
    return (
        "Functions JAX cannot trace (suite `nonjax`, NumPy f evaluated outside JAX; pool start-up timed "
        "apart, see `nonjax.md`): calcjax " + "; ".join(parts) + "."
    )
