"""The Markdown pages of a run: the headline and one page per suite."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from calcjax._fmt import fmt_bytes, fmt_error, fmt_h, fmt_n, fmt_ratio, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import (
    DTYPE_ORDER,
    METHOD_ORDER,
    PROBLEM_ORDER,
)
from calcjax.report._common import (
    COMPUTE_LIMIT_MIN_N,
    FD_BLACK_BOX,
    FD_PEERS,
    HEADLINE_METHODS,
    HEADLINE_SHARED,
    HONEST_FACTOR,
    REFERENCE_METHOD,
    TUTORIAL_EPS,
    TUTORIAL_METHOD,
    _div,
    _err,
    _err_column,
    _error,
    _few,
    _groups,
    _index,
    _num,
    _numbers,
    _ordered,
    _plot_links,
    _ratio,
    _time,
    _vcurve_label,
)
from calcjax.report._load import Run, load_run
from calcjax.report._page import FEW_MARK, Page, Table
from calcjax.report._registry import register_table

# --------------------------------------------------------------------------- headline


def headline_picks(run: Run) -> list[tuple[Any, Any, Any, dict[tuple, dict[str, Any]]]]:
    """The headline's rows as data: (problem, n, dtype, records by (method, n)) per scalable problem.

    n is the largest where ``ad-reverse``, the black-box FD and the loop all ran (then fewer),
    float64 when the run has it.
    """
    grads = run.select("gradient")
    ad_m, fd_m, loop_m = HEADLINE_METHODS
    shared_m = HEADLINE_SHARED
    picks = []
    for problem in _ordered((r.get("problem") for r in grads), PROBLEM_ORDER):
        of_problem = [r for r in grads if r.get("problem") == problem]
        if len(_numbers(r.get("n") for r in of_problem)) < 2:
            continue  # not scalable in this run
        dtypes = _ordered((r.get("dtype") for r in of_problem), DTYPE_ORDER)
        dtype = "float64" if "float64" in dtypes else dtypes[0]
        by = _index((r for r in of_problem if r.get("dtype") == dtype), ("method", "n"))
        sizes = _numbers(r.get("n") for r in of_problem)
        common: list[float] = []
        for need in ((ad_m, fd_m, loop_m), (ad_m, fd_m), (ad_m, shared_m, loop_m), (ad_m, shared_m)):
            common = common or [n for n in sizes if all((m, n) in by for m in need)]
        if common:
            picks.append((problem, common[-1], dtype, by))
    return picks


def _headline(run: Run) -> list[Any]:
    """The headline's blocks: the table and its caption."""
    ad_m, fd_m, loop_m = HEADLINE_METHODS
    shared_m = HEADLINE_SHARED
    table_rows = []
    for problem, n, dtype, by in headline_picks(run):
        ad, fd, shared, loop = (by.get((m, n)) for m in (ad_m, fd_m, shared_m, loop_m))
        table_rows.append(
            [
                problem,
                fmt_n(n),
                dtype,
                *(_time(r) for r in (ad, fd, loop)),
                _ratio(fd, ad),
                _ratio(loop, fd),
                " / ".join(_err(r) for r in (ad, fd, loop)),
                _time(shared),
                _ratio(shared, ad),
                _err(shared),
            ]
        )
    if not table_rows:
        return ["_No scalable gradient benchmarks (suite `gradient`, two or more n) in this run._"]
    header = [
        "problem",
        "n",
        "dtype",
        "jax.grad",
        "calcjax FD (central, black-box f)",
        "NumPy loop (tutorial)",
        "FD ÷ jax.grad",
        "loop ÷ FD",
        "rel. error grad / FD / loop",
        "FD, shared products",
        "shared ÷ jax.grad",
        "rel. error shared",
    ]
    caption = (
        "Median time of one gradient at the largest n all three ran: `jax.grad` (`ad-reverse`), "
        f"calcjax's central differences with f evaluated as written at every point (`{fd_m}`: what any "
        f"JAX function gets) and the tutorial's NumPy loop (`{loop_m}`, eps = 1e-5). "
        f"The last three columns are calcjax's default (`{shared_m}`): it reads f's jaxpr and computes a "
        "matrix product of x with a matrix that does not depend on x (logistic regression's `A @ w`, an "
        "MLP's first layer) once, giving each perturbed point one column; a function without such a "
        "product gets no gain. Errors are relative to an independent reference gradient."
    )
    from calcjax.report._nonjax import headline_line  # the nonjax table module imports this one

    blocks: list[Any] = [Table.of(header, table_rows, "lrl" + "r" * 9), caption]
    nonjax = headline_line(run)
    return [*blocks, nonjax] if nonjax else blocks


