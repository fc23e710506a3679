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
from calcjax.report._tables import _headline

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
        "--partial",
        action="store_true",
        help="rebuild interrupted runs (no raw.json) from the records that finished (records.jsonl); "
        "their tables are marked incomplete",
    )
    parser.add_argument(
        "--verify",
        metavar="RUN",
        help="check that RUN's recorded source hash matches its commit (read from git); "
        "exit 1 when it does not",
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
        if args.verify is not None:
            return _verify(_resolve(args.verify, args.results))
        with reading_once():
            if args.partial:
                _rebuild_partial(args)
            return _run(args)
    except ReportError as err:
        raise UsageError(str(err)) from None


def _verify(run_dir: Path) -> int:
    """``--verify RUN``: one line saying whether the run matches its commit; 1 on a mismatch."""
    from calcjax import _provenance

    raw = load_run(run_dir).raw
    result = _provenance.verify(raw)
    print(f"{run_dir.name}: {result}")
    if result.commit is not None and result.ok is not None:
        # Informational: whether this tree's measured sources have moved on since the run's commit.
        root = _provenance._default_root()
        then = _provenance.manifest_from_commit(root, result.commit)
        now = _provenance.tree_manifest(root)
        moved = sorted(p for p in set(then) | set(now) if then.get(p) != now.get(p))
        print(
            f"{run_dir.name}: measured sources here "
            + (f"differ from its commit in {len(moved)} file(s)" if moved else "are its commit's")
        )
    return 1 if result.ok is False else 0


def _rebuild_partial(args: argparse.Namespace) -> None:
    """``--partial``: write ``raw.json`` (marked incomplete) for each named run that has none."""
    import json
    import os

    from calcjax._schema import RECORDS_NAME
    from calcjax.report._load import raw_from_records

    names = args.runs or [
        str(d) for d in (sorted(args.results.iterdir()) if args.results.is_dir() else []) if d.is_dir()
    ]
    for name in names:
        run_dir = _resolve(name, args.results)
        if (run_dir / RAW_NAME).is_file() or not (run_dir / RECORDS_NAME).is_file():
            continue
        raw = raw_from_records(run_dir)
        tmp = run_dir / f".{RAW_NAME}.rebuilt"
        tmp.write_text(json.dumps(raw, indent=2), encoding="utf-8")
        os.replace(tmp, run_dir / RAW_NAME)
        print(f"{run_dir}: interrupted run rebuilt from {RECORDS_NAME}: {len(raw['benchmarks'])} records")


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
        changed = update_readme_markers(args.readme, f"{newest.provenance()}\n\n{_headline(newest)}")
        print(f"{args.readme}: headline {'updated' if changed else 'unchanged'} (run {newest.run_id})")
    if len(runs) == 1 and not compare:
        print()
        print(_headline(runs[0]))
    return 0
