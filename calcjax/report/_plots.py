"""The plots of a run: described as data (:func:`_plot_specs`), then drawn with matplotlib."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calcjax._fmt import fmt_n
from calcjax._schema import (
    DTYPE_ORDER,
    LOSSES_FIELD,
    METHOD_ORDER,
)
from calcjax.report._common import (
    TUTORIAL_EPS,
    _err_column,
    _groups,
    _num,
    _numbers,
    _ordered,
    _plot_name,
    _vcurve_label,
)
from calcjax.report._load import Run
from calcjax.report._nonjax import NONJAX_PLOT, nonjax_panels
from calcjax.report._race import RACE_SUITE, race_axes


@dataclass(frozen=True)
class _Line:
    """One series. ``color``: palette index (one method, one colour in every plot), a matplotlib
    colour name, or ``None`` (the k-th line's colour). ``style``: matplotlib line style ("" for
    points only); ``width`` its width (wider lines are drawn first, so narrow ones on top stay visible)."""

    label: str
    xs: list[float]
    ys: list[float]
    marker: str = "o"
    color: int | str | None = None
    style: str = "-"
    width: float = 1.6
    size: float = 4.0


@dataclass
class _Panel:
    """One set of axes: lines, dotted levels (y, index of the line whose colour, label), marked xs,
    optional tick labels (x, text) on a linear x axis."""

    title: str
    xlabel: str
    ylabel: str
    xlog: bool = True
    ylog: bool = True
    lines: list[_Line] = field(default_factory=list)
    levels: list[tuple[float, int, str]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    #: Lines share their xs and may coincide: their markers are placed at staggered points.
    stagger: bool = False
    #: Grouped bars instead of lines: (label, one height per x tick), drawn on a log axis.
    bars: list[tuple[str, list[float]]] = field(default_factory=list)


def _xy(points: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    pts = sorted(points)
    return [x for x, _ in pts], [y for _, y in pts]


#: Markers cycled over methods, so lines that coincide (FD and AD descents) stay distinguishable.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")


def _guides(lines: Sequence[_Line]) -> list[_Line]:
    """Grey guide lines ∝ n and ∝ n², through the middle of the lines' times at the smallest n."""
    xs = sorted({x for line in lines for x in line.xs})
    if len(xs) < 2:
        return []
    x0, x1 = xs[0], xs[-1]
    at0 = sorted(y for line in lines for x, y in zip(line.xs, line.ys, strict=True) if x == x0)
    y0 = math.sqrt(at0[0] * at0[-1])
    return [
        _Line("∝ n (guide)", [x0, x1], [y0, y0 * x1 / x0], "", "grey", "--", 1.0),
        _Line("∝ n² (guide)", [x0, x1], [y0, y0 * (x1 / x0) ** 2], "", "grey", ":", 1.2),
    ]


