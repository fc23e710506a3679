"""``calcjax report``: rebuild CSV, tables and plots from raw benchmark JSON; compare two runs.

Imports neither JAX nor the benchmark suite: it works where only the report's
dependencies (pandas, matplotlib) are installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from calcjax._errors import UsageError
from calcjax._schema import CSV_NAME, PLOTS_DIR, RAW_NAME
from calcjax.report._build import _build
from calcjax.report._common import ReportError
from calcjax.report._index import _newest, _run_dirs, _split_markers, update_readme_markers, write_index
from calcjax.report._load import load_run, reading_once
from calcjax.report._runs import compare_runs
from calcjax.report._tables import headline_page

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run ids under --results, or run directories (default: every run under --results)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="the results directory (default: results)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="write results/compare-A-vs-B.md (time ratios A ÷ B with both runs' errors) and print it",
    )
    parser.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="rebuild CSV and tables only, leave the PNGs as they are (faster)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="also put the newest run's headline between <!-- headline:start/end --> in PATH",
    )


def _resolve(name: str, results_dir: Path) -> Path:
    path = Path(name)
    for candidate in (path, results_dir / name):
        if candidate.is_dir() or (candidate.name == RAW_NAME and candidate.is_file()):
            return candidate.parent if candidate.name == RAW_NAME and candidate.is_file() else candidate
    known = ", ".join(d.name for d in _run_dirs(results_dir)) or "none"
    raise ReportError(f"no run {name!r} (not a directory, nor a run in {results_dir}; runs there: {known})")


def run(args: argparse.Namespace) -> int:
    try:
        with reading_once():
            return _run(args)
    except ReportError as err:
        raise UsageError(str(err)) from None


def _run(args: argparse.Namespace) -> int:
    results_dir: Path = args.results
    compare = [_resolve(x, results_dir) for x in args.compare] if args.compare else None
    if args.runs or not compare:
        dirs = [_resolve(x, results_dir) for x in args.runs] if args.runs else _run_dirs(results_dir)
        if not dirs:
            raise ReportError(
                f"no runs in {results_dir}/ (each run is a folder holding {RAW_NAME}): "
                "run `calcjax bench` first"
            )
    else:
        dirs = []
    runs = [load_run(d) for d in dirs]  # check every input before writing anything
    for d in compare or ():
        load_run(d)
    if args.readme:
        _split_markers(args.readme, "headline")
    for r in runs:
        _build(r, plots=args.plots)
        tables = sorted(p.name for p in r.path.glob("*.md"))
        note = f"; left out {r.skipped} record(s) without calcjax extra_info" if r.skipped else ""
        print(f"{r.path}: {len(r.records)} records -> {CSV_NAME}, {', '.join(tables)}, {PLOTS_DIR}/{note}")
    indexes = {r.path.parent.resolve() for r in runs}
    if compare:
        path, text = compare_runs(*compare, out_dir=results_dir)
        print(text)
        print(f"wrote {path}")
        indexes.add(results_dir.resolve())
    for parent in sorted(indexes):
        print(f"index: {write_index(parent)}")
    if args.readme:
        newest = _newest(runs or [load_run(d) for d in compare or ()])
        changed = update_readme_markers(
            args.readme, f"{newest.provenance()}\n\n{headline_page(newest).body_markdown()}"
        )
        print(f"{args.readme}: headline {'updated' if changed else 'unchanged'} (run {newest.run_id})")
    if len(runs) == 1 and not compare:
        print()
        print(headline_page(runs[0]).body_markdown())
    return 0
