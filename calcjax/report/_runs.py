"""Comparing two runs with the regression gate: B against A, benchmark by benchmark.

The ratio is always B ÷ A (time of B over time of A: above 1× B is slower), in the
table, the summary and the gate. Each benchmark's verdict comes from
:func:`calcjax._gate.compare_records`: *slower* or *faster* only when a two-sided
Mann–Whitney U test on the stored per-round times is significant and the ratio
passes the factor; "no statistics" where a side kept too few rounds or none (its
ratio is shown, never judged).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from calcjax import _gate
from calcjax._files import write_atomic
from calcjax._fmt import fmt_n, fmt_ratio, fmt_time
from calcjax._fmt import missing as _missing
from calcjax._schema import METHOD_ORDER, PLOTS_DIR, SUITE_ORDER
from calcjax.report._common import HEADLINE_METHODS, HEADLINE_SHARED, ReportError, _err, _rank
from calcjax.report._html import document, png_uri
from calcjax.report._load import Run, load_run
from calcjax.report._page import Page, Table
from calcjax.report._plots import _Panel, _render

_VERDICT_ORDER = ("slower", "faster", _gate.NO_STATISTICS, "same")


def gate_table(a: Run, b: Run, *, factor: float = _gate.FACTOR) -> Any:
    """The gate's table of B against A (see :func:`calcjax._gate.compare_records`)."""
    return _gate.compare_records(a.records, b.records, factor=factor)


def _label(row: dict[str, Any]) -> str:
    extra = []
    if not _missing(row.get("devices")):
        extra.append(f"{int(row['devices'])} dev")
    if not _missing(row.get("steps")):
        extra.append(f"{int(row['steps'])} steps")
    return str(row.get("method") or "—") + (f" ({', '.join(extra)})" if extra else "")


def _p(p: Any) -> str:
    return "—" if _missing(p) else f"{float(p):.1e}"


def compare_page(a: Run, b: Run, *, factor: float = _gate.FACTOR, plot: str | None = None) -> Page:
    """The comparison of B against A as a page (blocks for Markdown and HTML)."""
    table = gate_table(a, b, factor=factor)
    if table.empty:
        raise ReportError(f"runs {a.run_id!r} and {b.run_id!r} have no benchmark in common")
    a_by = _gate._by_key(a.records, _gate.KEY, ())  # the records each row was judged from
    b_by = _gate._by_key(b.records, _gate.KEY, ())
    rows = []
    counts: dict[str, int] = {}
    geo: dict[tuple, list[float]] = {}
    for row in table.to_dict("records"):
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        geo.setdefault((row["suite"], row["method"]), []).append(row["ratio"])
        key = tuple(_gate._key_value(row.get(k)) for k in _gate.KEY)
        ra, rb = a_by.get(key), b_by.get(key)
        rows.append(
            [
                str(row["suite"]),
                str(row.get("problem") or "—"),
                _label(row),
                fmt_n(row.get("n")),
                str(row.get("dtype") or "—"),
                fmt_time(row["median_a"]),
                fmt_time(row["median_b"]),
                fmt_ratio(row["ratio"]),
                _p(row["p_value"]),
                f"{row['rounds_a']} / {row['rounds_b']}",
                row["verdict"],
                _err(ra) if ra else "—",
                _err(rb) if rb else "—",
            ]
        )
    header = [
        "suite",
        "problem",
        "method",
        "n",
        "dtype",
        "time A",
        "time B",
        "B ÷ A",
        "p",
        "rounds A / B",
        "verdict",
        "error A",
        "error B",
    ]
    judged = [r for r in rows if r[10] in ("slower", "faster")]
    judged.sort(key=lambda r: (_VERDICT_ORDER.index(r[10]), -float(r[7].rstrip("×").replace(",", "") or 0)))
    summary = [
        [str(s), str(m or "—"), str(len(v)), fmt_ratio(math.exp(sum(math.log(x) for x in v) / len(v)))]
        for (s, m), v in sorted(
            geo.items(), key=lambda kv: (_rank(kv[0][0], SUITE_ORDER), _rank(kv[0][1], METHOD_ORDER))
        )
    ]
    warnings = _gate.run_differences(a.machine, b.machine)
    blocks: list[Any] = [
        f"Run A: {a.provenance().strip('_')}",
        f"Run B: {b.provenance().strip('_')}",
        *(f"**Warning:** {w}; the times are compared all the same." for w in warnings),
        f"B ÷ A is the time of B over the time of A: above 1× B is slower. A benchmark is **slower** or "
        f"**faster** when a two-sided Mann–Whitney U test on the per-round times gives p < {_gate.ALPHA:g} "
        f"and B ÷ A is beyond {factor:g}× (or below 1/{factor:g}); **same** otherwise; **no statistics** "
        f"when a side kept fewer than {_gate.min_rounds()} rounds or none (the ratio is shown, not judged). "
        f"{len(rows)} benchmarks in both runs; {table.attrs.get('only_a', 0)} only in A, "
        f"{table.attrs.get('only_b', 0)} only in B. Verdicts: "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in _VERDICT_ORDER)
        + ".",
        "## Significant changes",
        Table.of(header, judged, "lllrlrrrrrlrr")
        if judged
        else "_None: no benchmark is significantly slower or faster._",
        "## Geometric mean of B ÷ A",
        Table.of(["suite", "method", "benchmarks", "B ÷ A"], summary, "llrr"),
    ]
    if plot:
        blocks += ["## Time on each run's device, headline benchmarks", f"![B against A]({plot})"]
    blocks += ["## Every benchmark", Table.of(header, rows, "lllrlrrrrrlrr")]
    return Page(f"Compare `{b.run_id}` (B) against `{a.run_id}` (A)", "", blocks)