def headline_table(run_dir: Path | str) -> str:
    """The one table a newcomer needs, as Markdown, opening with the provenance line.

    For each scalable problem, at the largest n where ``ad-reverse``,
    ``fd-central-blackbox`` and ``numpy-loop`` all ran (float64 when the run has it):
    their times, the ratios FD ÷ AD and loop ÷ FD, the three errors, and in columns of
    their own ``fd-central`` (shared matrix products) against ``ad-reverse``.
    """
    page = headline_page(load_run(run_dir))
    return f"{page.provenance}\n\n{page.body_markdown()}\n"


def headline_page(run: Run) -> Page:
    """The headline of a loaded run as a :class:`Page`."""
    return Page("Headline", run.provenance(), _headline(run))


# --------------------------------------------------------------------------- speed


def _feval_time(run: Run) -> dict[tuple, float]:
    """(problem, n, dtype) -> seconds per f evaluation inside a large batch (suite ``feval``)."""
    out: dict[tuple, float] = {}
    for r in run.select("feval"):
        key = (r.get("problem"), r.get("n"), r.get("dtype"))
        out.setdefault(key, r["time"] / max(_num(r.get("batch"), 1.0), 1.0))
    return out


@register_table(
    "speed.md", "Speed", "How long one gradient takes, as a multiple of `jax.grad`, and in f-evaluations."
)
def _speed(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    grads = run.select("gradient")
    derivs = run.select("derivative")
    if not grads and not derivs:
        return None
    ref = _index((r for r in grads if r.get("method") == REFERENCE_METHOD), ("problem", "n", "dtype"))
    f_time = _feval_time(run)
    sections = []
    for problem, dtype, of in _groups(grads, ("problem", "dtype")):
        sizes = _numbers(r.get("n") for r in of)
        by = _index(of, ("method", "n"))
        methods = _ordered((r.get("method") for r in of), METHOD_ORDER)
        rows = []
        for m in methods:
            cells = []
            for n in sizes:
                r = by.get((m, n))
                ref_r = ref.get((problem, n, dtype))
                if r is None:
                    cells.append("—")
                elif m == REFERENCE_METHOD:
                    cells.append(_time(r))
                else:
                    cells.append(_ratio(r, ref_r))
            rows.append([m, *cells])
        sections += [
            f"## {problem}, {dtype}: time as a multiple of `{REFERENCE_METHOD}`",
            Table.of(["method", *(f"n = {fmt_n(n)}" for n in sizes)], rows, "l" + "r" * len(sizes)),
        ]
        f_sizes = [n for n in sizes if (problem, n, dtype) in f_time]
        if f_sizes:
            rows = []
            for m in methods:
                ratios = [
                    _div(by[(m, n)]["time"], f_time[(problem, n, dtype)]) if (m, n) in by else None
                    for n in f_sizes
                ]
                rows.append([m, *(fmt_ratio(x) for x in ratios)])
            header = ["method", *(f"n = {fmt_n(n)}" for n in f_sizes)]
            sections += [
                f"### {problem}, {dtype}: cost of a gradient in f-evaluations (grad time ÷ f time)",
                Table.of(header, rows, "l" + "r" * len(f_sizes)),
            ]
    if grads:
        links = _plot_links("time-vs-n", "time against n", (r.get("problem") for r in grads), plots)
        if links:
            sections += ["## Time against n", links]
        rows = []
        for r in grads:
            ref_r = ref.get((r.get("problem"), r.get("n"), r.get("dtype")))
            f_t = f_time.get((r.get("problem"), r.get("n"), r.get("dtype")))
            rows.append(
                [
                    str(r.get("problem", "—")),
                    str(r.get("dtype", "—")),
                    fmt_n(r.get("n")),
                    str(r.get("method", "—")),
                    _time(r),
                    fmt_time(_num(r["stats"].get("iqr"), math.nan)),
                    _ratio(r, ref_r),
                    fmt_ratio(_div(r["time"], f_t)),
                    fmt_time(r.get("compile_s")),
                    fmt_n(r.get("f_evals")),
                    _err(r),
                    fmt_bytes(r.get("peak_bytes")),
                ]
            )
        header = [
            "problem",
            "dtype",
            "n",
            "method",
            "median",
            "IQR",
            f"÷ {REFERENCE_METHOD}",
            "grad ÷ f",
            "compile",
            "f-evals",
            "rel. error",
            "peak memory",
        ]
        sections += ["## All gradient records", Table.of(header, rows, "llrl" + "r" * 8)]
    if derivs:
        rows = [
            [
                str(r.get("problem", "—")),
                str(r.get("dtype", "—")),
                str(r.get("method", "—")),
                str(r.get("scheme", "—")),
                str(r.get("order", "—")),
                _time(r),
                fmt_time(r.get("compile_s")),
                _err(r),
            ]
            for r in derivs
        ]
        header = ["problem", "dtype", "method", "scheme", "order", "median", "compile", "rel. error"]
        sections += ["## Scalar derivatives", Table.of(header, rows, "lllllrrr")]
    caption = (
        "Median wall time of one call, compiled and warmed up first (compile time apart). "
        f"The `{REFERENCE_METHOD}` row gives its own time; every other cell is a multiple of it."
    )
    if f_time:
        caption += (
            " f time is the time of one f evaluation inside a large batch (suite `feval`), "
            "so grad ÷ f counts a gradient in f-evaluations at full throughput."
        )
    return [caption, *sections]


# --------------------------------------------------------------------------- scaling


def fit_exponent(ns: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope k of log(time) against log(n): time ∝ n^k.

    >>> round(fit_exponent([10, 100, 1000], [1e-3, 1e-1, 1e1]), 6)
    2.0
    """
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, times, strict=True) if n > 0 and t > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def _fits(run: Run) -> list[tuple[str, str, str, list[float], float | None, float | None]]:
    out = []
    for problem, dtype, method, of in _groups(run.select("gradient"), ("problem", "dtype", "method")):
        by_n = _index(of, ("n",))
        ns = _numbers(r.get("n") for r in of)
        if len(ns) < 2:
            continue
        ts = [by_n[(n,)]["time"] for n in ns]
        out.append((problem, dtype, method, ns, fit_exponent(ns, ts), fit_exponent(ns[-2:], ts[-2:])))
    return out


@register_table(
    "scaling.md",
    "Scaling with n",
    "The fitted exponent k of time ∝ n^k for each method: how the cost grows with n.",
)
def _scaling(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    fits = _fits(run)
    if not fits:
        return None
    sections = [
        "Fitted exponent k of time ∝ n^k, least squares on log time against log n over every n the "
        "method ran at. At small n, fixed overheads flatten the fit; the last column fits only the two "
        "largest n, nearer the asymptotic cost (AD ≈ 1 for these problems, central FD ≈ 2: "
        "2n evaluations of an O(n) function)."
    ]
    for dtype in _ordered((f[1] for f in fits), DTYPE_ORDER):
        of = [f for f in fits if f[1] == dtype]
        problems = _ordered((f[0] for f in of), PROBLEM_ORDER)
        by = {(f[2], f[0]): f for f in of}
        rows = [
            [m, *(_fmt_k(by[(m, p)][4]) if (m, p) in by else "—" for p in problems)]
            for m in _ordered((f[2] for f in of), METHOD_ORDER)
        ]
        sections += [
            f"## {dtype}: k over all n",
            Table.of(["method", *problems], rows, "l" + "r" * len(problems)),
        ]
    rows = [
        [p, d, m, f"{fmt_n(ns[0])} – {fmt_n(ns[-1])}", str(len(ns)), _fmt_k(k_all), _fmt_k(k_top)]
        for p, d, m, ns, k_all, k_top in fits
    ]
    header = ["problem", "dtype", "method", "n range", "points", "k (all n)", "k (two largest n)"]
    sections += ["## Every fit", Table.of(header, rows, "lllrrrr")]
    return sections


def _fmt_k(k: float | None) -> str:
    return "—" if k is None else f"{k:.2f}"


# --------------------------------------------------------------------------- accuracy


def _accuracy_records(run: Run) -> tuple[list[dict[str, Any]], str]:
    acc = [r for r in run.select("accuracy") if not _missing(r.get("rel_error")) and r.get("method")]
    if acc:
        return acc, "suite `accuracy`"
    grads = [r for r in run.select("gradient") if not _missing(r.get("rel_error"))]
    largest = {}
    for r in grads:
        key = (r.get("problem"), r.get("dtype"))
        largest[key] = max(largest.get(key, -1), _num(r.get("n")))
    picked = [r for r in grads if _num(r.get("n")) == largest[(r.get("problem"), r.get("dtype"))]]
    return picked, "suite `gradient`, largest n per problem"


@register_table(
    "accuracy.md",
    "Accuracy",
    "Each gradient's error against an independent reference, and the error against step size (V-curve).",
)
def _accuracy(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    acc, source = _accuracy_records(run)
    vcurve = run.select("vcurve")
    if not acc and not vcurve:
        return None
    sections = []
    if acc:
        sections.append(
            f"Relative error of each gradient method against an independent reference gradient ({source})."
        )
        for dtype, of in _groups(acc, ("dtype",)):
            cols = [
                (p, n)
                for p, n, _ in _groups(of, ("problem", "n"))  # problem order, then n
            ]
            by = _index(of, ("method", "problem", "n"))
            rows = []
            for m in _ordered((r.get("method") for r in of), METHOD_ORDER):
                label = m
                if m == TUTORIAL_METHOD and dtype == "float32":
                    label = f"**{m}** (tutorial eps = 1e-5)"
                rows.append([label, *(_err(by.get((m, p, n))) for p, n in cols)])
            header = ["method", *(f"{p} n={fmt_n(n)}" if not _missing(n) else str(p) for p, n in cols)]
            sections += [f"## Gradient error, {dtype}", Table.of(header, rows, "l" + "r" * len(cols))]
        tutorial = [r for r in acc if r.get("method") == TUTORIAL_METHOD and r.get("dtype") == "float32"]
        if tutorial:
            sections.append(_tutorial_callout(tutorial, acc))
    if vcurve:
        sections.append(_vcurve_section(vcurve, plots))
    return sections


def _tutorial_callout(tutorial: Sequence[dict[str, Any]], acc: Sequence[dict[str, Any]]) -> str:
    central = _index(
        (r for r in acc if r.get("method") == "fd-central" and r.get("dtype") == "float32"), ("problem", "n")
    )
    parts = []
    for r in tutorial:
        where = f"{r.get('problem')}" + (f" (n = {fmt_n(r.get('n'))})" if not _missing(r.get("n")) else "")
        ours = central.get((r.get("problem"), r.get("n")))
        vs = f" against {fmt_error(_error(ours))} for `fd-central`" if ours else ""
        parts.append(f"{fmt_error(r.get('rel_error'))} on {where}{vs}")
    return (
        "## The tutorial's step in float32\n\n"
        f"**The tutorial's `eps = 1e-5` in float32 (`{TUTORIAL_METHOD}`) is not a usable gradient:** "
        f"relative error {'; '.join(parts)}. float32 keeps about 7 significant digits "
        "(machine epsilon 1.2e-07), and f(x + h) − f(x − h) with h = 1e-5 cancels about 5 of them, "
        "so what is left is mostly rounding noise. A step scaled to the dtype (calcjax's automatic "
        "step, ∝ eps^(1/3) for central differences) or `jax.grad` avoids it."
    )


def _vcurve_section(vcurve: Sequence[dict[str, Any]], plots: frozenset[str]) -> str:
    col = _err_column(vcurve)
    kind = "relative" if col == "rel_error" else "absolute"
    rows = []
    grids = []
    for problem, of in _groups(vcurve, ("problem",)):
        series = _groups(of, ("scheme", "order", "dtype")) if of[0].get("scheme") else None
        series = series or [(None, None, d, g) for d, g in _groups(of, ("dtype",))]
        for *_, dtype, recs in series:
            label = _vcurve_label(recs[0])
            numeric = [r for r in recs if isinstance(r.get("h"), float | int) and not _missing(r.get(col))]
            auto = next((r for r in recs if r.get("h") == "auto"), None)
            tut = next((r for r in numeric if math.isclose(float(r["h"]), TUTORIAL_EPS)), None)
            best = min(numeric, key=lambda r: (r[col], -float(r["h"]))) if numeric else None
            rows.append(
                [
                    str(problem),
                    label,
                    str(dtype),
                    fmt_error(best and best[col]),
                    fmt_h(best and best["h"]),
                    fmt_error(auto and auto.get(col)),
                    fmt_error(tut and tut.get(col)),
                ]
            )
        hs = sorted({float(r["h"]) for r in of if isinstance(r.get("h"), float | int)}, reverse=True)
        cols = [(_vcurve_label(recs[0]), dtype, recs) for *_, dtype, recs in series]
        grid = []
        for h in hs:
            cells = []
            for _, _, recs in cols:
                hit = next((r for r in recs if r.get("h") == h), None)
                cells.append(fmt_error(hit and hit.get(col)))
            grid.append([fmt_h(h), *cells])
        auto_row = ["auto"]
        for _, _, recs in cols:
            hit = next((r for r in recs if r.get("h") == "auto"), None)
            auto_row.append(fmt_error(hit and hit.get(col)))
        if any(c != "—" for c in auto_row[1:]):
            grid.append(auto_row)
        header = ["h", *(f"{label} {dtype}" for label, dtype, _ in cols)]
        grids += [
            f"### {problem}: {kind} error at each step size",
            Table.of(header, grid, "l" + "r" * len(cols)),
            _plot_links("vcurve", "error against h", [problem], plots),
        ]
    header = ["problem", "scheme", "dtype", "min error", "h at min", "automatic step", "h = 1e-5 (tutorial)"]
    return [
        "## Error against step size (the V-curve)",
        f"Too large a step leaves truncation error, too small a step rounding error: the {kind} error "
        "falls, bottoms out and rises again. The automatic step is calcjax's default, from the dtype.",
        Table.of(header, rows, "lllrrrr"),
        *grids,
    ]


@register_table(
    "estimate.md",
    "Error estimates against true errors",
    "Whether Richardson's error estimates are honest: the true error at most 10× the estimate.",
)
def _estimate(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    est = run.select("estimate")
    if not est:
        return None
    rows = []
    worst: dict[str, float] = {}
    for r in est:
        ratio = _div(r.get("true_error"), r.get("estimate"))
        if r.get("true_error") == 0:
            ratio = 0.0
        verdict = "—" if ratio is None else ("honest" if ratio <= HONEST_FACTOR else "optimistic")
        method = str(r.get("method", "—"))
        if ratio is not None:
            worst[method] = max(worst.get(method, 0.0), ratio)
        rows.append(
            [
                str(r.get("case", r.get("problem", "—"))),
                method,
                str(r.get("dtype", "—")),
                fmt_error(r.get("estimate")),
                fmt_error(r.get("true_error")),
                fmt_ratio(ratio) if ratio else ("0" if ratio == 0 else "—"),
                verdict,
            ]
        )
    header = ["case", "method", "dtype", "estimate", "true error", "true ÷ estimate", "verdict"]
    summary = Table.of(
        ["method", "worst true ÷ estimate"],
        [[m, fmt_ratio(worst[m]) if worst[m] else "0"] for m in _ordered(worst, METHOD_ORDER)],
        "lr",
    )
    intro = (
        "An error estimate is honest when the true error is at most "
        f"{HONEST_FACTOR:g}× the estimate; an optimistic one claims more accuracy than there is."
    )
    return [intro, Table.of(header, rows, "lllrrrl"), summary]


# --------------------------------------------------------------------------- descent

#: The descent suite's yardstick: a bare ``lax.fori_loop`` of gradient steps, no loss history.
BARE_LOOP = "fori-bare"


@register_table(
    "descent.md", "Gradient descent", "Time and final loss of a whole gradient descent, per method and loop."
)
def _descent(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    desc = run.select("descent")
    if not desc:
        return None
    key = lambda r: (r.get("problem"), r.get("n"), r.get("dtype"), r.get("steps"))
    tutorial, bare = {}, {}
    for r in desc:
        if "tutorial" in str(r.get("method", "")):
            tutorial.setdefault(key(r), r)
        if r.get("method") == BARE_LOOP:
            bare.setdefault(key(r), r)
    rows = []
    for r in desc:
        steps = _num(r.get("steps"), 0.0)
        base = tutorial.get(key(r))
        row = [
            str(r.get("problem", "—")),
            fmt_n(r.get("n")),
            str(r.get("dtype", "—")),
            str(r.get("method", "—")),
            fmt_n(r.get("steps")),
            _time(r),
            fmt_time(r["time"] / steps if steps > 0 else None) + (FEW_MARK if _few(r) else ""),
            fmt_error(r.get("final_loss")),
            fmt_time(r.get("compile_s")),
        ]
        if tutorial:
            row.append(_ratio(base, r))
        if bare:
            yardstick = bare.get(key(r))
            row.append(_ratio(r, yardstick))
        rows.append(row)
    header = ["problem", "n", "dtype", "method", "steps", "time", "per step", "final loss", "compile"]
    if tutorial:
        header.append("speed-up vs tutorial loop")
    if bare:
        header.append("÷ bare fori_loop")
    caption = (
        "Median wall time of a whole descent (compile time apart), the time per step and the final loss."
        + (
            " Speed-up: the tutorial's pure-Python loop's time ÷ this method's, same steps."
            if tutorial
            else ""
        )
        + (
            f" ÷ bare fori_loop: this method's time ÷ that of `{BARE_LOOP}`, a bare `lax.fori_loop` of"
            " `jax.grad` steps that records no loss (same problem, n, dtype and steps); `scan-hand-vg`"
            " is a hand-written `lax.scan` over `jax.value_and_grad` that records the loss at every step,"
            " as `gradient_descent` (`scan-ad-reverse`) does."
            if bare
            else ""
        )
    )
    table = Table.of(header, rows, "lrll" + "r" * (len(header) - 4))
    links = _plot_links("descent", "descent", (r.get("problem") for r in desc), plots)
    return [caption, table, links]


# --------------------------------------------------------------------------- FD against peers


@register_table(
    "fd_scaling.md",
    "calcjax FD gradients against peer FD gradients",
    "calcjax's FD gradient against every peer FD gradient of the same kind: time and memory.",
)
def _fd_scaling(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    grads = run.select("gradient")
    present = {r.get("method") for r in grads}
    pairs = [(ours, [p for p in peers if p in present]) for ours, peers in FD_PEERS.items()]
    pairs = [(ours, peers) for ours, peers in pairs if ours in present and peers]
    if not pairs:
        return None
    f_time = _feval_time(run)
    sections = [
        "calcjax's FD gradient against each peer FD gradient of the same kind, on the same problem, n "
        "and dtype, in one run. Peer cells: the peer's time ÷ calcjax's (above 1×: calcjax is faster), "
        "with the peer's peak memory. 'black-box f': calcjax's own gradient with `share_products=False` "
        "(f evaluated as written at every point), its time ÷ calcjax's. "
        + (
            f"From n = {fmt_n(COMPUTE_LIMIT_MIN_N)}, the compute limit is (f-evaluations) × (time of one "
            "f evaluation inside a large batch, suite `feval`); 'vs limit' is calcjax's time ÷ that limit "
            "(below 1×: calcjax shares f's matrix products of x between points, so a point costs less "
            "than an evaluation of f)."
            if f_time
            else "No `feval` records in this run, so no compute-limit column."
        )
    ]
    shown = {m for ours, peers in pairs for m in (ours, *peers, FD_BLACK_BOX.get(ours))}
    sources = _ordered(r.get("peak_source") for r in grads if r.get("method") in shown)
    if sources:
        names = ", ".join(f"`{src}`" for src in sources)
        sections[0] += f" Peak memory measured by {names} (column `peak_source` of the CSV)."
    for ours, peers in pairs:
        black_box = FD_BLACK_BOX.get(ours) if FD_BLACK_BOX.get(ours) in present else None
        for problem, dtype, of in _groups(
            [r for r in grads if r.get("method") in (ours, *peers, black_box)], ("problem", "dtype")
        ):
            by = _index(of, ("method", "n"))
            sizes = [n for n in _numbers(r.get("n") for r in of) if (ours, n) in by]
            if not sizes:
                continue
            rows = []
            for n in sizes:
                mine = by[(ours, n)]
                ratios = [_div(by[(p, n)]["time"], mine["time"]) if (p, n) in by else None for p in peers]
                cells = [
                    "—"
                    if x is None
                    else f"{_ratio(by[(p, n)], mine)} ({fmt_bytes(by[(p, n)].get('peak_bytes'))})"
                    for p, x in zip(peers, ratios, strict=True)
                ]
                known = [x for x in ratios if x is not None]
                limit = None
                per_eval = f_time.get((problem, n, dtype))
                if n >= COMPUTE_LIMIT_MIN_N and per_eval:
                    evals = _num(mine.get("f_evals"), 0.0) or (2 * n if "central" in ours else n + 1)
                    limit = _div(mine["time"], evals * per_eval)
                row = [fmt_n(n), _time(mine), fmt_bytes(mine.get("peak_bytes"))]
                if black_box:
                    plain = by.get((black_box, n))
                    row.append(_ratio(plain, mine))
                row += cells
                row += [fmt_ratio(min(known)) if known else "—"]
                if f_time:
                    row.append(fmt_ratio(limit))
                rows.append(row)
            header = ["n", ours, "peak", *(["black-box f"] if black_box else []), *peers, "vs fastest peer"]
            if f_time:
                header.append("vs limit")
            sections += [
                f"## {ours}, {problem}, {dtype}",
                Table.of(header, rows, "l" + "r" * (len(header) - 1)),
            ]
    return sections


# --------------------------------------------------------------------------- sharding


@register_table(
    "sharding.md",
    "Sharding the FD batch over devices",
    "One FD gradient split over 1, 2, 4 … devices, with the speed-up.",
)
def _sharding(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    shard = [r for r in run.select("sharding") if not _missing(r.get("devices"))]
    if not shard:
        return None
    counts = [int(c) for c in _numbers(r.get("devices") for r in shard)]
    rows = []
    for problem, n, dtype, method, of in _groups(shard, ("problem", "n", "dtype", "method")):
        by = _index(of, ("devices",))
        base = by.get((1,))
        row = [str(problem), fmt_n(n), str(dtype), str(method)]
        for c in counts:
            r = by.get((c,))
            if r is None:
                row.append("—")
            elif c == 1 or base is None:
                row.append(_time(r))
            else:
                row.append(f"{_time(r)} ({_ratio(base, r)})")
        rows.append(row)
    header = ["problem", "n", "dtype", "method", *(f"{c} device{'s' if c > 1 else ''}" for c in counts)]
    notes = [
        "Median time of one sharded FD gradient with the batch of perturbed points split over 1, 2, 4 … "
        "devices; in brackets the speed-up over one device."
    ]
    m = run.machine
    if str(m.get("backend") or m.get("device_kind") or "").lower() == "cpu" or any(
        str(r.get("device_kind", "")).lower() == "cpu" for r in shard
    ):
        cores = run.cpu_cores
        notes.append(
            "**Note:** these are forced host devices (`--xla_force_host_platform_device_count`) on one CPU: "
            f"they share the machine's {cores or 'few'} cores, so the speed-up measures sharding overhead "
            "and parallelism XLA already had, not extra hardware."
        )
    return [*notes, Table.of(header, rows, "lrll" + "r" * len(counts))]
