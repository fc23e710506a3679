"""Comparing two runs: time ratios A ÷ B with both runs' errors."""

from __future__ import annotations

import math
from pathlib import Path

from calcjax._files import write_atomic
from calcjax._fmt import fmt_error, fmt_n, fmt_ratio, fmt_time, md_table
from calcjax._fmt import missing as _missing
from calcjax._schema import (
    METHOD_ORDER,
    SUITE_ORDER,
)
from calcjax.report._common import ReportError, _div, _index, _rank
from calcjax.report._load import load_run


def compare_runs(
    run_a: Path | str, run_b: Path | str, *, out_dir: Path | str | None = None
) -> tuple[Path, str]:
    """Time ratios A ÷ B for every record both runs have, with both runs' errors.

    Records match on suite, problem, method, n, dtype and the suite's own keys
    (devices, steps, scheme, order, h, case). Writes ``compare-<A>-vs-<B>.md``
    into ``out_dir`` (default: A's parent directory) and returns its path and text.
    """
    a, b = load_run(run_a), load_run(run_b)
    keys = (
        "suite",
        "problem",
        "method",
        "n",
        "dtype",
        "devices",
        "steps",
        "scheme",
        "order",
        "h",
        "case",
        "batch",
    )
    b_by = _index(b.records, keys)
    rows, ratios, only_a = [], {}, 0
    matched = set()
    for r in a.records:
        if r.get("suite") in ("vcurve", "estimate"):
            continue
        key = tuple(r.get(k) for k in keys)
        other = b_by.get(key)
        if other is None:
            only_a += 1
            continue
        matched.add(key)
        ratio = _div(r["time"], other["time"])
        if ratio:
            ratios.setdefault((r.get("suite"), r.get("method")), []).append(ratio)
        extra = []
        if not _missing(r.get("devices")):
            extra.append(f"{r['devices']} dev")
        if not _missing(r.get("steps")):
            extra.append(f"{r['steps']} steps")
        rows.append(
            [
                str(r.get("suite")),
                str(r.get("problem", "—")),
                str(r.get("method", "—")) + (f" ({', '.join(extra)})" if extra else ""),
                fmt_n(r.get("n")),
                str(r.get("dtype", "—")),
                fmt_time(r["time"]),
                fmt_time(other["time"]),
                fmt_ratio(ratio),
                fmt_error(r.get("rel_error")),
                fmt_error(other.get("rel_error")),
            ]
        )
    only_b = sum(
        1
        for r in b.records
        if r.get("suite") not in ("vcurve", "estimate") and tuple(r.get(k) for k in keys) not in matched
    )
    if not rows:
        raise ReportError(f"runs {a.run_id!r} and {b.run_id!r} have no benchmark in common")
    header = ["suite", "problem", "method", "n", "dtype", "time A", "time B", "A ÷ B", "error A", "error B"]
    summary_rows = []
    for suite, method in sorted(ratios, key=lambda k: (_rank(k[0], SUITE_ORDER), _rank(k[1], METHOD_ORDER))):
        rs = ratios[(suite, method)]
        geomean = math.exp(sum(math.log(x) for x in rs) / len(rs))
        summary_rows.append([str(suite), str(method or "—"), str(len(rs)), fmt_ratio(geomean)])
    text = (
        f"Run A: {a.provenance()}\n\nRun B: {b.provenance()}\n\n"
        f"# Compare `{a.run_id}` (A) with `{b.run_id}` (B)\n\n"
        "A ÷ B above 1×: B is faster. Errors are relative to each run's reference gradient. "
        f"{len(rows)} benchmarks in both runs; {only_a} only in A, {only_b} only in B.\n\n"
        "## Geometric mean of A ÷ B\n\n"
        + md_table(["suite", "method", "benchmarks", "A ÷ B"], summary_rows, "llrr")
        + "\n\n## Every benchmark\n\n"
        + md_table(header, rows, "lllrlrrrrr")
        + "\n"
    )
    out = Path(out_dir) if out_dir is not None else a.path.parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compare-{a.run_id}-vs-{b.run_id}.md"
    write_atomic(path, text)
    return path, text