def _plot_specs(run: Run) -> dict[str, list[_Panel]]:
    """Every plot of ``run`` as data (file name -> panels); only plots with a line or a bar in them."""
    specs: dict[str, list[_Panel]] = {}
    grads = run.select("gradient")
    methods = _ordered((r.get("method") for r in run.records), METHOD_ORDER)
    for problem, of in _groups(grads, ("problem",)):
        if len(_numbers(r.get("n") for r in of)) < 2:
            continue
        panels = []
        for dtype in _ordered((r.get("dtype") for r in of), DTYPE_ORDER):
            panel = _Panel(f"{problem}, {dtype}", "n (parameters)", "median time of one gradient (s)")
            for method, recs in _groups([r for r in of if r.get("dtype") == dtype], ("method",)):
                xs, ys = _xy((r["n"], r["time"]) for r in recs if _num(r.get("n"), 0) > 0 and r["time"] > 0)
                if xs:
                    i = methods.index(method)
                    panel.lines.append(_Line(str(method), xs, ys, _MARKERS[i % len(_MARKERS)], i))
            panel.lines += _guides(panel.lines)
            panels.append(panel)
        specs[_plot_name("time-vs-n", problem)] = panels

    vcurve = run.select("vcurve") + run.select("hessian_vcurve")  # second differences: problem "sin-exp"
    col = _err_column(vcurve)
    kind = "relative" if col == "rel_error" else "absolute"
    dtypes = _ordered((r.get("dtype") for r in vcurve), DTYPE_ORDER)
    for problem, of in _groups(vcurve, ("problem",)):
        panels = []
        for *_, recs_so in _groups(of, ("scheme", "order")):
            label = _vcurve_label(recs_so[0])
            panel = _Panel(f"{problem}: {label}", "step h", f"{kind} error")
            for dtype, recs in _groups(recs_so, ("dtype",)):
                xs, ys = _xy(
                    (float(r["h"]), float(r[col]))
                    for r in recs
                    if isinstance(r.get("h"), int | float) and r["h"] > 0 and _num(r.get(col), 0) > 0
                )
                if not xs:
                    continue
                i = dtypes.index(dtype) if dtype in dtypes else len(panel.lines)
                panel.lines.append(_Line(str(dtype), xs, ys, ".", i))
                auto = next((r for r in recs if r.get("h") == "auto" and _num(r.get(col), 0) > 0), None)
                if auto:
                    panel.levels.append((float(auto[col]), i, f"automatic step, {dtype} (its error)"))
            panel.marks.append((TUTORIAL_EPS, "tutorial eps = 1e-5"))
            panels.append(panel)
        specs[_plot_name("vcurve", problem)] = panels

    for problem, of in _groups(run.select("descent"), ("problem",)):
        specs[_plot_name("descent", problem)] = _descent_panels(str(problem), of, methods)
    for problem, of in _groups(run.select(RACE_SUITE), ("problem",)):
        panels = []
        for n, of_n in _groups(of, ("n",)):
            panels += _descent_panels(f"{problem}, n={fmt_n(n)}", of_n, methods, race=True)
        specs[_plot_name("descent-race", problem)] = panels

    nonjax = nonjax_panels(run.select("nonjax"), _Panel)
    if nonjax:
        specs[NONJAX_PLOT] = nonjax

    return {name: panels for name, panels in specs.items() if any(p.lines or p.bars for p in panels)}


def _descent_panels(
    title: str, of: list[dict[str, Any]], methods: list[Any], *, race: bool = False
) -> list[_Panel]:
    """Loss against step and wall time of descent records (and against f-evaluations for the race,
    whose records say what a step costs, :func:`calcjax.report._race.race_axes`); final losses
    against steps when no record keeps its history."""
    by_step, by_evals, by_time, finals = [], [], [], []
    keys = ("method", "dtype") if race else ("method", "n", "dtype")
    groups = _groups(of, keys)
    for k, (method, *rest, recs) in enumerate(groups):
        label = f"{method}, {rest[-1]}" if race else f"{method}, n={fmt_n(rest[0])}, {rest[1]}"
        color = methods.index(method) if method in methods else k
        marker = _MARKERS[k % len(_MARKERS)]
        width = 1.2 + 2.4 * (1 - k / max(1, len(groups)))  # earlier lines wider, drawn under later ones
        line = functools.partial(_Line, label, marker=marker, color=color, style="-", width=width)
        axes = next((a for r in reversed(recs) if (a := _history_axes(r))), None)
        if axes is not None:
            losses = [v if v > 0 and math.isfinite(v) else math.nan for v in axes["loss"]]
            # On a log axis the start sits at half the first recorded interval.
            at_zero = lambda xs: [x if x > 0 else 0.5 * xs[1] for x in xs] if len(xs) > 1 else xs
            by_step.append(line(at_zero(axes["step"]) if race else axes["step"], losses))
            by_time.append(line(at_zero(axes["time"]), losses))
            if race:
                by_evals.append(line(axes["evals"], losses))
        xs, ys = _xy(
            (float(r["steps"]), float(r["final_loss"]))
            for r in recs
            if _num(r.get("steps"), 0) > 0 and _num(r.get("final_loss"), 0) > 0
        )
        if xs:
            finals.append(_Line(label, xs, ys, marker, color))
    if not by_step:  # a loss history says more than final losses
        return [_Panel(f"gradient descent: {title}", "steps", "final loss", lines=finals)]
    spread = "the run's median spread evenly over its steps"
    if race:
        return [
            _Panel(f"{title}: loss against step", "step", "loss", lines=by_step),
            _Panel(
                f"{title}: loss against f-evaluations",
                "f-evaluations (an AD pass counts one)",
                "loss",
                lines=by_evals,
            ),
            _Panel(f"{title}: loss against wall time", f"wall time (s, {spread})", "loss", lines=by_time),
        ]
    return [
        _Panel(f"{title}: loss against step", "step", "loss", xlog=False, lines=by_step, stagger=True),
        _Panel(
            f"{title}: loss against wall time",
            f"wall time (s, {spread}; step 0 at half a step)",
            "loss",
            lines=by_time,
        ),
    ]