def _bars(a: Run, b: Run) -> list[_Panel]:
    """Bars of A's and B's times for the headline methods at each problem's largest common n."""
    from calcjax.report._tables import headline_picks

    panels = []
    picks_b = {(p, d): by for p, _, d, by in headline_picks(b)}
    for problem, _, dtype, by_a in headline_picks(a):
        by_b = picks_b.get((problem, dtype))
        if by_b is None:
            continue
        ns = sorted({n for (m, n) in by_a} & {n for (m, n) in by_b})
        methods = [
            m
            for m in (*HEADLINE_METHODS, HEADLINE_SHARED)
            if any((m, n) in by_a and (m, n) in by_b for n in ns)
        ]
        if not methods:
            continue
        counts = {x: sum((m, x) in by_a and (m, x) in by_b for m in methods) for x in ns}
        n = max(ns, key=lambda x: (counts[x], x))  # the most methods, then the largest n
        ms = [m for m in methods if (m, n) in by_a and (m, n) in by_b]
        panel = _Panel(
            f"{problem}, n = {fmt_n(n)}, {dtype}", "", "median time of one gradient (s)", xlog=False
        )
        panel.bars = [
            (f"A: {a.device_text()}", [by_a[(m, n)]["time"] for m in ms]),
            (f"B: {b.device_text()}", [by_b[(m, n)]["time"] for m in ms]),
        ]
        panel.xticks = [(float(i), m) for i, m in enumerate(ms)]
        panels.append(panel)
    return panels


def compare_runs(
    run_a: Path | str, run_b: Path | str, *, out_dir: Path | str | None = None, factor: float = _gate.FACTOR
) -> tuple[Path, str]:
    """Compare run B against run A with the regression gate; write ``compare-<A>-vs-<B>.md`` and ``.html``.

    Records match on suite, problem, method, n, dtype and the suite's own keys
    (devices, steps, scheme, order, h, case, batch). When the two runs ran on different
    devices, a bar plot of the headline benchmarks goes into ``<out_dir>/plots/``.
    ``out_dir`` defaults to A's parent directory. Returns the Markdown's path and text.

    Raises:
      ReportError: a run cannot be read, or the runs have no benchmark in common.
    """
    a, b = load_run(run_a), load_run(run_b)
    out = Path(out_dir) if out_dir is not None else a.path.parent
    stem = f"compare-{a.run_id}-vs-{b.run_id}"
    plot_rel = None
    panels = _bars(a, b) if a.device_text() != b.device_text() else []
    if panels:
        plot_rel = f"{PLOTS_DIR}/{stem}.png"
    page = compare_page(a, b, factor=factor, plot=plot_rel)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {}
    if panels and plot_rel:
        (out / PLOTS_DIR).mkdir(exist_ok=True)
        tmp = out / PLOTS_DIR / f".{stem}.tmp"
        _render(panels, tmp)
        (out / plot_rel).unlink(missing_ok=True)
        tmp.replace(out / plot_rel)
        pictures[plot_rel] = png_uri((out / plot_rel).read_bytes())
    text = f"# {page.title}\n\n{page.body_markdown()}\n"
    path = out / f"{stem}.md"
    write_atomic(path, text)
    body = '<p><a href="index.html">← all runs</a></p>\n' + page.html(
        level=1, image_src=lambda s: pictures.get(s, s)
    )
    write_atomic(out / f"{stem}.html", document(f"calcjax: {b.run_id} against {a.run_id}", body))
    return path, text


__all__ = ["compare_page", "compare_runs", "gate_table"]
