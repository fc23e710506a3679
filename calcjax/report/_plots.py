"""The plots of a run: described as data (:func:`_plot_specs`), then drawn with matplotlib."""

from __future__ import annotations

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


@dataclass(frozen=True)
class _Line:
    label: str
    xs: list[float]
    ys: list[float]
    marker: str = "o"
    color: int | None = None  # index into the palette: one method, one colour in every plot


@dataclass
class _Panel:
    """One set of axes: lines, dotted levels (y, index of the line whose colour), marked xs."""

    title: str
    xlabel: str
    ylabel: str
    xlog: bool = True
    ylog: bool = True
    lines: list[_Line] = field(default_factory=list)
    levels: list[tuple[float, int]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)


def _xy(points: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    pts = sorted(points)
    return [x for x, _ in pts], [y for _, y in pts]


def _plot_specs(run: Run) -> dict[str, list[_Panel]]:
    """Every plot of ``run`` as data (file name -> panels); only plots with a line in them."""
    specs: dict[str, list[_Panel]] = {}
    grads = run.select("gradient")
    methods = _ordered((r.get("method") for r in run.records), METHOD_ORDER)
    for problem, of in _groups(grads, ("problem",)):
        if len(_numbers(r.get("n") for r in of)) < 2:
            continue
        panels = []
        for dtype in _ordered((r.get("dtype") for r in of), DTYPE_ORDER):
            panel = _Panel(f"{problem}, {dtype}", "n (parameters)", "median time (s)")
            for method, recs in _groups([r for r in of if r.get("dtype") == dtype], ("method",)):
                xs, ys = _xy((r["n"], r["time"]) for r in recs if _num(r.get("n"), 0) > 0 and r["time"] > 0)
                if xs:
                    panel.lines.append(_Line(str(method), xs, ys, color=methods.index(method)))
            panels.append(panel)
        specs[_plot_name("time-vs-n", problem)] = panels

    vcurve = run.select("vcurve")
    col = _err_column(vcurve)
    kind = "relative" if col == "rel_error" else "absolute"
    for problem, of in _groups(vcurve, ("problem",)):
        title = f"error against step size: {problem} (dotted: automatic step)"
        panel = _Panel(title, "step h", f"{kind} error")
        for _, _, dtype, recs in _groups(of, ("scheme", "order", "dtype")):
            xs, ys = _xy(
                (float(r["h"]), float(r[col]))
                for r in recs
                if isinstance(r.get("h"), int | float) and r["h"] > 0 and _num(r.get(col), 0) > 0
            )
            if not xs:
                continue
            panel.lines.append(_Line(f"{_vcurve_label(recs[0])} {dtype}", xs, ys, marker="."))
            auto = next((r for r in recs if r.get("h") == "auto" and _num(r.get(col), 0) > 0), None)
            if auto:
                panel.levels.append((float(auto[col]), len(panel.lines) - 1))
        panel.marks.append((TUTORIAL_EPS, "tutorial eps = 1e-5"))
        specs[_plot_name("vcurve", problem)] = [panel]

    for problem, of in _groups(run.select("descent"), ("problem",)):
        curves, finals = [], []
        for method, n, dtype, recs in _groups(of, ("method", "n", "dtype")):
            label = f"{method}, n={fmt_n(n)}, {dtype}"
            color = methods.index(method) if method in methods else None
            history = next((h for h in map(_loss_history, reversed(recs)) if h), None)
            if history:
                losses = [v if v > 0 else math.nan for v in history]
                curves.append(_Line(label, [float(i) for i in range(len(losses))], losses, "", color))
            xs, ys = _xy(
                (float(r["steps"]), float(r["final_loss"]))
                for r in recs
                if _num(r.get("steps"), 0) > 0 and _num(r.get("final_loss"), 0) > 0
            )
            if xs:
                finals.append(_Line(label, xs, ys, "o", color))
        if curves:  # a loss history says more than final losses
            panels = [_Panel(f"gradient descent: {problem}", "step", "loss", xlog=False, lines=curves)]
        else:
            panels = [_Panel(f"gradient descent: {problem}", "steps", "final loss", lines=finals)]
        specs[_plot_name("descent", problem)] = panels

    return {name: panels for name, panels in specs.items() if any(p.lines for p in panels)}


# tab20 with the dark shades first: ten distinct hues, then their light twins.
_PALETTE = [*range(0, 20, 2), *range(1, 20, 2)]


def _render(panels: Sequence[_Panel], path: Path) -> None:
    """Draw ``panels`` side by side into a PNG with no timestamp or version stamp."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    width = 6.5 * len(panels)
    fig = Figure(figsize=(width, 4.5))
    # Fixed margins: a layout engine would draw every tick label twice, seconds per figure.
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.15 / width, bottom=0.12, top=0.91, wspace=0.25)
    tab20 = colormaps["tab20"].colors
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        colors = []
        for k, line in enumerate(panel.lines):
            i = k if line.color is None else line.color
            color = tab20[_PALETTE[i % len(_PALETTE)]]
            ax.plot(line.xs, line.ys, marker=line.marker or None, label=line.label, color=color)
            colors.append(color)
        for y, i in panel.levels:
            ax.axhline(y, color=colors[i], linestyle=":", linewidth=1)
        for x, label in panel.marks:
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.xlog:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds and add little
        if panel.ylog:
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _loss_history(r: dict[str, Any]) -> list[float] | None:
    values = r.get(LOSSES_FIELD)
    if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
        return [float(v) for v in values]
    return None
