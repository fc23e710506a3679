"""``calcjax report``: rebuild CSV, tables and plots from raw benchmark JSON; compare two runs.

Imports neither JAX nor the benchmark suite: it works where only the report's
dependencies (pandas, matplotlib) are installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calcjax._errors import UsageError
from calcjax._files import check_writable_dir, check_writable_file
from calcjax._gate import FACTOR, NO_STATISTICS, check_factor, failures, run_differences
from calcjax._schema import CSV_NAME, PLOTS_DIR, RAW_NAME
from calcjax.report._build import _build
from calcjax.report._common import ReportError
from calcjax.report._index import _newest, _run_dirs, _split_markers, update_readme_markers, write_index
from calcjax.report._load import Run, load_run, reading_once
from calcjax.report._runs import compare_runs, gate_table
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
        help="compare run B against run A with the regression gate (ratio B ÷ A and a Mann–Whitney U "
        "test on the per-round times); write results/compare-A-vs-B.md and .html and print it",
    )
    parser.add_argument(
        "--fail-above",
        metavar="F",
        help="with --compare: exit 1 when a benchmark is significantly slower in B by more than F "
        "(e.g. 1.10), listing them",
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


def _stored_comparisons(results_dir: Path, dirs: list[Path]) -> list[tuple[Path, Path]]:
    """(A, B) of every ``compare-A-vs-B.md`` in ``results_dir`` whose two runs are there."""
    by_id = {d.name: d for d in dirs}
    out = []
    for path in sorted(results_dir.glob("compare-*-vs-*.md")):
        stem = path.stem.removeprefix("compare-")
        for a in by_id:
            b = stem.removeprefix(f"{a}-vs-")
            if stem.startswith(f"{a}-vs-") and b in by_id:
                out.append((by_id[a], by_id[b]))
                break
    return out


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
        check_writable_dir(run_dir, f"--partial {run_dir}")
        raw = raw_from_records(run_dir)
        tmp = run_dir / f".{RAW_NAME}.rebuilt"
        tmp.write_text(json.dumps(raw, indent=2), encoding="utf-8")
        os.replace(tmp, run_dir / RAW_NAME)
        print(f"{run_dir}: interrupted run rebuilt from {RECORDS_NAME}: {len(raw['benchmarks'])} records")


def _run(args: argparse.Namespace) -> int:
    results_dir: Path = args.results
    fail_above = None
    if getattr(args, "fail_above", None) is not None:
        if not args.compare:
            raise UsageError("--fail-above needs --compare A B")
        fail_above = check_factor(args.fail_above)
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
    _check_writable(runs, compare, results_dir, args.readme)
    for r in runs:
        _build(r, plots=args.plots)
        tables = sorted(p.name for p in r.path.glob("*.md"))
        note = f"; left out {r.skipped} record(s) without calcjax extra_info" if r.skipped else ""
        print(f"{r.path}: {len(r.records)} records -> {CSV_NAME}, {', '.join(tables)}, {PLOTS_DIR}/{note}")
    indexes = {r.path.parent.resolve() for r in runs}
    if not args.runs and not compare:  # every run rebuilt: the comparisons between them too
        for a_dir, b_dir in _stored_comparisons(results_dir, dirs):
            path, _ = compare_runs(a_dir, b_dir, out_dir=results_dir)
            print(f"{path}: rebuilt")
    if compare:
        factor = fail_above if fail_above is not None else FACTOR
        path, text = compare_runs(*compare, out_dir=results_dir, factor=factor)
        print(text)
        print(f"wrote {path} and {path.with_suffix('.html').name}")
        a, b = (load_run(d) for d in compare)
        for warning in run_differences(a.machine, b.machine):
            print(f"calcjax report: warning: {warning}", file=sys.stderr)
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
    if compare and fail_above is not None:
        return _gate_exit(*(load_run(d) for d in compare), fail_above)
    return 0


def _check_writable(
    runs: list[Run], compare: list[Path] | None, results_dir: Path, readme: Path | None
) -> None:
    """One line (exit 2) before anything is rebuilt when a folder or file it writes cannot be written."""
    for folder in sorted({r.path for r in runs}):
        check_writable_dir(folder, f"run {folder}")
    for parent in sorted({r.path.parent for r in runs}):
        check_writable_dir(parent, f"the results index in {parent}")
    if compare:
        check_writable_dir(results_dir, f"--compare writes into {results_dir}")
    if readme:
        check_writable_file(readme, f"--readme {readme}")


def _gate_exit(a: Run, b: Run, fail_above: float) -> int:
    """1 and the list when some benchmark is significantly slower in B by more than ``fail_above``."""
    table = gate_table(a, b, factor=fail_above)
    bad = failures(table, fail_above)
    unjudged = int((table["verdict"] == NO_STATISTICS).sum())
    note = f" ({unjudged} without statistics, not judged)" if unjudged else ""
    if bad.empty:
        print(f"gate: no benchmark significantly slower than {fail_above:g}× in {b.run_id}{note}")
        return 0
    print(f"gate: {len(bad)} benchmark(s) significantly slower than {fail_above:g}× in {b.run_id}{note}:")
    for row in bad.to_dict("records"):
        what = " ".join(
            str(row[k]) for k in ("suite", "problem", "method", "n", "dtype") if row.get(k) is not None
        )
        print(f"  {what}: B ÷ A = {row['ratio']:.2f}×, p = {row['p_value']:.1e}")
    return 1