def _history_axes(r: dict[str, Any]) -> dict[str, list[float]] | None:
    """A descent record's loss history with its step and time axes (``race_axes`` for the race)."""
    axes = race_axes(r)
    if axes is not None:
        return axes
    history = _loss_history(r)
    if not history:
        return None
    per_step = r["time"] / max(1, len(history) - 1)
    return {
        "loss": history,
        "step": [float(i) for i in range(len(history))],
        "time": [i * per_step for i in range(len(history))],
    }


# tab20 with the dark shades first: ten distinct hues, then their light twins.
_PALETTE = [*range(0, 20, 2), *range(1, 20, 2)]
_PANEL_W, _PANEL_H, _LEGEND_W = 4.6, 3.4, 2.9  # inches


def _render(panels: Sequence[_Panel], path: Path) -> None:
    """Draw ``panels`` as small multiples (up to 3 a row) with one legend outside the axes,
    into a PNG with no timestamp or version stamp."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullLocator

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    width = _PANEL_W * cols + _LEGEND_W
    height = _PANEL_H * rows + 0.3
    fig = Figure(figsize=(width, height))
    # Fixed margins: a layout engine would draw every tick label twice, seconds per figure.
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - (_LEGEND_W + 0.1) / width,
        bottom=0.55 / height,
        top=1 - 0.4 / height,
        wspace=0.3,
        hspace=0.45 * 3.4 / _PANEL_H,
    )
    tab20 = colormaps["tab20"].colors
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    legend: dict[str, Any] = {}
    for ax, panel in zip(axes, panels, strict=False):
        colors = []
        order = sorted(range(len(panel.lines)), key=lambda k: -panel.lines[k].width)
        for k in order:
            line = panel.lines[k]
            c = line.color if line.color is not None else k
            color = tab20[_PALETTE[c % len(_PALETTE)]] if isinstance(c, int) else c
            marker = line.marker or None
            every: Any = max(1, len(line.xs) // 12) if marker else None
            if marker and panel.stagger:
                m = max(1, min(len(panel.lines), len(line.xs)))
                every = (k % m, m)
            (h,) = ax.plot(
                line.xs,
                line.ys,
                marker=marker,
                markevery=every,
                markersize=line.size,
                linestyle=line.style or "none",
                linewidth=line.width,
                color=color,
                label=line.label,
                alpha=0.9,
            )
            legend.setdefault(line.label, h)
        width_bar = 0.8 / max(1, len(panel.bars))
        for j, (label, heights) in enumerate(panel.bars):
            xs = [i + (j - (len(panel.bars) - 1) / 2) * width_bar for i in range(len(heights))]
            h = ax.bar(xs, heights, width=width_bar, color=tab20[_PALETTE[j]], label=label)
            legend.setdefault(label, h)
        colors = {k: panel.lines[k] for k in range(len(panel.lines))}
        for y, i, label in panel.levels:
            c = colors[i].color if i in colors else i
            color = tab20[_PALETTE[c % len(_PALETTE)]] if isinstance(c, int) else c
            h = ax.axhline(y, color=color, linestyle=":", linewidth=1.2, label=label)
            legend.setdefault(label, h)
        for x, label in panel.marks:
            h = ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=label)
            legend.setdefault(label, h)
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xlabel(panel.xlabel, fontsize="small")
        ax.set_ylabel(panel.ylabel, fontsize="small")
        if panel.xlog:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds and add little
        if panel.ylog:
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
            heights = [h for _, hs in panel.bars for h in hs if h > 0]
            if heights:  # bars: room below the shortest, and labelled ticks even within one decade
                ax.set_ylim(min(heights) / 3, max(heights) * 2)
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        if panel.xticks:
            rot = 20 if panel.bars else 0
            ax.set_xticks(
                [x for x, _ in panel.xticks], [t for _, t in panel.xticks], fontsize="x-small", rotation=rot
            )
        ax.tick_params(labelsize="small")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.legend(
        list(legend.values()),
        list(legend),
        loc="upper left",
        bbox_to_anchor=(1 - _LEGEND_W / width, 1 - 0.4 / height),
        fontsize="small",
        frameon=False,
    )
    fig.savefig(path, format="png", dpi=80, metadata={"Software": None})


def _loss_history(r: dict[str, Any]) -> list[float] | None:
    values = r.get(LOSSES_FIELD)
    if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
        return [float(v) for v in values]
    return None
