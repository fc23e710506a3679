"""Report tables of the peers' test suites: the ``corpus`` and ``gradcheck`` suites.

- ``corpus.md``: calcjax's FD methods against numdifftools and scipy on the cases
  taken from their own test suites, case by case, each error with its
  f-evaluations per coordinate beside it, then medians and maxima per method.
- ``gradcheck.md``: :func:`calcjax.check_gradient` beside
  ``jax.test_util.check_grads`` on planted bugs and correct gradients: detection
  rate, false-failure rate, f-evaluations per check.
"""

from __future__ import annotations

import math
from typing import Any

from calcjax._fmt import fmt_error
from calcjax._fmt import missing as _missing
from calcjax.report._common import _num, _ordered
from calcjax.report._load import Run
from calcjax.report._page import Table
from calcjax.report._registry import register_table

#: Column order of the corpus table: calcjax's methods first, then the peers.
CORPUS_METHOD_ORDER = ("calcjax-richardson", "calcjax-adaptive", "calcjax-central", "numdifftools", "scipy")
GRADCHECK_TOOL_ORDER = ("calcjax", "check_grads", "torch-gradcheck")


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    err = r.get("rel_error")
    nfev = r.get("f_evals")
    text = "NaN" if _missing(err) or not math.isfinite(_num(err, math.nan)) else fmt_error(err)
    return text if _missing(nfev) else f"{text} ({int(nfev)})"


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


@register_table(
    "corpus.md",
    "Peers' test suites",
    "calcjax against numdifftools and scipy on cases from their own test suites: error (f-evaluations).",
)
def _corpus(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    records = run.select("corpus")
    if not records:
        return None
    methods = _ordered({r.get("method") for r in records}, CORPUS_METHOD_ORDER)
    cases: list[str] = []
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if r.get("case") not in cases:
            cases.append(r.get("case"))
        by[(r.get("case"), r.get("method"))] = r
    hard = {r.get("case") for r in records if r.get("hard")}
    rows = [[c + (" (hard)" if c in hard else ""), *(_cell(by.get((c, m))) for m in methods)] for c in cases]
    summary = []
    for subset, keep in (("all", cases), ("hard", [c for c in cases if c in hard])):
        if not keep:
            continue
        for m in methods:
            errs = [_num(by[(c, m)].get("rel_error"), math.nan) for c in keep if (c, m) in by]
            nfev = [_num(by[(c, m)].get("f_evals"), math.nan) for c in keep if (c, m) in by]
            finite = [e for e in errs if math.isfinite(e)]
            summary.append(
                [
                    f"{subset} ({len(errs)})",
                    m,
                    fmt_error(_median(finite)) if finite else "—",
                    fmt_error(max(finite)) if finite else "—",
                    str(len(errs) - len(finite)),
                    f"{_median([n for n in nfev if math.isfinite(n)]):.0f}" if nfev else "—",
                ]
            )
    return [
        "Relative error against the analytic derivative (float64) of each method on cases taken from "
        "the peers' own test suites (numdifftools, scipy.differentiate, findiff; `calcjax/_corpus.py` "
        "names the test each comes from), with the f-evaluations per coordinate in parentheses. "
        '`calcjax-central` is `h=None` (the cheap default step), `calcjax-adaptive` is `h="adaptive"` '
        "(a step search), `calcjax-richardson` is `richardson_derivative`/`richardson_gradient`; "
        "numdifftools and scipy run with their defaults. (hard): a case the automatic step or the "
        "first Richardson step got wrong before the step rules followed f.",
        "## Summary",
        Table.of(
            ["cases", "method", "median error", "max error", "non-finite", "median f-evals"],
            summary,
            "llrrrr",
        ),
        "## Case by case",
        Table.of(["case", *methods], rows, "l" + "r" * len(methods)),
    ]


def _rate(r: dict[str, Any]) -> str:
    rate = r.get("rate")
    if _missing(rate):
        return "—"
    if r.get("kind") == "bug":
        return f"{100 * _num(rate):.0f}% ({r.get('detected')}/{r.get('resolvable')})"
    return f"{100 * _num(rate):.1f}% ({r.get('false_failures')}/{r.get('cases')})"


@register_table(
    "gradcheck.md",
    "Gradient checks",
    "calcjax.check_gradient beside jax.test_util.check_grads: bugs caught, correct gradients failed, cost.",
)
def _gradcheck(run: Run, plots: frozenset[str] = frozenset()) -> list[Any] | None:
    records = run.select("gradcheck")
    if not records:
        return None
    tools = _ordered({r.get("method") for r in records}, GRADCHECK_TOOL_ORDER)
    dtypes = _ordered({r.get("dtype") for r in records}, ("float32", "float64"))
    by = {(r.get("dtype"), r.get("problem"), r.get("method")): r for r in records}
    rows = []
    for dtype in dtypes:
        for kind, label in (("bug", "planted bugs: detected"), ("correct", "correct gradients: failed")):
            cells, evals = [], []
            for tool in tools:
                r = by.get((dtype, kind, tool))
                cells.append("—" if r is None else _rate(r))
                per = None if r is None else r.get("f_evals_per_check")
                evals.append("—" if _missing(per) else f"{_num(per):.1f}")
            rows.append([dtype, label, *cells, *evals])
    named = [
        f"{r.get('dtype')}: {r.get('culprit_named')}/{r.get('resolvable')}"
        for r in records
        if r.get("method") == "calcjax" and r.get("problem") == "bug" and not _missing(r.get("culprit_named"))
    ]
    header = ["dtype", "cases", *tools, *(f"f-evals per check ({t})" for t in tools)]
    return [
        "Planted gradient bugs (a sign flip, a factor 2 on one leaf, a missing term, a transposed "
        "matrix, a wrong `custom_vjp` rule, ...; `calcjax/_gradcheck_corpus.py`) and correct "
        "gradients of random smooth functions, checked by `calcjax.check_gradient` (default settings) "
        "and `jax.test_util.check_grads` (its default step and tolerances, reverse mode). Detection "
        "counts only bugs at least 10x the FD error estimate (below that no FD check can see them). "
        "f-evaluations per check exclude calcjax's culprit search on a failure."
        + (f" Culprit leaf named by calcjax: {'; '.join(named)}." if named else ""),
        Table.of(header, rows, "ll" + "r" * (2 * len(tools))),
    ]
